"""RFC 6962 (Certificate Transparency) Merkle trees: hashes, proofs and their verification.

    leaf hash  = SHA-256(0x00 || leaf bytes)
    node hash  = SHA-256(0x01 || left || right)
    MTH({})    = SHA-256("")
    MTH(D[n])  = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two below n

`MerkleTree` keeps the hash of every complete, aligned subtree (level 0: the leaf hashes), so a
root, an inclusion proof or a consistency proof for any earlier size costs O(log n) look-ups,
whatever the number of leaves. The verifiers (`verify_inclusion`, `verify_consistency`) are the
algorithms of RFC 9162 section 2.1.3.2 and 2.1.4.2: they need only the hashes and the sizes, so
an auditor can check a proof without the tree, the database or any key.

Knows nothing of events: the ledger decides what a leaf's bytes are.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A proof was asked for sizes or an index the tree cannot prove (out of range)."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only tree of leaf hashes, with every complete subtree's hash kept."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        # One flat bytearray of 32-byte hashes per level: a million leaves cost 64 MB with
        # their subtrees, not the ~200 MB of a bytes object per hash.
        self._levels: list[bytearray] = [bytearray()]
        for leaf in leaf_hashes:
            self.append(leaf)

    def __len__(self) -> int:
        return len(self._levels[0]) // HASH_SIZE

    def append(self, leaf: bytes) -> int:
        """Add a leaf hash; returns its index. Completes every subtree it closes."""
        if len(leaf) != HASH_SIZE:
            raise ValueError("a leaf hash is 32 bytes")
        index = len(self)
        self._levels[0] += leaf
        level, position, current = 0, index, leaf
        while position % 2 == 1:  # this leaf closed a subtree: its parent is complete too
            current = node_hash(self._hash(level, position - 1), current)
            level, position = level + 1, position // 2
            if len(self._levels) == level:
                self._levels.append(bytearray())
            self._levels[level] += current
        return index

    def extend(self, leaf_hashes: bytes | bytearray) -> None:
        """Add many leaf hashes at once (32 bytes each, concatenated): each level's new complete
        subtrees are hashed in one pass, about twice as fast as appending one by one."""
        if len(leaf_hashes) % HASH_SIZE:
            raise ValueError("leaf hashes are 32 bytes each")
        self._levels[0] += leaf_hashes
        level = 0
        while len(self._levels[level]) >= 2 * HASH_SIZE:
            if len(self._levels) == level + 1:
                self._levels.append(bytearray())
            below, above = memoryview(self._levels[level]), self._levels[level + 1]
            have, complete = len(above) // HASH_SIZE, len(below) // (2 * HASH_SIZE)
            if have == complete:
                break  # nothing new closed here, so nothing above either
            sha256 = hashlib.sha256
            above += b"".join(sha256(b"\x01" + below[2 * HASH_SIZE * i:2 * HASH_SIZE * (i + 1)])
                              .digest() for i in range(have, complete))
            below.release()
            level += 1

    def leaf(self, index: int) -> bytes:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._hash(0, index)

    def _hash(self, level: int, index: int) -> bytes:
        start = index * HASH_SIZE
        return bytes(self._levels[level][start:start + HASH_SIZE])

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first `size` leaves (all of them by default)."""
        size = len(self) if size is None else size
        if not 0 <= size <= len(self):
            raise ProofError(f"no tree of size {size}: the tree has {len(self)} leaves")
        return EMPTY_ROOT if size == 0 else self._range(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 6962 PATH(index, D[size]): the audit path of one leaf in the tree of `size`."""
        size = len(self) if size is None else size
        if not 0 <= index < size <= len(self):
            raise ProofError(f"no leaf {index} in a tree of size {size}")
        path: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            k = _split(end - start)
            if index < start + k:
                path.append(self._range(start + k, end))
                end = start + k
            else:
                path.append(self._range(start, start + k))
                start += k
        path.reverse()  # from the leaf up
        return path

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        """RFC 6962 PROOF(first, D[second]): that the tree of `first` leaves is a prefix of the
        tree of `second` leaves. Empty when first is 0 or equal to second."""
        second = len(self) if second is None else second
        if not 0 <= first <= second <= len(self):
            raise ProofError(f"no consistency between sizes {first} and {second}")
        if first == 0 or first == second:
            return []
        path: list[bytes] = []
        start, end, whole = 0, second, True
        while end - start != first - start or not whole:
            if end - start == first - start:  # SUBPROOF(m, D[m], false)
                path.append(self._range(start, end))
                break
            k = _split(end - start)
            if first - start <= k:
                path.append(self._range(start + k, end))
                end = start + k
            else:
                path.append(self._range(start, start + k))
                start, whole = start + k, False
        path.reverse()
        return path

    def _range(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range the RFC's recursion produces: `start` is aligned to
        the largest power of two that fits, so the left part is always a stored subtree."""
        n = end - start
        if n & (n - 1) == 0:  # complete and aligned: stored
            level = n.bit_length() - 1
            return self._hash(level, start >> level)
        k = _split(n)
        return node_hash(self._range(start, start + k), self._range(start + k, end))


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes],
                     root: bytes) -> bool:
    """RFC 9162 2.1.3.2: whether `leaf` (a leaf hash) is at `index` of the tree of `size`
    leaves whose root is `root`."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and hmac.compare_digest(r, root)


def verify_consistency(first: int, first_root: bytes, second: int, second_root: bytes,
                       path: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2: whether the tree of `second` leaves (root `second_root`) extends the
    tree of `first` leaves (root `first_root`)."""
    if not 0 <= first <= second:
        return False
    if first == second:
        return not path and hmac.compare_digest(first_root, second_root)
    if first == 0:
        return not path  # the empty tree is a prefix of every tree
    if not path:
        return False
    hashes = list(path)
    if first & (first - 1) == 0:
        hashes.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = hashes[0]
    for c in hashes[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and hmac.compare_digest(fr, first_root) and hmac.compare_digest(
        sr, second_root)
