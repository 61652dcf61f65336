"""The audit index (AUD-3): who read which student's records, when and why, for queries.

Only pseudonymous facts rest here (the record's id, the student's id, the principal's id and
role, a purpose code, the time); what was read (resource and fields) stays in the record,
sealed under the student's key. A student's rows go with their erasure (AUD-4). Ordered by
time, then by record id, so a page boundary is exact even when two reads share a timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from crypto.sql import Cursor, Database
from ledger.audit import AccessRecord
from ledger.erasure import ErasureRecord
from ledger.sealing import ErasedEvent
from projections.runner import Projection, live_table, time_text


@dataclass(frozen=True)
class AccessEntry:
    record_id: UUID
    student_id: UUID
    actor_id: UUID
    actor_role: str
    purpose: str
    read_at: datetime


class AuditIndex(Projection):
    name = "audit_index"

    def create_tables(self, cur: Cursor, table: str, blob: str) -> None:
        cur.execute(f"CREATE TABLE {table} (record_id TEXT PRIMARY KEY, student_id TEXT NOT NULL,"
                    " actor_id TEXT NOT NULL, actor_role TEXT NOT NULL, purpose TEXT NOT NULL,"
                    " read_at TEXT NOT NULL)")
        cur.execute(f"CREATE INDEX {table}_by_student ON {table} (student_id, read_at, record_id)")

    def shape(self, table: str) -> dict[str, frozenset[str]]:
        return {table: frozenset({"record_id", "student_id", "actor_id", "actor_role",
                                  "purpose", "read_at"})}

    def subject_columns(self, table: str) -> list[tuple[str, tuple[str, ...]]]:
        return [(table, ("student_id",))]

    def process(self, cur: Cursor, table: str, event: Any) -> None:
        if isinstance(event, AccessRecord.Recorded):
            cur.execute(f"INSERT INTO {table} (record_id, student_id, actor_id, actor_role,"
                        " purpose, read_at) VALUES (?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (record_id) DO NOTHING",
                        (str(event.originator_id), str(event.owner_id), str(event.actor_id),
                         event.actor_role, event.purpose, time_text(event.read_at)))
        elif isinstance(event, ErasureRecord.SubjectErased):
            self.forget(cur, table, [event.subject_id])
        elif isinstance(event, ErasedEvent):  # a rebuild: an erased student's record
            cur.execute(f"DELETE FROM {table} WHERE record_id = ?", (str(event.originator_id),))


class AuditReader:
    def __init__(self, db: Database, projection: AuditIndex) -> None:
        self.db = db
        self.projection = projection

    def of_student(self, student_id: UUID, since: datetime | None = None,
                   until: datetime | None = None, limit: int = 100,
                   after: tuple[datetime, UUID] | None = None) -> list[AccessEntry]:
        """AUD-3: who read the student's records between `since` and `until`, in time order;
        `after` is the last entry of the previous page."""
        return self._query("student_id", student_id, since, until, limit, after)

    def _query(self, column: str, value: UUID, since: datetime | None, until: datetime | None,
               limit: int, after: tuple[datetime, UUID] | None) -> list[AccessEntry]:
        where, params = [f"{column} = ?"], [str(value)]
        if since is not None:
            where.append("read_at >= ?")
            params.append(time_text(since))
        if until is not None:
            where.append("read_at < ?")
            params.append(time_text(until))
        if after is not None:
            where.append("(read_at > ? OR (read_at = ? AND record_id > ?))")
            params += [time_text(after[0]), time_text(after[0]), str(after[1])]
        with self.db.transaction(write=False) as cur:
            table = live_table(cur, self.projection)
            cur.execute(f"SELECT record_id, student_id, actor_id, actor_role, purpose, read_at"
                        f" FROM {table} WHERE {' AND '.join(where)}"
                        " ORDER BY read_at, record_id LIMIT ?", [*params, limit])
            rows = cur.fetchall()
        return [AccessEntry(UUID(r[0]), UUID(r[1]), UUID(r[2]), r[3], r[4],
                            datetime.fromisoformat(r[5])) for r in rows]
