"""Tests for ledger.tree: RFC 6962/9162 Merkle tree hashing, proofs and the compact range.

Three layers of evidence:

* Known answers published with the Certificate Transparency reference
  implementation (google/certificate-transparency, merkle_tree_test.cc).
* Exhaustive checks for every tree size 1..64 (and hypothesis for larger trees)
  that the storage-oriented path (ranges -> perfect nodes -> lookup) produces
  the RFC's proofs, and that they verify both with ``ledger.tree`` and with an
  independent recursive verifier written here, while tampered proofs do not.
* CompactRange against the plain root computation and the set of perfect nodes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.tree import (
    EMPTY_ROOT,
    CompactRange,
    assemble_proof,
    consistency_proof,
    consistency_proof_ranges,
    hash_of_range,
    inclusion_proof,
    inclusion_proof_ranges,
    leaf_hash,
    node_hash,
    nodes_for_ranges,
    range_nodes,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

# ---------------------------------------------------------------------------
# Certificate Transparency known-answer vectors (merkle_tree_test.cc)
# ---------------------------------------------------------------------------

CT_EMPTY_ROOT = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

CT_INPUTS = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_LEAF_HASHES = [leaf_hash(x) for x in CT_INPUTS]

# kSHA256Roots: the root after each of the 8 inputs is appended (sizes 1..8).
CT_ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}

# kSHA256Paths. The C++ test numbers leaves from 1; these are 0-based indices.
CT_INCLUSION: list[tuple[int, int, list[str]]] = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]

# kSHA256Proofs.
CT_CONSISTENCY: list[tuple[int, int, list[str]]] = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]


def _unhex(hs: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in hs]


# ---------------------------------------------------------------------------
# Independent reference: the recursive formulation of RFC 6962 §2.1
# ---------------------------------------------------------------------------


def _k(n: int) -> int:
    """Largest power of two strictly below n, by counting (no bit tricks)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, straight from the recursive definition."""
    if len(d) == 0:
        return EMPTY_ROOT
    if len(d) == 1:
        return d[0]
    k = _k(len(d))
    return node_hash(ref_mth(d[:k]), ref_mth(d[k:]))


def ref_root_from_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes]
) -> bytes | None:
    """Recompute the root from PATH(index, D[size]); the last element is the top sibling."""
    if size == 1:
        return leaf if not path else None
    if not path:
        return None
    k = _k(size)
    sibling, rest = path[-1], path[:-1]
    if index < k:
        sub = ref_root_from_inclusion(leaf, index, k, rest)
        return None if sub is None else node_hash(sub, sibling)
    sub = ref_root_from_inclusion(leaf, index - k, size - k, rest)
    return None if sub is None else node_hash(sibling, sub)


def ref_verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    if not 0 <= index < size:
        return False
    return ref_root_from_inclusion(leaf, index, size, path) == root


def ref_subproof_roots(
    m: int, n: int, have_root: bool, proof: Sequence[bytes], first_root: bytes
) -> tuple[bytes, bytes] | None:
    """Invert SUBPROOF(m, D[n], b): return (hash of the old part, hash of the new subtree)."""
    if m == n:
        if have_root:
            return (first_root, first_root) if not proof else None
        return (proof[0], proof[0]) if len(proof) == 1 else None
    if not proof:
        return None
    k = _k(n)
    last, rest = proof[-1], proof[:-1]
    if m <= k:
        sub = ref_subproof_roots(m, k, have_root, rest, first_root)
        return None if sub is None else (sub[0], node_hash(sub[1], last))
    sub = ref_subproof_roots(m - k, n - k, False, rest, first_root)
    return None if sub is None else (node_hash(last, sub[0]), node_hash(last, sub[1]))


def ref_verify_consistency(
    first: int, second: int, proof: Sequence[bytes], first_root: bytes, second_root: bytes
) -> bool:
    if not 0 <= first <= second:
        return False
    if first == 0:
        return not proof and first_root == EMPTY_ROOT
    roots = ref_subproof_roots(first, second, True, proof, first_root)
    return roots == (first_root, second_root)


def directions(index: int, size: int) -> list[bool]:
    """Bottom-up 'sibling is on the right' flags of PATH(index, D[size]): the proof's shape."""
    if size == 1:
        return []
    k = _k(size)
    if index < k:
        return [*directions(index, k), True]
    return [*directions(index - k, size - k), False]


