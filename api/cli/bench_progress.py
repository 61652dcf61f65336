"""The attempt workload of `ledger bench`: attempts recorded through the service layer
(`ledger.attempts.Attempts`), one per save and batched, against plain `eventsourcing` in the
same run.

Recording an attempt (`Attempts.record`, `Attempts.record_many`) gets the student's progress
stream (its latest snapshot and the events after it: snapshots every 50 events), validates and
records the attempts, and saves once. Its plain counterpart does the same on a plain aggregate
of the same shape (`PlainProgress`: the same events, the same derived summary, snapshots at the
same interval), in an application with no cipher and the default JSON transcoder: a
`repository.get`, the attempts recorded, a `save()`. Both sides work in the steady state: every
student already has a progress stream (made outside the timing), and the attempts go round the
students in turn. The payload is a realistic attempt (`attempt`): a level id, a result, a time,
seconds, hints, about 300 bytes of code and two answers.

The teacher grid (`fill`): a section's students get attempts over `GRID_LEVELS` levels, and
other students fill the store up to the number of attempts asked for, `FILL_BATCH` attempts a
save; the bench then catches the progress view up and reads the section's grid over the
`GRID_LEVELS` levels through `Services.section_progress` (what backs
`GET /sections/{id}/progress`: the teacher's access, the roster, the directory entries and
`ProgressReader.grid`, one query) and through `ProgressReader.grid` alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from ledger.application import Ledger
from ledger.attempts import Attempts
from ledger.progress import RESULTS, Attempt, LevelProgress

BATCH = 10  # attempts per save in the batched rows
STUDENTS = 50  # progress streams each side's attempts go round
SNAPSHOT_INTERVAL = 50  # as the ledger's for `Progress`
COURSE = "csf-2024"
GRID_LEVELS = 100
SECTION_SIZE = 30
FILL_BATCH = 500  # attempts per save when filling the store for the grid (`MAX_BATCH`)
SECTION_ATTEMPTS = 300  # at most, per student of the grid's section: 3 a level
OTHER_ATTEMPTS = 1_000  # per student outside the section, filling the store
TERM_START = datetime(2026, 9, 7, 8, 0, tzinfo=UTC)
CODE = (
    "when_run();\n"
    "for (var count = 0; count < 4; count++) {\n"
    "  moveForward();\n"
    "  turnRight(90);\n"
    "  if (isPathAhead()) {\n"
    "    moveForward();\n"
    "  } else {\n"
    "    turnLeft(90);\n"
    "  }\n"
    "}\n"
    "penColour('#228b22');\n"
    "for (var side = 0; side < 6; side++) {\n"
    "  moveForwardBy(100);\n"
    "  turnRightBy(60);\n"
    "}\n"
    "collectTreasure();\n"
)  # about 300 bytes, as a typical level's submitted blocks turned to code


def level_name(n: int) -> str:
    """The `n`th level (from 0) of the bench's course: 10 levels a lesson, 5 lessons a unit."""
    unit, rest = divmod(n, 50)
    lesson, level = divmod(rest, 10)
    return f"{COURSE}/unit-{unit + 1}/lesson-{lesson + 1}/level-{level + 1}"


LEVELS = [level_name(n) for n in range(GRID_LEVELS)]


def attempt(serial: int) -> Attempt:
    """A realistic attempt, varied by `serial`."""
    return Attempt(
        level=LEVELS[serial % GRID_LEVELS],
        result=RESULTS[serial % 3],
        attempted_at=TERM_START + timedelta(seconds=serial * 37 % (84 * 86400)),
        seconds=30 + serial % 600,
        hints=serial % 4,
        code=CODE,
        answers={"q1": "It repeats the moves four times", "q2": "b"},
    )


def fields(a: Attempt) -> dict[str, Any]:
    return {"level": a.level, "result": a.result, "attempted_at": a.attempted_at,
            "seconds": a.seconds, "hints": a.hints, "code": a.code, "answers": dict(a.answers)}


# -- plain eventsourcing: the same shape ------------------------------------------------------
class PlainProgress(Aggregate):
    """`ledger.progress.Progress` without the ledger: the same events and derived summary."""

    class Started(Aggregate.Created):
        owner_id: UUID

    class AttemptRecorded(Aggregate.Event):
        owner_id: UUID
        level: str
        result: str
        attempted_at: datetime
        seconds: int | None
        hints: int
        code: str
        answers: dict[str, str]

    @event(Started)
    def __init__(self, owner_id: UUID) -> None:
        self.owner_id = owner_id
        self.summary: dict[str, list[Any]] = {}

    @event(AttemptRecorded)
    def _record(self, owner_id: UUID, level: str, result: str, attempted_at: datetime,
                seconds: int | None, hints: int, code: str, answers: dict[str, str]) -> None:
        known = self.summary.get(level)
        now = (LevelProgress(*known).add(result, attempted_at) if known
               else LevelProgress(1, result, attempted_at))
        self.summary[level] = [now.tries, now.best, now.last_at]

    def record(self, a: Attempt) -> None:
        self._record(owner_id=self.owner_id, **fields(a))


