"""RFC 9162 (Certificate Transparency v2) Merkle tree mathematics for Gongkai logs.

This module owns the hashing rules and the proof algebra of a log's Merkle tree
(SPEC §4): leaf and interior hashes, the tree head (MTH), inclusion and
consistency proofs and their verification, and the compact "frontier" that lets
an appender compute the new root without reading old leaves. It performs no
I/O and knows nothing about storage; it is pure, standard-library-only code so
that the server, the offline verifier and the tests all share one definition.

Storage model it is designed for
--------------------------------
Every hash a proof needs is the MTH of some contiguous leaf range, and every
such range is a concatenation of *perfect* subtrees. A perfect subtree is
addressed as ``(level, idx)``: the hash over leaves ``[idx << level,
(idx + 1) << level)``; level 0 nodes are leaf hashes. Perfect nodes never change
once their last leaf is appended, so storage can persist them as they are
completed (:meth:`CompactRange.append` reports exactly those) and later answer a
proof with O(log n) point lookups::

    ranges = inclusion_proof_ranges(index, size)
    wanted = nodes_for_ranges(ranges)            # fetch these (level, idx) rows
    proof = assemble_proof(ranges, lookup)       # lookup(level, idx) -> hash

The convenience functions :func:`inclusion_proof` and :func:`consistency_proof`
compute the same proofs from the full list of leaf hashes by literally following
the RFC's recursive definitions; they are the executable specification that the
range-based path is tested against, and are fine for small trees.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "assemble_proof",
    "consistency_proof",
    "consistency_proof_ranges",
    "hash_of_range",
    "inclusion_proof",
    "inclusion_proof_ranges",
    "leaf_hash",
    "node_hash",
    "nodes_for_ranges",
    "range_nodes",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32

# RFC 9162 §2.1.1: the hash of an empty list is the hash of the empty string.
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()

# Domain-separation prefixes (RFC 9162 §2.1.1). They are what stop a leaf from
# being passed off as an interior node (second-preimage attacks).
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(leaf: bytes) -> bytes:
    """Return SHA-256(0x00 || leaf)."""
    return hashlib.sha256(_LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (``n >= 2``): the RFC's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """Return MTH of a list of leaf hashes (``EMPTY_ROOT`` for an empty list).

    Pairing neighbours level by level and promoting an unpaired last node
    unchanged yields exactly the RFC's left-balanced tree (split at the largest
    power of two), without recursion.
    """
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


# ---------------------------------------------------------------------------
# Perfect-subtree addressing
# ---------------------------------------------------------------------------


def range_nodes(start: int, end: int) -> list[tuple[int, int]]:
    """Decompose the leaf range ``[start, end)`` into perfect subtrees, largest first.

    The range must be aligned the way RFC 9162 subtrees are: ``start`` a
    multiple of the largest power of two not exceeding ``end - start``. Then
    the RFC splits it into a perfect left part and a recursively defined right
    part, which is exactly the binary decomposition of its length, so folding
    these node hashes with :func:`hash_of_range` gives MTH of the range. An
    empty range has no nodes.
    """
    if start < 0 or end < start:
        raise ValueError(f"invalid leaf range [{start}, {end})")
    length = end - start
    if length == 0:
        return []
    top = length.bit_length() - 1
    if start & ((1 << top) - 1):
        # A misaligned range is not an RFC subtree; its MTH would need the
        # recursive split, not perfect nodes, so refuse rather than mislead.
        raise ValueError(f"leaf range [{start}, {end}) is not aligned to a subtree")
    if length == 1 << top:  # a perfect subtree (most ranges of a proof): one node
        return [(top, start >> top)]
    nodes: list[tuple[int, int]] = []
    pos = start
    for level in range(top, -1, -1):
        if length >> level & 1:
            nodes.append((level, pos >> level))
            pos += 1 << level
    return nodes


def hash_of_range(nodes_hashes: Sequence[bytes]) -> bytes:
    """Fold the hashes of :func:`range_nodes` (same order) into the range's MTH.

    The right-to-left fold mirrors the RFC recursion: every non-final perfect
    node is the left child of the subtree formed by everything after it.
    """
    if not nodes_hashes:
        return EMPTY_ROOT
    h = nodes_hashes[-1]
    for n in reversed(nodes_hashes[:-1]):
        h = node_hash(n, h)
    return h


def inclusion_proof_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose MTHs form PATH(index, D[size]) (RFC 9162 §2.1.3.1), in order."""
    if index < 0 or size < 0:
        raise ValueError("index and size must be non-negative")
    if index >= size:
        raise ValueError(f"leaf index {index} is not below tree size {size}")
    # Walk the RFC recursion from the root down; each step contributes the
    # sibling subtree, but the proof lists them leaf-first, hence the reverse.
    ranges: list[tuple[int, int]] = []
    offset, m, n = 0, index, size
    while n > 1:
        k = _split(n)
        if m < k:
            ranges.append((offset + k, offset + n))
            n = k
        else:
            ranges.append((offset, offset + k))
            offset += k
            m -= k
            n -= k
    ranges.reverse()
    return ranges


