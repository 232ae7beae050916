"""The append path without per-row foreign-key checks on leaf storage.

A leaf is written only by the sequencer, inside the transaction that holds its log
head's row lock (and created the head if needed), so the (org, year) foreign key
on ``leaves`` only cost a check per row on the hottest insert. ``gongkai verify``
checks every log's leaves against its head.
"""

from ledger.db import sql_migration

ID = "2026-11-26T18:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "append path without row foreign keys"

SQL = r"""
ALTER TABLE leaves DROP CONSTRAINT IF EXISTS leaves_org_year_fkey;
"""


forwards = sql_migration(ID, DESCRIPTION, SQL)
