"""Entry kinds: the typed body of every entry a log can hold.

Each kind is a msgspec struct that rejects unknown fields; decoding a request
body into its kind's struct is the one place bodies are validated. Inside the
ledger the struct is trusted. ``SPEC.md`` §5 is the contract for the field names.

Kinds marked *system* are written by the ledger itself (year chaining, review,
publication) and cannot be posted through the generic entries route.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec

from ledger.money import Amount

# A NUL byte makes PostgreSQL raise; refuse it at the edge with a field path.
_NO_NUL = r"^[^\x00]*$"

Code = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-/]*$",
        description="Identifier: letters, digits, '.', '_', '-', '/'",
    ),
]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=_NO_NUL)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=2000, pattern=_NO_NUL)]
ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=_NO_NUL)]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
Year = Annotated[int, msgspec.Meta(ge=1900, le=2999)]
LogName = Annotated[
    str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}/[0-9]{4}$", description="<org>/<year>")
]
Index = Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)]

PartyType = Literal["enterprise", "government", "institution", "individual", "other"]


class Body(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Base of every entry body."""


class Party(Body):
    id: Code
    name: Name
    type: PartyType | None = None


# --- funds ---------------------------------------------------------------------------

FundCategory = Literal[
    "pollution_levy", "rural_coop_medical", "subsidy", "transfer_payment", "other"
]


class FundOpened(Body, omit_defaults=False):
    """``currency`` and ``allow_overdraft`` are in every leaf (SPEC §5), given or not."""

    fund_code: Code
    name: Name
    category: FundCategory
    currency: Currency = "CNY"
    allow_overdraft: bool = False


class FundTargetSet(Body):
    fund_code: Code
    year: Year
    direction: Literal["collection", "spending"]
    amount: Amount


class FundReceipt(Body):
    fund_code: Code
    amount: Amount
    payer: Party
    reference: ShortText


class FundDisbursement(Body):
    fund_code: Code
    amount: Amount
    payee: Party
    purpose: Text
    reference: ShortText
    project_code: Code | None = None


class FundLevyAssessed(Body):
    """Pollution levy (排污费) assessed on a payer: the amount due, any reduction and its
    basis, any deferral. A memo: money moves only with the payer's fund.receipt."""

    fund_code: Code
    payer: Party
    period: Annotated[
        str, msgspec.Meta(pattern=r"^(19|2[0-9])[0-9]{2}(-Q[1-4]|-(0[1-9]|1[0-2]))?$")
    ]
    amount: Amount
    reference: ShortText
    reduction: Amount | None = None
    reduction_basis: Text | None = None
    deferred_until: dt.date | None = None


# --- projects ------------------------------------------------------------------------


class Funding(Body):
    source: ShortText
    amount: Amount


class ProjectRegistered(Body, omit_defaults=False):
    """``funding`` is in every leaf (SPEC §5), given or not."""

    project_code: Code
    name: Name
    category: ShortText
    location: ShortText
    total_investment: Amount
    funding: list[Funding] = []


class ProjectApproval(Body):
    project_code: Code
    approval_type: Literal[
        "site_selection",
        "eia",
        "trial_production",
        "completion_acceptance",
        "construction_review",
        "other",
    ]
    document_no: ShortText
    authority: Name
    decision: ShortText
    decided_on: dt.date


ProjectStatusValue = Literal[
    "planned", "approved", "under_construction", "completed", "suspended", "cancelled"
]


class ProjectStatus(Body):
    project_code: Code
    status: ProjectStatusValue


class ProjectBudgetAmended(Body):
    project_code: Code
    total_investment: Amount
    reason: Text


# --- procurement ---------------------------------------------------------------------


class Value(Body):
    amount: Amount
    currency: Currency = "CNY"


class Period(Body):
    start: dt.date
    end: dt.date


class ProcurementTender(Body):
    tender_id: Code
    title: Name
    method: Literal["open", "selective", "limited", "direct"]
    value: Value
    period: Period
    buyer: Party
    project_code: Code | None = None


class ProcurementBid(Body):
    tender_id: Code
    bidder: Party
    amount: Amount
    submitted_on: dt.date


class ProcurementAward(Body):
    tender_id: Code
    supplier: Party
    amount: Amount
    date: dt.date


class ProcurementContract(Body):
    tender_id: Code
    contract_id: Code
    supplier: Party
    amount: Amount
    signed_on: dt.date


class PeriodChange(Body):
    """A tender period's new start, its new end, or both."""

    start: dt.date | None = None
    end: dt.date | None = None


class AmendmentChanges(Body):
    """What an amendment changes in the tender; at least one field."""

    title: Name | None = None
    value: Value | None = None
    period: PeriodChange | None = None
    description: Text | None = None


class ProcurementAmendment(Body):
    tender_id: Code
    rationale: Text
    changes: AmendmentChanges


class ProcurementCancelled(Body):
    tender_id: Code
    reason: Text


# --- corrections and review ----------------------------------------------------------


class CorrectionReversal(Body):
    target_log: LogName
    target_index: Index
    reason: Text


WithholdReason = Literal[
    "state_secret",
    "prohibited_by_law",
    "three_security_one_stability",
    "third_party_rights",
    "internal_affairs",
    "process_information",
    "enforcement_files",
    "administrative_query",
]