def consistency_proof_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """Leaf ranges whose MTHs form PROOF(first, D[second]) (RFC 9162 §2.1.4.1), in order.

    ``first == second`` and ``first == 0`` give an empty list: the former is
    the RFC's empty SUBPROOF, the latter has no proof because the empty tree is
    a prefix of every tree.
    """
    if first < 0 or second < 0:
        raise ValueError("tree sizes must be non-negative")
    if first > second:
        raise ValueError(f"first size {first} exceeds second size {second}")
    if first == 0:
        return []
    ranges: list[tuple[int, int]] = []
    offset, m, n = 0, first, second
    # b of SUBPROOF: whether the current subtree's hash is the known old root.
    have_root = True
    while m != n:
        k = _split(n)
        if m <= k:
            ranges.append((offset + k, offset + n))
            n = k
        else:
            ranges.append((offset, offset + k))
            offset += k
            m -= k
            n -= k
            have_root = False
    if not have_root:
        ranges.append((offset, offset + n))
    ranges.reverse()
    return ranges


def nodes_for_ranges(ranges: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    """All perfect-subtree addresses needed to compute the MTHs of ``ranges``."""
    wanted: set[tuple[int, int]] = set()
    for start, end in ranges:
        wanted.update(range_nodes(start, end))
    return wanted


def assemble_proof(
    ranges: Iterable[tuple[int, int]], lookup: Callable[[int, int], bytes]
) -> list[bytes]:
    """Build a proof from its ranges, reading perfect node hashes via ``lookup(level, idx)``."""
    return [
        hash_of_range([lookup(level, idx) for level, idx in range_nodes(start, end)])
        for start, end in ranges
    ]


# ---------------------------------------------------------------------------
# Proofs from all leaves (literal RFC recursion)
# ---------------------------------------------------------------------------


def _check_leaves(size: int, leaf_hashes: Sequence[bytes]) -> None:
    if len(leaf_hashes) < size:
        raise ValueError(f"need {size} leaf hashes, got {len(leaf_hashes)}")


def _path(m: int, d: Sequence[bytes]) -> list[bytes]:
    n = len(d)
    if n <= 1:
        return []
    k = _split(n)
    if m < k:
        return [*_path(m, d[:k]), root_from_leaf_hashes(d[k:])]
    return [*_path(m - k, d[k:]), root_from_leaf_hashes(d[:k])]


def _subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [root_from_leaf_hashes(d)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, d[:k], b), root_from_leaf_hashes(d[k:])]
    return [*_subproof(m - k, d[k:], False), root_from_leaf_hashes(d[:k])]


