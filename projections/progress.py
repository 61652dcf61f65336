"""Progress (PRG-1): tries, best result and latest try per student and level, for the views.

Built from `Progress.AttemptRecorded`, one row per (student, level). Every column is
pseudonymous (DESIGN: ids, level codes, counts, times, a rank from a fixed list), so nothing is
sealed here: the attempt's code and answers stay in the student's sealed stream and never reach
this table. The best result rests as its rank in `RESULTS`, so that the upsert keeps the best
with a plain comparison on both backends; times rest as UTC text of fixed width, which sorts
as time does.

Erasure: live, the `ErasureRecord.SubjectErased` record deletes the student's rows; on a
rebuild their events arrive as `ErasedEvent` placeholders whose stream is the progress stream,
so a small table maps each progress stream back to its student (and its row goes too).

The teacher's grid reads 30 students x 100 levels in one query on the primary key
(student_id, level), whatever the number of attempts in the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from crypto.sql import Cursor, Database
from ledger.erasure import ErasureRecord
from ledger.progress import RESULTS, LevelProgress, Progress
from ledger.sealing import ErasedEvent
from projections.runner import FoldingProjection, live_table, time_text

_RANK = {result: rank for rank, result in enumerate(RESULTS)}
_SOLVED, _OPTIMAL = _RANK["solved"], _RANK["optimal"]
_CHUNK = 500



@dataclass(frozen=True)
class ProgressCounts:
    """One student's totals: levels tried, solved (or better), optimal, attempts."""

    levels: int = 0
    solved: int = 0
    optimal: int = 0
    attempts: int = 0

    def __add__(self, other: ProgressCounts) -> ProgressCounts:
        return ProgressCounts(self.levels + other.levels, self.solved + other.solved,
                              self.optimal + other.optimal, self.attempts + other.attempts)


class Tables:
    def __init__(self, prefix: str) -> None:
        self.levels = f"{prefix}_levels"
        self.streams = f"{prefix}_streams"


class Rows(NamedTuple):
    """A run of a page's progress: new streams, and attempts by (student, level)."""

    streams: list[tuple[str, str]]
    levels: dict[tuple[UUID, str], list[Any]]


class ForgetStream(NamedTuple):
    stream_id: str  # an erased stream: a progress stream, or a student's own


class ForgetSubject(NamedTuple):
    subject_id: UUID


Step = Rows | ForgetStream | ForgetSubject


class ProgressView(FoldingProjection):
    name = "progress"
    consumes = (Progress.Started, Progress.AttemptRecorded, ErasureRecord.SubjectErased)

    def create_tables(self, cur: Cursor, table: str, blob: str) -> None:
        t = Tables(table)
        # On SQLite the rows are stored in the primary key's order (`WITHOUT ROWID`), so that
        # a student's levels are one contiguous range: the grid reads them without a look-up
        # from the index into the table per row, in half the time. PostgreSQL's table keeps its
        # index; the grid there reads one index range per student.
        clustered = " WITHOUT ROWID" if blob == "BLOB" else ""  # BLOB: SQLite's binary type
        cur.execute(
            f"CREATE TABLE {t.levels} (student_id TEXT NOT NULL, level TEXT NOT NULL,"
            " tries INTEGER NOT NULL, best INTEGER NOT NULL, last_at TEXT NOT NULL,"
            f" PRIMARY KEY (student_id, level)){clustered}"
        )
        cur.execute(f"CREATE TABLE {t.streams} (progress_id TEXT PRIMARY KEY,"
                    " student_id TEXT NOT NULL)")
        cur.execute(f"CREATE INDEX {t.streams}_by_student ON {t.streams} (student_id)")

    def shape(self, table: str) -> dict[str, frozenset[str]]:
        t = Tables(table)
        return {t.levels: frozenset({"student_id", "level", "tries", "best", "last_at"}),
                t.streams: frozenset({"progress_id", "student_id"})}

    def fold(self, events: Sequence[Any]) -> list[Step]:
        """A page's attempts folded per (student, level) in memory, for one upsert each: a
        student's attempts at a level mostly come together. An erasure takes what came before
        it."""
        steps: list[Step] = []
        levels: dict[tuple[UUID, str], list[Any]] = {}  # -> [tries, best rank, last at]
        streams: list[tuple[str, str]] = []
        for event in events:
            if isinstance(event, Progress.AttemptRecorded):
                rank, at = _RANK[event.result], event.attempted_at
                if (seen := levels.get((event.owner_id, event.level))) is None:
                    levels[(event.owner_id, event.level)] = [1, rank, at]
                else:
                    seen[0] += 1
                    seen[1] = max(seen[1], rank)
                    seen[2] = max(seen[2], at)
            elif isinstance(event, Progress.Started):
                streams.append((str(event.originator_id), str(event.owner_id)))
            elif isinstance(event, ErasedEvent | ErasureRecord.SubjectErased):
                steps.append(Rows(streams, levels))
                streams, levels = [], {}
                steps.append(ForgetStream(str(event.originator_id)) if isinstance(
                    event, ErasedEvent) else ForgetSubject(event.subject_id))
        steps.append(Rows(streams, levels))
        return steps

    def write(self, cur: Cursor, table: str, folded: list[Step]) -> None:
        t = Tables(table)
        for step in folded:
            if isinstance(step, Rows):
                self._write(cur, t, step.streams, step.levels)
            elif isinstance(step, ForgetStream):
                self._forget_stream(cur, table, step.stream_id)
            else:
                self.forget(cur, table, [step.subject_id])

    @staticmethod
    def _write(cur: Cursor, t: Tables, streams: list[tuple[str, str]],
               levels: dict[tuple[UUID, str], list[Any]]) -> None:
        if streams:
            cur.executemany(f"INSERT INTO {t.streams} (progress_id, student_id) VALUES (?, ?)"
                            " ON CONFLICT DO NOTHING", streams)
        if levels:
            cur.executemany(
                f"INSERT INTO {t.levels} AS p (student_id, level, tries, best, last_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (student_id, level) DO UPDATE SET"
                " tries = p.tries + excluded.tries,"
                " best = CASE WHEN excluded.best > p.best THEN excluded.best ELSE p.best END,"
                " last_at = CASE WHEN excluded.last_at > p.last_at THEN excluded.last_at"
                " ELSE p.last_at END",
                [(str(student), level, tries, best, time_text(last_at))
                 for (student, level), (tries, best, last_at) in levels.items()])

    def subject_columns(self, table: str) -> list[tuple[str, tuple[str, ...]]]:
        t = Tables(table)
        return [(t.levels, ("student_id",)), (t.streams, ("student_id",))]

    def _forget_stream(self, cur: Cursor, table: str, stream_id: str) -> None:
        """An erased stream: a progress stream (its student's rows), or the student's own."""
        cur.execute(f"SELECT student_id FROM {Tables(table).streams} WHERE progress_id = ?",
                    (stream_id,))
        row = cur.fetchone()
        self.forget(cur, table, [UUID(str(row[0]) if row else stream_id)])


