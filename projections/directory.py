"""The student directory: who is registered, as students or teachers, for staff listings.

Identifying fields rest sealed under the person's own key, bound to the row (DESIGN: no
plaintext at rest). The row goes when the person is erased: live, on the `SubjectErased`
record; on a rebuild, because an erased person's events arrive as `ErasedEvent` placeholders.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.utils import resolve_topic

from crypto import KeyErased, SubjectKeys
from crypto.sql import Cursor, Database
from ledger.erasure import ErasureRecord
from ledger.people import Person, Student, Teacher
from ledger.sealing import ErasedEvent
from projections.runner import Projection, table_name

_KINDS: dict[type | None, str] = {Student: "student", Teacher: "teacher"}


@dataclass(frozen=True)
class DirectoryEntry:
    id: UUID
    kind: str
    display_name: str
    age: str
    registered_at: datetime


def _aad(person_id: str, column: str) -> bytes:
    return f"student_directory|{person_id}|{column}".encode()


class StudentDirectory(Projection):
    name = "student_directory"

    def __init__(self, keys: SubjectKeys) -> None:
        self.keys = keys

    def create_tables(self, cur: Cursor, table: str, blob: str) -> None:
        cur.execute(
            f"CREATE TABLE {table} (person_id TEXT PRIMARY KEY, kind TEXT NOT NULL,"
            f" sealed_name {blob} NOT NULL, sealed_age {blob} NOT NULL,"
            " registered_at TEXT NOT NULL)"
        )
        cur.execute(f"CREATE INDEX {table}_by_kind ON {table} (kind, registered_at, person_id)")

    def process(self, cur: Cursor, table: str, event: Any) -> None:
        if isinstance(event, ErasedEvent):
            cur.execute(f"DELETE FROM {table} WHERE person_id = ?", (str(event.originator_id),))
        elif isinstance(event, ErasureRecord.SubjectErased):
            cur.execute(f"DELETE FROM {table} WHERE person_id = ?", (str(event.subject_id),))
        elif isinstance(event, Person.Registered):
            kind = _KINDS.get(_aggregate_class(event))
            if kind is None:
                return
            pid = str(event.originator_id)
            sealed = self._seal(event.originator_id, display_name=event.display_name,
                                age=event.age or "")
            if sealed is None:
                return
            cur.execute(
                f"INSERT INTO {table} (person_id, kind, sealed_name, sealed_age, registered_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (pid, kind, sealed["display_name"], sealed["age"], event.timestamp.isoformat()),
            )
        elif isinstance(event, Person.Renamed):
            sealed = self._seal(event.originator_id, display_name=event.display_name)
            if sealed is not None:
                cur.execute(f"UPDATE {table} SET sealed_name = ? WHERE person_id = ?",
                            (sealed["display_name"], str(event.originator_id)))

    def _seal(self, person_id: UUID, **fields: str) -> dict[str, bytes] | None:
        try:
            aead = self.keys.sealer(person_id)
        except KeyErased:
            return None  # erased since the event was written: nothing to show, ever
        return {
            column: aead.seal(value.encode(), _aad(str(person_id), column))
            for column, value in fields.items()
        }


def _aggregate_class(event: Person.Registered) -> type | None:
    return resolve_topic(event.originator_topic)  # type: ignore[no-any-return]


class DirectoryReader:
    """Opens directory rows for a caller that may see them (the API decides who may)."""

    def __init__(self, db: Database, keys: SubjectKeys, projection: StudentDirectory) -> None:
        self.db = db
        self.keys = keys
        self.projection = projection

    def _table(self, cur: Cursor) -> str:
        cur.execute("SELECT live FROM projection_generations WHERE projection = ?",
                    (self.projection.name,))
        return table_name(self.projection, int(cur.fetchone()[0]))

    def entries(self, kind: str | None = None, limit: int = 100, after: UUID | None = None
                ) -> list[DirectoryEntry]:
        with self.db.transaction(write=False) as cur:
            table = self._table(cur)
            where, params = ["person_id > ?"], [str(after) if after else ""]
            if kind is not None:
                where.append("kind = ?")
                params.append(kind)
            cur.execute(
                f"SELECT person_id, kind, sealed_name, sealed_age, registered_at FROM {table}"
                f" WHERE {' AND '.join(where)} ORDER BY person_id LIMIT ?",
                (*params, limit),
            )
            rows = cur.fetchall()
        return [entry for row in rows if (entry := self._open(row)) is not None]

    def entry(self, person_id: UUID) -> DirectoryEntry | None:
        with self.db.transaction(write=False) as cur:
            table = self._table(cur)
            cur.execute(
                f"SELECT person_id, kind, sealed_name, sealed_age, registered_at FROM {table}"
                " WHERE person_id = ?", (str(person_id),),
            )
            row = cur.fetchone()
        return self._open(row) if row else None

    def _open(self, row: Any) -> DirectoryEntry | None:
        person_id = UUID(row[0])
        try:
            aead = self.keys.opener(person_id)
        except KeyErased:
            return None
        return DirectoryEntry(
            id=person_id,
            kind=row[1],
            display_name=aead.open(bytes(row[2]), _aad(row[0], "display_name")).decode(),
            age=aead.open(bytes(row[3]), _aad(row[0], "age")).decode(),
            registered_at=datetime.fromisoformat(row[4]),
        )
