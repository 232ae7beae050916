"""Duplicate submissions keyed by org first (SPEC §8).

``opinion_submissions`` holds, for ten minutes, the tracking code a resubmission
of the same words from the same client gets back. It was keyed by the
submission's fingerprint alone, and each new submission deleted every org's
expired rows. Keyed by ``(org, fingerprint)``, every write of a submission
touches its own org's rows only.
"""

from ledger.db import sql_migration

ID = "2026-11-27T07:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "duplicate submissions keyed by org first"

SQL = r"""
ALTER TABLE opinion_submissions
    DROP CONSTRAINT opinion_submissions_pkey,
    ADD CONSTRAINT opinion_submissions_pkey PRIMARY KEY (org, fingerprint);
CREATE INDEX opinion_submissions_expiry ON opinion_submissions (org, created_at);
"""


forwards = sql_migration(ID, DESCRIPTION, SQL)
