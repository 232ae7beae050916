"""Foundation: bodies, tokens, logs, leaves, subtree hashes, checkpoints, idempotency.

Every table that grows with use is keyed by ``org`` first, then the log's year,
so it can be distributed by org without a rewrite (SPEC §8). Leaf storage is
append-only, enforced by the database itself.
"""

from ledger.db import sql_migration

ID = "2026-11-26T12:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "foundation"

SQL = r"""
CREATE TABLE orgs (
    code        varchar(63) PRIMARY KEY CHECK (code ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tokens (
    token_sha256 bytea PRIMARY KEY,
    org          varchar(63) NOT NULL REFERENCES orgs (code),
    role         varchar(16) NOT NULL CHECK (role IN ('clerk', 'reviewer', 'auditor', 'admin')),
    name         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org, name)
);

-- The head of each (org, year) log. Locking this row orders the log: every
-- index is assigned while holding it (ledger/sequencer.py).
CREATE TABLE logs (
    org         varchar(63) NOT NULL REFERENCES orgs (code),
    year        integer NOT NULL CHECK (year BETWEEN 1900 AND 2999),
    size        bigint NOT NULL DEFAULT 0 CHECK (size >= 0),
    root        bytea NOT NULL,
    frontier    bytea[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    closed_at   timestamptz,
    PRIMARY KEY (org, year)
);

CREATE TABLE leaves (
    org             varchar(63) NOT NULL,
    year            integer NOT NULL,
    idx             bigint NOT NULL CHECK (idx >= 0),
    leaf_hash       bytea NOT NULL CHECK (length(leaf_hash) = 32),
    leaf            bytea NOT NULL,
    kind            text NOT NULL,
    subject         text NOT NULL,
    occurred_on     date NOT NULL,
    recorded_at     timestamptz NOT NULL,
    actor           text NOT NULL,
    visibility      text NOT NULL CHECK (visibility IN ('public', 'internal')),
    idempotency_key text,
    PRIMARY KEY (org, year, idx),
    FOREIGN KEY (org, year) REFERENCES logs (org, year)
);

-- Perfect subtree hashes of level >= 1: node (level, idx) covers leaves
-- [idx << level, (idx + 1) << level). Level 0 is leaves.leaf_hash. A proof at
-- any size reads O(log n) of these rows, never the leaves.
CREATE TABLE tree_nodes (
    org    varchar(63) NOT NULL,
    year   integer NOT NULL,
    level  smallint NOT NULL CHECK (level BETWEEN 1 AND 62),
    idx    bigint NOT NULL CHECK (idx >= 0),
    hash   bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (org, year, level, idx)
);

CREATE TABLE checkpoints (
    org        varchar(63) NOT NULL,
    year       integer NOT NULL,
    size       bigint NOT NULL CHECK (size >= 0),
    root       bytea NOT NULL CHECK (length(root) = 32),
    note       text NOT NULL,
    signed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org, year, size),
    FOREIGN KEY (org, year) REFERENCES logs (org, year)
);

CREATE TABLE idempotency_keys (
    org             varchar(63) NOT NULL,
    key             text NOT NULL,
    request_sha256  bytea NOT NULL,
    log_year        integer NOT NULL,
    log_index       bigint NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org, key)
);

-- Append-only: the database refuses to change or remove what was written.
CREATE FUNCTION gongkai_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'gongkai: % on % is refused: the ledger is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'GK001',
              HINT = 'Corrections are new entries (correction.reversal).';
END
$$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['leaves', 'tree_nodes', 'checkpoints', 'idempotency_keys'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I
                        FOR EACH ROW EXECUTE FUNCTION gongkai_append_only()',
                       t || '_append_only', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I
                        FOR EACH STATEMENT EXECUTE FUNCTION gongkai_append_only()',
                       t || '_no_truncate', t);
        -- Privileges too, for every role that is not the owner.
        EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON %I FROM PUBLIC', t);
    END LOOP;
END
$$;

-- A log only grows; its size never goes back.
CREATE FUNCTION gongkai_log_grows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.size < OLD.size OR NEW.org <> OLD.org OR NEW.year <> OLD.year THEN
        RAISE EXCEPTION 'gongkai: log %/% may only grow', OLD.org, OLD.year USING ERRCODE = 'GK001';
    END IF;
    IF OLD.closed_at IS NOT NULL AND NEW.size <> OLD.size THEN
        RAISE EXCEPTION 'gongkai: log %/% is closed', OLD.org, OLD.year USING ERRCODE = 'GK002';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER logs_grow_only BEFORE UPDATE ON logs FOR EACH ROW EXECUTE FUNCTION gongkai_log_grows();
CREATE TRIGGER logs_no_delete BEFORE DELETE ON logs FOR EACH ROW EXECUTE FUNCTION gongkai_append_only();
CREATE TRIGGER logs_no_truncate BEFORE TRUNCATE ON logs FOR EACH STATEMENT EXECUTE FUNCTION gongkai_append_only();
"""


forwards = sql_migration(ID, DESCRIPTION, SQL)
