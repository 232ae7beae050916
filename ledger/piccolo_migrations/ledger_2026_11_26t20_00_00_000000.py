"""Proofs answered from the primary-key indexes alone (index-only scans).

An inclusion proof needs the leaf's hash, its sibling's and about twenty subtree
hashes. With only the keys in the primary-key indexes, each of those meant a
visit to the table's own pages too: one page of the multi-gigabyte ``leaves``
table per leaf and one page of ``tree_nodes`` per subtree, scattered over the
whole year, so a proof at ten million entries read a dozen pages from disk and
its tail latency was the disk's. With the hash carried in the index
(``INCLUDE``), a proof reads index pages only, and the upper levels of the
tree are a few hot pages.

Index-only scans skip the table only for pages the visibility map marks
all-visible, which vacuum sets. An append-only table is vacuumed after it grows
by a fifth by default; these two are vacuumed every 1% of growth instead, so
the not-yet-visible tail stays small (and recent, hence cached).
"""

from ledger.db import sql_migration

ID = "2026-11-26T20:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "leaf and subtree hashes carried in the primary-key indexes"

SQL = r"""
ALTER TABLE leaves
    DROP CONSTRAINT leaves_pkey,
    ADD CONSTRAINT leaves_pkey PRIMARY KEY (org, year, idx) INCLUDE (leaf_hash);
ALTER TABLE tree_nodes
    DROP CONSTRAINT tree_nodes_pkey,
    ADD CONSTRAINT tree_nodes_pkey PRIMARY KEY (org, year, level, idx) INCLUDE (hash);
ALTER TABLE leaves SET (autovacuum_vacuum_insert_scale_factor = 0.01);
ALTER TABLE tree_nodes SET (autovacuum_vacuum_insert_scale_factor = 0.01);
"""


forwards = sql_migration(ID, DESCRIPTION, SQL)
