"""Attempts at levels (PRG-1) through the `Attempts` service: every field kept, sealed under the
student's key; tries and best result derived; a batch all or nothing; erased with the student."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from eventsourcing.application import project_aggregate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto import KeyErased
from ledger.application import Ledger, PersonNotFound
from ledger.attempts import MAX_BATCH, Attempts, stored_progress
from ledger.people import InvalidRecord
from ledger.progress import RESULTS, Attempt, Progress, progress_id_for
from ledger.sealing import ErasedEvent
from tests.test_leak_scan import haystack

T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)


def attempt(level: str = "csf/unit-1/level-1", result: str = "solved", minute: int = 0,
            **more: object) -> Attempt:
    return Attempt(level=level, result=result, attempted_at=T0 + timedelta(minutes=minute),
                   **more)  # type: ignore[arg-type]


def test_PRG_1_every_field_of_an_attempt_is_kept_sealed_in_the_students_stream(
        ledger: Ledger) -> None:
    attempts = Attempts(ledger)
    ana = ledger.register_student("Ana", "12")
    code = f"moveForward(); // {uuid4().hex}"
    answer = f"because {uuid4().hex}"
    attempts.record(ana, attempt(seconds=95, hints=2, code=code, answers={"q1": answer}))

    [recorded] = [e for e in ledger.history(progress_id_for(ana))
                  if isinstance(e, Progress.AttemptRecorded)]
    assert (recorded.level, recorded.result, recorded.attempted_at, recorded.seconds,
            recorded.hints, recorded.code, recorded.answers) == (
        "csf/unit-1/level-1", "solved", T0, 95, 2, code, {"q1": answer})
    assert haystack(ledger.settings).find({"code": code.encode(),
                                           "answer": answer.encode()}) == []


def test_PRG_1_tries_and_best_result_are_derived_per_level(ledger: Ledger) -> None:
    attempts = Attempts(ledger)
    ana = ledger.register_student("Ana", "12")
    attempts.record_many(ana, [attempt(result="failed", minute=0),
                               attempt(result="optimal", minute=1),
                               attempt(result="solved", minute=2),
                               attempt(level="csf/unit-1/level-2", result="failed", minute=3)])
    progress = attempts.progress(ana)
    first, second = progress["csf/unit-1/level-1"], progress["csf/unit-1/level-2"]
    assert (first.tries, first.best, first.last_at) == (3, "optimal", T0 + timedelta(minutes=2))
    assert (second.tries, second.best) == (1, "failed")


@given(st.lists(st.tuples(st.sampled_from(["a/1", "a/2", "b/1"]), st.sampled_from(RESULTS)),
                min_size=1, max_size=70))
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_PRG_1_derived_progress_equals_a_count_of_the_attempts_across_snapshots(
        ledger: Ledger, tries: list[tuple[str, str]]) -> None:
    attempts = Attempts(ledger)
    student = ledger.register_student("Sam", "14")
    for minute, (level, result) in enumerate(tries):  # one per save: snapshots every 50
        attempts.record(student, attempt(level=level, result=result, minute=minute))
    progress = attempts.progress(student)
    for level in {level for level, _ in tries}:
        results = [r for lv, r in tries if lv == level]
        assert progress[level].tries == len(results)
        assert progress[level].best == max(results, key=RESULTS.index)


def test_PRG_1_a_batch_is_recorded_whole_or_not_at_all(ledger: Ledger) -> None:
    attempts = Attempts(ledger)
    ana = ledger.register_student("Ana", "12")
    attempts.record(ana, attempt())
    before = ledger.recorder.max_notification_id()

    with pytest.raises(InvalidRecord) as refused:
        attempts.record_many(ana, [attempt(minute=1), attempt(result="perfect", minute=2)])
    assert refused.value.field == "result"
    with pytest.raises(InvalidRecord):
        attempts.record_many(ana, [attempt(minute=n) for n in range(MAX_BATCH + 1)])
    assert ledger.recorder.max_notification_id() == before
    assert attempts.progress(ana)["csf/unit-1/level-1"].tries == 1


@pytest.mark.parametrize(("field", "change"), [
    ("level", {"level": "CSF/Unit 1"}), ("level", {"level": ""}),
    ("result", {"result": "passed"}),
    ("attempted_at", {"attempted_at": datetime(2026, 9, 1, 9, 0)}),  # no time zone
    ("seconds", {"seconds": -1}), ("hints", {"hints": -3}),
    ("code", {"code": "x" * (64 * 1024 + 1)}),
    ("answers", {"answers": {f"q{n}": "a" for n in range(51)}}),
])
def test_PRG_1_bad_attempts_are_refused_naming_the_field(
        ledger: Ledger, field: str, change: dict[str, object]) -> None:
    attempts = Attempts(ledger)
    ana = ledger.register_student("Ana", "12")
    fields: dict[str, object] = {"level": "csf/unit-1/level-1", "result": "solved",
                                 "attempted_at": T0, **change}
    with pytest.raises(InvalidRecord) as refused:
        attempts.record(ana, Attempt(**fields))  # type: ignore[arg-type]
    assert refused.value.field == field
    assert attempts.progress(ana) == {}


def test_attempts_of_a_made_up_student_make_no_key_and_write_nothing(ledger: Ledger) -> None:
    attempts = Attempts(ledger)
    keys_before = ledger.keys.store.count_live()
    made_up = uuid4()
    with pytest.raises(PersonNotFound):
        attempts.record(made_up, attempt())
    assert ledger.keys.store.count_live() == keys_before
    assert ledger.aggregate(progress_id_for(made_up), Progress) is None


def test_an_erased_students_progress_is_unreadable_and_takes_no_more_attempts(
        ledger: Ledger) -> None:
    attempts = Attempts(ledger)
    ana, ben = ledger.register_student("Ana", "12"), ledger.register_student("Ben", "12")
    for student in (ana, ben):
        attempts.record_many(student, [attempt(minute=n) for n in range(60)])  # a snapshot too
    ledger.erase_subject(ana, "user_request")

    assert all(isinstance(e, ErasedEvent) for e in ledger.history(progress_id_for(ana)))
    with pytest.raises(KeyErased):
        attempts.progress(ana)
    with pytest.raises(KeyErased):
        attempts.record(ana, attempt(minute=99))
    assert attempts.progress(ben)["csf/unit-1/level-1"].tries == 60


def test_a_snapshot_is_taken_from_the_saved_aggregate_and_opens_to_the_replayed_state(
        ledger: Ledger) -> None:
    """Snapshots are taken from the aggregate in hand after its save (not by reading the stream
    back): one per save that reaches a multiple of 50, at the save's last version, sealed, and
    the state it gives is the one a replay of every event gives."""
    attempts = Attempts(ledger)
    ana = ledger.register_student("Ana", "12")
    code = f"turnLeft(); // {uuid4().hex}"
    attempts.record(ana, attempt(code=code))  # versions 1 (started) and 2
    for batch in range(6):  # 10 a save: versions 12 ... 62; 50 falls inside the 5th save
        attempts.record_many(ana, [attempt(level=f"csf/unit-1/level-{n % 3}",
                                           result=RESULTS[n % 3], minute=10 * batch + n)
                                   for n in range(10)])
    assert ledger.snapshots is not None
    stream = progress_id_for(ana)
    assert [s.originator_version for s in ledger.snapshots.get(stream)] == [52]
    assert haystack(ledger.settings).find({"code": code.encode()}) == []

    from_snapshot = ledger.aggregate(stream, Progress)
    events = ledger.history(stream)
    replayed = project_aggregate(None, events)
    assert from_snapshot.version == replayed.version == len(events) == 62
    assert vars(from_snapshot) == vars(replayed)


def test_the_attempt_path_reads_a_stream_as_the_ledger_does_and_an_erased_one_as_none(
        ledger: Ledger) -> None:
    """`Attempts` reads progress streams with its own projector (no runtime `Protocol` check
    per event): the aggregate it gives is the one `Ledger.aggregate` gives, and an erased
    student's stream gives nothing."""
    attempts = Attempts(ledger)
    ana = ledger.register_student("Ana", "12")
    attempts.record_many(ana, [attempt(minute=n, result=RESULTS[n % 3]) for n in range(57)])
    mine = stored_progress(ledger, ana)
    theirs = ledger.aggregate(progress_id_for(ana), Progress)
    assert mine is not None and vars(mine) == vars(theirs)
    assert stored_progress(ledger, uuid4()) is None
    ledger.erase_subject(ana, "user_request")
    assert stored_progress(ledger, ana) is None
