"""The books: funds and postings, projects, procurement, reviews and reversals.

These tables are projections of the log, maintained in the same transaction as
the append (``ledger/books.py``), so balances and summaries are read, never
recomputed by scanning. Postings are append-only like the leaves they come from.
"""

from ledger.db import sql_migration

ID = "2026-11-26T13:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "books"

SQL = r"""
CREATE TABLE funds (
    org             varchar(63) NOT NULL REFERENCES orgs (code),
    fund_code       text NOT NULL,
    name            text NOT NULL,
    category        text NOT NULL,
    currency        char(3) NOT NULL,
    allow_overdraft boolean NOT NULL,
    visibility      text NOT NULL,
    opened_year     integer NOT NULL,
    opened_index    bigint NOT NULL,
    balance_fen     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (org, fund_code)
);

-- Double-entry postings of every monetary entry: each entry's lines sum to zero.
CREATE TABLE postings (
    org         varchar(63) NOT NULL,
    year        integer NOT NULL,
    idx         bigint NOT NULL,
    line        smallint NOT NULL,
    fund_code   text NOT NULL,
    account     text NOT NULL,
    amount_fen  bigint NOT NULL,
    flow        text NOT NULL CHECK (flow IN ('receipt', 'disbursement')),
    month       date NOT NULL,
    PRIMARY KEY (org, year, idx, line)
);
CREATE INDEX postings_fund ON postings (org, fund_code, month);

-- Per fund and month, as posted. scope 'all' counts every entry (staff);
-- 'public' counts approved public entries only and moves when a review approves.
CREATE TABLE fund_periods (
    org                 varchar(63) NOT NULL,
    fund_code           text NOT NULL,
    scope               text NOT NULL CHECK (scope IN ('all', 'public')),
    month               date NOT NULL,
    receipts_fen        bigint NOT NULL DEFAULT 0,
    disbursements_fen   bigint NOT NULL DEFAULT 0,
    receipts_n          integer NOT NULL DEFAULT 0,
    disbursements_n     integer NOT NULL DEFAULT 0,
    PRIMARY KEY (org, fund_code, scope, month)
);

CREATE TABLE fund_targets (
    org         varchar(63) NOT NULL,
    fund_code   text NOT NULL,
    year        integer NOT NULL,
    direction   text NOT NULL CHECK (direction IN ('collection', 'spending')),
    amount_fen  bigint NOT NULL,
    set_year    integer NOT NULL,
    set_index   bigint NOT NULL,
    PRIMARY KEY (org, fund_code, year, direction)
);

CREATE TABLE projects (
    org                  varchar(63) NOT NULL REFERENCES orgs (code),
    project_code         text NOT NULL,
    name                 text NOT NULL,
    category             text NOT NULL,
    location             text NOT NULL,
    total_investment_fen bigint NOT NULL,
    status               text NOT NULL,
    disbursed_fen        bigint NOT NULL DEFAULT 0,
    registered_year      integer NOT NULL,
    registered_index     bigint NOT NULL,
    PRIMARY KEY (org, project_code)
);

CREATE TABLE project_approvals (
    org            varchar(63) NOT NULL,
    year           integer NOT NULL,
    idx            bigint NOT NULL,
    project_code   text NOT NULL,
    approval_type  text NOT NULL,
    document_no    text NOT NULL,
    authority      text NOT NULL,
    decision       text NOT NULL,
    decided_on     date NOT NULL,
    PRIMARY KEY (org, year, idx)
);
CREATE INDEX project_approvals_project ON project_approvals (org, project_code);

CREATE TABLE tenders (
    org           varchar(63) NOT NULL REFERENCES orgs (code),
    tender_id     text NOT NULL,
    title         text NOT NULL,
    method        text NOT NULL,
    value_fen     bigint NOT NULL,
    currency      char(3) NOT NULL,
    period_start  date NOT NULL,
    period_end    date NOT NULL,
    status        text NOT NULL,
    project_code  text,
    year          integer NOT NULL,
    idx           bigint NOT NULL,
    PRIMARY KEY (org, tender_id)
);

-- Bids, awards and contracts; ``reversed`` is set when a correction reverses one.
CREATE TABLE procurement_events (
    org          varchar(63) NOT NULL,
    year         integer NOT NULL,
    idx          bigint NOT NULL,
    tender_id    text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('bid', 'award', 'contract')),
    party_id     text NOT NULL,
    party_name   text NOT NULL,
    amount_fen   bigint NOT NULL,
    on_date      date NOT NULL,
    contract_id  text,
    award_year   integer,
    award_index  bigint,
    reversed     boolean NOT NULL DEFAULT false,
    PRIMARY KEY (org, year, idx)
);
CREATE INDEX procurement_events_tender ON procurement_events (org, tender_id);

-- One review decision per public entry (保密审查).
CREATE TABLE reviews (
    org           varchar(63) NOT NULL,
    target_year   integer NOT NULL,
    target_index  bigint NOT NULL,
    decision      text NOT NULL CHECK (decision IN ('approved', 'withheld')),
    reason        text,
    legal_basis   text,
    reviewer      text NOT NULL,
    year          integer NOT NULL,
    idx           bigint NOT NULL,
    reviewed_at   timestamptz NOT NULL,
    PRIMARY KEY (org, target_year, target_index)
);

-- One reversal per entry: the primary key refuses a second.
CREATE TABLE reversals (
    org           varchar(63) NOT NULL,
    target_year   integer NOT NULL,
    target_index  bigint NOT NULL,
    year          integer NOT NULL,
    idx           bigint NOT NULL,
    PRIMARY KEY (org, target_year, target_index)
);

CREATE INDEX leaves_kind ON leaves (org, kind, year, idx);
CREATE INDEX leaves_subject ON leaves (org, subject, year, idx);
CREATE INDEX leaves_occurred ON leaves (org, occurred_on);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['postings', 'reviews', 'reversals', 'project_approvals'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I
                        FOR EACH ROW EXECUTE FUNCTION gongkai_append_only()',
                       t || '_append_only', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I
                        FOR EACH STATEMENT EXECUTE FUNCTION gongkai_append_only()',
                       t || '_no_truncate', t);
        EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON %I FROM PUBLIC', t);
    END LOOP;
END
$$;
"""


forwards = sql_migration(ID, DESCRIPTION, SQL)
