"""The student directory: who is registered, as students or teachers, for staff listings.

Identifying fields (display name, age, username, a young section's secret words or picture)
rest sealed under the person's own key, bound to the row (DESIGN: no plaintext at rest); codes
from fixed lists (kind, login type, secret kind) and the registration time rest plain. The row
goes when the person is erased: live, on the `SubjectErased` record; on a rebuild, because an
erased person's events arrive as `ErasedEvent` placeholders.

A soft-deleted person (DEL-1, `Person.DeletionRequested`) keeps their row, flagged `hidden`,
and every reader leaves it out; withdrawing the deletion (DEL-2) clears the flag, so the entry
comes back exactly as it was (with any change made meanwhile) without reading sealed streams.

A directory table made before a column existed is rebuilt rather than altered: `shape` tells
the runner to replay the log into a fresh generation when it starts (rebuilds are how read
models change shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.utils import resolve_topic

from crypto import Aead, KeyErased, SubjectKeys
from crypto.sql import Cursor, Database
from ledger.erasure import ErasureRecord
from ledger.people import Person, Student, Teacher
from ledger.sealing import ErasedEvent
from projections.runner import Projection, live_table

_KINDS: dict[type | None, str] = {Student: "student", Teacher: "teacher"}
_COLUMNS = ("person_id, kind, sealed_name, sealed_age, registered_at, sealed_username,"
            " login_type, secret_kind, sealed_secret")


@dataclass(frozen=True)
class DirectoryEntry:
    id: UUID
    kind: str
    display_name: str
    age: str | None  # none given counts as under 13 (MIN-3)
    registered_at: datetime
    username: str
    login_type: str
    secret_kind: str | None  # "word" or "picture" for students of young sections
    secret: str | None


def _aad(person_id: str, column: str) -> bytes:
    return f"student_directory|{person_id}|{column}".encode()


class StudentDirectory(Projection):
    name = "student_directory"

    def __init__(self, keys: SubjectKeys) -> None:
        self.keys = keys

    def create_tables(self, cur: Cursor, table: str, blob: str) -> None:
        cur.execute(
            f"CREATE TABLE {table} (person_id TEXT PRIMARY KEY, kind TEXT NOT NULL,"
            f" sealed_name {blob} NOT NULL, sealed_age {blob},"
            f" registered_at TEXT NOT NULL, sealed_username {blob} NOT NULL,"
            f" login_type TEXT NOT NULL, secret_kind TEXT, sealed_secret {blob},"
            " hidden INTEGER NOT NULL DEFAULT 0)"
        )
        cur.execute(f"CREATE INDEX {table}_by_kind ON {table} (kind, registered_at, person_id)")

    def shape(self, table: str) -> dict[str, frozenset[str]]:
        return {table: frozenset({*(c.strip() for c in _COLUMNS.split(",")), "hidden"})}

    def subject_columns(self, table: str) -> list[tuple[str, tuple[str, ...]]]:
        return [(table, ("person_id",))]

    def process(self, cur: Cursor, table: str, event: Any) -> None:
        if isinstance(event, ErasedEvent):
            cur.execute(f"DELETE FROM {table} WHERE person_id = ?", (str(event.originator_id),))
        elif isinstance(event, ErasureRecord.SubjectErased):
            self.forget(cur, table, [event.subject_id])
        elif isinstance(event, Person.Registered):
            self._registered(cur, table, event)
        elif isinstance(event, Person.Renamed):
            self._update(cur, table, event.originator_id, display_name=event.display_name)
        elif isinstance(event, Person.AgeGiven):
            self._update(cur, table, event.originator_id, age=event.age)
        elif isinstance(event, Person.DeletionRequested | Person.DeletionWithdrawn):
            # A flag, not a delete: the row must come back as it is on withdrawal (DEL-2).
            hidden = int(isinstance(event, Person.DeletionRequested))
            cur.execute(f"UPDATE {table} SET hidden = ? WHERE person_id = ?",
                        (hidden, str(event.originator_id)))
        elif isinstance(event, Student.SecretSet):
            sealed = self._seal(event.originator_id, secret=event.secret)
            if sealed is not None:
                cur.execute(f"UPDATE {table} SET secret_kind = ?, sealed_secret = ?"
                            " WHERE person_id = ?",
                            (event.secret_kind, sealed["secret"], str(event.originator_id)))

    def _registered(self, cur: Cursor, table: str, event: Person.Registered) -> None:
        kind = _KINDS.get(_aggregate_class(event))
        if kind is None:
            return
        # Registrations from before usernames and login types existed carry neither.
        sealed = self._seal(event.originator_id, display_name=event.display_name,
                            age=event.age, username=getattr(event, "username", ""))
        if sealed is None:
            return
        cur.execute(
            f"INSERT INTO {table} (person_id, kind, sealed_name, sealed_age, registered_at,"
            " sealed_username, login_type) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (str(event.originator_id), kind, sealed["display_name"], sealed["age"],
             event.timestamp.isoformat(), sealed["username"],
             getattr(event, "login_type", "personal")),
        )

    def _update(self, cur: Cursor, table: str, person_id: UUID, **fields: str | None) -> None:
        sealed = self._seal(person_id, **fields)
        if sealed is None:
            return
        for column, value in sealed.items():
            cur.execute(f"UPDATE {table} SET sealed_{_COLUMN_OF[column]} = ?"
                        " WHERE person_id = ?", (value, str(person_id)))

    def _seal(self, person_id: UUID, **fields: str | None) -> dict[str, bytes | None] | None:
        """Each value sealed for its column (None stays None); None if the person is erased."""
        try:
            aead = self.keys.sealer(person_id)
        except KeyErased:
            return None  # erased since the event was written: nothing to show, ever
        return {
            column: None if value is None
            else aead.seal(value.encode(), _aad(str(person_id), column))
            for column, value in fields.items()
        }


# The sealed column that holds each field.
_COLUMN_OF = {"display_name": "name", "age": "age", "username": "username", "secret": "secret"}


def _aggregate_class(event: Person.Registered) -> type | None:
    return resolve_topic(event.originator_topic)  # type: ignore[no-any-return]


class DirectoryReader:
    """Opens directory rows for a caller that may see them (the API decides who may). A
    soft-deleted person (DEL-1) is left out by every method, as if they had no entry."""

    def __init__(self, db: Database, keys: SubjectKeys, projection: StudentDirectory) -> None:
        self.db = db
        self.keys = keys
        self.projection = projection

    def _table(self, cur: Cursor) -> str:
        return live_table(cur, self.projection)

    def entries(self, kind: str | None = None, limit: int = 100, after: UUID | None = None,
                among: set[UUID] | None = None) -> list[DirectoryEntry]:
        """A page of the directory by id, after `after`; only people in `among` if given (a
        registrar's school: a few thousand ids, taken a page at a time)."""
        if among is not None:
            return self._entries_among(among, kind, limit, after)
        with self.db.transaction(write=False) as cur:
            table = self._table(cur)
            where, params = ["person_id > ?", "hidden = 0"], [str(after) if after else ""]
            if kind is not None:
                where.append("kind = ?")
                params.append(kind)
            cur.execute(
                f"SELECT {_COLUMNS} FROM {table}"
                f" WHERE {' AND '.join(where)} ORDER BY person_id LIMIT ?",
                (*params, limit),
            )
            rows = cur.fetchall()
        return [entry for row in rows if (entry := self._open(row)) is not None]

    def _entries_among(self, among: set[UUID], kind: str | None, limit: int,
                       after: UUID | None) -> list[DirectoryEntry]:
        # Ordered as the table's text ids are, so that pages agree with the unscoped listing.
        ids = sorted(str(person) for person in among)
        start = str(after) if after else ""
        page: list[DirectoryEntry] = []
        while ids and len(page) < limit:
            chunk = [UUID(i) for i in ids if i > start][: limit - len(page)]
            if not chunk:
                break
            found = self.entries_of(chunk)
            page += [found[i] for i in chunk if i in found
                     and (kind is None or found[i].kind == kind)]
            start = str(chunk[-1])
        return page

    def entry(self, person_id: UUID) -> DirectoryEntry | None:
        with self.db.transaction(write=False) as cur:
            table = self._table(cur)
            cur.execute(f"SELECT {_COLUMNS} FROM {table} WHERE person_id = ? AND hidden = 0",
                        (str(person_id),))
            row = cur.fetchone()
        return self._open(row) if row else None

    def entries_of(self, person_ids: list[UUID]) -> dict[UUID, DirectoryEntry]:
        """The entries of many people in one query (a section's roster), erased and
        soft-deleted ones left out; their keys are fetched in one key-store round trip."""
        if not person_ids:
            return {}
        with self.db.transaction(write=False) as cur:
            table = self._table(cur)
            rows: list[Any] = []
            for start in range(0, len(person_ids), 500):
                chunk = [str(p) for p in person_ids[start:start + 500]]
                marks = ", ".join("?" for _ in chunk)
                cur.execute(f"SELECT {_COLUMNS} FROM {table}"
                            f" WHERE person_id IN ({marks}) AND hidden = 0", chunk)
                rows.extend(cur.fetchall())
        self.keys.openers({UUID(row[0]).bytes for row in rows})  # one round trip for all
        opened = (self._open(row) for row in rows)
        return {entry.id: entry for entry in opened if entry is not None}

    def _open(self, row: Any) -> DirectoryEntry | None:
        person_id = UUID(row[0])
        try:
            aead = self.keys.opener(person_id)
        except KeyErased:
            return None
        return DirectoryEntry(
            id=person_id,
            kind=row[1],
            display_name=_opened(aead, row[2], row[0], "display_name") or "",
            age=_opened(aead, row[3], row[0], "age"),
            registered_at=datetime.fromisoformat(row[4]),
            username=_opened(aead, row[5], row[0], "username") or "",
            login_type=row[6],
            secret_kind=row[7],
            secret=_opened(aead, row[8], row[0], "secret"),
        )


def _opened(aead: Aead, sealed: Any, person_id: str, column: str) -> str | None:
    return None if sealed is None else aead.open(bytes(sealed), _aad(person_id, column)).decode()
