"""Pollution-levy assessments per payer (排污费: assessed, reduced, deferred)."""

from ledger.db import sql_migration

ID = "2026-11-26T17:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "levy assessments"

SQL = r"""
CREATE TABLE levy_assessments (
    org             varchar(63) NOT NULL,
    year            integer NOT NULL,
    idx             bigint NOT NULL,
    fund_code       text NOT NULL,
    payer_id        text NOT NULL,
    payer_name      text NOT NULL,
    period          text NOT NULL,
    assessed_fen    bigint NOT NULL,
    reduction_fen   bigint NOT NULL,
    deferred_until  date,
    reference       text NOT NULL,
    PRIMARY KEY (org, year, idx)
);
CREATE INDEX levy_assessments_fund ON levy_assessments (org, fund_code, year);
CREATE INDEX postings_account ON postings (org, fund_code, account);
CREATE TRIGGER levy_assessments_append_only BEFORE UPDATE OR DELETE ON levy_assessments
    FOR EACH ROW EXECUTE FUNCTION gongkai_append_only();
"""


forwards = sql_migration(ID, DESCRIPTION, SQL)
