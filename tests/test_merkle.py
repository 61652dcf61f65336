"""RFC 6962 Merkle trees (crypto/merkle.py): the published test vectors, and properties against
an independent reference written here with plain `hashlib`, straight from the RFC's recursion.

The vectors are Certificate Transparency's (the RFC 6962 reference implementation's tests):
a log that no other implementation agrees with proves nothing to anyone.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    ProofError,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

CT_LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f")]
CT_ROOTS = [bytes.fromhex(h) for h in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")]
# (leaf index, tree size, audit path); indexes from 0 (the CT sources count from 1)
CT_INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (0, 1, []),
]
CT_CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]


# -- the reference: RFC 6962 section 2.1, literally ---------------------------------------------
def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(data: list[bytes]) -> bytes:
    if not data:
        return _sha(b"")
    if len(data) == 1:
        return _sha(b"\x00" + data[0])
    k = _k(len(data))
    return _sha(b"\x01" + mth(data[:k]) + mth(data[k:]))


def path(m: int, data: list[bytes]) -> list[bytes]:
    if len(data) == 1:
        return []
    k = _k(len(data))
    if m < k:
        return [*path(m, data[:k]), mth(data[k:])]
    return [*path(m - k, data[k:]), mth(data[:k])]


def proof(m: int, data: list[bytes]) -> list[bytes]:
    def subproof(m: int, data: list[bytes], whole: bool) -> list[bytes]:
        if m == len(data):
            return [] if whole else [mth(data)]
        k = _k(len(data))
        if m <= k:
            return [*subproof(m, data[:k], whole), mth(data[k:])]
        return [*subproof(m - k, data[k:], False), mth(data[:k])]
    return subproof(m, data, True)


def tree_of(data: list[bytes]) -> MerkleTree:
    return MerkleTree(leaf_hash(d) for d in data)


# -- the published vectors ----------------------------------------------------------------------
def test_the_roots_of_the_rfc_6962_vectors() -> None:
    tree = MerkleTree()
    assert tree.root() == EMPTY_ROOT == CT_ROOTS[0]
    for size, data in enumerate(CT_LEAVES, start=1):
        tree.append(leaf_hash(data))
        assert tree.root() == CT_ROOTS[size]
    assert [tree.root(size) for size in range(9)] == CT_ROOTS  # every earlier size, afterwards


@pytest.mark.parametrize(("index", "size", "expected"), CT_INCLUSION)
def test_the_inclusion_proofs_of_the_vectors(index: int, size: int, expected: list[str]) -> None:
    tree = tree_of(CT_LEAVES)
    audit_path = tree.inclusion_proof(index, size)
    assert [h.hex() for h in audit_path] == expected
    assert verify_inclusion(leaf_hash(CT_LEAVES[index]), index, size, audit_path, CT_ROOTS[size])
    assert not verify_inclusion(leaf_hash(CT_LEAVES[index]), index, size, audit_path,
                                CT_ROOTS[size - 1])


@pytest.mark.parametrize(("first", "second", "expected"), CT_CONSISTENCY)
def test_the_consistency_proofs_of_the_vectors(first: int, second: int, expected: list[str]
                                               ) -> None:
    tree = tree_of(CT_LEAVES)
    hashes = tree.consistency_proof(first, second)
    assert [h.hex() for h in hashes] == expected
    assert verify_consistency(first, CT_ROOTS[first], second, CT_ROOTS[second], hashes)


# -- properties against the reference -----------------------------------------------------------
leaves = st.lists(st.binary(max_size=12), min_size=1, max_size=70)


@settings(max_examples=150, deadline=None)
@given(leaves, st.data())
def test_roots_and_proofs_agree_with_the_rfc_for_every_size(data: list[bytes],
                                                            draw: st.DataObject) -> None:
    tree = tree_of(data)
    size = draw.draw(st.integers(1, len(data)))
    index = draw.draw(st.integers(0, size - 1))
    first = draw.draw(st.integers(1, size))
    assert tree.root(size) == mth(data[:size])
    assert tree.inclusion_proof(index, size) == path(index, data[:size])
    assert tree.consistency_proof(first, size) == proof(first, data[:size])


@settings(max_examples=150, deadline=None)
@given(leaves, st.data())
def test_proofs_verify_and_any_change_is_caught(data: list[bytes], draw: st.DataObject) -> None:
    tree = tree_of(data)
    size = draw.draw(st.integers(1, len(data)))
    index = draw.draw(st.integers(0, size - 1))
    root, leaf = tree.root(size), tree.leaf(index)
    audit_path = tree.inclusion_proof(index, size)
    assert verify_inclusion(leaf, index, size, audit_path, root)
    # another leaf, another position, another size, or a changed hash of the path: refused
    assert not verify_inclusion(leaf_hash(b"not in the log"), index, size, audit_path, root)
    if size > 1:
        other = draw.draw(st.integers(0, size - 1).filter(lambda i: i != index))
        assert not verify_inclusion(leaf, other, size, audit_path, root) or \
            tree.leaf(other) == leaf
    if audit_path:
        bent = draw.draw(st.integers(0, len(audit_path) - 1))
        changed = [*audit_path]
        changed[bent] = bytes([changed[bent][0] ^ 1]) + changed[bent][1:]
        assert not verify_inclusion(leaf, index, size, changed, root)
        assert not verify_inclusion(leaf, index, size, audit_path[:-1], root)
    assert not verify_inclusion(leaf, index, size, audit_path, bytes(32))


@settings(max_examples=150, deadline=None)
@given(leaves, st.data())
def test_a_forked_history_is_not_consistent(data: list[bytes], draw: st.DataObject) -> None:
    """Two heads that do not extend each other: a change to any leaf before the first size
    makes every proof between them fail."""
    second = draw.draw(st.integers(1, len(data)))
    first = draw.draw(st.integers(1, second))
    honest = tree_of(data)
    hashes = honest.consistency_proof(first, second)
    assert verify_consistency(first, honest.root(first), second, honest.root(second), hashes)
    changed = draw.draw(st.integers(0, first - 1))
    forked = tree_of([*data[:changed], data[changed] + b"!", *data[changed + 1:]])
    assert not verify_consistency(first, honest.root(first), second, forked.root(second),
                                  forked.consistency_proof(first, second))
    assert not verify_consistency(first, honest.root(first), second, forked.root(second),
                                  hashes)


def test_sizes_and_indexes_out_of_range_are_refused() -> None:
    tree = tree_of(CT_LEAVES)
    with pytest.raises(ProofError):
        tree.root(9)
    with pytest.raises(ProofError):
        tree.inclusion_proof(8, 8)
    with pytest.raises(ProofError):
        tree.consistency_proof(5, 4)
    assert not verify_inclusion(tree.leaf(0), 8, 8, [], CT_ROOTS[8])
    assert not verify_consistency(5, CT_ROOTS[5], 4, CT_ROOTS[4], [])
    assert not verify_consistency(3, CT_ROOTS[3], 8, CT_ROOTS[8], [])  # a proof is required
    assert verify_consistency(0, EMPTY_ROOT, 8, CT_ROOTS[8], [])
    with pytest.raises(ValueError):
        tree.append(b"short")


def test_proofs_at_a_million_leaves_are_a_few_dozen_hashes() -> None:
    """Small proofs (log n hashes) at the sizes the benchmark uses."""
    tree = MerkleTree(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(1 << 20))
    size = len(tree)
    assert len(tree.inclusion_proof(123_457, size)) == 20
    assert len(tree.consistency_proof(999_999, size)) <= 2 * 20
    assert verify_inclusion(tree.leaf(123_457), 123_457, size, tree.inclusion_proof(123_457),
                            tree.root())


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.binary(max_size=4), max_size=40), max_size=6))
def test_extending_in_bulk_is_appending_one_by_one(batches: list[list[bytes]]) -> None:
    one_by_one, bulk = MerkleTree(), MerkleTree()
    for batch in batches:
        hashes = [leaf_hash(data) for data in batch]
        for h in hashes:
            one_by_one.append(h)
        bulk.extend(b"".join(hashes))
        assert len(bulk) == len(one_by_one)
        assert [bulk.root(n) for n in range(len(bulk) + 1)] == [
            one_by_one.root(n) for n in range(len(one_by_one) + 1)]
    with pytest.raises(ValueError):
        bulk.extend(b"\x00" * 31)
