"""Public summary counters: how many monetary entries of a month are pending or withheld.

Public summaries show amounts of approved entries only, and the number (never
the amounts) of the period's entries still pending review or withheld. Kept as
posted and as reviewed, so a summary never counts entries.
"""

from ledger.db import sql_migration

ID = "2026-11-26T14:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "public summary counters"

SQL = r"""
ALTER TABLE fund_periods
    ADD COLUMN pending_n integer NOT NULL DEFAULT 0,
    ADD COLUMN withheld_n integer NOT NULL DEFAULT 0;
CREATE INDEX tenders_year ON tenders (org, year);
"""


forwards = sql_migration(ID, DESCRIPTION, SQL)
