"""The read side of logs: heads, leaf hashes, proofs and signed checkpoints.

Proofs are assembled from stored perfect-subtree hashes (``tree_nodes``, the
levels ``stored_level`` names) and tiles of leaf hashes, so a proof at ten
million leaves reads O(log n) index entries in one query, never the leaves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

import asyncpg

from ledger.checkpoint import Checkpoint, NoteSigner
from ledger.errors import FieldError, InvalidInput, NotFound
from ledger.tree import (
    consistency_proof_ranges,
    hash_of_range,
    inclusion_proof_ranges,
    node_hash,
    range_nodes,
)

if TYPE_CHECKING:
    from ledger.db import Lent

MAX_LEAVES_PAGE = 1000

Conn: TypeAlias = "asyncpg.Connection | asyncpg.Pool | Lent"


@dataclass(frozen=True)
class LogHead:
    org: str
    year: int
    size: int
    root: bytes
    closed: bool


@dataclass(frozen=True)
class SignedCheckpoint:
    org: str
    year: int
    size: int
    root: bytes
    note: str


async def get_head(conn: Conn, org: str, year: int) -> LogHead:
    row = await conn.fetchrow(
        "SELECT size, root, closed_at FROM logs WHERE org = $1 AND year = $2", org, year
    )
    if row is None:
        raise NotFound(f"{org} has no log for {year}", log=f"{org}/{year}")
    return LogHead(org, year, row["size"], bytes(row["root"]), row["closed_at"] is not None)


async def list_heads(conn: Conn, org: str | None = None) -> list[LogHead]:
    rows = await conn.fetch(
        """SELECT org, year, size, root, closed_at FROM logs
           WHERE $1::text IS NULL OR org = $1 ORDER BY org, year""",
        org,
    )
    return [
        LogHead(r["org"], r["year"], r["size"], bytes(r["root"]), r["closed_at"] is not None)
        for r in rows
    ]


async def leaf_hashes(conn: Conn, org: str, year: int, start: int, end: int) -> list[bytes]:
    rows = await conn.fetch(
        """SELECT leaf_hash FROM leaves WHERE org = $1 AND year = $2 AND idx >= $3 AND idx < $4
           ORDER BY idx""",
        org,
        year,
        start,
        end,
    )
    return [bytes(r["leaf_hash"]) for r in rows]


#: A proof's subtree hashes below level 2 * TILE are hashed here from a tile:
#: 2**TILE adjacent hashes one level below TILE levels up, read as one short range
#: of an index (the leaves' primary key for levels under TILE, tree_nodes' level
#: TILE for the levels under 2 * TILE). Higher ones are read from tree_nodes,
#: where each level is one contiguous stretch of the index, so those few levels
#: stay in memory. A proof then reads two pages that depend on its leaf at any
#: log size (one per level before, each a cold read on a log larger than memory)
#: and hashes about twenty nodes.
TILE = 4


def stored_level(level: int) -> bool:
    """Whether ``tree_nodes`` keeps the subtree hashes of ``level``.

    Proofs read level TILE (as tiles) and the levels from 2 * TILE up; every
    other level is hashed from a tile when asked for, so the append path does
    not write it (about 7% of a log's subtrees are stored, not one per leaf).
    """
    return level == TILE or level >= 2 * TILE


# One row per read: the log's size (level -1, in idx), each tile (level 0 or TILE,
# its first index in idx, its hashes in order), and the high nodes (level -2, their
# hashes in the order asked for, NULL where one is missing). Arrays rather than a
# row a hash: a proof is about 50 hashes, and decoding them as rows was a fifth of
# the server's time on proofs. The query is the body of the function
# ``proof_nodes`` (migration 2026-11-27T09): there its plan is kept for the
# session, where the server's sessions would plan it anew each time, which cost
# the database more than running it.
_PROOF_NODES = "SELECT level, idx, hashes FROM proof_nodes($1, $2, $3, $4, $5, $6, $7, $8)"


#: The subtree hashes from level 2 * TILE up that proofs have read, kept in the
#: process: a stored subtree is complete and never changes (logs are append-only),
#: so what was read once holds for every later proof, and a proof then reads only
#: its two tiles (about 0.07 ms of the database's time less a proof at ten
#: million leaves, where a log has ~78 thousand such subtrees). Cleared when it
#: passes HIGH_NODES_KEPT. A database restored from a backup must be served by a
#: restarted server (as any restore wants).
HIGH_NODES_KEPT = 250_000


class _Kept:
    """Hashes kept by log, (level, idx) or (start, end) to hash; all dropped once
    more than ``limit`` have been kept."""

    def __init__(self, limit: int) -> None:
        self.limit, self.count = limit, 0
        self.logs: dict[tuple[str, int], dict[tuple[int, int], bytes]] = {}

    def of(self, org: str, year: int) -> dict[tuple[int, int], bytes]:
        if self.count > self.limit:
            self.logs.clear()
            self.count = 0
        return self.logs.setdefault((org, year), {})

    def put(self, kept: dict[tuple[int, int], bytes], key: tuple[int, int], h: bytes) -> None:
        kept[key] = h
        self.count += 1


_HIGH_NODES = _Kept(HIGH_NODES_KEPT)
_RANGES = _Kept(HIGH_NODES_KEPT)  # see _path


def _perfect_hash(hashes: list[bytes]) -> bytes:
    """The root of a perfect subtree from the hashes of one of its levels."""
    while len(hashes) > 1:
        hashes = [node_hash(hashes[k], hashes[k + 1]) for k in range(0, len(hashes), 2)]
    return hashes[0]


def _tile_ranges(nodes: set[tuple[int, int]], base: int, size: int) -> tuple[list[int], list[int]]:
    """Index ranges of the level-``base`` tiles holding the nodes of the next TILE levels."""
    count = size >> base  # nodes of level ``base`` in the tree of ``size`` leaves
    tiles = sorted(
        {(idx << (level - base)) >> TILE for level, idx in nodes if base <= level < base + TILE}
    )
    return [t << TILE for t in tiles], [min((t + 1) << TILE, count) for t in tiles]


def _proof_args(
    nodes: set[tuple[int, int]], size: int
) -> tuple[list[int], list[int], list[int], list[int], list[int], list[int]]:
    """$3…$8 of _PROOF_NODES: the leaf tiles, the level-TILE tiles, the high nodes."""
    high = sorted((level, idx) for level, idx in nodes if level >= 2 * TILE)
    return (
        *_tile_ranges(nodes, 0, size),
        *_tile_ranges(nodes, TILE, size),
        [level for level, _ in high],
        [idx for _, idx in high],
    )


async def _proof_nodes(
    conn: Conn,
    org: str,
    year: int,
    size_name: str,
    size: int,
    nodes: set[tuple[int, int]],
) -> dict[tuple[int, int], bytes]:
    """The hashes of ``nodes`` (level 0: leaves), read with the log's size in one query.

    One round trip of index-only scans (the primary keys carry the hashes,
    migration 20:00); see TILE for which hashes are read and which computed.
    Raises NotFound for an unknown log and InvalidInput when ``size`` (the
    parameter called ``size_name``) is beyond the log's size.
    """
    kept = _HIGH_NODES.of(org, year)
    found: dict[tuple[int, int], bytes] = {}
    if kept:
        for node in nodes:
            h = kept.get(node)
            if h is not None:
                found[node] = h
    args = _proof_args(nodes - found.keys() if found else nodes, size)
    *_, high_levels, high_idxs = args
    head: list[int] = []
    tiles: dict[tuple[int, int], list[bytes]] = {}
    high: list[bytes | None] = []
    for level, idx, hashes in await conn.fetch(_PROOF_NODES, org, year, *args):
        if level == -1:
            head.append(idx)
        elif level == -2:
            high = hashes
        elif hashes is not None:
            tiles[(level, idx)] = hashes
    if not head:
        raise NotFound(f"{org} has no log for {year}", log=f"{org}/{year}")
    _check_size(head[0], size_name, size)
    for key, h in zip(zip(high_levels, high_idxs, strict=True), high, strict=False):
        if h is not None:
            found[key] = h
            _HIGH_NODES.put(kept, key, h)
    for level, idx in nodes:
        if level >= 2 * TILE:
            continue
        base = 0 if level < TILE else TILE
        first, span = idx << (level - base), 1 << (level - base)
        lo = first >> TILE << TILE  # the tile holding them
        block = tiles.get((base, lo), [])[first - lo : first - lo + span]
        if len(block) == span:
            found[(level, idx)] = _perfect_hash(block)
    missing = nodes - found.keys()
    if missing:
        raise RuntimeError(f"log {org}/{year} is missing subtree hashes {sorted(missing)[:3]}")
    return found


def _check_size(log_size: int, name: str, value: int) -> None:
    if value > log_size:
        raise InvalidInput(
            f"{name} {value} is beyond the log's size {log_size}",
            [FieldError(f"query.{name}", f"is beyond the log's size {log_size}")],
            size=log_size,
        )


async def inclusion_proof(
    conn: Conn, org: str, year: int, index: int, tree_size: int
) -> tuple[bytes, list[bytes]]:
    """(leaf hash, audit path) of leaf ``index`` in the tree of ``tree_size`` leaves."""
    if not 0 <= index < tree_size:
        await _proof_nodes(conn, org, year, "tree_size", tree_size, set())
        raise InvalidInput(
            f"index {index} is not below tree_size {tree_size}",
            [FieldError("query.index", f"must be below tree_size ({tree_size})")],
        )
    ranges = inclusion_proof_ranges(index, tree_size)
    found, path = await _path(conn, org, year, "tree_size", tree_size, ranges, {(0, index)})
    return found[(0, index)], path


async def consistency_proof(
    conn: Conn, org: str, year: int, first: int, second: int
) -> list[bytes]:
    if not 0 < first < second:  # no proof to read: check the log, then the sizes
        await _proof_nodes(conn, org, year, "second", second, set())
        if not 0 <= first <= second:
            raise InvalidInput(
                f"first {first} must be between 0 and second {second}",
                [FieldError("query.first", f"must be between 0 and second ({second})")],
            )
        return []
    ranges = consistency_proof_ranges(first, second)
    _, path = await _path(conn, org, year, "second", second, ranges, set())
    return path


async def _path(
    conn: Conn,
    org: str,
    year: int,
    size_name: str,
    size: int,
    ranges: list[tuple[int, int]],
    also: set[tuple[int, int]],
) -> tuple[dict[tuple[int, int], bytes], list[bytes]]:
    """A proof's path, the hashes of ``ranges`` in order, and the hashes of the
    nodes ``also`` (with those of the ranges' subtrees that were read).

    A range of more than one subtree lies on the log's right edge at ``size``, and
    every proof at that size from the tree's left part has the same ones: their
    hashes are kept as the high subtrees' are (``_HIGH_NODES``), so such a proof
    reads and hashes only what depends on its leaf.
    """
    kept = _RANGES.of(org, year)
    # Each range's kept hash, or its nodes (most ranges of a proof are one node).
    parts: list[bytes | list[tuple[int, int]]] = []
    wanted = set(also)
    for r in ranges:
        h = kept.get(r)
        if h is None:
            nodes = range_nodes(*r)
            wanted.update(nodes)
            parts.append(nodes)
        else:
            parts.append(h)
    found = await _proof_nodes(conn, org, year, size_name, size, wanted)
    path = []
    for r, part in zip(ranges, parts, strict=True):
        if isinstance(part, bytes):
            path.append(part)
        elif len(part) == 1:
            path.append(found[part[0]])
        else:
            h = hash_of_range([found[n] for n in part])
            _RANGES.put(kept, r, h)
            path.append(h)
    return found, path


async def root_at(conn: Conn, org: str, year: int, size: int) -> bytes:
    """The root of the log's first ``size`` leaves (its tree at that size)."""
    nodes = range_nodes(0, size)
    found = await _proof_nodes(conn, org, year, "size", size, set(nodes))
    return hash_of_range([found[n] for n in nodes])


async def latest_checkpoint(conn: Conn, org: str, year: int) -> SignedCheckpoint:
    row = await conn.fetchrow(
        """SELECT size, root, note FROM checkpoints WHERE org = $1 AND year = $2
           ORDER BY size DESC LIMIT 1""",
        org,
        year,
    )
    if row is None:
        await get_head(conn, org, year)  # 404 for an unknown log
        raise NotFound(f"log {org}/{year} has no signed checkpoint yet", log=f"{org}/{year}")
    return SignedCheckpoint(org, year, row["size"], bytes(row["root"]), row["note"])


async def sign_due(conn: Conn, signer: NoteSigner, origin_prefix: str) -> int:
    """Sign a checkpoint for every log whose head has no checkpoint yet.

    Safe to run from several processes at once: a checkpoint is keyed by
    (org, year, size) and the second insert of the same one is ignored.
    Returns the number of checkpoints written.
    """
    rows = await conn.fetch(
        """
        SELECT l.org, l.year, l.size, l.root FROM logs l
        WHERE l.size > 0 AND NOT EXISTS (
            SELECT 1 FROM checkpoints c WHERE c.org = l.org AND c.year = l.year AND c.size = l.size)
        """
    )
    if not rows:
        return 0
    records = []
    for r in rows:
        cp = Checkpoint(f"{origin_prefix}/{r['org']}/{r['year']}", r["size"], bytes(r["root"]))
        records.append((r["org"], r["year"], r["size"], bytes(r["root"]), signer.sign(cp)))
    result = await conn.fetch(
        """
        INSERT INTO checkpoints (org, year, size, root, note)
        SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bytea[], $5::text[])
        ON CONFLICT DO NOTHING RETURNING size
        """,
        *[list(col) for col in zip(*records, strict=True)],
    )
    return len(result)
