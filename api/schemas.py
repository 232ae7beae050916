"""Response shapes of the API. Every field describes itself; the OpenAPI is built from these."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from api.params import NO_NUL

Hex = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$", description="SHA-256 as lowercase hex")]


class ReceiptOut(msgspec.Struct):
    """Acceptance of one entry: returned only after it was durably committed."""

    log: Annotated[str, Meta(description="The log it went into: <org>/<year>")]
    index: Annotated[int, Meta(description="Its index in that log, from 0, without gaps")]
    leaf_hash: Annotated[str, Meta(description="SHA-256(0x00 || leaf bytes), lowercase hex")]
    recorded_at: Annotated[str, Meta(description="When the ledger recorded it, UTC")]


class BatchReceiptsOut(msgspec.Struct):
    receipts: Annotated[list[ReceiptOut], Meta(description="One receipt per entry, in order")]


class LeavesOut(msgspec.Struct):
    """A page of leaf hashes, so anyone can recompute the tree's root."""

    start: Annotated[int, Meta(description="Index of the first leaf hash")]
    end: Annotated[int, Meta(description="One past the index of the last leaf hash")]
    leaf_hashes: Annotated[list[str], Meta(description="Leaf hashes, lowercase hex, in order")]


class InclusionProofOut(msgspec.Struct):
    """RFC 9162 inclusion proof of one leaf in the tree of ``tree_size`` leaves."""

    index: int
    tree_size: int
    leaf_hash: Annotated[str, Meta(description="The leaf's hash, lowercase hex")]
    path: Annotated[list[str], Meta(description="Audit path, lowercase hex, leaf to root")]


class ConsistencyProofOut(msgspec.Struct):
    """RFC 9162 consistency proof between two sizes of the same log."""

    first: int
    second: int
    path: Annotated[list[str], Meta(description="Consistency path, lowercase hex")]


class OrgOut(msgspec.Struct):
    code: Annotated[str, Meta(description="The body's code, used in every URL")]
    name: Annotated[str, Meta(description="The body's name")]


class LogOut(msgspec.Struct):
    log: Annotated[str, Meta(description="<org>/<year>")]
    year: int
    size: Annotated[int, Meta(description="Number of leaves")]
    root: Annotated[str, Meta(description="Current root hash, lowercase hex")]
    closed: Annotated[bool, Meta(description="Whether the year has been closed")]


class OrgDetailOut(msgspec.Struct):
    code: str
    name: str
    logs: Annotated[list[LogOut], Meta(description="The body's logs, one per fiscal year")]


class HealthOut(msgspec.Struct):
    status: str


class EntryOut(msgspec.Struct, omit_defaults=True):
    """An entry. Approved entries (and, for staff of the org, all) carry their content;
    others are stubs: index, kind, leaf hash, status and the withholding reason."""

    log: Annotated[str, Meta(description="<org>/<year>")]
    index: int
    kind: str
    leaf_hash: Annotated[str, Meta(description="SHA-256(0x00 || leaf bytes), lowercase hex")]
    status: Annotated[
        str, Meta(description="approved | pending | withheld | internal (publication status)")
    ]
    reason: Annotated[str | None, Meta(description="Ground for withholding")] = None
    legal_basis: str | None = None
    subject: str | None = None
    occurred_on: str | None = None
    recorded_at: str | None = None
    visibility: str | None = None
    actor: str | None = None
    body: dict[str, Any] | None = None
    reversed_by: Annotated[str | None, Meta(description="<log>#<index> of its reversal")] = None
    leaf_bytes: Annotated[
        str | None,
        Meta(description="The canonical leaf (UTF-8 JSON text) that leaf_hash commits to"),
    ] = None


class EntriesPage(msgspec.Struct):
    items: list[EntryOut]
    next_cursor: Annotated[
        str | None, Meta(description="Pass as cursor for the next page; null at the end")
    ]


class ReviewIn(msgspec.Struct, forbid_unknown_fields=True):
    decision: Literal["approve", "withhold"]
    reason: str | None = None
    legal_basis: Annotated[str, Meta(max_length=2000, pattern=NO_NUL)] | None = None


class PendingOut(msgspec.Struct):
    log: str
    index: int
    kind: str
    subject: str
    actor: Annotated[str, Meta(description="Who posted it")]
    recorded_on: str
    age_working_days: Annotated[int, Meta(description="Working days since it was recorded")]
    overdue: Annotated[bool, Meta(description="Pending more than 20 working days")]


class PendingList(msgspec.Struct):
    items: Annotated[list[PendingOut], Meta(description="Oldest first; up to limit of them")]
    total: Annotated[int, Meta(description="Entries awaiting review, on every page")]
    overdue: Annotated[int, Meta(description="Of those, pending over 20 working days")]
    next_cursor: Annotated[
        str | None, Meta(description="Pass as cursor for the next page; null at the end")
    ]


class AsOfOut(msgspec.Struct):
    """The tree state a summary was computed from."""

    log: Annotated[str, Meta(description="<org>/<year>")]
    tree_size: Annotated[int, Meta(description="The numbers are those of leaves [0, tree_size)")]
    root: Annotated[str, Meta(description="Root hash at tree_size, lowercase hex")]
    checkpoint: Annotated[
        str | None, Meta(description="The signed note for tree_size (C2SP signed note)")
    ]


