"""The rights view (RGT-3, RGT-4): open requests and their due dates, and who is restricted.

Only pseudonymous facts rest here: a request's id, its subject's id, its kind and status (codes
from fixed lists) and its times; a restricted subject's id and since when. What was asked
(a proposed value, reasons, statements) stays in the subject's rights file, sealed. A subject's
rows go with their erasure.

The contract for analytics and any other non-essential processing (RGT-3, issue 8): a subject
in `restricted_subjects()` (or for whom `is_restricted` is true) is left out, until the
restriction is lifted. The view follows the log; where a moment's lag matters (refusing a
processing the subject has just restricted) ask `RightsRequests.is_restricted`, which reads
the log itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from crypto.sql import Cursor, Database
from ledger.erasure import ErasureRecord
from ledger.rights import RightsFile
from projections.runner import Projection, live_table, time_text


@dataclass(frozen=True)
class RequestEntry:
    request_id: UUID
    subject_id: UUID
    kind: str
    received_at: datetime
    due_at: datetime
    status: str


class Tables:
    def __init__(self, prefix: str) -> None:
        self.requests = f"{prefix}_requests"
        self.restricted = f"{prefix}_restricted"


_CLOSING = {RightsFile.Fulfilled: "fulfilled", RightsFile.Refused: "refused",
            RightsFile.Withdrawn: "withdrawn"}
_COLUMNS = "request_id, subject_id, kind, received_at, due_at, status"


class RightsView(Projection):
    name = "rights"

    def create_tables(self, cur: Cursor, table: str, blob: str) -> None:
        t = Tables(table)
        cur.execute(f"CREATE TABLE {t.requests} (request_id TEXT PRIMARY KEY,"
                    " subject_id TEXT NOT NULL, kind TEXT NOT NULL, received_at TEXT NOT NULL,"
                    " due_at TEXT NOT NULL, status TEXT NOT NULL)")
        cur.execute(f"CREATE INDEX {t.requests}_by_subject ON {t.requests} (subject_id)")
        cur.execute(f"CREATE INDEX {t.requests}_open ON {t.requests} (status, due_at)")
        cur.execute(f"CREATE TABLE {t.restricted} (subject_id TEXT PRIMARY KEY,"
                    " since TEXT NOT NULL)")

    def shape(self, table: str) -> dict[str, frozenset[str]]:
        t = Tables(table)
        return {t.requests: frozenset(_COLUMNS.split(", ")),
                t.restricted: frozenset({"subject_id", "since"})}

    def subject_columns(self, table: str) -> list[tuple[str, tuple[str, ...]]]:
        t = Tables(table)
        return [(t.requests, ("subject_id",)), (t.restricted, ("subject_id",))]

    def process(self, cur: Cursor, table: str, event: Any) -> None:
        # An erased subject's events come as placeholders on a rebuild: nothing to insert.
        t = Tables(table)
        if isinstance(event, RightsFile.Filed):
            cur.execute(f"INSERT INTO {t.requests} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, 'open')"
                        " ON CONFLICT (request_id) DO NOTHING",
                        (str(event.request_id), str(event.owner_id), event.kind,
                         time_text(event.received_at), time_text(event.due_at)))
        elif isinstance(event, RightsFile.Extended):
            cur.execute(f"UPDATE {t.requests} SET due_at = ? WHERE request_id = ?",
                        (time_text(event.due_at), str(event.request_id)))
        elif type(event) in _CLOSING:
            cur.execute(f"UPDATE {t.requests} SET status = ? WHERE request_id = ?",
                        (_CLOSING[type(event)], str(event.request_id)))
        elif isinstance(event, RightsFile.Restricted):
            cur.execute(f"INSERT INTO {t.restricted} (subject_id, since) VALUES (?, ?)"
                        " ON CONFLICT (subject_id) DO NOTHING",
                        (str(event.owner_id), time_text(event.at)))
        elif isinstance(event, RightsFile.RestrictionLifted):
            cur.execute(f"DELETE FROM {t.restricted} WHERE subject_id = ?",
                        (str(event.owner_id),))
        elif isinstance(event, ErasureRecord.SubjectErased):
            self.forget(cur, table, [event.subject_id])


class RightsReader:
    def __init__(self, db: Database, projection: RightsView) -> None:
        self.db = db
        self.projection = projection

    def overdue(self, at: datetime, limit: int = 500) -> list[RequestEntry]:
        """RGT-4: the open requests whose due date is before `at`, oldest first."""
        return self._requests("status = 'open' AND due_at < ?", [time_text(at)], limit)

    def requests(self, status: str | None = None, limit: int = 500) -> list[RequestEntry]:
        """Every request (or those of one status), oldest first."""
        if status is None:
            return self._requests("1 = 1", [], limit)
        return self._requests("status = ?", [status], limit)

    def of_subject(self, subject_id: UUID) -> list[RequestEntry]:
        return self._requests("subject_id = ?", [str(subject_id)], 10_000)

    def subject_of(self, request_id: UUID) -> UUID | None:
        with self.db.transaction(write=False) as cur:
            t = Tables(live_table(cur, self.projection))
            cur.execute(f"SELECT subject_id FROM {t.requests} WHERE request_id = ?",
                        (str(request_id),))
            row = cur.fetchone()
        return UUID(row[0]) if row else None

    def is_restricted(self, subject_id: UUID) -> bool:
        with self.db.transaction(write=False) as cur:
            t = Tables(live_table(cur, self.projection))
            cur.execute(f"SELECT 1 FROM {t.restricted} WHERE subject_id = ?",
                        (str(subject_id),))
            return cur.fetchone() is not None

    def restricted_subjects(self) -> set[UUID]:
        with self.db.transaction(write=False) as cur:
            t = Tables(live_table(cur, self.projection))
            cur.execute(f"SELECT subject_id FROM {t.restricted}")
            return {UUID(row[0]) for row in cur.fetchall()}

    def _requests(self, where: str, params: list[Any], limit: int) -> list[RequestEntry]:
        with self.db.transaction(write=False) as cur:
            t = Tables(live_table(cur, self.projection))
            cur.execute(f"SELECT {_COLUMNS} FROM {t.requests} WHERE {where}"
                        " ORDER BY received_at, request_id LIMIT ?", [*params, limit])
            rows = cur.fetchall()
        return [RequestEntry(UUID(r[0]), UUID(r[1]), r[2], datetime.fromisoformat(r[3]),
                             datetime.fromisoformat(r[4]), r[5]) for r in rows]