def inclusion_proof(index: int, size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(index, D[size]) computed from (at least) the first ``size`` leaf hashes."""
    inclusion_proof_ranges(index, size)  # same argument validation as the range path
    _check_leaves(size, leaf_hashes)
    return _path(index, leaf_hashes[:size])


def consistency_proof(first: int, second: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PROOF(first, D[second]) computed from (at least) the first ``second`` leaf hashes."""
    consistency_proof_ranges(first, second)  # same argument validation as the range path
    _check_leaves(second, leaf_hashes)
    if first == 0:
        return []
    return _subproof(first, leaf_hashes[:second], True)


# ---------------------------------------------------------------------------
# Verification (RFC 9162 §2.1.3.2 and §2.1.4.2)
# ---------------------------------------------------------------------------


def _all_hashes(hashes: Iterable[bytes]) -> bool:
    # Reject wrong-length values outright: concatenation-based hashing would
    # otherwise let bytes shift between adjacent proof elements.
    return all(isinstance(h, bytes) and len(h) == HASH_SIZE for h in hashes)


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    Note that a proof binds the leaf to ``root``; the size only fixes the shape
    the path is read with. Callers must take ``size`` and ``root`` from the same
    signed checkpoint.
    """
    if index < 0 or size <= 0 or index >= size:
        return False
    if not _all_hashes([leaf_hash, root, *path]):
        return False
    fn, sn = index, size - 1
    r = leaf_hash
    for p in path:
        if sn == 0:
            return False  # path longer than the tree is tall
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # A node that is the last of its level with no right sibling is
            # promoted unchanged; skip those levels.
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, path: Sequence[bytes], first_root: bytes, second_root: bytes
) -> bool:
    """Check that the tree (``second``, ``second_root``) extends (``first``, ``first_root``).

    Conventions beyond the RFC algorithm:

    * ``first == second``: valid only with an empty ``path`` and equal roots.
    * ``first == 0``: the RFC defines no proof (the empty tree is a prefix of
      every tree), so this is valid only with an empty ``path``; ``first_root``
      must also be :data:`EMPTY_ROOT`, the only root a size-0 tree can have.
      ``second_root`` is not constrained.
    * ``first > second`` or negative sizes are never valid.
    """
    if first < 0 or second < 0 or first > second:
        return False
    if not _all_hashes([first_root, second_root, *path]):
        return False
    if first == 0:
        return not path and first_root == EMPTY_ROOT
    if first == second:
        return not path and first_root == second_root
    if not path:
        return False
    c = list(path)
    # When the old tree is a perfect subtree of the new one the proof omits
    # its root (the verifier already has it), so put it back.
    if first & (first - 1) == 0:
        c.insert(0, first_root)
    fn, sn = first - 1, second - 1
    # Levels where the old tree's last node is a right child are already
    # folded into c[0]; skip them.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = c[0]
    for p in c[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(p, fr)
            sr = node_hash(p, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, p)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


# ---------------------------------------------------------------------------
# Compact range (frontier)
# ---------------------------------------------------------------------------


class CompactRange:
    """The frontier of a tree of ``size`` leaves.

    ``hashes`` are the perfect subtrees of the binary decomposition of
    ``size``, largest first, i.e. the nodes ``range_nodes(0, size)``. That is
    all an appender needs: the root and every node a new leaf completes follow
    from it, so appends never read old leaves.
    """

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: list[bytes] | None = None) -> None:
        if size < 0:
            raise ValueError("size must be non-negative")
        hs = list(hashes) if hashes is not None else []
        if len(hs) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {size.bit_count()} frontier hashes")
        if not _all_hashes(hs):
            raise ValueError(f"frontier hashes must be {HASH_SIZE}-byte values")
        self.size: int = size
        self.hashes: list[bytes] = hs

    def __repr__(self) -> str:
        return f"CompactRange(size={self.size}, hashes=[{len(self.hashes)} hashes])"

    def append(self, leaf_hash: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf; return each perfect node of level >= 1 it completed.

        The nodes are ``(level, idx, hash)`` from the lowest level up. Leaf
        hashes themselves (level 0) are not returned; the caller has them.
        """
        if not _all_hashes([leaf_hash]):
            raise ValueError(f"leaf hash must be {HASH_SIZE} bytes")
        return self.append_trusted(leaf_hash)

    def append_trusted(self, leaf_hash: bytes) -> list[tuple[int, int, bytes]]:
        """``append`` for a hash the caller just computed with ``leaf_hash`` (no check)."""
        completed: list[tuple[int, int, bytes]] = []
        h = leaf_hash
        level = 0
        # Each trailing 1 bit of the old size is a perfect sibling waiting on
        # the left; adding a leaf carries through them like binary increment.
        s = self.size
        while s >> level & 1:
            h = node_hash(self.hashes.pop(), h)
            level += 1
            completed.append((level, self.size >> level, h))
        self.hashes.append(h)
        self.size += 1
        return completed

    def root(self) -> bytes:
        """MTH of the first ``size`` leaves."""
        return hash_of_range(self.hashes)
