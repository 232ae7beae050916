"""What a close counts as reviewed by then: the heads of the org's later logs.

An entry of a closed year may be reviewed in a later year's log (a December
entry reviewed in January). The year's public bundle shows it, and the annual
report frozen at the close counts it as published, only if the review was made
by the close. That was decided by comparing the review's ``reviewed_at`` (the
app's clock) with the close's ``closed_at`` (the database's): two clocks, so a
review made after the close by an app whose clock ran behind the database's
was shown by a bundle rebuilt later, and not counted by the report. The close
holds the org's lock, so it can say exactly which reviews came before it: the
sizes of the org's later logs at that moment, ``{"<year>": size}``. A review
is by the close if it is a leaf of the closed log, or of a later log below
the size recorded for it. Closes made before this migration keep the clock
rule (``later_heads`` NULL), so a rebuild of their bundles carries the entries
it carried before (the zip, which carries the current ``verify.py``, may differ).
"""

from ledger.db import sql_migration

ID = "2026-11-27T20:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "year_closes.later_heads: the later logs' sizes at the close"

SQL = r"""
ALTER TABLE year_closes ADD COLUMN later_heads jsonb;
"""


forwards = sql_migration(ID, DESCRIPTION, SQL)