class ProgressReader:
    """Reads the progress view; the API decides who may read whose."""

    def __init__(self, db: Database, projection: ProgressView) -> None:
        self.db = db
        self.projection = projection

    def of_student(self, student_id: UUID) -> dict[str, LevelProgress]:
        """Per level, in level order; empty for a student with no attempts (or erased)."""
        return self.grid([student_id]).get(student_id, {})

    def grid(self, student_ids: list[UUID], levels: list[str] | None = None
             ) -> dict[UUID, dict[str, LevelProgress]]:
        """The teacher's grid: each student's levels (only `levels`, if given), in one query
        for a section (500 students a query past that). Students with no attempts: absent."""
        found: dict[UUID, dict[str, LevelProgress]] = {}
        if not student_ids or levels == []:
            return found
        wanted = {str(student): student for student in student_ids}  # no UUID parse per row
        level_params = list(levels) if levels is not None else []
        with self.db.transaction(write=False) as cur:
            t = Tables(live_table(cur, self.projection))
            for chunk in _chunks(student_ids):
                cur.execute(self._grid_sql(t, len(chunk), len(level_params)),
                            (*chunk, *level_params))
                rows = cur.fetchall()
                current, levels_of = None, {}
                for student, level, tries, best, last_at in rows:  # in student order
                    if student != current:
                        current, levels_of = student, found.setdefault(wanted[student], {})
                    # Both drivers give INTEGER columns as int: no conversion per cell.
                    levels_of[level] = LevelProgress(tries, RESULTS[best],
                                                     datetime.fromisoformat(last_at))
        return found

    def _grid_sql(self, t: Tables, students: int, levels: int) -> str:
        """SQLite: IN lists on the primary key. PostgreSQL: one index range per student
        (LATERAL), which its planner keeps to even before statistics exist (a fresh generation
        after a rebuild), where an IN list would scan the whole table. There the levels are a
        filter on each student's range, not part of the index condition: before statistics,
        the planner would otherwise descend the index once per student and level (3,000
        descents for a grid of 30 x 100, measured at three times the time of reading the 30
        ranges, and costed high enough to be JIT-compiled on every read). `levels`: how many
        levels to keep, 0 for all."""
        wanted = ", ".join("?" for _ in range(levels)) if levels else ""
        if self.db.backend == "postgres":
            values = ", ".join("(?)" for _ in range(students))
            return (f"SELECT p.student_id, p.level, p.tries, p.best, p.last_at"
                    f" FROM (VALUES {values}) AS w (student_id) CROSS JOIN LATERAL"
                    f" (SELECT * FROM {t.levels} x WHERE x.student_id = w.student_id"
                    f" ORDER BY x.level OFFSET 0) p"  # OFFSET 0: the filter stays outside
                    f"{f' WHERE p.level IN ({wanted})' if wanted else ''}")
        return (f"SELECT student_id, level, tries, best, last_at FROM {t.levels}"
                f" WHERE student_id IN ({', '.join('?' for _ in range(students))})"
                f"{f' AND level IN ({wanted})' if wanted else ''} ORDER BY student_id, level")

    def report(self, student_ids: list[UUID]) -> dict[UUID, ProgressCounts]:
        """Totals per student (every student asked for; zeros for one with no attempts)."""
        counts = {student: ProgressCounts() for student in student_ids}
        with self.db.transaction(write=False) as cur:
            t = Tables(live_table(cur, self.projection))
            for chunk in _chunks(student_ids):
                cur.execute(
                    f"SELECT student_id, count(*),"
                    f" sum(CASE WHEN best >= {_SOLVED} THEN 1 ELSE 0 END),"
                    f" sum(CASE WHEN best >= {_OPTIMAL} THEN 1 ELSE 0 END), sum(tries)"
                    f" FROM {t.levels} WHERE student_id IN ({', '.join('?' for _ in chunk)})"
                    " GROUP BY student_id", chunk)
                for student, levels, solved, optimal, attempts in cur.fetchall():
                    counts[UUID(student)] = ProgressCounts(int(levels), int(solved),
                                                           int(optimal), int(attempts))
        return counts


def _chunks(ids: list[UUID]) -> list[list[str]]:
    unique = list(dict.fromkeys(str(i) for i in ids))
    return [unique[start:start + _CHUNK] for start in range(0, len(unique), _CHUNK)]
