"""Public routes over logs: orgs, leaf hashes, checkpoints, proofs and the verifier key.

No token needed. Only entries approved for publication show their content;
the rest appear as stubs. A token of the org shows its staff everything.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromQuery, Parameter

from api import exports
from api.auth import optional_principal, staff_of
from api.exports import ExportStream
from api.params import NO_NUL, ItemCode, NonNeg, OrgCode, Year
from api.runtime import org_snapshot, runtime
from api.schemas import (
    ConsistencyProofOut,
    EntriesPage,
    EntryOut,
    FundOut,
    FundSummaryOut,
    InclusionProofOut,
    LeavesOut,
    LevyPayersOut,
    LogOut,
    OrgDetailOut,
    OrgOut,
    ProcurementSummaryOut,
    ProjectOut,
    ProjectSummaryOut,
    TenderOut,
)
from ledger import access, logs, ocds, queries, summaries
from ledger.errors import FieldError, InvalidInput, NotFound
from ledger.logs import MAX_LEAVES_PAGE
from ledger.queries import MAX_PAGE, EntryView


@get("/orgs", operation_id="listOrgs", summary="Disclosing bodies", tags=["public"])
async def list_orgs(request: Request[Any, Any, Any]) -> list[OrgOut]:
    orgs = await access.list_orgs(runtime(request).pool)
    return [OrgOut(code=o.code, name=o.name) for o in orgs]


@get("/orgs/{org:str}", operation_id="getOrg", summary="One body and its logs", tags=["public"])
async def get_org(request: Request[Any, Any, Any], org: OrgCode) -> OrgDetailOut:
    info = await access.get_org(runtime(request).pool, org)
    heads = await logs.list_heads(runtime(request).reads, org)
    return OrgDetailOut(
        code=info.code,
        name=info.name,
        logs=[
            LogOut(
                log=f"{h.org}/{h.year}",
                year=h.year,
                size=h.size,
                root=h.root.hex(),
                closed=h.closed,
            )
            for h in heads
        ],
    )


@get(
    "/orgs/{org:str}/logs/{year:int}/leaves",
    operation_id="getLeafHashes",
    summary="Leaf hashes of a log, at most 1000 a page",
    tags=["public"],
)
async def get_leaves(
    request: Request[Any, Any, Any],
    org: OrgCode,
    year: Year,
    start: NonNeg = 0,
    end: Annotated[int | None, Parameter(ge=0, le=2**53 - 1)] = None,
) -> LeavesOut:
    pool = runtime(request).reads
    head = await logs.get_head(pool, org, year)
    stop = min(head.size, start + MAX_LEAVES_PAGE if end is None else end)
    if end is not None and end < start:
        raise InvalidInput(
            "end must not be before start", [FieldError("query.end", "is before start")]
        )
    if end is not None and end - start > MAX_LEAVES_PAGE:
        raise InvalidInput(
            f"at most {MAX_LEAVES_PAGE} leaf hashes a page",
            [FieldError("query.end", f"at most start + {MAX_LEAVES_PAGE}")],
        )
    start = min(start, head.size)
    stop = max(stop, start)
    hashes = await logs.leaf_hashes(pool, org, year, start, stop)
    return LeavesOut(start=start, end=start + len(hashes), leaf_hashes=[h.hex() for h in hashes])


@get(
    "/orgs/{org:str}/logs/{year:int}/checkpoint",
    operation_id="getCheckpoint",
    summary="The latest signed checkpoint (C2SP signed note)",
    tags=["public"],
    media_type="text/plain",
)
async def get_checkpoint(
    request: Request[Any, Any, Any], org: OrgCode, year: Year
) -> Response[str]:
    cp = await logs.latest_checkpoint(runtime(request).reads, org, year)
    return Response(cp.note, media_type="text/plain")


@get(
    "/orgs/{org:str}/logs/{year:int}/proofs/inclusion",
    operation_id="getInclusionProof",
    summary="RFC 9162 inclusion proof",
    tags=["public"],
)
async def get_inclusion(
    request: Request[Any, Any, Any], org: OrgCode, year: Year, index: NonNeg, tree_size: NonNeg
) -> InclusionProofOut:
    lh, path = await logs.inclusion_proof(runtime(request).reads, org, year, index, tree_size)
    return InclusionProofOut(
        index=index, tree_size=tree_size, leaf_hash=lh.hex(), path=[p.hex() for p in path]
    )


@get(
    "/orgs/{org:str}/logs/{year:int}/proofs/consistency",
    operation_id="getConsistencyProof",
    summary="RFC 9162 consistency proof",
    tags=["public"],
)
async def get_consistency(
    request: Request[Any, Any, Any], org: OrgCode, year: Year, first: NonNeg, second: NonNeg
) -> ConsistencyProofOut:
    path = await logs.consistency_proof(runtime(request).reads, org, year, first, second)
    return ConsistencyProofOut(first=first, second=second, path=[p.hex() for p in path])


@get(
    "/vkey",
    operation_id="getVerifierKey",
    summary="The checkpoint verifier key (C2SP vkey)",
    tags=["public"],
    media_type="text/plain",
)
async def get_vkey(request: Request[Any, Any, Any]) -> str:
    return runtime(request).signer.vkey() + "\n"


def _entry_out(v: EntryView, with_leaf: bool = False) -> EntryOut:
    out = EntryOut(
        log=v.log, index=v.index, kind=v.kind, leaf_hash=v.leaf_hash, status=v.status,
        reason=v.reason,
    )  # fmt: skip
    if v.full is not None:
        for key, value in v.full.items():
            setattr(out, key, value)
        if with_leaf and v.leaf_bytes is not None:
            out.leaf_bytes = v.leaf_bytes.decode()
    return out


async def _staff(request: Request[Any, Any, Any], org: str) -> bool:
    return staff_of(await optional_principal(request), org)


@get(
    "/orgs/{org:str}/entries",
    operation_id="listEntries",
    summary="Entries of a body, in log order",
    responses={
        200: ResponseSpec(
            data_container=EntriesPage,
            description="A page of entries; with format=csv or ndjson, a stream of every row",
        )
    },
    description=(
        "Keyset-paginated. Without a token of the org, entries not approved for publication "
        "appear as stubs, and the subject/since/until filters match approved entries only."
    ),
    tags=["public"],
)
async def list_entries(
    request: Request[Any, Any, Any],
    org: OrgCode,
    year: Annotated[int | None, Parameter(ge=1900, le=2999)] = None,
    kind: Annotated[str | None, Parameter(max_length=64, pattern=NO_NUL)] = None,
    subject: Annotated[str | None, Parameter(max_length=200, pattern=NO_NUL)] = None,
    since: Annotated[dt.date | None, Parameter(description="occurred_on on or after")] = None,
    until: Annotated[dt.date | None, Parameter(description="occurred_on on or before")] = None,
    cursor: Annotated[str | None, Parameter(max_length=64, pattern=NO_NUL)] = None,
    limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE)] = 100,
    format: Annotated[
        Literal["json", "csv", "ndjson"],
        Parameter(
            description="csv and ndjson stream every matching row (after cursor, if given; "
            "no paging)"
        ),
    ] = "json",
) -> EntriesPage:
    await access.get_org(runtime(request).pool, org)
    staff = await _staff(request, org)
    flt = queries.EntryFilter(year, kind, subject, since, until)
    if format != "json":
        rows = queries.stream_entries(
            runtime(request).pool_for(staff), org, flt, staff=staff, cursor=cursor
        )
        lines = exports.csv_lines(rows) if format == "csv" else exports.ndjson_lines(rows)
        media = "text/csv" if format == "csv" else "application/x-ndjson"
        name = f"{org}-entries.{format}"
        return ExportStream(  # type: ignore[return-value]
            lines,
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    items, next_cursor = await queries.list_entries(
        runtime(request).primary_reads if staff else runtime(request).reads,
        org,
        flt,
        staff=staff,
        cursor=cursor,
        limit=limit,
    )
    return EntriesPage(items=[_entry_out(v) for v in items], next_cursor=next_cursor)


@get(
    "/orgs/{org:str}/logs/{year:int}/entries/{index:int}",
    operation_id="getEntry",
    summary="One entry, with its leaf bytes when it may be shown",
    tags=["public"],
)
async def get_entry(
    request: Request[Any, Any, Any], org: OrgCode, year: Year, index: NonNeg
) -> EntryOut:
    staff = await _staff(request, org)
    view = await queries.get_entry(runtime(request).pool, org, year, index, staff=staff)
    return _entry_out(view, with_leaf=True)


@get("/orgs/{org:str}/funds", operation_id="listFunds", summary="Funds", tags=["public"])
async def list_funds(request: Request[Any, Any, Any], org: OrgCode) -> list[FundOut]:
    await access.get_org(runtime(request).pool, org)
    staff = await _staff(request, org)
    async with org_snapshot(request, org, staff=staff) as (conn, heads):
        funds = await queries.list_funds(conn, org, staff=staff)
    return [msgspec.convert(f | heads, FundOut) for f in funds]


@get("/orgs/{org:str}/funds/{code:str}", operation_id="getFund", summary="A fund", tags=["public"])
async def get_fund(request: Request[Any, Any, Any], org: OrgCode, code: ItemCode) -> FundOut:
    staff = await _staff(request, org)
    async with org_snapshot(request, org, staff=staff) as (conn, heads):
        fund = await queries.get_fund(conn, org, code, staff=staff)
    return msgspec.convert(fund | heads, FundOut)


@get(
    "/orgs/{org:str}/projects/{code:str}",
    operation_id="getProject",
    summary="A project: budget vs disbursed, approvals, status and tenders",
    tags=["public"],
)
async def get_project(request: Request[Any, Any, Any], org: OrgCode, code: ItemCode) -> ProjectOut:
    staff = await _staff(request, org)
    async with org_snapshot(request, org, staff=staff) as (conn, heads):
        p = await queries.get_project(conn, org, code, staff=staff)
    return msgspec.convert(p | heads, ProjectOut)


def _signer(request: Request[Any, Any, Any], staff: bool) -> tuple[Any, Any]:
    """The pool a summary reads (staff read their own writes), and the checkpoint signer."""
    rt = runtime(request)
    return rt.pool_for(staff), rt.signer


@get(
    "/orgs/{org:str}/funds/{code:str}/summary",
    operation_id="getFundSummary",
    summary="A fund's flows by month, quarter or year, against its target",
    tags=["public"],
)
async def get_fund_summary(
    request: Request[Any, Any, Any],
    org: OrgCode,
    code: ItemCode,
    year: Annotated[int, Parameter(ge=1900, le=2999)],
    period: FromQuery[Literal["month", "quarter", "year"]] = "month",
) -> FundSummaryOut:
    staff = await _staff(request, org)
    rt = runtime(request)
    summary = await summaries.fund_summary(
        rt.primary_reads if staff else rt.reads, org, code, year=year, period=period,
        staff=staff, signer=rt.signer, origin=rt.settings.origin,
    )  # fmt: skip
    return msgspec.convert(summary, FundSummaryOut, from_attributes=True)


@get("/orgs/{org:str}/projects", operation_id="listProjects", summary="Projects", tags=["public"])
async def list_projects(request: Request[Any, Any, Any], org: OrgCode) -> list[ProjectSummaryOut]:
    await access.get_org(runtime(request).pool, org)
    staff = await _staff(request, org)
    async with org_snapshot(request, org, staff=staff) as (conn, heads):
        rows = await queries.list_projects(conn, org, staff=staff)
    return [msgspec.convert(r | heads, ProjectSummaryOut) for r in rows]


@get(
    "/orgs/{org:str}/procurement/tenders",
    operation_id="listTenders",
    summary="Tenders",
    tags=["public"],
)
async def list_tenders(
    request: Request[Any, Any, Any],
    org: OrgCode,
    year: Annotated[int | None, Parameter(ge=1900, le=2999)] = None,
) -> list[TenderOut]:
    await access.get_org(runtime(request).pool, org)
    staff = await _staff(request, org)
    rows = await queries.list_tenders(runtime(request).pool, org, staff=staff, year=year)
    return [msgspec.convert(r, TenderOut) for r in rows]


@get(
    "/orgs/{org:str}/procurement/summary",
    operation_id="getProcurementSummary",
    summary="Tenders, awards, competition and speed for a year",
    tags=["public"],
)
async def get_procurement_summary(
    request: Request[Any, Any, Any],
    org: OrgCode,
    year: Annotated[int, Parameter(ge=1900, le=2999)],
) -> ProcurementSummaryOut:
    await access.get_org(runtime(request).pool, org)
    staff = await _staff(request, org)
    pool, signer = _signer(request, staff)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        summary = await summaries.procurement_summary(
            conn, org, year=year, staff=staff, signer=signer,
            origin=runtime(request).settings.origin,
        )  # fmt: skip
    return msgspec.convert(summary, ProcurementSummaryOut, from_attributes=True)


@get(
    "/orgs/{org:str}/procurement/ocds",
    operation_id="getOcdsReleasePackage",
    summary="Procurement of a year as an OCDS 1.1 release package",
    description="One release per procurement entry; validates against OCDS 1.1.5.",
    tags=["public"],
)
async def get_ocds(
    request: Request[Any, Any, Any],
    org: OrgCode,
    year: Annotated[int, Parameter(ge=1900, le=2999)],
) -> dict[str, Any]:
    info = await access.get_org(runtime(request).pool, org)
    staff = await _staff(request, org)
    rt = runtime(request)
    leaves = await queries.procurement_leaves(rt.pool_for(staff), org, year=year, staff=staff)
    package = ocds.build_release_package(
        leaves,
        ocid_prefix=rt.settings.ocid_prefix,
        publisher=info.name,
        uri=f"{request.base_url}api/v1/orgs/{org}/procurement/ocds?year={year}",
        published_date=max(
            (leaf["recorded_at"] for leaf in leaves), default=f"{year}-01-01T00:00:00Z"
        ),
    )
    if not package["releases"]:
        raise NotFound(f"{org} has no published procurement for {year}")
    return package


@get(
    "/orgs/{org:str}/funds/{code:str}/payers",
    operation_id="getLevyPayers",
    summary="Pollution levy per payer: assessed, reduced, collected, outstanding, deferred",
    tags=["public"],
)
async def get_levy_payers(
    request: Request[Any, Any, Any],
    org: OrgCode,
    code: ItemCode,
    year: Annotated[int, Parameter(ge=1900, le=2999)],
) -> LevyPayersOut:
    staff = await _staff(request, org)
    pool, signer = _signer(request, staff)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        payers = await summaries.levy_payers(
            conn, org, code, year=year, staff=staff, signer=signer,
            origin=runtime(request).settings.origin,
        )  # fmt: skip
    return msgspec.convert(payers, LevyPayersOut, from_attributes=True)


ROUTES = [
    get_levy_payers,
    get_ocds,
    get_fund_summary,
    list_projects,
    list_tenders,
    get_procurement_summary,
    list_orgs,
    get_org,
    get_leaves,
    get_checkpoint,
    get_inclusion,
    get_consistency,
    get_vkey,
    list_entries,
    get_entry,
    list_funds,
    get_fund,
    get_project,
]
