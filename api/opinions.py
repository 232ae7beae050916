"""Opinions and disclosure requests, quarterly disclosures and the annual report."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromQuery, JSONBody, Parameter

from api.auth import require
from api.params import NO_NUL, OrgCode
from api.runtime import org_snapshot, runtime
from api.schemas import OpinionStatsOut
from ledger import access, disclosures, opinions, summaries
from ledger.errors import LedgerError
from ledger.workdays import china_today

STAFF: set[Any] = {"clerk", "reviewer", "auditor", "admin"}
HANDLERS: set[Any] = {"clerk", "reviewer", "admin"}
ADMINS: set[Any] = {"admin"}
TrackingCode = Annotated[
    str, Parameter(max_length=64, pattern=NO_NUL, description="The case's tracking code")
]
#: Staff name a case by its tracking code or by the ``tracking_sha256`` their list shows.
StaffCaseRef = Annotated[
    str,
    Parameter(
        max_length=64,
        pattern=NO_NUL,
        description="The case's tracking code, or its tracking_sha256 (64 hex) from the list",
    ),
]
#: The statuses a case can have (``ledger.opinions.TRANSITIONS``), for the list's filter.
CASE_STATUS = "^(" + "|".join(opinions.TRANSITIONS) + ")$"


class RateLimited(LedgerError):
    status = 429
    type = "rate-limited"
    title = "Too many requests"


class SubmittedOut(msgspec.Struct, omit_defaults=True):
    tracking_code: Annotated[str, msgspec.Meta(description="Keep it: it is shown only once")]
    due_on: Annotated[str | None, msgspec.Meta(description="Reply due by (working days)")]
    received_on: str
    due_estimated: Annotated[
        bool, msgspec.Meta(description="True when the holidays of a year counted are unknown")
    ]
    due_note: str | None = None
    duplicate: bool = False


class CaseEventOut(msgspec.Struct):
    kind: str
    on: str
    entry: str


class CaseOut(msgspec.Struct, omit_defaults=True):
    org: str
    category: str
    handled_as: str
    status: str
    received_on: str
    due_on: str | None
    due_estimated: bool
    overdue: bool
    events: list[CaseEventOut]
    erased: Annotated[bool, msgspec.Meta(description="The citizen's personal data was erased")]
    due_note: str | None = None
    outcome: str | None = None
    reason: str | None = None
    decided_on: str | None = None
    response: str | None = None
    referred_to: str | None = None
    reference: dict[str, Any] | None = None
    tracking_sha256: str | None = None
    applicant_type: str | None = None
    personal_data: Annotated[
        list[dict[str, Any]] | None,
        msgspec.Meta(description="Staff only: what the citizen wrote and their contact"),
    ] = None


class SupplementIn(msgspec.Struct, forbid_unknown_fields=True):
    text: str


class PublishIn(msgspec.Struct, forbid_unknown_fields=True):
    quarter: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{4}-Q[1-4]$", examples=["2026-Q3"])]


class DisclosureOut(msgspec.Struct):
    period: str
    sha256: str
    tree_size: int
    entry: str


def _case_out(c: opinions.Case, *, staff: bool, personal: Any = None) -> CaseOut:
    out = CaseOut(
        org=c.org,
        category=c.category,
        handled_as=c.handled_as,
        status=c.status,
        received_on=c.received_on.isoformat(),
        due_on=c.due_on.isoformat() if c.due_on else None,
        due_estimated=c.due_estimated,
        overdue=c.overdue,
        events=[CaseEventOut(kind=k, on=d.isoformat(), entry=e) for k, d, e in c.events],
        erased=c.erased,
        due_note=c.due_note,
        outcome=c.outcome,
        reason=c.reason,
        decided_on=c.decided_on.isoformat() if c.decided_on else None,
        response=c.response,
        referred_to=c.referred_to,
        reference=c.reference,
    )
    if staff:
        out.tracking_sha256 = c.tracking_sha256.hex()
        out.applicant_type = c.applicant_type
        out.personal_data = personal
    return out


async def _calendar(request: Request[Any, Any, Any]) -> Any:
    return await opinions.load_calendar(runtime(request).pool)


@post(
    "/orgs/{org:str}/opinions",
    status_code=201,
    operation_id="submitOpinion",
    summary="Submit an opinion, complaint, report or disclosure request (no token)",
    description=(
        "Returns an unguessable tracking code and the reply's due date in working days. "
        "Rate limited per client address; the same submission again within ten minutes "
        "returns the same case."
    ),
    tags=["public"],
)
async def submit_opinion(
    request: Request[Any, Any, Any], org: OrgCode, data: JSONBody[opinions.OpinionIn]
) -> Response[SubmittedOut]:
    await access.get_org(runtime(request).pool, org)
    client = request.client.host if request.client else "-"
    wait = request.app.state.opinion_limiter.take(client)
    if wait > 0:
        raise RateLimited(
            "Too many submissions from this address; try again later",
            retry_after=int(wait + 0.999),
        )
    result = await opinions.submit(
        runtime(request).pool, org, data, client=client, today=china_today(),
        calendar=await _calendar(request),
    )  # fmt: skip
    out = SubmittedOut(
        tracking_code=result.tracking_code,
        due_on=result.due_on.isoformat() if result.due_on else None,
        received_on=result.received_on.isoformat(),
        due_estimated=result.due_estimated,
        due_note=result.due_note,
        duplicate=result.duplicate,
    )
    return Response(out, status_code=200 if result.duplicate else 201)


@get(
    "/opinions/{tracking_code:str}",
    operation_id="getOpinion",
    summary="A case by its tracking code: status, due date, the published response",
    tags=["public"],
)
async def get_opinion(request: Request[Any, Any, Any], tracking_code: TrackingCode) -> CaseOut:
    case = await opinions.get_case(
        runtime(request).pool, tracking_code, calendar=await _calendar(request),
        today=china_today(),
    )  # fmt: skip
    return _case_out(case, staff=False)


@post(
    "/opinions/{tracking_code:str}/supplement",
    status_code=201,
    operation_id="supplyOpinion",
    summary="The citizen supplies what was asked (补正); the clock resumes",
    tags=["public"],
)
async def supply_opinion(
    request: Request[Any, Any, Any], tracking_code: TrackingCode, data: JSONBody[SupplementIn]
) -> dict[str, str]:
    await opinions.supply(runtime(request).pool, tracking_code, data.text, today=china_today())
    return {"status": "supplied"}


@get(
    "/orgs/{org:str}/opinions",
    operation_id="listOpinions",
    summary="Staff: the org's cases with their clocks",
    tags=["staff"],
)
async def list_opinions(
    request: Request[Any, Any, Any],
    org: OrgCode,
    status: Annotated[
        str | None, Parameter(max_length=32, pattern=CASE_STATUS, description="a case status")
    ] = None,
    overdue: FromQuery[bool | None] = None,
) -> list[CaseOut]:
    await require(request, org, STAFF)
    cases = await opinions.list_cases(
        runtime(request).pool, org, calendar=await _calendar(request), today=china_today(),
        status=status,
    )  # fmt: skip
    if overdue is not None:
        cases = [c for c in cases if c.overdue == overdue]
    return [_case_out(c, staff=True) for c in cases]


@get(
    "/orgs/{org:str}/opinions/stats",
    operation_id="getOpinionStats",
    summary="Public counts of cases by status and category, and how many are overdue",
    tags=["public"],
)
async def opinion_stats(request: Request[Any, Any, Any], org: OrgCode) -> OpinionStatsOut:
    await access.get_org(runtime(request).pool, org)
    calendar = await _calendar(request)
    async with org_snapshot(request, org, staff=False) as (conn, heads):
        counts = await opinions.counts(conn, org, calendar=calendar, today=china_today())
    return msgspec.convert(counts | heads, OpinionStatsOut)


@get(
    "/orgs/{org:str}/opinions/{tracking_code:str}",
    operation_id="getOpinionForStaff",
    summary="Staff: one case, with the citizen's words and contact unless erased",
    tags=["staff"],
)
async def get_opinion_for_staff(
    request: Request[Any, Any, Any], org: OrgCode, tracking_code: StaffCaseRef
) -> CaseOut:
    await require(request, org, STAFF)
    pool = runtime(request).pool
    case = await opinions.get_case(
        pool, opinions.staff_case_ref(tracking_code), calendar=await _calendar(request),
        today=china_today(), org=org,
    )  # fmt: skip
    personal = await opinions.private_data(pool, org, case.tracking_sha256)
    return _case_out(case, staff=True, personal=personal)


@post(
    "/orgs/{org:str}/opinions/{tracking_code:str}/events",
    status_code=201,
    operation_id="recordOpinionEvent",
    summary="Staff: accept, supplement_requested, extended, responded, referred, closed, appeal",
    description=(
        "Illegal transitions are 409 naming the allowed ones. The verbs extend, respond, "
        "refer, close and request_supplement name the same events."
    ),
    tags=["staff"],
)
async def record_event(
    request: Request[Any, Any, Any], org: OrgCode, tracking_code: StaffCaseRef,
    data: JSONBody[opinions.EventIn],
) -> CaseOut:  # fmt: skip
    principal = await require(request, org, HANDLERS)
    rt = runtime(request)
    calendar = await _calendar(request)
    ref = opinions.staff_case_ref(tracking_code)
    await opinions.record_event(
        rt.pool, org, ref, data, actor=principal.name, today=china_today(), calendar=calendar,
    )  # fmt: skip
    case = await opinions.get_case(rt.pool, ref, calendar=calendar, today=china_today(),
                                   org=org)  # fmt: skip
    return _case_out(case, staff=True)


@post(
    "/orgs/{org:str}/opinions/{tracking_code:str}/erase",
    status_code=201,
    operation_id="eraseOpinionPersonalData",
    summary="Admin: erase the citizen's personal data (PIPL); the ledger stays verifiable",
    tags=["staff"],
)
async def erase_opinion(
    request: Request[Any, Any, Any], org: OrgCode, tracking_code: StaffCaseRef
) -> dict[str, str]:
    principal = await require(request, org, ADMINS)
    receipt = await opinions.erase(runtime(request).pool, org,
                                   opinions.staff_case_ref(tracking_code),
                                   actor=principal.name, today=china_today())  # fmt: skip
    return {"status": "erased", "entry": f"{receipt.log}#{receipt.index}"}


@post(
    "/orgs/{org:str}/disclosures",
    status_code=201,
    operation_id="publishQuarter",
    summary="Admin: publish a quarter's summaries (disclosure.published)",
    tags=["staff"],
)
async def publish(
    request: Request[Any, Any, Any], org: OrgCode, data: JSONBody[PublishIn]
) -> DisclosureOut:
    principal = await require(request, org, ADMINS)
    rt = runtime(request)
    d, _ = await disclosures.publish_quarter(
        rt.pool, org, data.quarter, signer=rt.signer, origin=rt.settings.origin,
        today=china_today(), actor=principal.name,
    )  # fmt: skip
    return DisclosureOut(period=d.period, sha256=d.sha256, tree_size=d.tree_size, entry=d.entry)


@get(
    "/orgs/{org:str}/disclosures",
    operation_id="listDisclosures",
    summary="Quarterly publications",
    tags=["public"],
)
async def list_disclosures(request: Request[Any, Any, Any], org: OrgCode) -> list[DisclosureOut]:
    await access.get_org(runtime(request).pool, org)
    items = await disclosures.list_disclosures(runtime(request).read_pool, org)
    return [
        DisclosureOut(period=d.period, sha256=d.sha256, tree_size=d.tree_size, entry=d.entry)
        for d in items
    ]


@get(
    "/orgs/{org:str}/disclosures/{period:str}",
    operation_id="getDisclosure",
    summary="The exact snapshot bytes of a quarterly publication",
    tags=["public"],
    media_type="application/json",
)
async def get_disclosure(
    request: Request[Any, Any, Any], org: OrgCode,
    period: Annotated[str, Parameter(max_length=16, pattern=NO_NUL)],
) -> Response[bytes]:  # fmt: skip
    data = await disclosures.snapshot_bytes(runtime(request).read_pool, org, period)
    return Response(data, media_type="application/json")


@get(
    "/orgs/{org:str}/annual-report/{year:int}",
    operation_id="getAnnualReport",
    summary="政府信息公开工作年度报告 tables (国办公开办函〔2021〕30号), JSON or HTML",
    tags=["public"],
)
async def annual_report(
    request: Request[Any, Any, Any],
    org: OrgCode,
    year: Annotated[int, Parameter(ge=1900, le=2999)],
    format: FromQuery[Literal["json", "html"]] = "json",
) -> Any:
    info = await access.get_org(runtime(request).pool, org)
    rt = runtime(request)
    async with (
        rt.pool.acquire() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        as_of, _ = await summaries.snapshot_as_of(conn, org, year, rt.signer, rt.settings.origin)
        report = await opinions.annual_report(conn, org, info.name, year,
                                              dataclasses.asdict(as_of))  # fmt: skip
    if format == "html" or "text/html" in request.headers.get("accept", "").split(",")[0]:
        from ledger.annual_report import render_html

        return Response(render_html(report), media_type="text/html")
    return report


ROUTES = [
    submit_opinion,
    get_opinion,
    supply_opinion,
    opinion_stats,
    list_opinions,
    get_opinion_for_staff,
    record_event,
    erase_opinion,
    publish,
    list_disclosures,
    get_disclosure,
    annual_report,
]
