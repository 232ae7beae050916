"""Database wiring: the DSN in use, the Piccolo engine, the asyncpg pool, migrations.

The DSN is known only at run time (``DATABASE_URL``, or the embedded server the
command line starts), so the Piccolo engine is built by ``configure`` rather than
at import time, and every Piccolo table is bound to it there.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

if TYPE_CHECKING:
    from piccolo.engine.postgres import PostgresEngine

log = logging.getLogger(__name__)

_engine: PostgresEngine | None = None
_dsn: str | None = None


def use_dsn(dsn: str) -> None:
    """Point the commands that need no Piccolo at ``dsn`` (``current_dsn``), without
    Piccolo: importing it and making its engine (which connects twice to check the
    server) cost a command ~70 ms. ``migrate`` configures Piccolo if it must run
    migrations."""
    global _dsn
    if _engine is not None and _dsn != dsn:
        raise RuntimeError("ledger.db is configured for another database")
    _dsn = dsn


def configure(dsn: str) -> PostgresEngine:
    """Point Piccolo (tables and migrations) at ``dsn``; idempotent for the same DSN."""
    global _engine, _dsn
    if _engine is not None and _dsn == dsn:
        return _engine
    from piccolo.engine.postgres import PostgresEngine

    from ledger.tables import TABLES

    _engine = PostgresEngine(config={"dsn": dsn})
    _dsn = dsn
    for table in TABLES:
        table._meta.db = _engine
    os.environ["PICCOLO_CONF"] = "ledger.piccolo_conf"
    return _engine


def current_engine() -> PostgresEngine:
    if _engine is None:
        raise RuntimeError("ledger.db.configure(dsn) has not been called")
    return _engine


def current_dsn() -> str:
    if _dsn is None:
        raise RuntimeError("ledger.db.configure(dsn) has not been called")
    return _dsn


MIGRATIONS = Path(__file__).parent / "piccolo_migrations"
_MIGRATION_ID = re.compile(r'^ID = "([^"]+)"$', re.MULTILINE)


def migration_ids() -> set[str] | None:
    """The IDs of the ledger's migrations, read from their files (not imported);
    None unless every migration file (``*.py`` but ``__init__``) states one as
    ``ID = "…"``, so an unexpected file sends the check to Piccolo."""
    ids = set()
    for path in MIGRATIONS.glob("*.py"):
        if path.name == "__init__.py":
            continue
        m = _MIGRATION_ID.search(path.read_text(encoding="utf-8"))
        if m is None:
            return None
        ids.add(m.group(1))
    return ids or None


async def all_applied(dsn: str) -> bool:
    """Whether the database has recorded every migration of the ledger as run (False
    when the migrations cannot be told without Piccolo)."""
    ids = migration_ids()
    if ids is None:
        return False
    conn = await asyncpg.connect(dsn)
    try:
        applied = await conn.fetch("SELECT name FROM migration WHERE app_name = 'ledger'")
    except asyncpg.UndefinedTableError:
        return False
    finally:
        await conn.close()
    return ids <= {r["name"] for r in applied}


async def migrate() -> None:
    """Apply every pending Piccolo migration of the ledger app.

    When the database has run them all (every command checks at its start), one
    query says so, without Piccolo's migration machinery: importing it (and the
    code formatter it brings) took most of half a second of a command's start.
    """
    if await all_applied(current_dsn()):
        return
    configure(current_dsn())
    from piccolo.apps.migrations.commands.forwards import run_forwards

    # Piccolo prints progress with emoji; keep our own output readable.
    with contextlib.redirect_stdout(io.StringIO()) as out:
        result = await run_forwards(app_name="ledger")
    if not result.success:
        raise RuntimeError(f"migration failed: {result.message}\n{out.getvalue()}")
    conn = await asyncpg.connect(current_dsn())
    try:
        await conn.execute(_ONE_RECORD_EACH)
    finally:
        await conn.close()


#: A migration's record, made in the migration's own transaction (see run_sql_in_migration).
_RECORD = "INSERT INTO migration (name, app_name, ran_on) VALUES ($1, 'ledger', now())"
#: Piccolo records each migration again once its transaction has committed: one row kept.
_ONE_RECORD_EACH = """DELETE FROM migration a USING migration b
                      WHERE a.app_name = 'ledger' AND b.app_name = 'ledger'
                        AND a.name = b.name AND a.id > b.id"""


async def run_sql_in_migration(sql: str, migration_id: str) -> None:
    """Run a multi-statement SQL script inside the migration's own transaction, and
    record ``migration_id`` as run in that transaction.

    Piccolo records a migration only after its transaction has committed: a command
    stopped in between (Ctrl-C during a first start) left the migration applied but
    not recorded, and every later start ran it again and failed ('relation "orgs"
    already exists'). Recorded in the same transaction, a migration is either run
    and recorded or neither.
    """

    async def run(conn: Any) -> None:
        await conn.execute(sql)
        await conn.execute(_RECORD, migration_id)

    tx = current_engine().current_transaction.get()
    if tx is not None:
        await run(tx.connection)
        return
    conn = await asyncpg.connect(current_dsn())
    try:
        async with conn.transaction():
            await run(conn)
    finally:
        await conn.close()


def sql_migration(migration_id: str, description: str, sql: str) -> Any:
    """The ``forwards`` of a Piccolo migration that runs one SQL script, atomically."""
    from piccolo.apps.migrations.auto.migration_manager import MigrationManager

    async def forwards() -> MigrationManager:
        manager = MigrationManager(
            migration_id=migration_id, app_name="ledger", description=description
        )

        async def run() -> None:
            await run_sql_in_migration(sql, migration_id)

        manager.add_raw(run)
        return manager

    return forwards


# Session settings are startup parameters, so they are each session's defaults
# and survive RESET ALL. asyncpg prepares every statement; after a few runs
# PostgreSQL may switch to a generic plan that ignores the actual cursor and
# filters (keyset pages), hence custom plans always.
SESSION_SETTINGS = {"TimeZone": "UTC", "plan_cache_mode": "force_custom_plan"}


async def keep_session(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query (one round trip less a request).

    asyncpg still rolls back a transaction left open before calling this. The
    reset query's other work has nothing to undo here: settings are startup
    parameters, locks are transaction-scoped (``pg_advisory_xact_lock``), and
    nothing LISTENs or keeps a cursor beyond its transaction.
    """


async def create_pool(dsn: str | None = None, **kwargs: Any) -> asyncpg.Pool:
    """The asyncpg pool the append path and the read side use directly."""
    kwargs.setdefault("min_size", 2)
    kwargs.setdefault("max_size", 20)
    pool = await asyncpg.create_pool(
        dsn or current_dsn(), server_settings=SESSION_SETTINGS, reset=keep_session, **kwargs
    )
    assert pool is not None
    return pool


class Lent:
    """Single read statements on connections kept from a pool between statements.

    asyncpg's ``Pool.fetch`` acquires and releases a connection around each
    statement; the release runs as a shielded task of its own. Under uvloop the two
    cost ~19 µs of CPU a statement (45 µs against 26 µs for the statement on a
    connection at hand); in the server, an inclusion proof's CPU fell by a fifth
    without them. ``Lent``
    keeps up to ``keep`` connections taken from ``pool`` and runs each statement on
    an idle one; with none idle and ``keep`` taken, on one acquired from the pool the
    usual way. A statement that raises, or is cancelled, gives its connection back
    to the pool, whose release waits out a cancellation and closes a broken
    connection; another is taken when one is wanted. A kept connection whose server
    went away (a restart, a failover) is given back and replaced: found so while
    idle, or when its statement fails so, which then runs once more on a
    connection from the pool (it stands alone). ``close`` gives the idle ones
    back (the pool's ``close`` waits for every connection taken from it) and sends
    the rest back as their statements end.

    A connection is kept for about ``keep_for`` seconds: the statement that ends
    after that, or else a sweep of the idle ones (at most ``keep_for`` later), gives
    it back to the pool, in the background, so the statement's answer never waits
    on it. The pool then does what it does with any connection given back (it
    replaces one that has run ``max_queries`` statements, and closes one left idle
    past its inactive lifetime), and the next statement takes one again. Without
    it a kept connection would never be recycled, and a burst of reads long past
    would still hold its connections.

    Only for statements that stand alone (no transaction, no session state): each
    may run on another connection.
    """

    def __init__(self, pool: asyncpg.Pool, keep: int, *, keep_for: float = 30.0) -> None:
        self.pool, self.keep, self.keep_for = pool, keep, keep_for
        self._idle: list[Any] = []
        self._since: dict[int, float] = {}  # id of a taken connection: when it was taken
        self.taken = 0  # connections taken from the pool and not given back
        self._closed = False
        self._sweep_at: asyncio.TimerHandle | None = None
        self._releasing: set[asyncio.Task[None]] = set()

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        rows: list[Any] = await self._run("fetch", query, args)
        return rows

    async def fetchrow(self, query: str, *args: Any) -> Any:
        return await self._run("fetchrow", query, args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._run("fetchval", query, args)

    async def _run(self, method: str, query: str, args: tuple[Any, ...]) -> Any:
        conn = await self._idle_one()
        if conn is None and self.taken < self.keep and not self._closed:
            self.taken += 1
            try:
                conn = await self.pool.acquire()
            except BaseException:
                self.taken -= 1
                raise
            self._since[id(conn)] = time.monotonic()
        if conn is None:  # as many statements at once as connections kept: the pool's way
            return await getattr(self.pool, method)(query, *args)
        try:
            result = await getattr(conn, method)(query, *args)
        except BaseException as exc:
            await self._give_back(conn)
            if not isinstance(exc, _GONE):
                raise
            # The connection was lost (a restarted or failed-over server): the read
            # stands alone, so it runs once more on a connection from the pool.
            return await getattr(self.pool, method)(query, *args)
        if self._closed or time.monotonic() - self._since[id(conn)] > self.keep_for:
            self._release_later(conn)
        else:
            self._idle.append(conn)
            self._arm_sweep()
        return result

    def _arm_sweep(self) -> None:
        if self._sweep_at is None and not self._closed:
            self._sweep_at = asyncio.get_running_loop().call_later(self.keep_for, self._sweep)

    def _sweep(self) -> None:
        """Give back the idle connections kept past ``keep_for``; come again while
        any are idle."""
        self._sweep_at = None
        now = time.monotonic()
        for conn in [c for c in self._idle if now - self._since[id(c)] > self.keep_for]:
            self._idle.remove(conn)
            self._release_later(conn)
        if self._idle:
            self._arm_sweep()

    def _release_later(self, conn: Any) -> None:
        self._forget(conn)
        task = asyncio.ensure_future(self.pool.release(conn))
        self._releasing.add(task)
        task.add_done_callback(self._released)

    def _released(self, task: asyncio.Task[None]) -> None:
        self._releasing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("a kept connection could not be given back: %s", task.exception())

    def _forget(self, conn: Any) -> None:
        self.taken -= 1
        del self._since[id(conn)]

    async def _give_back(self, conn: Any) -> None:
        """Back to the pool now; the pool's release waits out a cancellation."""
        self._forget(conn)
        await asyncio.shield(self.pool.release(conn))

    async def _idle_one(self) -> Any:
        """An idle kept connection that still has its server, or None."""
        while self._idle:
            conn = self._idle.pop()
            if _usable(conn):
                return conn
            await self._give_back(conn)  # its server went away while it was kept
        return None

    async def close(self) -> None:
        self._closed = True
        if self._sweep_at is not None:
            self._sweep_at.cancel()
            self._sweep_at = None
        while self._idle:
            await self._give_back(self._idle.pop())
        if self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)


#: What a kept connection raises when its server has gone away.
_GONE = (asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError, ConnectionError)


def _usable(conn: Any) -> bool:
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:  # the pool took it back when its connection was lost
        return False
