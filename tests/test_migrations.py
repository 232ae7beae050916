"""Commands check the schema at their start: one query when every migration has run."""

from __future__ import annotations

import importlib
from pathlib import Path

import asyncpg
import pytest

from ledger import db
from ledger.settings import Settings


def test_migration_ids_are_read_from_the_files_as_piccolo_imports_them() -> None:
    ids = set()
    for path in db.MIGRATIONS.glob("ledger_*.py"):
        module = importlib.import_module(f"ledger.piccolo_migrations.{path.stem}")
        ids.add(module.ID)
    assert ids and db.migration_ids() == ids


def test_a_migration_file_without_a_plain_id_sends_the_check_to_piccolo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "ledger_a.py").write_text('ID = "2026-01-01T00:00:00:000000"\n')
    monkeypatch.setattr(db, "MIGRATIONS", tmp_path)
    assert db.migration_ids() == {"2026-01-01T00:00:00:000000"}
    (tmp_path / "ledger_b.py").write_text("ID: str = '2026-01-02T00:00:00:000000'\n")
    assert db.migration_ids() is None


async def test_all_applied_only_when_every_migration_is_recorded(dsn: str, empty_dsn: str) -> None:
    assert await db.all_applied(dsn)  # migrated by the session's fixture
    assert not await db.all_applied(empty_dsn)  # no migration table yet
    newest, *older = sorted(db.migration_ids() or (), reverse=True)
    conn = await asyncpg.connect(empty_dsn)
    try:
        await conn.execute("CREATE TABLE migration (name text, app_name text)")
        await conn.executemany(
            "INSERT INTO migration VALUES ($1, $2)",
            [(i, "ledger") for i in older] + [(newest, "another-app")],
        )
        assert not await db.all_applied(empty_dsn)  # the newest is pending
        await conn.execute("INSERT INTO migration VALUES ($1, 'ledger')", newest)
        assert await db.all_applied(empty_dsn)
    finally:
        await conn.close()


#: Tables that do not grow with an org's use: the orgs themselves, API tokens
#: (looked up by their hash), the holiday calendar and Piccolo's migration record.
NOT_PER_ORG = {"orgs", "tokens", "calendar_years", "migration"}


async def test_every_table_that_grows_is_keyed_by_org_first(pool: asyncpg.Pool) -> None:
    """SPEC §8: every table that grows with use is keyed by ``org`` first."""
    rows = await pool.fetch(
        """SELECT c.relname AS name, a.attname AS first
           FROM pg_index i
           JOIN pg_class c ON c.oid = i.indrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
           WHERE i.indisprimary"""
    )
    firsts = {r["name"]: r["first"] for r in rows}
    tables = await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    assert {r["tablename"] for r in tables} == set(firsts)  # every table has a key
    assert "opinion_submissions" in firsts and "leaves" in firsts
    assert {t: f for t, f in firsts.items() if f != "org" and t not in NOT_PER_ORG} == {}


async def test_a_command_without_piccolo_still_migrates_a_new_database(
    empty_dsn: str, settings: Settings
) -> None:
    """``archive build`` starts without Piccolo's engine; on a database with
    migrations pending, ``migrate`` makes the engine and runs them first."""
    from ledger.checkpoint import signer_for
    from tests.test_integrity import run_cli

    signer_for(settings.signing_key, settings.key_name)  # the instance's key, as a server makes
    out = run_cli(empty_dsn, settings, "archive", "build", "--org", "none", "--year", "2025")
    assert out.returncode != 0
    assert "none has no log for 2025" in out.stdout + out.stderr, out.stdout + out.stderr
    assert await db.all_applied(empty_dsn)


def test_use_dsn_refuses_a_database_piccolo_is_not_bound_to(dsn: str) -> None:
    db.use_dsn(dsn)  # the session's database: as configured
    with pytest.raises(RuntimeError, match="another database"):
        db.use_dsn(dsn + "_other")
