"""The audit index (AUD-3): who read or received which student's records, when and why.

One table for both kinds of record, so that a student's trail is one ordered query: access
records (ledger/audit.py) and disclosure records (ledger/disclosures.py). Only pseudonymous facts
rest here: the record's id and kind, the student's id, the principal's id and role, a code (an
access's purpose, a disclosure's 99.31 paragraph), the time, and for a disclosure the keyed
blind token of its recipient (never the name). What was read or disclosed, and to whom by name,
stays in the record, sealed under the student's key. A student's rows go with their erasure
(AUD-4).

Three orders, each (time, record id) so that a page boundary is exact even when two records
share a timestamp: by student, by actor, by recipient party. The time is when the record was
made (a read's time; a disclosure's recording, its own date being in the record).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from crypto.sql import Cursor, Database
from ledger.audit import AccessRecord
from ledger.disclosures import DisclosureRecord
from ledger.erasure import ErasureRecord
from ledger.sealing import ErasedEvent
from projections.runner import Projection, live_table, time_text

ACCESS = "access"
DISCLOSURE = "disclosure"
KINDS = (ACCESS, DISCLOSURE)
_COLUMNS = "record_id, kind, student_id, actor_id, actor_role, code, happened_at"


@dataclass(frozen=True)
class AuditEntry:
    record_id: UUID
    kind: str  # ACCESS or DISCLOSURE
    student_id: UUID
    actor_id: UUID
    actor_role: str
    code: str  # an access's purpose; a disclosure's legal basis
    at: datetime

    @property
    def read_at(self) -> datetime:  # the name access records gave it
        return self.at

    @property
    def purpose(self) -> str:
        return self.code


AccessEntry = AuditEntry  # the name before disclosures joined the index
PageAfter = tuple[datetime, UUID]  # (time, record id) of the last entry of a page


class AuditIndex(Projection):
    name = "audit_index"

    def create_tables(self, cur: Cursor, table: str, blob: str) -> None:
        cur.execute(f"CREATE TABLE {table} (record_id TEXT PRIMARY KEY, kind TEXT NOT NULL,"
                    " student_id TEXT NOT NULL, actor_id TEXT NOT NULL,"
                    " actor_role TEXT NOT NULL, code TEXT NOT NULL, happened_at TEXT NOT NULL,"
                    " party_token TEXT)")
        for name, column in (("student", "student_id"), ("actor", "actor_id"),
                             ("party", "party_token")):
            cur.execute(f"CREATE INDEX {table}_by_{name}"
                        f" ON {table} ({column}, happened_at, record_id)")

    def shape(self, table: str) -> dict[str, frozenset[str]]:
        return {table: frozenset({"record_id", "kind", "student_id", "actor_id", "actor_role",
                                  "code", "happened_at", "party_token"})}

    def subject_columns(self, table: str) -> list[tuple[str, tuple[str, ...]]]:
        return [(table, ("student_id",))]

    def process(self, cur: Cursor, table: str, event: Any) -> None:
        if isinstance(event, AccessRecord.Recorded):
            self._insert(cur, table, event, ACCESS, event.purpose, event.read_at, None)
        elif isinstance(event, DisclosureRecord.Recorded):
            self._insert(cur, table, event, DISCLOSURE, event.legal_basis, event.recorded_at,
                         event.party_token)
        elif isinstance(event, ErasureRecord.SubjectErased):
            self.forget(cur, table, [event.subject_id])
        elif isinstance(event, ErasedEvent):  # a rebuild: an erased student's record
            cur.execute(f"DELETE FROM {table} WHERE record_id = ?", (str(event.originator_id),))

    @staticmethod
    def _insert(cur: Cursor, table: str, event: Any, kind: str, code: str, at: datetime,
                party_token: str | None) -> None:
        cur.execute(f"INSERT INTO {table} ({_COLUMNS}, party_token)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (record_id) DO NOTHING",
                    (str(event.originator_id), kind, str(event.owner_id), str(event.actor_id),
                     event.actor_role, code, time_text(at), party_token))


class AuditReader:
    def __init__(self, db: Database, projection: AuditIndex) -> None:
        self.db = db
        self.projection = projection

    def of_student(self, student_id: UUID, since: datetime | None = None,
                   until: datetime | None = None, limit: int = 100,
                   after: PageAfter | None = None,
                   kinds: Sequence[str] = (ACCESS,)) -> list[AuditEntry]:
        """AUD-3: who read (and, with DISCLOSURE among `kinds`, received) the student's records
        between `since` (inclusive) and `until` (exclusive), in time order; `after` is the last
        entry of the previous page."""
        return self._query("student_id", [str(student_id)], since, until, limit, after, kinds)

    def of_actor(self, actor_id: UUID, since: datetime | None = None,
                 until: datetime | None = None, limit: int = 100, after: PageAfter | None = None,
                 kinds: Sequence[str] = KINDS) -> list[AuditEntry]:
        """AUD-3: what the principal read (and disclosures they recorded), in time order."""
        return self._query("actor_id", [str(actor_id)], since, until, limit, after, kinds)

    def to_party(self, party_tokens: Sequence[str], since: datetime | None = None,
                 until: datetime | None = None, limit: int = 100,
                 after: PageAfter | None = None) -> list[AuditEntry]:
        """AUD-3: every disclosure to the party whose name has these blind tokens."""
        return self._query("party_token", list(party_tokens), since, until, limit, after,
                           (DISCLOSURE,))

    def _query(self, column: str, values: list[str], since: datetime | None,
               until: datetime | None, limit: int, after: PageAfter | None,
               kinds: Sequence[str]) -> list[AuditEntry]:
        if not values or not kinds:
            return []
        where = [f"{column} IN ({', '.join('?' for _ in values)})",
                 f"kind IN ({', '.join('?' for _ in kinds)})"]
        params: list[Any] = [*values, *kinds]
        if since is not None:
            where.append("happened_at >= ?")
            params.append(time_text(since))
        if until is not None:
            where.append("happened_at < ?")
            params.append(time_text(until))
        if after is not None:
            where.append("(happened_at > ? OR (happened_at = ? AND record_id > ?))")
            params += [time_text(after[0]), time_text(after[0]), str(after[1])]
        with self.db.transaction(write=False) as cur:
            table = live_table(cur, self.projection)
            cur.execute(f"SELECT {_COLUMNS} FROM {table} WHERE {' AND '.join(where)}"
                        " ORDER BY happened_at, record_id LIMIT ?", [*params, limit])
            rows = cur.fetchall()
        return [AuditEntry(UUID(r[0]), r[1], UUID(r[2]), UUID(r[3]), r[4], r[5],
                           datetime.fromisoformat(r[6])) for r in rows]