class FundOut(msgspec.Struct, omit_defaults=True):
    fund_code: str
    name: str
    category: str
    currency: str
    allow_overdraft: bool
    balance: Annotated[
        str, Meta(description="Staff: the balance of all postings; public: of approved entries")
    ]
    as_of: Annotated[
        AsOfOut, Meta(description="The head of the org's newest log the balance was read at")
    ]
    earlier_as_of: Annotated[
        list[AsOfOut], Meta(description="The org's earlier logs at the same read, oldest first")
    ]
    visibility: Annotated[str | None, Meta(description="Staff only")] = None
    status: Annotated[str | None, Meta(description="Staff only: the opening's review")] = None


class ApprovalOut(msgspec.Struct):
    approval_type: str
    document_no: str
    authority: str
    decision: str
    decided_on: str
    entry: str


class ProjectTenderOut(msgspec.Struct):
    tender_id: str
    title: str
    status: str
    value: str


class ProjectOut(msgspec.Struct):
    project_code: str
    name: str
    category: str
    location: str
    status: str
    budget: Annotated[str, Meta(description="Total investment, yuan")]
    disbursed: Annotated[str, Meta(description="Disbursed to it from funds, yuan")]
    approvals: list[ApprovalOut]
    tenders: list[ProjectTenderOut]
    as_of: Annotated[
        AsOfOut, Meta(description="The head of the org's newest log the numbers were read at")
    ]
    earlier_as_of: Annotated[
        list[AsOfOut],
        Meta(description="The org's earlier logs at the same read, oldest first"),
    ]


class FundRowOut(msgspec.Struct, omit_defaults=True):
    period: Annotated[str, Meta(description="2026-03, 2026-Q1 or 2026")]
    opening: str
    receipts: str
    disbursements: str
    closing: str
    target: Annotated[str | None, Meta(description="The year's target, if one was set")]
    target_ratio: Annotated[
        str | None,
        Meta(description="Year-to-date collections (or spending) over the target, 4 places"),
    ]
    pending: Annotated[
        int | None, Meta(description="Public only: entries of the period awaiting review")
    ] = None
    withheld: Annotated[int | None, Meta(description="Public only: entries withheld")] = None


class FundSummaryOut(msgspec.Struct):
    org: str
    fund_code: str
    year: int
    period: str
    scope: Annotated[str, Meta(description="public (approved entries) or all (staff)")]
    direction: Annotated[str | None, Meta(description="collection or spending target")]
    rows: list[FundRowOut]
    as_of: AsOfOut
    reviews_as_of: Annotated[
        list[AsOfOut], Meta(description="Later logs holding reviews that the numbers reflect")
    ]


class ProcurementSummaryOut(msgspec.Struct, omit_defaults=True):
    org: str
    year: int
    scope: str
    tenders: int
    cancelled: int
    awarded: int
    awarded_total: str
    contracted_total: str
    mean_bidders: Annotated[str | None, Meta(description="Mean bidders per competitive tender")]
    single_bidder_tenders: int
    median_days_to_award: Annotated[
        str | None, Meta(description="Median days from tender period start to award")
    ]
    as_of: AsOfOut
    reviews_as_of: list[AsOfOut]
    pending: int | None = None
    withheld: int | None = None


class ProjectSummaryOut(msgspec.Struct):
    project_code: str
    name: str
    status: str
    budget: str
    disbursed: str
    as_of: Annotated[
        AsOfOut, Meta(description="The head of the org's newest log the numbers were read at")
    ]
    earlier_as_of: Annotated[
        list[AsOfOut],
        Meta(description="The org's earlier logs at the same read, oldest first"),
    ]


class TenderOut(msgspec.Struct, omit_defaults=True):
    tender_id: str
    title: str
    method: str
    status: str
    value: str
    currency: str
    period_start: str
    period_end: str
    project_code: str | None = None
    entry: Annotated[str | None, Meta(description="<log>#<index> of the tender entry")] = None


class LevyPayerOut(msgspec.Struct):
    """One payer of a pollution levy: what was assessed and what was paid."""

    payer_id: str
    payer_name: str
    assessments: int
    assessed: str
    reduced: Annotated[str, Meta(description="Reductions granted (减免)")]
    due: Annotated[str, Meta(description="assessed - reduced")]
    collected: Annotated[str, Meta(description="Receipts from the payer into the fund, the year")]
    outstanding: str
    deferred_until: Annotated[str | None, Meta(description="Latest deferral (缓缴) granted")]


class LevyPayersOut(msgspec.Struct):
    """A pollution-levy fund's payers for a year, and the log heads it was read at."""

    org: str
    fund_code: str
    year: int
    scope: Annotated[str, Meta(description="all (staff) or public (approved entries only)")]
    payers: list[LevyPayerOut]
    as_of: AsOfOut
    reviews_as_of: Annotated[
        list[AsOfOut], Meta(description="Later logs whose reviews the public numbers count")
    ]


class OpinionStatsOut(msgspec.Struct):
    """Public counts of an org's cases, with the log heads they were read at."""

    total: int
    by_status: dict[str, int]
    by_category: Annotated[dict[str, int], Meta(description="By the category handled as")]
    open: int
    overdue: Annotated[int, Meta(description="Open and past their statutory due date")]
    answered_late: Annotated[int, Meta(description="Closed after their due date")]
    as_of: Annotated[AsOfOut, Meta(description="The head of the org's newest log")]
    earlier_as_of: Annotated[
        list[AsOfOut], Meta(description="The org's earlier logs at the same read, oldest first")
    ]
