"""The single-post baseline: a bare Litestar + asyncpg app with one POST route.

``POST /ingest`` decodes the JSON body and inserts it as one row of a bare table
(``bench_single``), answering 201 after the commit. Same server and settings as
``gongkai serve``: uvicorn, one process, ``log_level="warning"``, no access log,
an asyncpg pool of at most 20 connections released without asyncpg's reset query
(as ``ledger.db.create_pool`` releases them), the garbage collector settled after
start-up (``api.runtime.settle_heap``).

    DATABASE_URL=... python -m bench.baseline_app --port 8001
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import uvicorn
from litestar import Litestar, Request, get, post

from api.runtime import settle_heap
from ledger.db import keep_session

TABLE_SQL = """
CREATE TABLE IF NOT EXISTS bench_single (
    id bigserial PRIMARY KEY,
    kind text NOT NULL,
    subject text NOT NULL,
    occurred_on date NOT NULL,
    body bytea NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
)
"""


class Entry(msgspec.Struct):
    kind: str
    subject: str
    occurred_on: str
    body: msgspec.Raw


_decode = msgspec.json.Decoder(Entry).decode


@post("/ingest", status_code=201)
async def ingest(request: Request[Any, Any, Any]) -> dict[str, Any]:
    entry = _decode(await request.body())
    pool: asyncpg.Pool = request.app.state.pool
    row_id = await pool.fetchval(
        "INSERT INTO bench_single (kind, subject, occurred_on, body) "
        "VALUES ($1, $2, $3::text::date, $4) RETURNING id",
        entry.kind,
        entry.subject,
        entry.occurred_on,
        bytes(entry.body),
    )
    return {"id": row_id}


@get("/readyz")
async def readyz(request: Request[Any, Any, Any]) -> dict[str, str]:
    await request.app.state.pool.fetchval("SELECT 1")
    return {"status": "ready"}


def create_app(dsn: str) -> Litestar:
    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(dsn, min_size=2, max_size=20, reset=keep_session)
        await pool.execute(TABLE_SQL)
        app.state.pool = pool
        settle_heap()  # the same collector settings as the Gongkai server
        try:
            yield
        finally:
            await pool.close()

    return Litestar(route_handlers=[ingest, readyz], lifespan=[lifespan], debug=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    app = create_app(os.environ["DATABASE_URL"])
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
