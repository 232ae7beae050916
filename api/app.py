"""The Litestar application: wiring only. Routes live in ``api.staff`` and ``api.public``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, Router, get
from litestar.config.compression import CompressionConfig
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Server

from api import archives, opinions, public, staff
from api.openapi import TruthfulJsonRenderPlugin, patch_openapi
from api.params import strict_query_integers
from api.problems import EXCEPTION_HANDLERS, ApiRequest
from api.runtime import Runtime, runtime, settle_heap
from api.schemas import HealthOut
from api.web import Metrics, RateLimiter, unrouted_hook, web_middleware
from ledger import db
from ledger.checkpoint import signer_for
from ledger.errors import LedgerError
from ledger.logs import sign_due
from ledger.opinions import expire_submissions
from ledger.posting import group_committer
from ledger.settings import Settings

log = logging.getLogger("gongkai.api")

MAX_BODY = 1 << 20  # 1 MiB
SIGN_INTERVAL = 0.25  # seconds; a checkpoint follows any append within a second
EXPIRE_INTERVAL = 60.0  # seconds between deletions of expired duplicate-submission codes


@get("/healthz", operation_id="healthz", tags=["service"], summary="Liveness")
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


@get("/readyz", operation_id="readyz", tags=["service"], summary="Readiness (database reachable)")
async def readyz(request: Request[Any, Any, Any]) -> HealthOut:
    try:
        async with asyncio.timeout(2):
            await runtime(request).pool.fetchval("SELECT 1")
    except Exception as exc:
        raise ServiceUnavailable("the database is not reachable") from exc
    return HealthOut(status="ready")


@get(
    "/metrics",
    operation_id="metrics",
    tags=["service"],
    summary="Prometheus metrics",
    media_type="text/plain; version=0.0.4",
)
async def metrics(request: Request[Any, Any, Any]) -> str:
    rt = runtime(request)
    rows = await rt.read_pool.fetch(
        "SELECT org, year, max(size) AS size FROM checkpoints GROUP BY org, year ORDER BY 1, 2"
    )
    sizes = [(r["org"], r["year"], r["size"]) for r in rows]
    result: str = request.app.state.metrics.render(sizes)
    return result


# The service routes and the OpenAPI document answer under the API's prefix too
# (SPEC §6 lists them in the section whose routes carry /api/v1), outside the schema.
@get("/api/v1/healthz", include_in_schema=False)
async def healthz_v1() -> HealthOut:
    return await healthz.fn()


@get("/api/v1/readyz", include_in_schema=False)
async def readyz_v1(request: Request[Any, Any, Any]) -> HealthOut:
    return await readyz.fn(request)


@get("/api/v1/metrics", include_in_schema=False, media_type="text/plain; version=0.0.4")
async def metrics_v1(request: Request[Any, Any, Any]) -> str:
    result: str = await metrics.fn(request)
    return result


@get("/api/v1/schema/openapi.json", include_in_schema=False)
async def openapi_v1(request: Request[Any, Any, Any]) -> Response[bytes]:
    doc = patch_openapi(request.app.openapi_schema.to_schema())
    return Response(msgspec.json.encode(doc), media_type="application/vnd.oai.openapi+json")


class ServiceUnavailable(LedgerError):
    status = 503
    type = "unavailable"
    title = "Service unavailable"


async def _upkeep_forever(rt: Runtime) -> None:
    """Sign checkpoints for new appends, and once a minute sweep expired codes."""
    expired_at = 0.0
    while True:
        try:
            await sign_due(rt.pool, rt.signer, rt.settings.origin)
        except Exception:
            log.exception("checkpoint signing failed; retrying")
        if time.monotonic() - expired_at >= EXPIRE_INTERVAL:
            expired_at = time.monotonic()
            try:
                await expire_submissions(rt.pool)
            except Exception:
                log.exception("expiring duplicate-submission codes failed; retrying")
        await asyncio.sleep(SIGN_INTERVAL)


def create_app(settings: Settings, dsn: str, *, pool_size: int = 20) -> Litestar:
    """The app for ``dsn``. Migrations must already have run."""
    db.configure(dsn)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await db.create_pool(dsn, max_size=pool_size)
        read_pool = (
            await db.create_pool(settings.replica_url, max_size=pool_size)
            if settings.replica_url
            else pool
        )
        committer = group_committer(pool)
        committer.on_commit = app.state.metrics.on_commit
        committer.start()
        signer = signer_for(settings.signing_key, settings.key_name)
        rt = Runtime(settings, pool, read_pool, committer, signer)
        app.state.runtime = rt
        signing = asyncio.create_task(_upkeep_forever(rt))
        settle_heap()
        try:
            yield
        finally:
            await committer.stop()
            signing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await signing
            # Sign what the last appends left unsigned before going away.
            with contextlib.suppress(Exception):
                await sign_due(pool, signer, settings.origin)
            await rt.close_reads()
            if read_pool is not pool:
                await read_pool.close()
            await pool.close()

    api_v1 = Router(
        path="/api/v1",
        route_handlers=[*staff.ROUTES, *public.ROUTES, *opinions.ROUTES, *archives.ROUTES],
    )
    stats = Metrics()
    limiter = RateLimiter(settings.public_rate_limit)
    return Litestar(
        route_handlers=[
            api_v1,
            healthz,
            readyz,
            metrics,
            healthz_v1,
            readyz_v1,
            metrics_v1,
            openapi_v1,
        ],
        lifespan=[lifespan],
        state=State(
            {"metrics": stats, "opinion_limiter": RateLimiter(settings.opinion_rate_limit)}
        ),
        middleware=[web_middleware(stats, limiter)],
        before_send=[unrouted_hook(stats)],
        compression_config=CompressionConfig(
            backend="gzip", minimum_size=1024, gzip_compress_level=4
        ),
        cors_config=CORSConfig(
            allow_origins=["*"],
            allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "If-None-Match"],
            expose_headers=["ETag", "X-Request-Id", "Retry-After", "Content-Disposition"],
            max_age=600,
        ),
        exception_handlers=EXCEPTION_HANDLERS,
        request_class=ApiRequest,
        before_request=strict_query_integers,
        request_max_body_size=MAX_BODY,
        openapi_config=OpenAPIConfig(
            title="Gongkai",
            version="1",
            description="公开 — a disclosure ledger for public bodies.",
            path="/schema",
            render_plugins=[TruthfulJsonRenderPlugin()],
            servers=[Server(url="/")],
        ),
        debug=False,
    )
