"""The connection pool's sessions, and the plan a proof's one query runs with."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from typing import Any

import asyncpg

from ledger import db, tree
from ledger.logs import (
    _PROOF_NODES,
    TILE,
    _proof_args,
    consistency_proof,
    inclusion_proof,
    root_at,
    stored_level,
)
from ledger.tree import (
    inclusion_proof_ranges,
    nodes_for_ranges,
    root_from_leaf_hashes,
    verify_inclusion,
)
from tests.conftest import Org, fund_entry


async def test_sessions_keep_their_settings_across_releases(dsn: str) -> None:
    pool = await db.create_pool(dsn, min_size=1, max_size=1)
    try:
        for _ in range(3):  # the same connection, released and acquired again
            async with pool.acquire() as conn:
                assert await conn.fetchval("SHOW TimeZone") == "UTC"
                assert await conn.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
                await conn.execute("SET work_mem = '8MB'")  # a session change that RESET undoes
                assert await conn.fetchval("SHOW work_mem") == "8MB"
                await conn.execute("RESET ALL")
                assert await conn.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
    finally:
        await pool.close()


async def test_a_transaction_left_open_is_rolled_back_on_release(dsn: str) -> None:
    pool = await db.create_pool(dsn, min_size=1, max_size=1)
    table = f"t_{secrets.token_hex(4)}"
    try:
        await pool.execute(f"CREATE TABLE {table} (x int)")
        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            await conn.execute(f"INSERT INTO {table} VALUES (1)")
            # released with the transaction open (a handler that raised mid-way)
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0
    finally:
        await pool.execute(f"DROP TABLE IF EXISTS {table}")
        await pool.close()


async def test_a_proof_reads_only_the_primary_key_indexes(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    hashes = await _log_of(client, org, pool, 600)
    size = len(hashes)
    leaf, path = await inclusion_proof(pool, org.code, 2026, 5, size)
    assert leaf == hashes[5]
    assert verify_inclusion(leaf, 5, size, path, root_from_leaf_hashes(hashes))

    # With the visibility map set (what autovacuum keeps up), neither table's own
    # pages are read: the hashes come from the indexes. A VACUUM cannot mark a page
    # all-visible while another backend (an autovacuum's ANALYZE, say) still holds a
    # snapshot older than its rows (a test before this one that has not quite let go
    # of a connection, say), so it is repeated for a while if need be. Nor while the
    # page holds the dead rows of an append rolled back (test_crash kills a server
    # mid-append) and VACUUM skips cleaning the indexes, as it does while such pages
    # are few: hence INDEX_CLEANUP ON (the test failed on heap fetches of leaves with
    # no snapshot held).
    wanted = nodes_for_ranges(inclusion_proof_ranges(5, size)) | {(0, 5)}
    for _ in range(40):
        await pool.execute("VACUUM (ANALYZE, INDEX_CLEANUP ON) leaves, tree_nodes")
        plan = await _proof_plan(pool, org.code, wanted, size)
        if all(s.get("Heap Fetches", 0) == 0 for s in _scans(json.loads(plan))):
            break
        await asyncio.sleep(0.5)
    scans = _scans(json.loads(plan))
    hashed = [s for s in scans if s["Relation Name"] != "logs"]
    # leaves (a tile of leaf hashes), tree_nodes twice (a tile of level 4, the high nodes)
    assert sorted(str(s["Relation Name"]) for s in hashed) == ["leaves", "tree_nodes", "tree_nodes"]
    for scan in hashed:
        assert scan["Node Type"] == "Index Only Scan", (scan["Relation Name"], scan["Node Type"])
    if any(scan["Heap Fetches"] for scan in hashed):  # say who held the snapshot
        holders = await pool.fetch(
            """SELECT pid, state, backend_xmin, left(query, 80) AS query FROM pg_stat_activity
               WHERE datname = current_database() AND backend_xmin IS NOT NULL
                 AND pid <> pg_backend_pid()"""
        )
        raise AssertionError(
            f"heap fetches {[(s['Relation Name'], s['Heap Fetches']) for s in hashed]}; "
            f"backends holding a snapshot: {[dict(h) for h in holders]}"
        )


PROOF_PARAMS = ("p_org", "p_year", "leaf_lo", "leaf_hi", "node_lo", "node_hi", "high_level",
                "high_idx")  # fmt: skip


async def _proof_query(pool: asyncpg.Pool) -> str:
    """The query of the function ``proof_nodes`` (what _PROOF_NODES runs), with $n
    for its parameters: EXPLAIN of the function's call shows only a function scan."""
    source = await pool.fetchval("SELECT prosrc FROM pg_proc WHERE proname = 'proof_nodes'")
    query = source.split("RETURN QUERY", 1)[1].rsplit(";", 1)[0]
    for n, name in sorted(enumerate(PROOF_PARAMS, 1), key=lambda p: -len(p[1])):
        query = re.sub(rf"\b{name}\b", f"${n}", query)
    return str(query)


async def test_a_proof_is_one_call_of_a_function_with_a_kept_plan(pool: asyncpg.Pool) -> None:
    assert _PROOF_NODES.startswith("SELECT level, idx, hashes FROM proof_nodes(")
    config = await pool.fetchval("SELECT proconfig FROM pg_proc WHERE proname = 'proof_nodes'")
    assert config == ["plan_cache_mode=force_generic_plan"]
    # Its generic plan is the same index-only scans by key (its query is checked
    # below), and it reads the tiles TILE says.
    query = await _proof_query(pool)
    assert f"LIMIT {1 << TILE}" in query and f"level = {TILE} AND" in query


