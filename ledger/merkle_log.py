"""The tamper-evident log (LED-2): an RFC 6962 Merkle tree over every stored event.

A leaf is the stored record as it rests, sealed: no key is needed to verify, and an erasure
(which destroys a key, never a row) changes no leaf. The leaf's bytes, big-endian:

    u8  length of the application name, then the name (UTF-8)     "ledger"
    u64 the event's notification id (its position in the log)
    16  the stream id (the UUID's 16 bytes)
    u64 the stream version
    u16 length of the topic, then the topic (UTF-8)
    u32 length of the stored state, then the state (the sealed bytes, as stored)

and the tree is RFC 6962's over those leaves in notification order (crypto/merkle.py), so
another implementation can recompute it from the rows alone (docs/merkle-log.md).

Leaves are appended by a sealer that follows the log after events commit (`MerkleLog.seal`),
not inside the library's insert transaction: an event is unsealed for at most the interval
between two seals (and a tree head is only ever signed over sealed events). Notification ids
can have gaps (an insert that failed after taking an id); a gap is simply not a leaf, and
because each leaf carries its notification id, a sealed event that later goes missing can never
pass for a gap: the verifier names it "missing".

Signed tree heads (size, root, time) are Ed25519 signatures by the ledger's key; each is kept,
so the verifier checks the whole chain: every head's signature, and that each head's tree is a
prefix of the next one's.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from crypto.merkle import HASH_SIZE, MerkleTree
from crypto.signing import LedgerPublicKey, LedgerSigner
from crypto.sql import Cursor, Database

LOG_NAME = "student-records-ledger"
APPEND_ONLY = "the Merkle log is append-only: leaves and heads are never changed"
HEAD_VERSION = 1
_PAGE = 10_000
_HEADER = struct.Struct(">Q16sQ")
_LENGTH = struct.Struct(">I")
_ID = struct.Struct(">Q")


def event_leaf(application: str, notification_id: int, stream_id: bytes, version: int,
               topic: str, state: bytes) -> bytes:
    """The leaf's bytes for one stored event (the layout is in the module docstring)."""
    app, topic_bytes = application.encode(), topic.encode()
    return b"".join((bytes((len(app),)), app,
                     _HEADER.pack(notification_id, stream_id, version),
                     struct.pack(">H", len(topic_bytes)), topic_bytes,
                     struct.pack(">I", len(state)), state))


@dataclass(frozen=True)
class TreeHead:
    """A signed statement: the log's first `tree_size` events have this root, at this time."""

    tree_size: int
    root_hash: bytes
    signed_at: datetime
    signature: bytes = b""

    def message(self) -> bytes:
        """The signed bytes: the log's name, the head's version, size, root and time."""
        return (f"{LOG_NAME} tree head v{HEAD_VERSION}\n{self.tree_size}\n"
                f"{self.root_hash.hex()}\n{_time_text(self.signed_at)}\n").encode()

    def verify(self, public_key: LedgerPublicKey) -> bool:
        return public_key.verify(self.message(), self.signature)

    def to_dict(self) -> dict[str, Any]:
        return {"log": LOG_NAME, "version": HEAD_VERSION, "tree_size": self.tree_size,
                "root_hash": self.root_hash.hex(), "signed_at": _time_text(self.signed_at),
                "signature": base64.b64encode(self.signature).decode()}

    @classmethod
    def from_dict(cls, d: Any) -> TreeHead:
        """A head from its JSON form; ValueError for anything malformed."""
        try:
            if d["log"] != LOG_NAME or d["version"] != HEAD_VERSION:
                raise ValueError("not a tree head of this ledger")
            size, root = d["tree_size"], bytes.fromhex(d["root_hash"])
            signed_at = datetime.fromisoformat(d["signed_at"])
            signature = base64.b64decode(d["signature"], validate=True)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"a malformed tree head: {type(error).__name__}") from None
        if type(size) is not int or size < 0 or len(root) != 32 or signed_at.tzinfo is None:
            raise ValueError("a malformed tree head")
        return cls(size, root, signed_at, signature)


Failure = Literal["changed", "missing", "inserted", "reordered", "unsigned", "forked"]


@dataclass(frozen=True)
class Discrepancy:
    """The first place the stored log and what was signed disagree."""

    position: int  # the leaf index in the tree (0-based)
    how: Failure
    detail: str


