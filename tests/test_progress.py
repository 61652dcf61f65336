"""The progress view (PRG-1), both backends: tries, best result and latest try per student and
level, derived from the log exactly as the student's own stream derives them; a teacher's grid
in one query; the report's totals; an erased student's rows gone live and after a rebuild,
whichever of the two erasure signals arrives; a rebuild equal to the live view over random
attempt sequences; nothing of an attempt's code or answers at rest in the clear."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.services import Services
from ledger.progress import RESULTS, Attempt, LevelProgress, progress_id_for
from ledger.sealing import ErasedEvent
from projections.progress import ProgressCounts, Tables
from projections.runner import live_table
from tests.test_leak_scan import haystack

T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
LEVELS = ("csf/unit-1/level-1", "csf/unit-1/level-2", "csf/unit-2/level-1")


def attempt(level: str = LEVELS[0], result: str = "solved", minute: int = 0,
            **more: Any) -> Attempt:
    return Attempt(level=level, result=result, attempted_at=T0 + timedelta(minutes=minute),
                   **more)


def rows_naming(services: Services, student: UUID) -> int:
    """Rows of the live progress tables that name the student or their progress stream."""
    with services.read_models.transaction(write=False) as cur:
        t = Tables(live_table(cur, services.progress.projection))
        cur.execute(f"SELECT count(*) FROM {t.levels} WHERE student_id = ?", (str(student),))
        levels = int(cur.fetchone()[0])
        cur.execute(f"SELECT count(*) FROM {t.streams} WHERE student_id = ? OR progress_id = ?",
                    (str(student), str(progress_id_for(student))))
        return levels + int(cur.fetchone()[0])


def test_PRG_1_the_view_derives_tries_best_and_last_try_like_the_stream(
        services: Services) -> None:
    ana = services.ledger.register_student("Ana", "12")
    services.attempts.record_many(ana, [
        attempt(LEVELS[0], "failed", 0), attempt(LEVELS[0], "optimal", 5),
        attempt(LEVELS[0], "solved", 9), attempt(LEVELS[1], "failed", 2),
        attempt(LEVELS[1], "failed", 1),  # reported late: the latest try stays minute 2
    ])
    services.settle()

    view = services.progress_reader.of_student(ana)
    assert view == services.attempts.progress(ana)  # the stream's own derivation
    assert view[LEVELS[0]] == LevelProgress(3, "optimal", T0 + timedelta(minutes=9))
    assert view[LEVELS[1]] == LevelProgress(2, "failed", T0 + timedelta(minutes=2))
    assert services.progress_reader.report([ana]) == {
        ana: ProgressCounts(levels=2, solved=1, optimal=1, attempts=5)}


def test_PRG_1_the_grid_of_many_students_in_one_read_with_a_level_filter(
        services: Services) -> None:
    students = [services.ledger.register_student(f"Pupil {n}", "12") for n in range(3)]
    for n, student in enumerate(students[:2]):
        services.attempts.record_many(student, [attempt(level, RESULTS[n], n)
                                                for level in LEVELS])
    services.settle()
    reader = services.progress_reader

    grid = reader.grid(students)
    assert set(grid) == set(students[:2])  # no attempts: no row
    assert {level: p.best for level, p in grid[students[1]].items()} == dict.fromkeys(
        LEVELS, "solved")
    only = reader.grid(students, [LEVELS[2], "no/such-level"])
    assert {s: set(levels) for s, levels in only.items()} == {
        s: {LEVELS[2]} for s in students[:2]}
    assert reader.grid(students, []) == {} and reader.grid([]) == {}
    assert reader.report(students)[students[2]] == ProgressCounts()


def test_PRG_1_an_erased_students_rows_vanish_live_and_after_rebuild(
        services: Services) -> None:
    gone, kept = (services.ledger.register_student(name, "12") for name in ("Gone", "Kept"))
    for student in (gone, kept):
        services.attempts.record_many(student, [attempt(level) for level in LEVELS])
    services.settle()
    assert rows_naming(services, gone) == len(LEVELS) + 1

    services.ledger.erase_subject(gone, "user_request")
    services.settle()
    assert services.progress_reader.of_student(gone) == {}
    assert rows_naming(services, gone) == 0
    assert len(services.progress_reader.of_student(kept)) == len(LEVELS)

    services.progress.rebuild()
    assert services.progress_reader.of_student(gone) == {}
    assert rows_naming(services, gone) == 0
    assert services.progress_reader.of_student(kept) == services.attempts.progress(kept)


def test_PRG_1_the_placeholder_of_a_progress_stream_alone_removes_the_rows(
        services: Services) -> None:
    """The rebuild's signal on its own: an erased progress stream maps back to its student."""
    student = services.ledger.register_student("Placeholder", "12")
    services.attempts.record(student, attempt())
    services.settle()
    projection = services.progress.projection
    with services.read_models.transaction() as cur:
        projection.process(cur, live_table(cur, projection),
                           ErasedEvent(progress_id_for(student), 2, "ledger.progress:Progress"))
    assert services.progress_reader.of_student(student) == {}
    assert rows_naming(services, student) == 0


