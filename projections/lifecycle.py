"""The lifecycle view: whose deletion is pending since when (DEL-1, DEL-3), and when each
account was last active (DEL-6). What the purge job reads to find work.

Only pseudonymous facts rest here (ids, a reason code, times). The job never trusts this view
alone: before it purges anyone it reads the person's own stream (still deleted? window over?)
and their holds, because a view may lag a recovery by a moment and a purge cannot be undone.

Activity is an account's registration, each sign-in, and each attempt at a level.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from crypto.sql import Cursor, Database
from ledger.erasure import ErasureRecord
from ledger.people import Person
from ledger.progress import Progress
from ledger.sealing import ErasedEvent
from projections.runner import Projection, live_table, time_text


@dataclass(frozen=True)
class PendingDeletion:
    subject_id: UUID
    reason: str
    requested_at: datetime


class Tables:
    def __init__(self, prefix: str) -> None:
        self.deletions = f"{prefix}_deletions"
        self.activity = f"{prefix}_activity"
        self.erasures = f"{prefix}_erasures"


class LifecycleView(Projection):
    name = "lifecycle"

    def create_tables(self, cur: Cursor, table: str, blob: str) -> None:
        t = Tables(table)
        cur.execute(f"CREATE TABLE {t.deletions} (subject_id TEXT PRIMARY KEY,"
                    " reason TEXT NOT NULL, requested_at TEXT NOT NULL)")
        cur.execute(f"CREATE INDEX {t.deletions}_by_time ON {t.deletions} (requested_at)")
        cur.execute(f"CREATE TABLE {t.activity} (subject_id TEXT PRIMARY KEY, kind TEXT NOT NULL,"
                    " last_active_at TEXT NOT NULL, warned_at TEXT)")
        cur.execute(f"CREATE INDEX {t.activity}_by_time ON {t.activity} (last_active_at)")
        # Who was erased, in order: to list the receipts (the receipts are in the log).
        cur.execute(f"CREATE TABLE {t.erasures} (position INTEGER PRIMARY KEY,"
                    " subject_id TEXT NOT NULL UNIQUE)")

    def shape(self, table: str) -> dict[str, frozenset[str]]:
        t = Tables(table)
        return {t.deletions: frozenset({"subject_id", "reason", "requested_at"}),
                t.activity: frozenset({"subject_id", "kind", "last_active_at", "warned_at"}),
                t.erasures: frozenset({"position", "subject_id"})}

    def process(self, cur: Cursor, table: str, event: Any) -> None:
        t = Tables(table)
        if isinstance(event, Person.DeletionRequested):
            cur.execute(f"INSERT INTO {t.deletions} (subject_id, reason, requested_at)"
                        " VALUES (?, ?, ?) ON CONFLICT (subject_id) DO NOTHING",
                        (str(event.originator_id), event.reason, time_text(event.requested_at)))
        elif isinstance(event, Person.DeletionWithdrawn):
            cur.execute(f"DELETE FROM {t.deletions} WHERE subject_id = ?",
                        (str(event.originator_id),))
        elif isinstance(event, Person.Registered):
            self._active(cur, t, event.originator_id, _kind(event), event.timestamp)
        elif isinstance(event, Person.SignedIn):  # a kind the row already has
            self._active(cur, t, event.originator_id, "person", event.timestamp)
        elif isinstance(event, Person.InactivityWarned):
            cur.execute(f"UPDATE {t.activity} SET warned_at = ? WHERE subject_id = ?",
                        (time_text(event.warned_at), str(event.originator_id)))
        elif isinstance(event, Progress.AttemptRecorded):
            self._active(cur, t, event.owner_id, "student", event.timestamp)
        elif isinstance(event, ErasureRecord.SubjectErased):
            self.forget(cur, table, [event.subject_id])
            cur.execute(f"INSERT INTO {t.erasures} (position, subject_id) VALUES"
                        f" ((SELECT COALESCE(MAX(position), 0) + 1 FROM {t.erasures}), ?)"
                        " ON CONFLICT (subject_id) DO NOTHING", (str(event.subject_id),))
        elif isinstance(event, ErasedEvent):  # a rebuild after an erasure
            self.forget(cur, table, [UUID(str(event.originator_id))])

    def _active(self, cur: Cursor, t: Tables, subject_id: UUID, kind: str, at: datetime
                ) -> None:
        cur.execute(f"INSERT INTO {t.activity} AS a (subject_id, kind, last_active_at)"
                    " VALUES (?, ?, ?) ON CONFLICT (subject_id) DO UPDATE SET warned_at = NULL,"
                    " last_active_at = CASE WHEN excluded.last_active_at > a.last_active_at"
                    " THEN excluded.last_active_at ELSE a.last_active_at END",
                    (str(subject_id), kind, time_text(at)))

    def subject_columns(self, table: str) -> list[tuple[str, tuple[str, ...]]]:
        t = Tables(table)
        return [(t.deletions, ("subject_id",)), (t.activity, ("subject_id",))]


def _kind(event: Any) -> str:
    """The person's kind from their creation event's class: `Student.Registered`."""
    return type(event).__qualname__.split(".", 1)[0].lower()


class LifecycleReader:
    def __init__(self, db: Database, projection: LifecycleView) -> None:
        self.db = db
        self.projection = projection

    def pending(self, requested_by: datetime | None = None, limit: int | None = None
                ) -> list[PendingDeletion]:
        """Pending deletions, oldest first (only those asked for at or before the given time:
        a window of 28 days that began at t is closed at t + 28 days exactly, and the purge
        is due at that same instant, `GraceWindow.is_open`)."""
        with self.db.transaction(write=False) as cur:
            t = Tables(live_table(cur, self.projection))
            sql = f"SELECT subject_id, reason, requested_at FROM {t.deletions}"
            params: list[Any] = []
            if requested_by is not None:
                sql += " WHERE requested_at <= ?"
                params.append(time_text(requested_by))
            sql += " ORDER BY requested_at, subject_id"
            if limit is not None:
                sql += " LIMIT ?"
                params.append(limit)
            cur.execute(sql, params)
            rows = cur.fetchall()
        return [PendingDeletion(UUID(r[0]), r[1], datetime.fromisoformat(r[2]))
                for r in rows]

    def erased(self, after: int = 0, limit: int = 100) -> list[tuple[int, UUID]]:
        """Erased subjects in the order of their receipts: (position, subject id)."""
        with self.db.transaction(write=False) as cur:
            t = Tables(live_table(cur, self.projection))
            cur.execute(f"SELECT position, subject_id FROM {t.erasures} WHERE position > ?"
                        " ORDER BY position LIMIT ?", (after, limit))
            rows = cur.fetchall()
        return [(int(r[0]), UUID(r[1])) for r in rows]

    def inactive(self, active_before: datetime, kind: str | None = None,
                 limit: int | None = None, unwarned: bool = False) -> list[UUID]:
        """Accounts last active before the time and with no deletion pending, oldest first
        (only those not warned since they were last active, if `unwarned`)."""
        with self.db.transaction(write=False) as cur:
            t = Tables(live_table(cur, self.projection))
            sql = (f"SELECT a.subject_id FROM {t.activity} a WHERE a.last_active_at < ?"
                   f" AND NOT EXISTS (SELECT 1 FROM {t.deletions} d"
                   " WHERE d.subject_id = a.subject_id)")
            params: list[Any] = [time_text(active_before)]
            if kind is not None:
                sql += " AND a.kind = ?"
                params.append(kind)
            if unwarned:
                sql += " AND a.warned_at IS NULL"
            sql += " ORDER BY a.last_active_at, a.subject_id"
            if limit is not None:
                sql += " LIMIT ?"
                params.append(limit)
            cur.execute(sql, params)
            rows = cur.fetchall()
        return [UUID(r[0]) for r in rows]
