"""Public routes over logs: orgs, leaf hashes, checkpoints, proofs and the verifier key.

No token needed. Until review exists these never return entry bodies: only
hashes, sizes and signed checkpoints, which reveal nothing of a leaf (each is
salted).
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.params import Parameter

from api.params import NonNeg, OrgCode, Year
from api.runtime import runtime
from api.schemas import (
    ConsistencyProofOut,
    InclusionProofOut,
    LeavesOut,
    LogOut,
    OrgDetailOut,
    OrgOut,
)
from ledger import access, logs
from ledger.errors import InvalidInput
from ledger.logs import MAX_LEAVES_PAGE


@get("/orgs", operation_id="listOrgs", summary="Disclosing bodies", tags=["public"])
async def list_orgs() -> list[OrgOut]:
    return [OrgOut(code=o.code, name=o.name) for o in await access.list_orgs()]


@get("/orgs/{org:str}", operation_id="getOrg", summary="One body and its logs", tags=["public"])
async def get_org(request: Request[Any, Any, Any], org: OrgCode) -> OrgDetailOut:
    info = await access.get_org(org)
    heads = await logs.list_heads(runtime(request).read_pool, org)
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
    pool = runtime(request).read_pool
    head = await logs.get_head(pool, org, year)
    stop = min(head.size, start + MAX_LEAVES_PAGE if end is None else end)
    if end is not None and end < start:
        raise InvalidInput("end must not be before start", [], field="end")
    if end is not None and end - start > MAX_LEAVES_PAGE:
        raise InvalidInput(f"at most {MAX_LEAVES_PAGE} leaf hashes a page", [], field="end")
    start = min(start, head.size)
    stop = max(stop, start)
    hashes = await logs.leaf_hashes(pool, org, year, start, stop)
    return LeavesOut(start=start, end=start + len(hashes), leaf_hashes=[h.hex() for h in hashes])


@get(
    "/orgs/{org:str}/logs/{year:int}/checkpoint",
    operation_id="getCheckpoint",
    summary="The latest signed checkpoint (C2SP signed note)",
    tags=["public"],
    media_type="text/plain; charset=utf-8",
)
async def get_checkpoint(
    request: Request[Any, Any, Any], org: OrgCode, year: Year
) -> Response[str]:
    cp = await logs.latest_checkpoint(runtime(request).read_pool, org, year)
    return Response(cp.note, media_type="text/plain; charset=utf-8")


@get(
    "/orgs/{org:str}/logs/{year:int}/proofs/inclusion",
    operation_id="getInclusionProof",
    summary="RFC 9162 inclusion proof",
    tags=["public"],
)
async def get_inclusion(
    request: Request[Any, Any, Any], org: OrgCode, year: Year, index: NonNeg, tree_size: NonNeg
) -> InclusionProofOut:
    lh, path = await logs.inclusion_proof(runtime(request).read_pool, org, year, index, tree_size)
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
    path = await logs.consistency_proof(runtime(request).read_pool, org, year, first, second)
    return ConsistencyProofOut(first=first, second=second, path=[p.hex() for p in path])


@get(
    "/vkey",
    operation_id="getVerifierKey",
    summary="The checkpoint verifier key (C2SP vkey)",
    tags=["public"],
    media_type="text/plain; charset=utf-8",
)
async def get_vkey(request: Request[Any, Any, Any]) -> str:
    return runtime(request).signer.vkey() + "\n"


ROUTES = [list_orgs, get_org, get_leaves, get_checkpoint, get_inclusion, get_consistency, get_vkey]