class PlainProgressBench(Application[UUID]):
    """Plain `eventsourcing` with snapshots of `PlainProgress` at the ledger's interval."""

    name = "PlainProgressBench"
    is_snapshotting_enabled = True
    snapshotting_intervals = {PlainProgress: SNAPSHOT_INTERVAL}  # noqa: RUF012


@dataclass(frozen=True)
class AttemptFixture:
    students: list[UUID]  # the ledger's, each with a progress stream
    plain: list[UUID]  # the plain side's progress streams


def set_up(ledger: Ledger, plain: PlainProgressBench, students: int = STUDENTS
           ) -> AttemptFixture:
    """`students` students on each side, each with a first attempt (outside every timing)."""
    attempts = Attempts(ledger)
    ids = [ledger.register_student(f"Attempt Student {n}", "11") for n in range(students)]
    plain_ids = []
    for n, student_id in enumerate(ids):
        attempts.record(student_id, attempt(n))
        progress = PlainProgress(uuid4())
        progress.record(attempt(n))
        plain.save(progress)
        plain_ids.append(progress.id)
    return AttemptFixture(ids, plain_ids)


def ledger_attempts(ledger: Ledger, ids: Sequence[UUID], count: int, per_save: int,
                    offset: int) -> float:
    """`count` attempts through `Attempts`, `per_save` a save, round the students. Seconds."""
    attempts = Attempts(ledger)
    batches = _batches(count, per_save, offset)
    started = time.perf_counter()
    for n, batch in enumerate(batches):
        student = ids[(offset // per_save + n) % len(ids)]
        if per_save == 1:
            attempts.record(student, batch[0])
        else:
            attempts.record_many(student, batch)
    return time.perf_counter() - started


def plain_attempts(app: PlainProgressBench, ids: Sequence[UUID], count: int, per_save: int,
                   offset: int) -> float:
    """The plain counterpart: get the stream, record the attempts, save. Seconds."""
    batches = _batches(count, per_save, offset)
    started = time.perf_counter()
    for n, batch in enumerate(batches):
        progress: PlainProgress = app.repository.get(ids[(offset // per_save + n) % len(ids)])
        for a in batch:
            progress.record(a)
        app.save(progress)
    return time.perf_counter() - started


def _batches(count: int, per_save: int, offset: int) -> list[list[Attempt]]:
    """`count` attempts (made outside the timing) in saves of `per_save`."""
    made = [attempt(offset + i) for i in range(count)]
    return [made[i:i + per_save] for i in range(0, count, per_save)]


# -- the teacher grid ---------------------------------------------------------------------------
def term_of_attempts(serial: int, count: int) -> list[Attempt]:
    """`count` attempts of one student, going round the grid's levels."""
    return [attempt(serial * 7919 + i) for i in range(count)]


def section_attempts(total: int, size: int) -> int:
    """How many attempts each of the section's `size` students gets in `fill`: at most half
    of `total` for the section."""
    return min(SECTION_ATTEMPTS, max(1, total // (2 * size)))


def fill(ledger: Ledger, section: Sequence[UUID], total: int,
         register: Callable[[int], UUID], report: Callable[[int], None] | None = None) -> int:
    """Fill the store with `total` attempts, `FILL_BATCH` a save: the section's students get
    up to `SECTION_ATTEMPTS` each (every level tried when `total` allows), the rest go to
    other students, `OTHER_ATTEMPTS` each (`register(n)` makes the nth). Returns how many."""
    attempts = Attempts(ledger)
    each = section_attempts(total, len(section))
    done = 0
    for n, student in enumerate(section):
        done += _record_all(attempts, student, term_of_attempts(n, min(each, total - done)))
    others = 0
    while done < total:
        student = register(others)
        count = min(OTHER_ATTEMPTS, total - done)
        done += _record_all(attempts, student, term_of_attempts(len(section) + others, count))
        others += 1
        if report is not None and others % 100 == 0:
            report(done)
    return done


def _record_all(attempts: Attempts, student: UUID, made: list[Attempt]) -> int:
    for i in range(0, len(made), FILL_BATCH):
        attempts.record_many(student, made[i:i + FILL_BATCH])
    return len(made)
