"""Year close and the archive bundles: thin routes over ``archive``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import ETag
from litestar.openapi import ResponseSpec
from litestar.params import Parameter
from litestar.response import File

from api.auth import require
from api.params import OrgCode, Year
from api.runtime import runtime
from archive.bundle import build_bundle, spare_connection, stored_bundle
from archive.close import close_year
from ledger.errors import NotFound
from ledger.workdays import china_today

#: How many of each kind of open item the close's answer lists. A large year can
#: carry hundreds of thousands of unreviewed entries; the answer gives their count.
OPEN_ITEMS_LISTED = 100


def listed(items: dict[str, list[Any]]) -> dict[str, Any]:
    """The first ``OPEN_ITEMS_LISTED`` of each list of open items, and its count."""
    out: dict[str, Any] = {}
    for name, rows in items.items():
        out[name] = rows[:OPEN_ITEMS_LISTED]
        out[f"{name}_count"] = len(rows)
    return out


class BundleOut(msgspec.Struct):
    variant: str
    sha256: str
    size: int


class CloseOut(msgspec.Struct):
    log: str
    final_size: int
    final_root: str
    checkpoint: str
    open_items: Annotated[
        dict[str, Any],
        msgspec.Meta(
            description=(
                "Pending reviews and open cases carried into the next year: the first "
                f"{OPEN_ITEMS_LISTED} of each (`pending_review`, `open_cases`) and how many there "
                "are (`pending_review_count`, `open_cases_count`); GET …/review/pending and "
                "the case list give them all"
            )
        ),
    ]
    bundles: list[BundleOut]
    archived_entry: Annotated[
        str, msgspec.Meta(description="The year.archived entry in the next year's log")
    ]


@post(
    "/orgs/{org:str}/logs/{year:int}/close",
    status_code=201,
    operation_id="closeYear",
    summary="Admin: close the year, seal its log and build its archive bundles",
    description=(
        "Appends year.closed, signs the final checkpoint, seals the log (later posts dated "
        "in the year are 409), builds the full and public bundles and appends year.archived "
        "to the next year's log. The year must be over."
    ),
    tags=["staff"],
)
async def close(request: Request[Any, Any, Any], org: OrgCode, year: Year) -> CloseOut:
    principal = await require(request, org, {"admin"})
    rt = runtime(request)
    result = await close_year(rt.pool, rt.settings, rt.signer, org, year, today=china_today(),
                              actor=principal.name)  # fmt: skip
    return CloseOut(
        log=result.log,
        final_size=result.final_size,
        final_root=result.final_root,
        checkpoint=result.checkpoint,
        open_items=listed(result.open_items),
        bundles=[
            BundleOut(variant=b.variant, sha256=b.sha256, size=b.size)
            for b in result.bundles.values()
        ],
        archived_entry=result.archived_entry,
    )


@get(
    "/orgs/{org:str}/archives/{year:int}",
    operation_id="getArchive",
    summary="The year's archive bundle as a .zip (full: auditors and admins; public: anyone)",
    tags=["public"],
    media_type="application/zip",
    responses={
        304: ResponseSpec(None, description="Not modified: If-None-Match names this bundle")
    },
)
async def get_archive(
    request: Request[Any, Any, Any],
    org: OrgCode,
    year: Year,
    variant: Annotated[
        Literal["full", "public"], Parameter(description="full or public")
    ] = "public",
) -> File:
    rt = runtime(request)
    if variant == "full":
        await require(request, org, {"auditor", "admin"})
    row = await rt.pool.fetchrow(
        "SELECT sha256 FROM archives WHERE org = $1 AND year = $2 AND variant = $3",
        org,
        year,
        variant,
    )
    path = stored_bundle(rt.settings, bytes(row["sha256"]).hex()) if row else None
    if path is None or not path.exists():
        async with rt.pool.acquire() as conn, spare_connection(rt.pool) as helper:
            built = await build_bundle(
                conn, rt.settings, rt.signer, org, year, variant, helper=helper
            )
        path = built.path
    if not path.exists():
        raise NotFound("The bundle could not be found")
    # Bundles are stored by their SHA-256: that is the strong ETag, and a client that
    # has this bundle gets 304 instead of it again. (The web middleware caches it as
    # any public GET, briefly: which bundle the URL names can change, as a rebuild
    # carries the current verify.py.)
    sha = path.stem
    headers = {"X-Bundle-SHA256": sha}
    if _names(request.headers.get("if-none-match"), sha):
        # A Response, not the File the signature documents: the 304 is in `responses`.
        not_modified = Response(b"", status_code=304, headers={**headers, "ETag": f'"{sha}"'})
        return not_modified  # type: ignore[return-value]
    return File(
        path=path,
        filename=f"gongkai-{org}-{year}-{variant}.zip",
        media_type="application/zip",
        headers=headers,
        etag=ETag(value=sha),
    )


def _names(if_none_match: str | None, sha: str) -> bool:
    """Whether an If-None-Match header names this bundle (weak comparison, RFC 9110)."""
    if if_none_match is None:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or f'"{sha}"' in tags


ROUTES = [close, get_archive]