def test_PRG_1_no_code_or_answer_at_rest_in_the_clear(services: Services) -> None:
    student = services.ledger.register_student("Coder", "12")
    code = f"turnLeft(); // {uuid4().hex}"
    answer = f"it repeats {uuid4().hex}"
    services.attempts.record_many(student, [attempt(code=code, answers={"why": answer}),
                                            attempt(LEVELS[1], code=code)])
    services.settle()
    services.progress.rebuild()
    assert services.progress_reader.of_student(student)[LEVELS[0]].tries == 1
    assert haystack(services.settings).find({"code": code.encode(),
                                             "answer": answer.encode()}) == []


# -- a rebuild equals the live view -------------------------------------------------------------
_STEP = st.one_of(
    st.tuples(st.just("attempt"), st.integers(0, 2), st.integers(0, 2),
              st.sampled_from(RESULTS), st.integers(-30, 30)),
    st.tuples(st.just("erase"), st.integers(0, 2)),
    st.tuples(st.just("catch_up")),
)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(_STEP, min_size=1, max_size=16))
def test_PRG_1_a_rebuilt_view_equals_the_live_one(services: Services,
                                                  steps: list[tuple[Any, ...]]) -> None:
    students = [services.ledger.register_student(f"Prop {n}", "12") for n in range(3)]
    erased: set[UUID] = set()
    expected: dict[UUID, dict[str, LevelProgress]] = {s: {} for s in students}
    for step in steps:
        if step[0] == "attempt":
            student, level = students[step[1]], LEVELS[step[2]]
            if student in erased:
                continue
            at = T0 + timedelta(minutes=step[4])
            services.attempts.record(student, Attempt(level, step[3], at))
            known = expected[student].get(level)
            expected[student][level] = (known.add(step[3], at) if known
                                        else LevelProgress(1, step[3], at))
        elif step[0] == "erase":
            student = students[step[1]]
            services.ledger.erase_subject(student, "user_request")
            erased.add(student)
            expected[student] = {}
        else:
            services.progress.catch_up()
    services.settle()
    live = services.progress_reader.grid(students)
    services.progress.rebuild()
    rebuilt = services.progress_reader.grid(students)
    assert live == rebuilt
    assert {s: levels for s, levels in expected.items() if levels} == live
    assert all(rows_naming(services, s) == 0 for s in erased)


def test_on_sqlite_the_levels_are_clustered_by_student_in_every_generation(
        services: Services) -> None:
    """SQLite keeps the levels table in primary-key order (`WITHOUT ROWID`), so that a
    student's levels are one contiguous range for the grid, in a rebuilt generation too."""
    if services.read_models.backend != "sqlite":
        return  # PostgreSQL's table keeps its index
    ana = services.ledger.register_student("Ana", "12")
    services.attempts.record_many(ana, [attempt(level) for level in LEVELS])
    services.settle()
    for _ in range(2):
        with services.read_models.transaction(write=False) as cur:
            t = Tables(live_table(cur, services.progress.projection))
            cur.execute("SELECT sql FROM sqlite_master WHERE name = ?", (t.levels,))
            assert "WITHOUT ROWID" in cur.fetchone()[0]
        assert services.progress_reader.of_student(ana) == services.attempts.progress(ana)
        services.progress.rebuild()