async def _proof_plan(pool: asyncpg.Pool, org: str, wanted: set[tuple[int, int]], size: int) -> str:
    """EXPLAIN ANALYZE of a proof's one query (the function's own), in JSON."""
    query = await _proof_query(pool)
    async with pool.acquire() as conn:
        await conn.execute("SET enable_seqscan = off")  # a tiny table would be scanned
        try:
            return str(
                await conn.fetchval(
                    "EXPLAIN (ANALYZE, FORMAT JSON) " + query,
                    org,
                    2026,
                    *_proof_args(wanted, size),
                )
            )
        finally:
            await conn.execute("RESET enable_seqscan")


async def _log_of(client: Any, org: Org, pool: asyncpg.Pool, n: int) -> list[bytes]:
    """Post ``n`` entries into the org's 2026 log; return the log's leaf hashes."""
    entries = [fund_entry(f"IX{secrets.token_hex(3)}-{i}") for i in range(n)]
    r = await client.post(
        f"/api/v1/orgs/{org.code}/entries/batch", json={"entries": entries}, headers=org.auth()
    )
    assert r.status_code == 201, r.text
    rows = await pool.fetch(
        "SELECT leaf_hash FROM leaves WHERE org = $1 AND year = 2026 ORDER BY idx", org.code
    )
    return [bytes(row["leaf_hash"]) for row in rows]


async def test_proofs_from_the_database_equal_proofs_from_all_leaves(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    """Low subtrees hashed from leaf blocks, high ones read: the RFC 9162 proofs exactly."""
    hashes = await _log_of(client, org, pool, 600)
    sizes = [1, 2, 3, 255, 256, 257, 300, 511, 512, 513, 600]
    for size in sizes:
        for index in sorted({0, 1, 5, 254, 255, 256, 257, 300, 511, 512, size - 1}):
            if index < size:
                leaf, path = await inclusion_proof(pool, org.code, 2026, index, size)
                assert leaf == hashes[index]
                assert path == tree.inclusion_proof(index, size, hashes), (index, size)
        for first in sizes:
            if first <= size:
                got = await consistency_proof(pool, org.code, 2026, first, size)
                assert got == tree.consistency_proof(first, size, hashes), (first, size)
        assert await root_at(pool, org.code, 2026, size) == root_from_leaf_hashes(hashes[:size])


async def test_the_append_path_stores_exactly_the_levels_proofs_read(
    client: Any, org: Org, pool: asyncpg.Pool
) -> None:
    """Level TILE and the levels from 2 * TILE up, each complete; no other level."""
    hashes = await _log_of(client, org, pool, 600)
    size = len(hashes)
    rows = await pool.fetch(
        "SELECT level, idx, hash FROM tree_nodes WHERE org = $1 AND year = 2026", org.code
    )
    stored = {(r["level"], r["idx"]): bytes(r["hash"]) for r in rows}
    expected = {
        (level, idx)
        for level in range(1, size.bit_length())
        if stored_level(level)
        for idx in range(size >> level)
    }
    assert stored.keys() == expected
    assert {level for level, _ in stored} == {TILE, 2 * TILE, 2 * TILE + 1}
    for (level, idx), h in stored.items():
        span = hashes[idx << level : (idx + 1) << level]
        assert h == root_from_leaf_hashes(span), (level, idx)


def _scans(node: object) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    if isinstance(node, list):
        for n in node:
            out += _scans(n)
    elif isinstance(node, dict):
        if "Relation Name" in node:
            out.append(node)
        for key in ("Plan", "Plans"):
            if key in node:
                out += _scans(node[key])
    return out


class _Counted:
    """A pool whose proof queries are recorded: the high nodes and tiles asked for."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.asked: list[tuple[Any, ...]] = []

    async def fetch(self, query: str, *args: Any) -> Any:
        self.asked.append(args[2:])
        return await self.pool.fetch(query, *args)


async def test_kept_subtrees_are_each_logs_own_and_spare_later_reads(
    client: Any, pool: asyncpg.Pool
) -> None:
    """Two logs of the same size: every proof of each equals the RFC's from its own
    leaves, in whatever order they are asked; and a second proof at a size reads
    neither the high subtrees nor the right edge's ranges again."""
    from tests.conftest import make_org

    one, two = await make_org("kp"), await make_org("kp")
    leaves = {o.code: await _log_of(client, o, pool, 600) for o in (one, two)}
    size = 597  # a right edge of several subtrees: 512 + 64 + 16 + 4 + 1
    for index in (3, 300, 3, 300, 596):
        for org in (one.code, two.code):
            hashes = leaves[org][:size]
            leaf, path = await inclusion_proof(pool, org, 2026, index, size)
            assert leaf == hashes[index]
            assert path == tree.inclusion_proof(index, size, hashes), (org, index)
            got = await consistency_proof(pool, org, 2026, 5, size)
            assert got == tree.consistency_proof(5, size, hashes), org
    counted = _Counted(pool)
    await inclusion_proof(counted, one.code, 2026, 7, size)  # type: ignore[arg-type]
    leaf_lo, _, node_lo, _, high_levels, _ = counted.asked[0]
    assert high_levels == []  # kept from the proofs before
    assert leaf_lo == [0] and node_lo == [0]  # only the tiles of leaf 7, not the right edge's


def test_kept_hashes_are_dropped_once_past_their_limit() -> None:
    from ledger.logs import _Kept

    kept = _Kept(3)
    log = kept.of("a", 2026)
    for i in range(4):
        kept.put(log, (8, i), b"h")
    assert kept.of("b", 2026) == {} and kept.logs == {("b", 2026): {}}
