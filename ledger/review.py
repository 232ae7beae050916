"""Review before publication (保密审查): open is the rule, withholding the exception.

A reviewer of the org approves a public entry for publication or withholds it on
one of the grounds of the Regulations on Open Government Information, with its
legal basis. The decision is itself an entry (``review.approved`` /
``review.withheld``) in the log of the day it was made; the rules (same org,
public entries only, one decision per entry, the reviewer is not the poster)
live in ``ledger.books``.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from ledger.entries import NewEntry
from ledger.errors import ErrorList
from ledger.kinds import ReviewApproved, ReviewWithheld, WithholdReason

WITHHOLD_REASONS: tuple[str, ...] = WithholdReason.__args__  # type: ignore[attr-defined]


def by_the_close(review: str, heads: str, closed_at: str | None = None) -> str:
    """SQL: the ``reviews`` row ``review`` of a closed year's entry was made by the
    close. ``heads`` is the close's ``later_heads`` (``{"<year>": size}``, the org's
    later logs when the close held the org's lock), ``closed_at`` its time.

    A review is by the close if it is a leaf of the closed log itself (it precedes
    ``year.closed`` there), or of a later log below the size recorded for that log.
    Given ``closed_at``, a close made before ``later_heads`` was recorded (NULL)
    keeps the rule it was built with: ``reviewed_at`` (the app's clock) by
    ``closed_at`` (the database's). The year's public bundle shows, and its annual
    report counts, what this admits.
    """
    later = f"{review}.idx < ({heads}::jsonb ->> {review}.year::text)::bigint"
    if closed_at is not None:
        later = (
            f"CASE WHEN {heads}::jsonb IS NULL THEN {review}.reviewed_at <= "
            f"{closed_at}::timestamptz ELSE {later} END"
        )
    return f"({review}.year = {review}.target_year OR {later})"


def review_entry(
    *,
    org: str,
    year: int,
    index: int,
    decision: Literal["approve", "withhold"],
    reason: str | None,
    legal_basis: str | None,
    reviewer: str,
    today: dt.date,
) -> NewEntry:
    """The review entry to append; raises InvalidInput for an incomplete decision."""
    errors = ErrorList()
    body: ReviewApproved | ReviewWithheld
    target_log = f"{org}/{year}"
    if decision == "approve":
        if reason is not None or legal_basis is not None:
            errors.add("$.reason", "an approval takes no reason or legal_basis")
        errors.raise_if_any()
        body = ReviewApproved(target_log=target_log, target_index=index)
    else:
        if reason not in WITHHOLD_REASONS:
            errors.add("$.reason", "must be one of: " + ", ".join(WITHHOLD_REASONS))
        if not legal_basis or not legal_basis.strip():
            errors.add("$.legal_basis", "withholding needs its legal basis")
        errors.raise_if_any("A withheld entry needs a reason and its legal basis")
        assert reason is not None and legal_basis is not None
        body = ReviewWithheld(
            target_log=target_log,
            target_index=index,
            reason=reason,  # type: ignore[arg-type]
            legal_basis=legal_basis,
        )
    return NewEntry(
        org=org,
        kind="review.approved" if decision == "approve" else "review.withheld",
        subject=f"entry/{org}/{year}/{index}",
        occurred_on=today,
        visibility="public",
        body=body,
        actor=reviewer,
    )
