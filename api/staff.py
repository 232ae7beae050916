"""Staff routes: posting entries (one, or a batch of up to 1000, all or nothing)."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from litestar import Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, JSONBody, Parameter

from api.auth import require
from api.params import NO_NUL, NonNeg, OrgCode, Year
from api.runtime import runtime
from api.schemas import (
    BatchReceiptsOut,
    PendingList,
    PendingOut,
    ReceiptOut,
    ReviewIn,
)
from ledger.entries import NewEntry, batch_request_sha256, decode_batch, decode_entry
from ledger.posting import post_entries_pooled
from ledger.queries import pending_entries
from ledger.review import review_entry
from ledger.sequencer import IdempotencyRace, Receipt, find_idempotent
from ledger.workdays import WorkCalendar, china_today

POSTERS: set[Any] = {"clerk", "admin"}
REVIEWERS: set[Any] = {"reviewer", "admin"}
STAFF: set[Any] = {"clerk", "reviewer", "auditor", "admin"}


def _out(r: Receipt) -> ReceiptOut:
    return ReceiptOut(
        log=r.log, index=r.index, leaf_hash=r.leaf_hash.hex(), recorded_at=r.recorded_at
    )


#: A single post's retry key: the same key and entry again answer the original
#: receipt (200); the same key with another entry is 409.
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key", min_length=1, max_length=200, pattern=NO_NUL,
        description=(
            "Client retry key: the same key and entry again answer the original receipt "
            "(200); the same key with another request is 409"
        ),
    ),
]  # fmt: skip

#: A batch's retry key: at most 196 characters, so that each entry's own key
#: (``key#999``) is at most 200, as a single post's is.
BatchIdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key", min_length=1, max_length=196, pattern=NO_NUL,
        description=(
            "Client retry key of the whole batch; each entry carries it with `#` and its "
            "position. The same key and batch again answer the original receipts (200); "
            "the same key with another request is 409"
        ),
    ),
]  # fmt: skip


@post(
    "/orgs/{org:str}/entries",
    status_code=201,
    operation_id="postEntry",
    summary="Post one entry",
    description=(
        "Validates the entry, sequences it into its org's log for the year of "
        "`occurred_on`, and answers only after the commit. With `Idempotency-Key`, a "
        "repeated identical request returns the original receipt (200); a different "
        "request with the same key is 409."
    ),
    tags=["staff"],
    responses={
        200: ResponseSpec(
            data_container=ReceiptOut, description="The original receipt of a retried request"
        )
    },
)
async def post_entry(
    request: Request[Any, Any, Any],
    org: OrgCode,
    idempotency_key: IdempotencyKey = None,
) -> Response[ReceiptOut]:
    principal = await require(request, org, POSTERS)
    entry = decode_entry(
        await request.body(), org=org, actor=principal.name, idempotency_key=idempotency_key
    )
    rt = runtime(request)
    if idempotency_key is not None:
        earlier = await _earlier(rt.pool, entry)
        if earlier is not None:
            return Response(_out(earlier[0]), status_code=200)
    try:
        receipt = await rt.committer.submit(entry)
    except IdempotencyRace:
        earlier = await _earlier(rt.pool, entry)
        if earlier is None:
            raise
        return Response(_out(earlier[0]), status_code=200)
    return Response(_out(receipt), status_code=201)


async def _earlier(pool: asyncpg.Pool, entry: NewEntry) -> list[Receipt] | None:
    if entry.idempotency_key is None:
        return None
    return await find_idempotent(pool, entry.org, [(entry.idempotency_key, entry.request_sha256())])


@post(
    "/orgs/{org:str}/entries/batch",
    status_code=201,
    operation_id="postEntryBatch",
    summary="Post a batch of up to 1000 entries",
    description=(
        "One transaction: every entry is appended, or none is. With `Idempotency-Key`, "
        "each entry carries the key, `#` and its position in the batch; the same key "
        "and batch again answer the original receipts (200); the same key with another "
        "request (other entries, more or fewer, or a single post's) is 409."
    ),
    tags=["staff"],
    responses={
        200: ResponseSpec(
            data_container=BatchReceiptsOut,
            description="The original receipts of a retried batch",
        )
    },
)
async def post_batch(
    request: Request[Any, Any, Any],
    org: OrgCode,
    idempotency_key: BatchIdempotencyKey = None,
) -> Response[BatchReceiptsOut]:
    principal = await require(request, org, POSTERS)
    entries = decode_batch(
        await request.body(), org=org, actor=principal.name, idempotency_key=idempotency_key
    )
    pool = runtime(request).pool
    if idempotency_key is not None:
        earlier = await _earlier_batch(pool, entries, idempotency_key)
        if earlier is not None:
            return Response(_receipts(earlier), status_code=200)
    try:
        receipts = await post_entries_pooled(pool, entries, batch_key=idempotency_key)
    except IdempotencyRace:  # the same batch, posted at once: one of them was written
        if idempotency_key is None:
            raise
        earlier = await _earlier_batch(pool, entries, idempotency_key)
        if earlier is None:
            raise
        return Response(_receipts(earlier), status_code=200)
    request.app.state.metrics.on_commit(len(receipts))
    return Response(_receipts(receipts), status_code=201)


async def _earlier_batch(
    pool: asyncpg.Pool, entries: list[NewEntry], key: str
) -> list[Receipt] | None:
    """The batch's receipts if it was posted under ``key`` before: the batch's own key
    (the whole batch's fingerprint) and each entry's (``key#i``) must all match."""
    shas = [e.request_sha256() for e in entries]
    asked = [(key, batch_request_sha256(shas))]
    asked += [(e.idempotency_key or "", sha) for e, sha in zip(entries, shas, strict=True)]
    earlier = await find_idempotent(pool, entries[0].org, asked)
    return None if earlier is None else earlier[1:]


def _receipts(receipts: list[Receipt]) -> BatchReceiptsOut:
    return BatchReceiptsOut(receipts=[_out(r) for r in receipts])


@post(
    "/orgs/{org:str}/logs/{year:int}/entries/{index:int}/review",
    status_code=201,
    operation_id="reviewEntry",
    summary="Approve an entry for publication, or withhold it",
    description=(
        "Appends review.approved or review.withheld (with one of the Regulations' grounds "
        "and its legal basis). The reviewer must not be the entry's poster (403); an entry "
        "is reviewed once (409)."
    ),
    tags=["staff"],
)
async def review(
    request: Request[Any, Any, Any],
    org: OrgCode,
    year: Year,
    index: NonNeg,
    data: JSONBody[ReviewIn],
) -> ReceiptOut:
    principal = await require(request, org, REVIEWERS)
    entry = review_entry(
        org=org,
        year=year,
        index=index,
        decision=data.decision,
        reason=data.reason,
        legal_basis=data.legal_basis,
        reviewer=principal.name,
        today=china_today(),
    )
    return _out(await runtime(request).committer.submit(entry))


@get(
    "/orgs/{org:str}/review/pending",
    operation_id="listPendingReview",
    summary="Entries awaiting review, with their age in working days",
    tags=["staff"],
)
async def pending(
    request: Request[Any, Any, Any],
    org: OrgCode,
    cursor: Annotated[str | None, Parameter(max_length=64, pattern=NO_NUL)] = None,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 1000,
) -> PendingList:
    await require(request, org, STAFF)
    page = await pending_entries(
        runtime(request).pool, org, china_today(), WorkCalendar(), limit=limit, cursor=cursor
    )
    items = page.items
    return PendingList(
        items=[
            PendingOut(
                log=p.log,
                index=p.index,
                kind=p.kind,
                subject=p.subject,
                actor=p.actor,
                recorded_on=p.recorded_on.isoformat(),
                age_working_days=p.age_working_days,
                overdue=p.overdue,
            )
            for p in items
        ],
        total=page.total,
        overdue=page.overdue,
        next_cursor=page.next_cursor,
    )


ROUTES = [post_entry, post_batch, review, pending]
