"""Opinions and disclosure requests, the erasable personal-data store, the holiday
calendar an admin loads, and quarterly disclosures.

Personal data (the citizen's words, name, phone, e-mail) lives only in
``opinion_private``, which can be erased; the ledger holds a salted SHA-256
commitment to it. ``opinions`` is the state of each case, kept with its events.
"""

from ledger.db import sql_migration

ID = "2026-11-26T15:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "opinions, calendar, disclosures"

SQL = r"""
CREATE TABLE opinions (
    org              varchar(63) NOT NULL REFERENCES orgs (code),
    tracking_sha256  bytea NOT NULL,
    category         text NOT NULL,
    handled_as       text NOT NULL,
    applicant_type   text NOT NULL,
    status           text NOT NULL,
    received_on      date NOT NULL,
    extension_days   integer NOT NULL DEFAULT 0,
    pauses           jsonb NOT NULL DEFAULT '[]',
    reference        jsonb,
    outcome          text,
    reason           text,
    decided_on       date,
    response         text,
    referred_to      text,
    closed_on        date,
    erased_on        date,
    submitted_year   integer NOT NULL,
    submitted_index  bigint NOT NULL,
    PRIMARY KEY (org, tracking_sha256)
);
CREATE UNIQUE INDEX opinions_tracking ON opinions (tracking_sha256);
CREATE INDEX opinions_status ON opinions (org, status);

CREATE TABLE opinion_events (
    org              varchar(63) NOT NULL,
    tracking_sha256  bytea NOT NULL,
    year             integer NOT NULL,
    idx              bigint NOT NULL,
    kind             text NOT NULL,
    on_date          date NOT NULL,
    PRIMARY KEY (org, year, idx)
);
CREATE INDEX opinion_events_case ON opinion_events (org, tracking_sha256);

CREATE TABLE opinion_appeals (
    org              varchar(63) NOT NULL,
    tracking_sha256  bytea NOT NULL,
    channel          text NOT NULL,
    result           text NOT NULL,
    year             integer NOT NULL,
    PRIMARY KEY (org, tracking_sha256, channel)
);

-- Erasable on purpose: no append-only trigger. An erased row keeps only its tombstone.
CREATE TABLE opinion_private (
    org              varchar(63) NOT NULL,
    tracking_sha256  bytea NOT NULL,
    part             smallint NOT NULL,
    salt             bytea,
    payload          bytea,
    erased_at        timestamptz,
    PRIMARY KEY (org, tracking_sha256, part)
);

-- Recent submissions, to answer a duplicate within minutes with the same case.
CREATE TABLE opinion_submissions (
    fingerprint      bytea PRIMARY KEY,
    org              varchar(63) NOT NULL,
    tracking_code    text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE calendar_years (
    year       integer PRIMARY KEY,
    schedule   jsonb NOT NULL,
    source     text,
    loaded_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE disclosures (
    org        varchar(63) NOT NULL,
    period     text NOT NULL,
    year       integer NOT NULL,
    idx        bigint NOT NULL,
    tree_size  bigint NOT NULL,
    sha256     bytea NOT NULL,
    snapshot   bytea NOT NULL,
    PRIMARY KEY (org, period)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['opinion_events', 'disclosures'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I
                        FOR EACH ROW EXECUTE FUNCTION gongkai_append_only()',
                       t || '_append_only', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I
                        FOR EACH STATEMENT EXECUTE FUNCTION gongkai_append_only()',
                       t || '_no_truncate', t);
    END LOOP;
END
$$;
"""


forwards = sql_migration(ID, DESCRIPTION, SQL)
