"""Public summary counters: how many monetary entries of a month are pending or withheld.

Public summaries show amounts of approved entries only, and the number (never
the amounts) of the period's entries still pending review or withheld. Kept as
posted and as reviewed, so a summary never counts entries.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from ledger.db import run_sql_in_migration

ID = "2026-11-26T14:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "public summary counters"

SQL = r"""
ALTER TABLE fund_periods
    ADD COLUMN pending_n integer NOT NULL DEFAULT 0,
    ADD COLUMN withheld_n integer NOT NULL DEFAULT 0;
CREATE INDEX tenders_year ON tenders (org, year);
"""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="ledger", description=DESCRIPTION)

    async def run() -> None:
        await run_sql_in_migration(SQL)

    manager.add_raw(run)
    return manager
