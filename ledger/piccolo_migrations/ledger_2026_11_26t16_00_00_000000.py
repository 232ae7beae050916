"""Year-end archives: one row per built bundle, addressed by its SHA-256."""

from ledger.db import sql_migration

ID = "2026-11-26T16:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "archives"

SQL = r"""
CREATE TABLE archives (
    org            varchar(63) NOT NULL,
    year           integer NOT NULL,
    variant        text NOT NULL CHECK (variant IN ('full', 'public')),
    sha256         bytea NOT NULL,
    size           bigint NOT NULL,
    built_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org, year, variant)
);

-- What the close froze, so that every later build of the year is the same.
CREATE TABLE year_closes (
    org             varchar(63) NOT NULL,
    year            integer NOT NULL,
    closed_at       timestamptz NOT NULL,
    closed_on       date NOT NULL,
    final_size      bigint NOT NULL,
    final_root      bytea NOT NULL,
    annual_report   bytea NOT NULL,
    open_items      jsonb NOT NULL,
    PRIMARY KEY (org, year)
);
CREATE TRIGGER year_closes_append_only BEFORE UPDATE OR DELETE ON year_closes
    FOR EACH ROW EXECUTE FUNCTION gongkai_append_only();
"""


forwards = sql_migration(ID, DESCRIPTION, SQL)
