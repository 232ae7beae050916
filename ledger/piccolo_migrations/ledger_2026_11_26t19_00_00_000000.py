"""Postings indexed for the queries that read them, not per fund and month.

No query reads postings by fund and month (fund summaries come from
``fund_periods``), so ``postings_fund`` only cost an index insert for every line
of every entry. Project totals read postings by ``project:`` account: a partial
index holds just those lines, so public project pages stay index lookups at any
size and receipts into funds pay nothing for it.
"""

from ledger.db import sql_migration

ID = "2026-11-26T19:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "postings indexed by project account"

SQL = r"""
DROP INDEX IF EXISTS postings_fund;
CREATE INDEX IF NOT EXISTS postings_project ON postings (org, account)
    WHERE account LIKE 'project:%';
"""


forwards = sql_migration(ID, DESCRIPTION, SQL)