class ReviewApproved(Body):
    target_log: LogName
    target_index: Index


class ReviewWithheld(Body):
    target_log: LogName
    target_index: Index
    reason: WithholdReason
    legal_basis: Text


# --- year chaining and publication (system kinds) ------------------------------------


class YearOpened(Body):
    previous_log: LogName
    previous_size: Index
    previous_root: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]


class YearClosed(Body):
    size: Index
    root: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]


class YearArchived(Body):
    archived_log: LogName
    size: Index
    root: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
    bundle_sha256: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
    #: The public variant's, which anyone can download and check (since 2026-11-27).
    public_bundle_sha256: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")] | None = None


class DisclosurePublished(Body):
    period: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{4}-Q[1-4]$")]
    summary_sha256: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
    tree_size: Index


# --- opinions, complaints and disclosure requests (system kinds) ---------------------
# Personal data never enters a leaf: ``commitment`` is SHA-256(salt || canonical JSON of
# the citizen's words and contact), the salt kept in the erasable store.

Hex64 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
OpinionCategory = Literal["opinion", "complaint", "report", "disclosure_request"]
ApplicantType = Literal[
    "natural_person", "commercial", "research", "public_interest", "legal_services", "other_org"
]


class OpinionReference(Body):
    type: Literal["project", "fund", "tender"]
    code: Code


class OpinionSubmitted(Body):
    tracking_sha256: Hex64
    category: OpinionCategory
    applicant_type: ApplicantType
    received_on: dt.date
    due_on: dt.date | None
    due_estimated: bool
    commitment: Hex64
    reference: OpinionReference | None = None


class OpinionAccepted(Body):
    tracking_sha256: Hex64
    handled_as: OpinionCategory


class OpinionSupplementRequested(Body):
    tracking_sha256: Hex64
    what: Text


class OpinionSupplied(Body):
    tracking_sha256: Hex64
    commitment: Hex64


class OpinionExtended(Body):
    tracking_sha256: Hex64
    days: Annotated[int, msgspec.Meta(ge=1, le=20)]
    reason: Text
    due_on: dt.date | None


class OpinionResponded(Body):
    tracking_sha256: Hex64
    outcome: ShortText
    reason: ShortText | None = None
    response: Text | None = None


class OpinionReferred(Body):
    tracking_sha256: Hex64
    to: Name
    reason: Text


class OpinionClosed(Body):
    tracking_sha256: Hex64


class OpinionAppealed(Body):
    tracking_sha256: Hex64
    channel: Literal["reconsideration", "litigation_direct", "litigation_after_reconsideration"]
    result: Literal["upheld", "corrected", "other", "pending"]


class OpinionErased(Body):
    """The citizen's personal data was erased (PIPL); the commitment stays, unopenable."""

    tracking_sha256: Hex64


#: Every kind a log may hold, with its body type.
KINDS: dict[str, type[Body]] = {
    "fund.opened": FundOpened,
    "fund.target_set": FundTargetSet,
    "fund.receipt": FundReceipt,
    "fund.disbursement": FundDisbursement,
    "fund.levy_assessed": FundLevyAssessed,
    "project.registered": ProjectRegistered,
    "project.approval": ProjectApproval,
    "project.status": ProjectStatus,
    "project.budget_amended": ProjectBudgetAmended,
    "procurement.tender": ProcurementTender,
    "procurement.bid": ProcurementBid,
    "procurement.award": ProcurementAward,
    "procurement.contract": ProcurementContract,
    "procurement.amendment": ProcurementAmendment,
    "procurement.cancelled": ProcurementCancelled,
    "correction.reversal": CorrectionReversal,
    "review.approved": ReviewApproved,
    "review.withheld": ReviewWithheld,
    "year.opened": YearOpened,
    "year.closed": YearClosed,
    "year.archived": YearArchived,
    "disclosure.published": DisclosurePublished,
    "opinion.submitted": OpinionSubmitted,
    "opinion.accepted": OpinionAccepted,
    "opinion.supplement_requested": OpinionSupplementRequested,
    "opinion.supplied": OpinionSupplied,
    "opinion.extended": OpinionExtended,
    "opinion.responded": OpinionResponded,
    "opinion.referred": OpinionReferred,
    "opinion.closed": OpinionClosed,
    "opinion.appealed": OpinionAppealed,
    "opinion.erased": OpinionErased,
}

#: Kinds the ledger writes itself; a client posting one gets 422.
SYSTEM_KINDS = frozenset(
    {
        "review.approved",
        "review.withheld",
        "year.opened",
        "year.closed",
        "year.archived",
        "disclosure.published",
        *(k for k in KINDS if k.startswith("opinion.")),
    }
)

#: Kinds a client may post through the entries routes.
POSTABLE_KINDS = tuple(sorted(k for k in KINDS if k not in SYSTEM_KINDS))

_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    kind: msgspec.json.Decoder(body_type) for kind, body_type in KINDS.items()
}


def body_decoder(kind: str) -> msgspec.json.Decoder[Any]:
    return _DECODERS[kind]


def body_to_builtins(body: Body) -> dict[str, Any]:
    """The body as plain JSON values (dates and amounts as strings) for the leaf."""
    out = msgspec.to_builtins(body)
    assert isinstance(out, dict)
    return out
