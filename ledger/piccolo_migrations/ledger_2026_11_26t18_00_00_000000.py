"""The append path without per-row foreign-key checks on leaf storage.

A leaf is written only by the sequencer, inside the transaction that holds its log
head's row lock (and created the head if needed), so the (org, year) foreign key
on ``leaves`` only cost a check per row on the hottest insert. ``gongkai verify``
checks every log's leaves against its head.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from ledger.db import run_sql_in_migration

ID = "2026-11-26T18:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "append path without row foreign keys"

SQL = r"""
ALTER TABLE leaves DROP CONSTRAINT IF EXISTS leaves_org_year_fkey;
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="ledger", description=DESCRIPTION)

    async def run() -> None:
        await run_sql_in_migration(SQL)

    manager.add_raw(run)
    return manager