# ---------------------------------------------------------------------------
# Shared fixtures: deterministic leaves and a bounds-checked perfect-node lookup
# ---------------------------------------------------------------------------

N_MAX = 1024
LEAVES = [leaf_hash(i.to_bytes(2, "big") + b"gongkai") for i in range(N_MAX)]
PREFIX_ROOTS = {n: ref_mth(LEAVES[:n]) for n in range(0, 65)}


@functools.cache
def perfect_node(level: int, idx: int) -> bytes:
    """Hash of the perfect subtree (level, idx), computed from the leaves."""
    return ref_mth(LEAVES[idx << level : (idx + 1) << level])


def lookup_for(size: int) -> Callable[[int, int], bytes]:
    """A storage stand-in that refuses nodes not yet complete in a tree of ``size``."""

    def lookup(level: int, idx: int) -> bytes:
        assert level >= 0 and idx >= 0
        assert (idx + 1) << level <= size, f"node ({level}, {idx}) is outside a {size}-leaf tree"
        return perfect_node(level, idx)

    return lookup


def flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[(bit // 8) % len(b)] ^= 1 << (bit % 8)
    return bytes(b)


def tampered(path: Sequence[bytes], salt: int = 0) -> list[list[bytes]]:
    """Every variant of ``path`` with exactly one bit flipped in one element."""
    out = []
    for j in range(len(path)):
        bad = list(path)
        bad[j] = flip(bad[j], (37 * j + salt) % 256)
        out.append(bad)
    return out


# ---------------------------------------------------------------------------
# Known answers
# ---------------------------------------------------------------------------


def test_hash_primitives() -> None:
    assert EMPTY_ROOT.hex() == CT_EMPTY_ROOT
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    # Leaf of the empty string and the two-leaf root are themselves CT vectors.
    assert leaf_hash(b"").hex() == CT_ROOTS[1]
    assert node_hash(CT_LEAF_HASHES[0], CT_LEAF_HASHES[1]).hex() == CT_ROOTS[2]


@pytest.mark.parametrize("size", range(1, 9))
def test_ct_roots(size: int) -> None:
    assert root_from_leaf_hashes(CT_LEAF_HASHES[:size]).hex() == CT_ROOTS[size]
    assert ref_mth(CT_LEAF_HASHES[:size]).hex() == CT_ROOTS[size]


def test_ct_roots_via_compact_range() -> None:
    cr = CompactRange()
    assert cr.root().hex() == CT_EMPTY_ROOT
    for size, h in enumerate(CT_LEAF_HASHES, start=1):
        cr.append(h)
        assert cr.root().hex() == CT_ROOTS[size]


def _ct_lookup(size: int) -> Callable[[int, int], bytes]:
    def lookup(level: int, idx: int) -> bytes:
        assert (idx + 1) << level <= size
        return root_from_leaf_hashes(CT_LEAF_HASHES[idx << level : (idx + 1) << level])

    return lookup


@pytest.mark.parametrize(("index", "size", "expected"), CT_INCLUSION)
def test_ct_inclusion_vectors(index: int, size: int, expected: list[str]) -> None:
    path = _unhex(expected)
    root = bytes.fromhex(CT_ROOTS[size])
    leaf = CT_LEAF_HASHES[index]
    assert inclusion_proof(index, size, CT_LEAF_HASHES) == path
    assert assemble_proof(inclusion_proof_ranges(index, size), _ct_lookup(size)) == path
    assert verify_inclusion(leaf, index, size, path, root)
    assert ref_verify_inclusion(leaf, index, size, path, root)

    # The negative cases of CT's MerkleVerifierTest::VerifierCheck.
    empty = bytes.fromhex(CT_EMPTY_ROOT)
    for wrong_index in (index - 1, index + 1, index ^ 2):
        assert not verify_inclusion(leaf, wrong_index, size, path, root)
    for wrong_size in (size * 2, size // 2):
        assert not verify_inclusion(leaf, index, wrong_size, path, root)
    assert not verify_inclusion(leaf_hash(b"WrongLeaf"), index, size, path, root)
    assert not verify_inclusion(leaf, index, size, path, empty)
    for j in range(len(path)):
        bad = list(path)
        bad[j] = empty
        assert not verify_inclusion(leaf, index, size, bad, root)
    assert not verify_inclusion(leaf, index, size, [*path, b""], root)
    assert not verify_inclusion(leaf, index, size, [*path, root], root)
    if path:
        assert not verify_inclusion(leaf, index, size, path[:-1], root)
    assert not verify_inclusion(leaf, index, size, [b"", *path], root)
    assert not verify_inclusion(leaf, index, size, [root, *path], root)


@pytest.mark.parametrize(("first", "second", "expected"), CT_CONSISTENCY)
def test_ct_consistency_vectors(first: int, second: int, expected: list[str]) -> None:
    proof = _unhex(expected)
    root1 = bytes.fromhex(CT_ROOTS[first])
    root2 = bytes.fromhex(CT_ROOTS[second])
    assert consistency_proof(first, second, CT_LEAF_HASHES) == proof
    assert assemble_proof(consistency_proof_ranges(first, second), _ct_lookup(second)) == proof
    assert verify_consistency(first, second, proof, root1, root2)
    assert ref_verify_consistency(first, second, proof, root1, root2)
    if not proof:
        return

    # The negative cases of CT's MerkleVerifierTest::VerifierConsistencyCheck.
    empty = bytes.fromhex(CT_EMPTY_ROOT)
    wrong_root = leaf_hash(b"WrongRoot")
    for wrong_first in (first - 1, first + 1, first ^ 2):
        assert not verify_consistency(wrong_first, second, proof, root1, root2)
    for wrong_second in (second * 2, second // 2):
        assert not verify_consistency(first, wrong_second, proof, root1, root2)
    assert not verify_consistency(first, second, proof, root1, wrong_root)
    assert not verify_consistency(first, second, proof, wrong_root, root2)
    assert not verify_consistency(first, second, proof, root2, root1)
    assert not verify_consistency(first, second, [], root1, root2)
    for j in range(len(proof)):
        bad = list(proof)
        bad[j] = empty
        assert not verify_consistency(first, second, bad, root1, root2)
    assert not verify_consistency(first, second, [*proof, b""], root1, root2)
    assert not verify_consistency(first, second, [*proof, proof[-1]], root1, root2)
    assert not verify_consistency(first, second, proof[:-1], root1, root2)
    assert not verify_consistency(first, second, [b"", *proof], root1, root2)
    assert not verify_consistency(first, second, [proof[0], *proof], root1, root2)


def test_ct_degenerate_verifications() -> None:
    # CT's VerifyPath / VerifyConsistencyProof edge cases, with our conventions.
    assert not verify_inclusion(EMPTY_ROOT, 0, 0, [], EMPTY_ROOT)
    assert not verify_inclusion(EMPTY_ROOT, 1, 0, [], EMPTY_ROOT)
    assert not verify_inclusion(EMPTY_ROOT, 2, 1, [], EMPTY_ROOT)
    assert not verify_inclusion(EMPTY_ROOT, -1, 1, [], EMPTY_ROOT)
    assert verify_inclusion(EMPTY_ROOT, 0, 1, [], EMPTY_ROOT)  # leaf hash is the root

    r1 = bytes.fromhex(CT_ROOTS[1])
    r2 = bytes.fromhex(CT_ROOTS[2])
    # first == 0: no proof exists; only the empty proof and the empty root pass.
    assert verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    assert verify_consistency(0, 1, [], EMPTY_ROOT, r1)
    assert not verify_consistency(0, 1, [EMPTY_ROOT], EMPTY_ROOT, r1)
    assert not verify_consistency(0, 1, [], r1, r1)
    # first == second: the empty proof and equal roots.
    assert verify_consistency(1, 1, [], r1, r1)
    assert not verify_consistency(1, 1, [], r1, r2)
    assert not verify_consistency(1, 1, [r1], r1, r1)
    # Time travel and missing proofs.
    assert not verify_consistency(1, 0, [], r1, EMPTY_ROOT)
    assert not verify_consistency(2, 1, [], r2, r1)
    assert not verify_consistency(1, 2, [], r1, r2)
    assert not verify_consistency(-1, 2, [], r1, r2)


# ---------------------------------------------------------------------------
# Perfect-subtree addressing
# ---------------------------------------------------------------------------


def test_range_nodes_fold_to_mth_for_every_aligned_range() -> None:
    for start in range(65):
        for end in range(start, 65):
            length = end - start
            aligned = length == 0 or start % (1 << (length.bit_length() - 1)) == 0
            if not aligned:
                with pytest.raises(ValueError):
                    range_nodes(start, end)
                continue
            nodes = range_nodes(start, end)
            assert [lvl for lvl, _ in nodes] == sorted((lvl for lvl, _ in nodes), reverse=True)
            assert sum(1 << lvl for lvl, _ in nodes) == length
            got = hash_of_range([perfect_node(lvl, idx) for lvl, idx in nodes])
            assert got == ref_mth(LEAVES[start:end])


def test_range_nodes_examples() -> None:
    assert range_nodes(0, 13) == [(3, 0), (2, 2), (0, 12)]
    assert range_nodes(8, 13) == [(2, 2), (0, 12)]
    assert range_nodes(4, 5) == [(0, 4)]
    assert range_nodes(16, 32) == [(4, 1)]
    assert range_nodes(7, 7) == []
    for bad in ((-1, 2), (3, 2), (1, 3), (2, 6)):
        with pytest.raises(ValueError):
            range_nodes(*bad)


def test_proof_argument_validation() -> None:
    for index, size in ((-1, 5), (5, 5), (6, 5), (0, 0), (0, -1)):
        with pytest.raises(ValueError):
            inclusion_proof_ranges(index, size)
        with pytest.raises(ValueError):
            inclusion_proof(index, size, LEAVES)
    for first, second in ((3, 2), (-1, 2), (1, -1), (1, 0)):
        with pytest.raises(ValueError):
            consistency_proof_ranges(first, second)
        with pytest.raises(ValueError):
            consistency_proof(first, second, LEAVES)
    with pytest.raises(ValueError):
        inclusion_proof(1, 5, LEAVES[:4])  # not enough leaves for the size
    with pytest.raises(ValueError):
        consistency_proof(1, 5, LEAVES[:4])
    assert consistency_proof_ranges(0, 5) == [] == consistency_proof(0, 5, LEAVES)
    assert consistency_proof_ranges(0, 0) == []
    assert consistency_proof_ranges(5, 5) == [] == consistency_proof(5, 5, LEAVES)
    assert inclusion_proof_ranges(0, 1) == []


def test_range_examples() -> None:
    # PATH(2, D[7]) = PATH(0, D[2:4]) : MTH(D[0:2]) : MTH(D[4:7]) -> siblings leaf-first.
    assert inclusion_proof_ranges(2, 7) == [(3, 4), (0, 2), (4, 7)]
    # RFC 9162 §2.1.5 example: PROOF(3, D[7]) = [c, d, g, l] = [2,3), [3,4), [0,2), [4,7).
    assert consistency_proof_ranges(3, 7) == [(2, 3), (3, 4), (0, 2), (4, 7)]
    # PROOF(4, D[7]) = [l], the old tree being a perfect subtree; PROOF(6, D[7]) = [i, j, k].
    assert consistency_proof_ranges(4, 7) == [(4, 7)]
    assert consistency_proof_ranges(6, 7) == [(4, 6), (6, 7), (0, 4)]


# ---------------------------------------------------------------------------
# Exhaustive proofs for every tree size 1..64
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", range(1, 65))
def test_inclusion_exhaustive(size: int) -> None:
    root = PREFIX_ROOTS[size]
    assert root_from_leaf_hashes(LEAVES[:size]) == root
    lookup = lookup_for(size)
    for index in range(size):
        leaf = LEAVES[index]
        ranges = inclusion_proof_ranges(index, size)
        # O(log n) storage reads: at most two perfect nodes per tree level.
        assert len(nodes_for_ranges(ranges)) <= 2 * size.bit_length()
        path = assemble_proof(ranges, lookup)
        assert path == inclusion_proof(index, size, LEAVES)
        assert len(path) == len(directions(index, size))
        assert verify_inclusion(leaf, index, size, path, root)
        assert ref_verify_inclusion(leaf, index, size, path, root)

        for bad in tampered(path, salt=index):
            assert not verify_inclusion(leaf, index, size, bad, root)
            assert not ref_verify_inclusion(leaf, index, size, bad, root)
        assert not verify_inclusion(flip(leaf, index), index, size, path, root)
        assert not verify_inclusion(leaf, index, size, path, flip(root, index))

        # With distinct leaves, a path read at another position never verifies.
        for wrong in {index - 1, index + 1, index ^ 1, index ^ 2, size, -1} - {index}:
            assert not verify_inclusion(leaf, wrong, size, path, root)
            assert not ref_verify_inclusion(leaf, wrong, size, path, root)
        # The proof binds the leaf to the root, and the size only fixes the shape the
        # path is read with: a neighbouring size of identical shape verifies too (e.g.
        # index 0 of 3 and of 4). That is why a size is only trusted with its root.
        for wrong in (size - 1, size + 1):
            same_shape = 0 <= index < wrong and directions(index, wrong) == directions(index, size)
            assert verify_inclusion(leaf, index, wrong, path, root) == same_shape
            assert ref_verify_inclusion(leaf, index, wrong, path, root) == same_shape
        for wrong in (size * 2, size // 2):
            assert not verify_inclusion(leaf, index, wrong, path, root)


@pytest.mark.parametrize("second", range(1, 65))
def test_consistency_exhaustive(second: int) -> None:
    root2 = PREFIX_ROOTS[second]
    lookup = lookup_for(second)
    for first in range(0, second + 1):
        root1 = PREFIX_ROOTS[first]
        ranges = consistency_proof_ranges(first, second)
        assert len(nodes_for_ranges(ranges)) <= 2 * second.bit_length() + 1
        proof = assemble_proof(ranges, lookup)
        assert proof == consistency_proof(first, second, LEAVES)
        assert verify_consistency(first, second, proof, root1, root2)
        assert ref_verify_consistency(first, second, proof, root1, root2)
        if first in (0, second):
            assert proof == []
            continue
        assert proof

        for bad in tampered(proof, salt=first):
            assert not verify_consistency(first, second, bad, root1, root2)
            assert not ref_verify_consistency(first, second, bad, root1, root2)
        assert not verify_consistency(first, second, proof, flip(root1, first), root2)
        assert not verify_consistency(first, second, proof, root1, flip(root2, first))
        assert not verify_consistency(first, second, proof, root2, root1)
        assert not verify_consistency(first, second, proof[:-1], root1, root2)
        assert not verify_consistency(first, second, [*proof, proof[-1]], root1, root2)

        for wrong in {first - 1, first + 1, first ^ 2} - {first}:
            assert not verify_consistency(wrong, second, proof, root1, root2)
            assert not ref_verify_consistency(wrong, second, proof, root1, root2)
        for wrong in (second * 2, second // 2):
            assert not verify_consistency(first, wrong, proof, root1, root2)
            assert not ref_verify_consistency(first, wrong, proof, root1, root2)
        for wrong in (second - 1, second + 1):
            # As with inclusion, a size of identical proof shape may verify; the two
            # verifiers must still agree on it.
            assert verify_consistency(first, wrong, proof, root1, root2) == (
                ref_verify_consistency(first, wrong, proof, root1, root2)
            )


# ---------------------------------------------------------------------------
# Larger trees, sampled
# ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(data=st.data(), size=st.integers(min_value=65, max_value=N_MAX))
def test_inclusion_large(data: st.DataObject, size: int) -> None:
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    root = hash_of_range([perfect_node(lvl, idx) for lvl, idx in range_nodes(0, size)])
    path = assemble_proof(inclusion_proof_ranges(index, size), lookup_for(size))
    assert path == inclusion_proof(index, size, LEAVES)
    assert verify_inclusion(LEAVES[index], index, size, path, root)
    assert ref_verify_inclusion(LEAVES[index], index, size, path, root)
    bit = data.draw(st.integers(min_value=0, max_value=255))
    for j in range(len(path)):
        bad = list(path)
        bad[j] = flip(bad[j], bit)
        assert not verify_inclusion(LEAVES[index], index, size, bad, root)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), second=st.integers(min_value=65, max_value=N_MAX))
def test_consistency_large(data: st.DataObject, second: int) -> None:
    first = data.draw(st.integers(min_value=1, max_value=second))
    lookup = lookup_for(second)
    root1 = hash_of_range([lookup(lvl, idx) for lvl, idx in range_nodes(0, first)])
    root2 = hash_of_range([lookup(lvl, idx) for lvl, idx in range_nodes(0, second)])
    proof = assemble_proof(consistency_proof_ranges(first, second), lookup)
    assert proof == consistency_proof(first, second, LEAVES)
    assert verify_consistency(first, second, proof, root1, root2)
    assert ref_verify_consistency(first, second, proof, root1, root2)
    bit = data.draw(st.integers(min_value=0, max_value=255))
    for j in range(len(proof)):
        bad = list(proof)
        bad[j] = flip(bad[j], bit)
        assert not verify_consistency(first, second, bad, root1, root2)


# ---------------------------------------------------------------------------
# CompactRange
# ---------------------------------------------------------------------------


def perfect_nodes_inside(n: int) -> set[tuple[int, int]]:
    """Every perfect node of level >= 1 lying entirely within [0, n)."""
    return {(lvl, idx) for lvl in range(1, n.bit_length()) for idx in range(n >> lvl)}


@settings(max_examples=40, deadline=None)
@given(leaves=st.lists(st.binary(min_size=32, max_size=32), max_size=80))
def test_compact_range_random_leaves(leaves: list[bytes]) -> None:
    cr = CompactRange()
    emitted: list[tuple[int, int]] = []
    for n, h in enumerate(leaves, start=1):
        for level, idx, node in cr.append(h):
            assert level >= 1
            assert node == ref_mth(leaves[idx << level : (idx + 1) << level])
            emitted.append((level, idx))
        assert cr.size == n
        assert len(cr.hashes) == n.bit_count()
        assert cr.root() == root_from_leaf_hashes(leaves[:n])
    assert len(emitted) == len(set(emitted))  # each node is reported once
    assert set(emitted) == perfect_nodes_inside(len(leaves))


def test_compact_range_large_and_restore() -> None:
    cr = CompactRange()
    emitted: dict[tuple[int, int], bytes] = {}
    for n, h in enumerate(LEAVES, start=1):
        for level, idx, node in cr.append(h):
            assert (level, idx) not in emitted
            emitted[(level, idx)] = node
        if n <= 64:
            assert cr.root() == PREFIX_ROOTS[n]
        # The frontier is exactly the decomposition storage would look up.
        assert cr.hashes == [perfect_node(lvl, idx) for lvl, idx in range_nodes(0, n)]
    assert cr.root() == root_from_leaf_hashes(LEAVES)
    assert set(emitted) == perfect_nodes_inside(N_MAX)
    assert all(node == perfect_node(lvl, idx) for (lvl, idx), node in emitted.items())

    # Restoring from stored nodes and carrying on matches never having stopped.
    for size in (0, 1, 5, 64, 100, 511):
        restored = CompactRange(size, [perfect_node(lvl, idx) for lvl, idx in range_nodes(0, size)])
        for h in LEAVES[size : size + 40]:
            restored.append(h)
        assert restored.root() == ref_mth(LEAVES[: size + 40])


def test_compact_range_validation() -> None:
    h = LEAVES[0]
    assert CompactRange().size == 0
    assert CompactRange().root() == EMPTY_ROOT
    with pytest.raises(ValueError):
        CompactRange(-1)
    with pytest.raises(ValueError):
        CompactRange(3, [h])  # popcount(3) == 2
    with pytest.raises(ValueError):
        CompactRange(1)
    with pytest.raises(ValueError):
        CompactRange(0, [h])
    with pytest.raises(ValueError):
        CompactRange(1, [b"short"])
    with pytest.raises(ValueError):
        CompactRange().append(b"short")
    # The constructor copies: mutating the caller's list does not alter the range.
    hashes = [h, LEAVES[1]]
    cr = CompactRange(3, hashes)
    hashes.clear()
    assert cr.root() == node_hash(h, LEAVES[1])
