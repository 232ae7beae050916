"""Year-end close (年终统一装订归档): seal a year's log and chain it to the next.

``close_year`` appends ``year.closed {size, root}`` as the log's final leaf, signs
the final checkpoint and seals the log (the database then refuses it any new
leaf), and freezes what the year's archive needs beyond the leaves: the annual
report as of the close and the items still open, which are carried forward. It
then builds both archive bundles and appends ``year.archived {archived_log, size,
root, bundle_sha256, public_bundle_sha256}`` to the next year's log, so the
years form one chain.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import asyncpg

from archive.bundle import BuiltBundle, build_bundle, spare_connection
from ledger import opinions
from ledger.books import load_books
from ledger.canonical import canonical_bytes
from ledger.checkpoint import Checkpoint, NoteSigner
from ledger.entries import NewEntry
from ledger.errors import Conflict, NotFound
from ledger.kinds import SYSTEM_KINDS, YearArchived, YearClosed
from ledger.sequencer import append_entries
from ledger.settings import Settings


@dataclasses.dataclass(frozen=True)
class CloseResult:
    log: str
    final_size: int
    final_root: str
    checkpoint: str
    open_items: dict[str, Any]
    bundles: dict[str, BuiltBundle]
    archived_entry: str


async def _open_items(conn: Any, org: str, year: int) -> dict[str, Any]:
    pending = await conn.fetch(
        """SELECT l.idx, l.kind, l.subject FROM leaves l
           LEFT JOIN reviews r ON r.org = l.org AND r.target_year = l.year
                AND r.target_index = l.idx
           WHERE l.org = $1 AND l.year = $2 AND l.visibility = 'public' AND r.org IS NULL
             AND NOT l.kind = ANY($3) ORDER BY l.idx""",
        org,
        year,
        sorted(SYSTEM_KINDS),
    )
    cases = await conn.fetch(
        """SELECT encode(tracking_sha256, 'hex') AS tracking_sha256, category, status, received_on
           FROM opinions WHERE org = $1 AND received_on <= $2
             AND status = ANY($3) ORDER BY received_on, submitted_year, submitted_index""",
        org,
        dt.date(year, 12, 31),
        list(opinions.OPEN_STATUSES),
    )
    return {
        "pending_review": [
            {"index": r["idx"], "kind": r["kind"], "subject": r["subject"]} for r in pending
        ],
        "open_cases": [
            {
                "tracking_sha256": r["tracking_sha256"],
                "category": r["category"],
                "status": r["status"],
                "received_on": r["received_on"].isoformat(),
            }
            for r in cases
        ],
    }


async def close_year(
    pool: asyncpg.Pool,
    settings: Settings,
    signer: NoteSigner,
    org: str,
    year: int,
    *,
    today: dt.date,
    actor: str,
) -> CloseResult:
    """Close ``org``'s ``year``; the year must be over and not yet closed."""
    if year >= today.year:
        raise Conflict(f"{year} is not over yet; a year is closed after its last day")
    async with pool.acquire() as conn, conn.transaction():
        org_name = await conn.fetchval(
            "SELECT name FROM orgs WHERE code = $1 FOR NO KEY UPDATE", org
        )
        if org_name is None:
            raise NotFound(f"no org {org!r}")
        head = await conn.fetchrow(
            "SELECT size, root, closed_at FROM logs WHERE org = $1 AND year = $2", org, year
        )
        if head is None:
            raise NotFound(f"{org} has no log for {year}")
        if head["closed_at"] is not None:
            raise Conflict(f"The {year} books of {org} are already closed")
        items = await _open_items(conn, org, year)
        closing = NewEntry(
            org=org,
            kind="year.closed",
            subject=f"log/{org}/{year}",
            occurred_on=dt.date(year, 12, 31),
            visibility="public",
            body=YearClosed(size=head["size"], root=bytes(head["root"]).hex()),
            actor=actor,
        )
        receipt = (await append_entries(conn, [closing], effects=load_books))[0]
        final = await conn.fetchrow(
            "SELECT size, root FROM logs WHERE org = $1 AND year = $2", org, year
        )
        size, root = final["size"], bytes(final["root"])
        assert size == receipt.index + 1
        closed_at = await conn.fetchval(
            "UPDATE logs SET closed_at = now() WHERE org = $1 AND year = $2 RETURNING closed_at",
            org,
            year,
        )
        # Under the org's lock: the reviews made by the close are exactly those below
        # these heads of the later logs (ledger.review.by_the_close).
        later_heads = json.dumps(
            {
                str(r["year"]): r["size"]
                for r in await conn.fetch(
                    "SELECT year, size FROM logs WHERE org = $1 AND year > $2 ORDER BY year",
                    org,
                    year,
                )
            }
        )
        note = signer.sign(Checkpoint(settings.log_origin(org, year), size, root))
        await conn.execute(
            """INSERT INTO checkpoints (org, year, size, root, note) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT DO NOTHING""",
            org,
            year,
            size,
            root,
            note,
        )
        as_of = {"log": f"{org}/{year}", "tree_size": size, "root": root.hex(), "checkpoint": note}
        # What the bundles show in full (archive.bundle, REVIEWS) is what it counts.
        report = await opinions.annual_report(conn, org, org_name, year, as_of, later_heads)
        await conn.execute(
            """INSERT INTO year_closes (org, year, closed_at, closed_on, final_size, final_root,
                   annual_report, open_items, later_heads)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            org,
            year,
            closed_at,
            today,
            size,
            root,
            canonical_bytes(report),
            json.dumps(items),
            later_heads,
        )
    bundles = {}
    async with pool.acquire() as conn, spare_connection(pool) as helper:
        for variant in ("full", "public"):
            bundles[variant] = await build_bundle(
                conn, settings, signer, org, year, variant, helper=helper
            )
    # The next year's log learns how this one ended: the years form one chain.
    archived = NewEntry(
        org=org,
        kind="year.archived",
        subject=f"log/{org}/{year}",
        occurred_on=dt.date(year + 1, 1, 1),
        visibility="public",
        body=YearArchived(
            archived_log=f"{org}/{year}",
            size=size,
            root=root.hex(),
            bundle_sha256=bundles["full"].sha256,
            public_bundle_sha256=bundles["public"].sha256,
        ),
        actor=actor,
    )
    async with pool.acquire() as conn, conn.transaction():
        archived_receipt = (await append_entries(conn, [archived], effects=load_books))[0]
    return CloseResult(
        log=f"{org}/{year}",
        final_size=size,
        final_root=root.hex(),
        checkpoint=note,
        open_items=items,
        bundles=bundles,
        archived_entry=f"{archived_receipt.log}#{archived_receipt.index}",
    )