@dataclass(frozen=True)
class Verification:
    events: int  # stored events read
    head: TreeHead | None  # the head checked against
    unsealed: int  # stored events after the last sealed leaf (not yet covered by any head)
    discrepancy: Discrepancy | None

    @property
    def ok(self) -> bool:
        return self.discrepancy is None


class MerkleLog:
    """Seals the ledger's stored events into the tree; signs heads; proves; verifies.

    `db` is the events database (the leaves rest beside the events they cover)."""

    def __init__(self, db: Database, events_table: str, application: str = "ledger",
                 signer: LedgerSigner | None = None) -> None:
        self.db = db
        self.events_table = events_table
        self.application = application
        self.signer = signer
        self._tree = MerkleTree()
        self._topics: dict[bytes, bytes] = {}  # a topic's bytes -> length-prefixed
        self._streams: dict[str | bytes, bytes] = {}  # a stored stream id -> its 16 bytes
        self._events_found = False
        self._create_tables()

    # -- sealing and signing ------------------------------------------------------------------
    def seal(self) -> int:
        """Append a leaf for every stored event not yet sealed; returns how many were added.
        The new events are read and hashed outside any write transaction; the run of leaves
        is then written in one short one (one row), so writers of events barely wait. Safe
        beside other sealers: a run is written only if no other came first."""
        added = 0
        while True:
            with self.db.transaction(write=False) as cur:
                end = self._sealed_end(cur)
                rows = self._rows(cur, end[1], _PAGE)
            if not rows:
                return added
            ids = [int(row[0]) for row in rows]
            run = (end[0], ids[0], ids[-1], len(ids), struct.pack(f">{len(ids)}Q", *ids),
                   self._leaves_of(rows))
            with self.db.transaction() as cur:
                self._lock(cur)
                if self._sealed_end(cur) != end:
                    continue  # another sealer sealed these meanwhile: read again
                cur.execute("INSERT INTO merkle_leaf_runs (first_position, first_id, last_id,"
                            " leaves, notification_ids, leaf_hashes) VALUES (?, ?, ?, ?, ?, ?)",
                            run)
            added += len(ids)
            if len(rows) < _PAGE:
                return added

    def sealed_through(self) -> int:
        """The notification id of the last sealed event (0: none yet)."""
        with self.db.transaction(write=False) as cur:
            return self._sealed_end(cur)[1]

    def _sealed_end(self, cur: Cursor) -> tuple[int, int]:
        """(the next leaf's position, the last sealed notification id)."""
        cur.execute("SELECT first_position + leaves, last_id FROM merkle_leaf_runs"
                    " ORDER BY first_position DESC LIMIT 1")
        row = cur.fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def sign_head(self, at: datetime | None = None) -> TreeHead:
        """Seal what is stored, then sign the tree as it stands (kept in the chain of heads)."""
        if self.signer is None:
            raise RuntimeError("this ledger has no signing key")
        self.seal()
        tree = self.tree()
        unsigned = TreeHead(len(tree), tree.root(), (at or datetime.now(UTC)).astimezone(UTC))
        head = TreeHead(unsigned.tree_size, unsigned.root_hash, unsigned.signed_at,
                        self.signer.sign(unsigned.message()))
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO merkle_tree_heads (tree_size, root_hash, signed_at,"
                        " signature) VALUES (?, ?, ?, ?) ON CONFLICT (tree_size) DO NOTHING",
                        (head.tree_size, head.root_hash, _time_text(head.signed_at),
                         head.signature))
        return head

    def heads(self) -> list[TreeHead]:
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT tree_size, root_hash, signed_at, signature FROM"
                        " merkle_tree_heads ORDER BY tree_size")
            return [_head(row) for row in cur.fetchall()]

    def head(self, tree_size: int | None = None) -> TreeHead | None:
        """The signed head of that size, or the latest one; None if there is none."""
        with self.db.transaction(write=False) as cur:
            if tree_size is None:
                cur.execute("SELECT tree_size, root_hash, signed_at, signature FROM"
                            " merkle_tree_heads ORDER BY tree_size DESC LIMIT 1")
            else:
                cur.execute("SELECT tree_size, root_hash, signed_at, signature FROM"
                            " merkle_tree_heads WHERE tree_size = ?", (tree_size,))
            row = cur.fetchone()
        return None if row is None else _head(row)

    # -- the tree and its proofs --------------------------------------------------------------
    def tree(self) -> MerkleTree:
        """The sealed tree, kept in memory and extended from the leaves sealed since."""
        self._tree.extend(self._sealed_leaves(len(self._tree)))
        return self._tree

    def position_of(self, notification_id: int) -> int | None:
        """The leaf position of a sealed event; None if it is not sealed."""
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT first_position, notification_ids FROM merkle_leaf_runs"
                        " WHERE first_id <= ? AND last_id >= ? ORDER BY first_id DESC LIMIT 1",
                        (notification_id, notification_id))
            row = cur.fetchone()
        if row is None:
            return None
        ids = bytes(row[1])
        low, high = 0, len(ids) // 8
        while low < high:  # the run's ids ascend: a binary search over the packed u64s
            middle = (low + high) // 2
            if _ID.unpack_from(ids, 8 * middle)[0] < notification_id:
                low = middle + 1
            else:
                high = middle
        if low * 8 < len(ids) and _ID.unpack_from(ids, 8 * low)[0] == notification_id:
            return int(row[0]) + low
        return None

    # -- verification -------------------------------------------------------------------------
    def verify(self, public_key: LedgerPublicKey, head: TreeHead | None = None
               ) -> Verification:
        """Recompute the tree from the stored events and check it against every signed head
        (and `head`, if given: one an auditor kept). Needs no data key. The first discrepancy
        is named by its position and how it fails."""
        heads = self.heads()
        if head is not None and head not in heads:
            heads = sorted([*heads, head], key=lambda h: h.tree_size)
        target = head or (heads[-1] if heads else None)
        stored_leaves = bytearray()
        for rows in self._all_pages():
            stored_leaves += self._leaves_of(rows)
        sealed_leaves = self._sealed_leaves()
        stored = MerkleTree()
        stored.extend(stored_leaves)
        intact = stored_leaves.startswith(sealed_leaves)
        sealed = stored  # the usual case: the sealed tree is a prefix of the stored one
        if not intact:
            sealed = MerkleTree()
            sealed.extend(sealed_leaves)
        discrepancy = self._check_heads(heads, stored, sealed, public_key)
        if discrepancy is None and not intact:
            discrepancy = self._first_difference()  # in the sealed tail no head covers yet
        unsealed = max(0, len(stored) - len(sealed_leaves) // HASH_SIZE)
        return Verification(len(stored), target, unsealed, discrepancy)

    def _check_heads(self, heads: list[TreeHead], stored: MerkleTree, sealed: MerkleTree,
                     key: LedgerPublicKey) -> Discrepancy | None:
        verified = 0  # the size up to which the stored events match a signed head
        for head in heads:
            if not head.verify(key):
                return Discrepancy(head.tree_size, "unsigned", f"the tree head of size"
                                   f" {head.tree_size} is not signed by the ledger's key")
            if head.tree_size <= len(stored) and stored.root(head.tree_size) == head.root_hash:
                verified = head.tree_size
                continue
            if head.tree_size <= len(sealed) and sealed.root(head.tree_size) == head.root_hash:
                # the sealed leaves still match what was signed: they say where and how
                found = self._first_difference()
                if found is not None:
                    return found
            return Discrepancy(verified, "forked", f"the stored events do not give the root"
                               f" signed for size {head.tree_size} (they match up to size"
                               f" {verified})")
        return None

    def _first_difference(self) -> Discrepancy | None:
        """Walk the sealed leaves and the stored events side by side, in notification order."""
        stored_rows = self._all_rows()
        row = next(stored_rows, None)
        for position, (notification_id, leaf) in enumerate(self._sealed()):
            if row is None or int(row[0]) > notification_id:
                return Discrepancy(position, "missing", f"the event sealed at notification id"
                                   f" {notification_id} is not stored")
            if int(row[0]) < notification_id:
                return Discrepancy(position, "inserted", f"notification id {int(row[0])} was"
                                   " never sealed")
            if self._leaf_of(row) != leaf:
                return self._classify(position, row, stored_rows)
            row = next(stored_rows, None)
        return None

    def _classify(self, position: int, row: Any, later_rows: Iterator[Any]) -> Discrepancy:
        """The event stored at the sealed position's notification id is not the one sealed
        there: another sealed event moved here (reordered, or the rest renumbered after a
        deletion), a new event pushed the sealed one down (inserted), or it was changed."""
        notification_id = int(row[0])
        sealed = list(self._sealed())  # once, at the first failure
        expected = sealed[position][1]
        source = next((at for at, (other_id, leaf) in enumerate(sealed)
                       if at != position and self._relabelled(row, other_id) == leaf), None)
        following = next(later_rows, None)
        if source is None:
            if following is not None and self._relabelled(following, notification_id) == \
                    expected:
                return Discrepancy(position, "inserted", f"an event never sealed sits at"
                                   f" notification id {notification_id}, before the one"
                                   " sealed there")
            return Discrepancy(position, "changed", f"notification id {notification_id}"
                               " differs from what was sealed")
        moved_here = self._raw_row(sealed[source][0])
        if moved_here is not None and self._relabelled(moved_here, notification_id) == expected:
            return Discrepancy(position, "reordered", f"notification id {notification_id}"
                               f" holds the event sealed at position {source}, and the other"
                               " way round")
        return Discrepancy(position, "missing", f"the event sealed at notification id"
                           f" {notification_id} is gone; the ones after it were moved up")

    def _relabelled(self, row: Any, notification_id: int) -> bytes:
        """The leaf the stored content of `row` would have at another notification id."""
        return self._leaf_of((notification_id, *row[1:]))

    def stored_event(self, notification_id: int) -> tuple[int, bytes, int, str, bytes] | None:
        """The stored row at `notification_id`: (id, stream id's 16 bytes, version, topic,
        sealed state), or None if nothing is stored there."""
        row = self._raw_row(notification_id)
        if row is None:
            return None
        _, stream, version, topic, state = row
        return notification_id, _stream_bytes(stream), int(version), \
            bytes(topic).decode("utf-8", "replace"), bytes(state)

    def _raw_row(self, notification_id: int) -> Any:
        with self.db.transaction(write=False) as cur:
            rows = self._rows(cur, notification_id - 1, 1)
        return rows[0] if rows and int(rows[0][0]) == notification_id else None

    def _sealed(self) -> Iterator[tuple[int, bytes]]:
        """(notification id, leaf hash) of each sealed leaf, in position order."""
        for _, ids, hashes in self._runs(0):
            for i, notification_id in enumerate(struct.unpack(f">{len(ids) // 8}Q", ids)):
                yield notification_id, hashes[HASH_SIZE * i:HASH_SIZE * (i + 1)]

    def _runs(self, start: int) -> Iterator[tuple[int, bytes, bytes]]:
        """(first position, packed notification ids, leaf hashes) of each run of sealed
        leaves from position `start` (a run's first) on."""
        while True:
            with self.db.transaction(write=False) as cur:
                cur.execute("SELECT first_position, notification_ids, leaf_hashes FROM"
                            " merkle_leaf_runs WHERE first_position >= ? ORDER BY"
                            " first_position LIMIT 50", (start,))
                rows = cur.fetchall()
            for row in rows:
                yield int(row[0]), bytes(row[1]), bytes(row[2])
            if len(rows) < 50:
                return
            start = int(rows[-1][0]) + 1

    # -- the stored events --------------------------------------------------------------------
    def _leaf_of(self, row: Any) -> bytes:
        """A stored row (notification id, stream id, version, topic, state) -> leaf hash."""
        return bytes(self._leaves_of([row]))

    def _leaves_of(self, rows: list[Any]) -> bytes:
        """The leaf hashes of stored rows, concatenated: `event_leaf` unrolled, because
        verification runs it for every event of the log."""
        sha256, header, length = hashlib.sha256, _HEADER.pack, _LENGTH.pack
        prefix = b"\x00" + bytes((len(self.application),)) + self.application.encode()
        topics, streams = self._topics, self._streams
        hashes = []
        for notification_id, stream, version, topic, state in rows:
            stream_bytes = streams.get(stream)
            if stream_bytes is None:  # a stream's events sit close together: look up once
                stream_bytes = _stream_bytes(stream)
                if len(streams) > 4096:
                    streams.clear()
                streams[stream] = stream_bytes
            topic_bytes = topics.get(topic)
            if topic_bytes is None:
                topic_bytes = topics[topic] = struct.pack(">H", len(topic)) + bytes(topic)
            hashes.append(sha256(prefix + header(notification_id, stream_bytes, version)
                                 + topic_bytes + length(len(state)) + state).digest())
        return b"".join(hashes)

    def _rows(self, cur: Cursor, after: int, limit: int) -> list[Any]:
        if not self._events_exist(cur):
            return []  # a fresh store: the ledger has not made its table yet
        if self.db.backend == "sqlite":
            # As bytes, whatever a tampered row's storage class: verify must report, not crash.
            cur.execute("SELECT rowid, CAST(originator_id AS TEXT), CAST(originator_version AS"
                        " INTEGER), CAST(topic AS BLOB), CAST(state AS BLOB)"
                        f" FROM {self.events_table} WHERE rowid > ? ORDER BY rowid LIMIT ?",
                        (after, limit))
        else:
            cur.execute("SELECT notification_id, uuid_send(originator_id), originator_version,"
                        f" convert_to(topic, 'UTF8'), state FROM {self.events_table}"
                        " WHERE notification_id > ? ORDER BY notification_id LIMIT ?",
                        (after, limit))
        return list(cur.fetchall())

    def _all_pages(self) -> Iterator[list[Any]]:
        after = 0
        while True:
            with self.db.transaction(write=False) as cur:
                rows = self._rows(cur, after, _PAGE)
            if rows:
                yield rows
            if len(rows) < _PAGE:
                return
            after = int(rows[-1][0])

    def _all_rows(self) -> Iterator[Any]:
        for rows in self._all_pages():
            yield from rows

    def _sealed_leaves(self, start: int = 0) -> bytes:
        """The sealed leaf hashes from position `start` (a run's first) on, concatenated."""
        return b"".join(hashes for _, _, hashes in self._runs(start))

    def _events_exist(self, cur: Cursor) -> bool:
        if not self._events_found:
            if self.db.backend == "sqlite":
                cur.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                            (self.events_table,))
            else:
                cur.execute("SELECT to_regclass(?)", (self.events_table,))
            row = cur.fetchone()
            self._events_found = row is not None and row[0] is not None
        return self._events_found

    # -- storage ------------------------------------------------------------------------------
    def _lock(self, cur: Cursor) -> None:
        if self.db.backend == "postgres":  # SQLite: the write transaction is the lock
            cur.execute("SELECT pg_advisory_xact_lock(6962)")

    def _create_tables(self) -> None:
        blob = "BLOB" if self.db.backend == "sqlite" else "BYTEA"
        with self.db.transaction() as cur:
            self._lock(cur)
            # One row per run of leaves a seal adds (up to 10,000): one insert per seal, not
            # one per event. Positions and notification ids both ascend.
            cur.execute("CREATE TABLE IF NOT EXISTS merkle_leaf_runs (first_position BIGINT"
                        " PRIMARY KEY, first_id BIGINT NOT NULL UNIQUE, last_id BIGINT NOT NULL,"
                        f" leaves INTEGER NOT NULL, notification_ids {blob} NOT NULL,"
                        f" leaf_hashes {blob} NOT NULL)")
            cur.execute("CREATE TABLE IF NOT EXISTS merkle_tree_heads (tree_size BIGINT"
                        f" PRIMARY KEY, root_hash {blob} NOT NULL, signed_at TEXT NOT NULL,"
                        f" signature {blob} NOT NULL)")
            for table in ("merkle_leaf_runs", "merkle_tree_heads"):  # append-only, as events
                if self.db.backend == "sqlite":
                    for verb in ("UPDATE", "DELETE"):
                        cur.execute(f"CREATE TRIGGER IF NOT EXISTS {table}_no_{verb.lower()}"
                                    f" BEFORE {verb} ON {table} BEGIN SELECT RAISE(ABORT,"
                                    f" '{APPEND_ONLY}'); END")
                else:
                    cur.execute("CREATE OR REPLACE FUNCTION merkle_refuse_change() RETURNS"
                                " trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION"
                                f" '{APPEND_ONLY}' USING ERRCODE = 'insufficient_privilege';"
                                " END $$")
                    cur.execute(f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE"
                                f" OR DELETE ON {table} FOR EACH ROW EXECUTE FUNCTION"
                                " merkle_refuse_change()")


def _stream_bytes(stored: str | bytes | None) -> bytes:
    """A stream id as stored (text on SQLite, 16 bytes from PostgreSQL) -> its 16 bytes. A row
    whose id is not one (tampered) gets bytes that match no honest leaf, never an exception."""
    if isinstance(stored, str):
        try:
            return bytes.fromhex(stored.replace("-", ""))
        except ValueError:
            return hashlib.sha256(stored.encode()).digest()[:16]
    return bytes(stored or b"")


def _head(row: Any) -> TreeHead:
    return TreeHead(int(row[0]), bytes(row[1]), datetime.fromisoformat(row[2]), bytes(row[3]))


def _time_text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")
