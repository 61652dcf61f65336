"""Where wrapped data keys and erasure tombstones rest: a database of their own.

Two tables. `data_keys` holds one wrapped key per live subject. `erased_subjects` holds a
tombstone per erased subject, numbered in commit order, so that every process can learn of
erasures since the last number it saw. Erasing deletes the key row and writes the tombstone in
one transaction; creating a key checks for a tombstone in the same transaction.

A key may have an owner (`data_keys.owner_id`): a subject that is not a person but whose
content is a person's (a project). Erasing the owner destroys, in the same transaction, every
key it owns, each with a tombstone of its own, so that every process forgets them and no key is
ever made again for them; erasing an owned key alone leaves its owner and their other keys as
they are. A key for an erased owner is never made. A key store from before owners is upgraded
in place when opened (the column is added; existing keys have no owner).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from crypto.errors import KeyErased, KeyStoreUnavailable
from crypto.sql import Cursor, Database, DatabaseUnavailable, PostgresDatabase, SQLiteDatabase


class StaleKeyring(Exception):
    """A newer KEK version exists: reload the keyring and wrap again."""


@dataclass(frozen=True)
class WrappedKey:
    subject_id: UUID
    key_id: UUID
    kek_version: int
    wrapped: bytes = field(repr=False)  # with the KEK it is the key: keep it out of logs


@dataclass(frozen=True)
class Tombstone:
    seq: int
    subject_id: UUID
    key_id: UUID | None
    kek_version: int | None
    erased_at: datetime


def _ddl(backend: str) -> list[str]:
    blob, serial = ("BLOB", "INTEGER PRIMARY KEY AUTOINCREMENT")
    if backend == "postgres":
        blob, serial = ("BYTEA", "BIGSERIAL PRIMARY KEY")
    return [
        "CREATE TABLE IF NOT EXISTS data_keys ("
        " subject_id TEXT PRIMARY KEY, key_id TEXT NOT NULL,"
        f" kek_version INTEGER NOT NULL, wrapped {blob} NOT NULL, created_at TEXT NOT NULL,"
        " owner_id TEXT)",
        "CREATE INDEX IF NOT EXISTS data_keys_by_kek ON data_keys (kek_version)",
        "CREATE TABLE IF NOT EXISTS erased_subjects ("
        f" seq {serial}, subject_id TEXT NOT NULL UNIQUE, key_id TEXT,"
        " kek_version INTEGER, erased_at TEXT NOT NULL)",
        # The newest KEK version in use: a process with an older keyring must not wrap new keys.
        "CREATE TABLE IF NOT EXISTS kek_versions (version INTEGER PRIMARY KEY)",
        # A check value per key file (the signing key, each KEK version), recorded when the
        # file is first used: a different file put in its place is then told apart.
        "CREATE TABLE IF NOT EXISTS key_file_checks ("
        " name TEXT PRIMARY KEY, check_value TEXT NOT NULL)",
    ]


# Made after the upgrade below, since a key store from before owners lacks the column.
_OWNER_INDEX = "CREATE INDEX IF NOT EXISTS data_keys_by_owner ON data_keys (owner_id)"

_INSERT_KEY = ("INSERT INTO data_keys (subject_id, key_id, kek_version, wrapped, created_at,"
               " owner_id) VALUES (?, ?, ?, ?, ?, ?)")
_SELECT_TOMBSTONE = ("SELECT seq, subject_id, key_id, kek_version, erased_at"
                     " FROM erased_subjects")


def _key_row(key: WrappedKey, created_at: str, owner: UUID | None = None
             ) -> tuple[str, str, int, bytes, str, str | None]:
    return (str(key.subject_id), str(key.key_id), key.kek_version, key.wrapped, created_at,
            str(owner) if owner else None)


@dataclass(frozen=True)
class Erasure:
    """What one erasing transaction left: a tombstone per subject asked for, in the order
    asked, and one per key they owned (destroyed with them)."""

    tombstones: list[Tombstone]
    owned: list[Tombstone]
    owned_count: dict[UUID, int] = field(default_factory=dict)  # per subject asked for


class KeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        with self._transaction() as cur:
            for statement in _ddl(db.backend):
                cur.execute(statement)
            self._add_owner_column(cur)
            cur.execute(_OWNER_INDEX)
            cur.execute("CREATE INDEX IF NOT EXISTS erased_subjects_by_owner"
                        " ON erased_subjects (owner_id)")

    def _add_owner_column(self, cur: Cursor) -> None:
        """Upgrade a key store made before keys had owners: existing keys have none. A
        tombstone keeps its key's owner, so that a receipt completed after a crash still
        counts the owned keys that went with the owner's."""
        for table in ("data_keys", "erased_subjects"):
            if self.db.backend == "postgres":
                cur.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS owner_id TEXT")
                continue
            cur.execute(f"PRAGMA table_info({table})")
            if "owner_id" not in {row[1] for row in cur.fetchall()}:
                cur.execute(f"ALTER TABLE {table} ADD COLUMN owner_id TEXT")

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[Cursor]:
        try:
            with self.db.transaction(write=write) as cur:
                yield cur
        except DatabaseUnavailable as error:
            raise KeyStoreUnavailable(f"key store unreachable: {error}") from None

    def _refuse_stale_kek(self, cur: Cursor, version: int) -> None:
        cur.execute("SELECT max(version) FROM kek_versions")
        newest = cur.fetchone()[0]
        if newest is not None and version < int(newest):
            raise StaleKeyring(newest)

    def _lock_subject(self, cur: Cursor, subject_id: UUID) -> None:
        if self.db.backend == "postgres":
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 7))", (str(subject_id),))

    def _select_key(self, cur: Cursor, subject_id: UUID) -> WrappedKey | None:
        cur.execute("SELECT key_id, kek_version, wrapped FROM data_keys WHERE subject_id = ?",
                    (str(subject_id),))
        row = cur.fetchone()
        return WrappedKey(subject_id, UUID(row[0]), int(row[1]), bytes(row[2])) if row else None

    def load(self, subject_id: UUID) -> WrappedKey | None:
        with self._transaction(write=False) as cur:
            return self._select_key(cur, subject_id)

    def create(self, key: WrappedKey, owner: UUID | None = None) -> WrappedKey:
        """Store `key` unless the subject already has one (return that) or was erased (raise).

        With an `owner`, the key is recorded as theirs (destroyed when they are erased), and is
        refused (`KeyErased`) once the owner is erased. The owner's lock is taken first, as
        erasing the owner takes it: so an owned key is either made before the owner's erasure
        (and destroyed by it) or refused after it, never left behind."""
        with self._transaction() as cur:
            if owner is not None:
                self._lock_subject(cur, owner)
                if self._tombstone(cur, owner) is not None:
                    raise KeyErased(key.subject_id)
            self._lock_subject(cur, key.subject_id)
            if self._tombstone(cur, key.subject_id) is not None:
                raise KeyErased(key.subject_id)
            self._refuse_stale_kek(cur, key.kek_version)
            existing = self._select_key(cur, key.subject_id)
            if existing is not None:
                return existing
            cur.execute(_INSERT_KEY, _key_row(key, datetime.now(UTC).isoformat(), owner))
            return key

    def owner_of(self, subject_id: UUID) -> UUID | None:
        """The owner recorded with the subject's live key; None if it has none (or no key)."""
        with self._transaction(write=False) as cur:
            cur.execute("SELECT owner_id FROM data_keys WHERE subject_id = ?",
                        (str(subject_id),))
            row = cur.fetchone()
        return UUID(row[0]) if row and row[0] else None

    def create_fresh(self, keys: list[WrappedKey]) -> list[WrappedKey]:
        """Store keys for new random subject ids that nobody else knows yet, in one transaction.

        Such an id can have no tombstone and no rival key, so no per-subject check is needed."""
        with self._transaction() as cur:
            self._refuse_stale_kek(cur, min(key.kek_version for key in keys))
            created_at = datetime.now(UTC).isoformat()
            cur.executemany(_INSERT_KEY, [_key_row(key, created_at) for key in keys])
        return keys

    def load_many(self, subject_ids: list[UUID]) -> list[WrappedKey]:
        rows = self._select_in(
            "SELECT subject_id, key_id, kek_version, wrapped FROM data_keys", subject_ids)
        return [WrappedKey(UUID(r[0]), UUID(r[1]), int(r[2]), bytes(r[3])) for r in rows]

    def tombstones_for(self, subject_ids: list[UUID]) -> list[Tombstone]:
        rows = self._select_in(
            "SELECT seq, subject_id, key_id, kek_version, erased_at FROM erased_subjects",
            subject_ids)
        return [_tombstone(row) for row in rows]

    def _select_in(self, select: str, subject_ids: list[UUID], chunk: int = 500) -> list[Any]:
        ids = [str(s) for s in subject_ids]
        with self._transaction(write=False) as cur:
            if self.db.backend == "postgres":  # one statement text, so the server prepares it
                cur.execute(f"{select} WHERE subject_id = ANY(?)", (ids,))
                return cur.fetchall()
            rows: list[Any] = []
            for i in range(0, len(ids), chunk):  # SQLite caps the number of parameters
                part = ids[i:i + chunk]
                cur.execute(f"{select} WHERE subject_id IN ({','.join('?' * len(part))})", part)
                rows += cur.fetchall()
            return rows

    def erase(self, subject_id: UUID) -> Tombstone:
        """Delete the subject's key and every key it owns, leaving a tombstone for each.
        Idempotent: returns the subject's tombstone."""
        return self.erase_subjects([subject_id]).tombstones[0]

    def erase_many(self, subject_ids: list[UUID]) -> list[Tombstone]:
        """`erase` for several subjects in one transaction and one scrub; their tombstones in
        the order given."""
        return self.erase_subjects(subject_ids).tombstones

    def erase_subjects(self, subject_ids: list[UUID]) -> Erasure:
        """Erase `subject_ids` and the keys they own in one transaction, then scrub once."""
        if not subject_ids:
            return Erasure([], [])
        with self._transaction() as cur:
            if self.db.backend == "postgres":
                # Tombstone numbers then commit in order, so followers never skip one.
                cur.execute("LOCK TABLE erased_subjects IN EXCLUSIVE MODE")
            # Sorted, so two erasers never wait on each other's locks in opposite orders. (A
            # key being made for an owned subject locks owner then subject; erasing both at
            # once in the other order is a deadlock PostgreSQL breaks by failing one side,
            # which reaches the caller as a retryable KeyStoreUnavailable.)
            self._lock_subjects(cur, sorted(set(subject_ids)))
            tombstones = self._erase_set(cur, list(dict.fromkeys(subject_ids)))
            owned_by = self._owned_by(cur, subject_ids)
            owned_ids = sorted(owned_by)
            owned = self._erase_set(cur, owned_ids, owned_by)
            # From the tombstones, not from what this run deleted: a run that completes one
            # that crashed finds the owned keys gone already, and the receipt must count them.
            counts = Counter(UUID(row[0]) for row in _select_where_in(
                cur, "SELECT owner_id FROM erased_subjects", "owner_id",
                [str(o) for o in dict.fromkeys(subject_ids)]))
        self._scrub("data_keys")
        return Erasure([tombstones[s] for s in subject_ids], [owned[s] for s in owned_ids],
                       {s: counts[s] for s in subject_ids})

    def _lock_subjects(self, cur: Cursor, subject_ids: list[UUID]) -> None:
        """`_lock_subject` for each, in the order given (a function scan of an array yields
        it in order), in one statement."""
        if self.db.backend == "postgres" and subject_ids:
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(s, 7))"
                        " FROM unnest(?::text[]) AS s", ([str(s) for s in subject_ids],))

    def _owned_by(self, cur: Cursor, owners: list[UUID]) -> dict[UUID, UUID]:
        """The subjects of the live keys that `owners` own, each with its owner (stable
        while the owners are locked: `create` takes the owner's lock to add one)."""
        rows = _select_where_in(cur, "SELECT subject_id, owner_id FROM data_keys", "owner_id",
                                [str(o) for o in dict.fromkeys(owners)])
        return {UUID(row[0]): UUID(row[1]) for row in rows}

    def _erase_set(self, cur: Cursor, subject_ids: list[UUID],
                   owners: dict[UUID, UUID] | None = None) -> dict[UUID, Tombstone]:
        """Delete the keys of `subject_ids` (distinct) and leave a tombstone for each that
        has none yet, a few statements for the whole set; every subject's tombstone."""
        ids = [str(s) for s in subject_ids]
        done = {t.subject_id: t for t in map(_tombstone, _select_where_in(
            cur, _SELECT_TOMBSTONE, "subject_id", ids))}
        fresh = [s for s in subject_ids if s not in done]
        if not fresh:
            return done
        fresh_ids = [str(s) for s in fresh]
        keys = {UUID(row[0]): (row[1], int(row[2])) for row in _select_where_in(
            cur, "SELECT subject_id, key_id, kek_version FROM data_keys", "subject_id",
            fresh_ids)}
        _delete_where_in(cur, "data_keys", "subject_id", fresh_ids)
        erased_at = datetime.now(UTC).isoformat()
        # In the order given, so that tombstone numbers follow it.
        owner = owners or {}
        cur.executemany("INSERT INTO erased_subjects (subject_id, key_id, kek_version, erased_at,"
                        " owner_id) VALUES (?, ?, ?, ?, ?)",
                        [(str(s), *keys.get(s, (None, None)), erased_at,
                          str(owner[s]) if s in owner else None) for s in fresh])
        done.update({t.subject_id: t for t in map(_tombstone, _select_where_in(
            cur, _SELECT_TOMBSTONE, "subject_id", fresh_ids))})
        return done

    def _tombstone(self, cur: Cursor, subject_id: UUID) -> Tombstone | None:
        """The subject's tombstone, if erased (read in `cur`'s transaction)."""
        cur.execute(f"{_SELECT_TOMBSTONE} WHERE subject_id = ?", (str(subject_id),))
        row = cur.fetchone()
        return _tombstone(row) if row else None

    def tombstone(self, subject_id: UUID) -> Tombstone | None:
        with self._transaction(write=False) as cur:
            return self._tombstone(cur, subject_id)

    def erased_count(self) -> int:
        """How many subjects' keys were erased (people, and the keys they owned)."""
        with self._transaction(write=False) as cur:
            cur.execute("SELECT COUNT(*) FROM erased_subjects")
            row = cur.fetchone()
            return int(row[0]) if row else 0

    def tombstones_after(self, seq: int) -> list[Tombstone]:
        with self._transaction(write=False) as cur:
            cur.execute(
                "SELECT seq, subject_id, key_id, kek_version, erased_at FROM erased_subjects"
                " WHERE seq > ? ORDER BY seq",
                (seq,),
            )
            return [_tombstone(row) for row in cur.fetchall()]

    def keys_wrapped_under(self, versions: list[int]) -> list[WrappedKey]:
        with self._transaction(write=False) as cur:
            marks = ",".join("?" for _ in versions)
            cur.execute(
                "SELECT subject_id, key_id, kek_version, wrapped FROM data_keys"
                f" WHERE kek_version IN ({marks})",
                versions,
            )
            return [
                WrappedKey(UUID(r[0]), UUID(r[1]), int(r[2]), bytes(r[3])) for r in cur.fetchall()
            ]

    def rewrap(self, keys: list[WrappedKey]) -> int:
        """Replace wrapped keys in one transaction; a key erased meanwhile stays erased."""
        with self._transaction() as cur:
            changed = 0
            for key in keys:
                cur.execute(
                    "UPDATE data_keys SET kek_version = ?, wrapped = ? WHERE subject_id = ?"
                    " AND key_id = ?",
                    (key.kek_version, key.wrapped, str(key.subject_id), str(key.key_id)),
                )
                changed += cur.rowcount
        self._scrub("data_keys")
        return changed

    def _scrub(self, table: str) -> None:
        """Leave no old copy of a deleted or replaced wrapped key in the database's files."""
        if isinstance(self.db, SQLiteDatabase):
            self.db.checkpoint()
        elif isinstance(self.db, PostgresDatabase):
            self.db.vacuum(table)

    def record_kek_version(self, version: int) -> None:
        with self._transaction() as cur:
            cur.execute("SELECT 1 FROM kek_versions WHERE version = ?", (version,))
            if cur.fetchone() is None:
                cur.execute("INSERT INTO kek_versions (version) VALUES (?)", (version,))

    def holds_anything(self, checks_like: str) -> bool:
        """Whether a ledger has used this key store: a key, a tombstone or a check value
        named like `checks_like` (of the file in question: the first start records the KEK's
        before the signing key's file is made). Only when none is there may that file be made."""
        with self._transaction(write=False) as cur:
            for table in ("data_keys", "erased_subjects"):
                cur.execute(f"SELECT 1 FROM {table} LIMIT 1")
                if cur.fetchone() is not None:
                    return True
            cur.execute("SELECT 1 FROM key_file_checks WHERE name LIKE ? LIMIT 1", (checks_like,))
            return cur.fetchone() is not None

    def newest_kek_version(self) -> int | None:
        with self._transaction(write=False) as cur:
            cur.execute("SELECT max(version) FROM kek_versions")
            newest = cur.fetchone()[0]
            return int(newest) if newest is not None else None

    def check_key_file(self, name: str, check_value: str) -> bool:
        """Record `check_value` for `name` if none is yet; whether it matches the recorded one
        (of two processes recording at once, both compare with the one that won)."""
        with self._transaction() as cur:
            cur.execute("SELECT check_value FROM key_file_checks WHERE name = ?", (name,))
            row = cur.fetchone()
            if row is None:
                if self.db.backend == "postgres":
                    cur.execute("INSERT INTO key_file_checks (name, check_value) VALUES (?, ?)"
                                " ON CONFLICT (name) DO NOTHING", (name, check_value))
                else:
                    cur.execute("INSERT OR IGNORE INTO key_file_checks (name, check_value)"
                                " VALUES (?, ?)", (name, check_value))
                cur.execute("SELECT check_value FROM key_file_checks WHERE name = ?", (name,))
                row = cur.fetchone()
            return bool(row[0] == check_value)

    def count_live(self) -> int:
        with self._transaction(write=False) as cur:
            cur.execute("SELECT count(*) FROM data_keys")
            return int(cur.fetchone()[0])


def _tombstone(row: Any) -> Tombstone:
    return Tombstone(
        seq=int(row[0]),
        subject_id=UUID(row[1]),
        key_id=UUID(row[2]) if row[2] else None,
        kek_version=int(row[3]) if row[3] is not None else None,
        erased_at=datetime.fromisoformat(row[4]),
    )


_CHUNK = 500  # SQLite caps the number of parameters in one statement


def _select_where_in(cur: Cursor, select: str, column: str, values: list[str]) -> list[Any]:
    rows: list[Any] = []
    for i in range(0, len(values), _CHUNK):
        part = values[i:i + _CHUNK]
        cur.execute(f"{select} WHERE {column} IN ({', '.join('?' * len(part))})", part)
        rows += cur.fetchall()
    return rows


def _delete_where_in(cur: Cursor, table: str, column: str, values: list[str]) -> None:
    for i in range(0, len(values), _CHUNK):
        part = values[i:i + _CHUNK]
        cur.execute(f"DELETE FROM {table} WHERE {column} IN ({', '.join('?' * len(part))})",
                    part)
