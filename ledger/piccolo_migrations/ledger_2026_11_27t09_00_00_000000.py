"""A proof's hashes read by a function whose plan is kept (issue 7: proof p99).

The server's sessions plan every statement for its parameters
(``plan_cache_mode = force_custom_plan``, ``ledger.db.SESSION_SETTINGS``): keyset
pages and optional filters need plans made for the actual cursor. The one query
of an inclusion or consistency proof does not (index-only scans by key whatever
the values), yet planning it took more of the database's time than running it
(0.16 ms against 0.14 ms). Here the same query runs inside a PL/pgSQL function
that keeps its generic plan for the session: about 0.22 ms less database time a
proof.

Reads TILE = 4 (``ledger.logs``): tiles of 16 hashes, level 4 the tile level.
"""

from ledger.db import sql_migration

ID = "2026-11-27T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "proof hashes read by a function with a kept plan"

SQL = r"""
CREATE FUNCTION proof_nodes(
    p_org text, p_year int, leaf_lo bigint[], leaf_hi bigint[],
    node_lo bigint[], node_hi bigint[], high_level smallint[], high_idx bigint[]
) RETURNS TABLE (level smallint, idx bigint, hashes bytea[])
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
BEGIN
RETURN QUERY
    SELECT -1::smallint AS level, size AS idx, NULL::bytea[] AS hashes
    FROM logs WHERE org = p_org AND year = p_year
    UNION ALL
    SELECT 0::smallint, b.lo, (
        SELECT array_agg(leaf_hash ORDER BY idx) FROM (
            SELECT idx, leaf_hash FROM leaves
            WHERE org = p_org AND year = p_year AND idx >= b.lo AND idx < b.hi
            ORDER BY idx LIMIT 16) l)
    FROM unnest(leaf_lo::bigint[], leaf_hi::bigint[]) AS b(lo, hi)
    UNION ALL
    SELECT 4::smallint, b.lo, (
        SELECT array_agg(hash ORDER BY idx) FROM (
            SELECT idx, hash FROM tree_nodes
            WHERE org = p_org AND year = p_year AND level = 4 AND idx >= b.lo AND idx < b.hi
            ORDER BY idx LIMIT 16) t)
    FROM unnest(node_lo::bigint[], node_hi::bigint[]) AS b(lo, hi)
    UNION ALL
    SELECT -2::smallint, 0, array_agg(t.hash ORDER BY w.n)
    FROM unnest(high_level::smallint[], high_idx::bigint[]) WITH ORDINALITY AS w(level, idx, n)
    LEFT JOIN tree_nodes t ON t.org = p_org AND t.year = p_year AND t.level = w.level AND t.idx = w.idx
    HAVING count(*) > 0;
END
$fn$;
"""


forwards = sql_migration(ID, DESCRIPTION, SQL)
