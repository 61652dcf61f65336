"""Group commit of access records (ledger/audit.py), on both backends: concurrent readers'
records are saved together; each caller returns once the transaction holding its records has
committed; a failed transaction fails every caller in it, writes nothing of theirs, and the
next batches still work; a lone caller waits for nobody.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError, OperationalError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.application import Ledger
from ledger.audit import AccessNotRecorded, AccessRecord, AuditTrail, RecordsAccess
from ledger.settings import Settings

AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def ledger(settings: Settings) -> Iterator[Ledger]:
    opened = Ledger(settings)
    try:
        yield opened
    finally:
        opened.close()


def _access(student: UUID, reader: int, n: int) -> RecordsAccess:
    return RecordsAccess(actor_id=uuid4(), actor_role="teacher", student_id=student,
                         resource="/students/{person_id}", fields=["display_name"],
                         purpose="school_official", request_id=f"r{reader}-{n}")


class SlowTrail(AuditTrail):
    """Counts transactions and holds each one open a moment, so that callers pile up; fails
    the transactions whose number is in `failing`."""

    def __init__(self, ledger: Ledger, max_batch: int = 500, failing: frozenset[int] = frozenset()
                 ) -> None:
        super().__init__(ledger, max_batch)
        self.batches: list[list[str]] = []
        self.failing = failing
        self.gate = threading.Event()

    def _save(self, records: list[AccessRecord]) -> None:
        number = len(self.batches)
        self.batches.append([r.request_id for r in records])
        self.gate.wait(0.02)
        if number in self.failing:
            raise OperationalError("the log cannot be written")
        super()._save(records)


def _run(trail: AuditTrail, student: UUID, readers: int, per_reader: int, many: int = 1
         ) -> dict[str, BaseException | list[UUID]]:
    """`readers` threads, each recording `per_reader` times `many` records at once."""
    outcome: dict[str, BaseException | list[UUID]] = {}
    start = threading.Barrier(readers)

    def reader(k: int) -> None:
        start.wait()
        for n in range(per_reader):
            key = f"r{k}-{n}"
            try:
                outcome[key] = trail.record_accesses(
                    [_access(student, k, n) for _ in range(many)], AT)
            except AccessNotRecorded as error:
                outcome[key] = error

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a caller never returned"
    return outcome


def _saved(ledger: Ledger, ids: list[UUID]) -> dict[UUID, AccessRecord]:
    return AuditTrail(ledger).records(ids)


def test_many_readers_at_once_every_record_saved_exactly_once_in_fewer_transactions(
        ledger: Ledger) -> None:
    trail = SlowTrail(ledger)
    student = ledger.register_student("Ada Lovelace", "12")
    outcome = _run(trail, student, readers=8, per_reader=6)
    ids = [i for got in outcome.values() if isinstance(got, list) for i in got]
    assert len(ids) == 48 == len(set(ids))
    saved = _saved(ledger, ids)
    assert set(saved) == set(ids)
    assert {r.request_id for r in saved.values()} == set(outcome)
    # each request is in exactly one transaction, and callers shared them
    in_batches = [request for batch in trail.batches for request in batch]
    assert sorted(in_batches) == sorted(outcome)
    assert len(trail.batches) < 48


def test_a_failed_transaction_fails_every_caller_in_it_and_later_ones_still_work(
        ledger: Ledger) -> None:
    trail = SlowTrail(ledger, failing=frozenset({1}))
    student = ledger.register_student("Ada Lovelace", "12")
    outcome = _run(trail, student, readers=8, per_reader=4, many=3)
    failed = {key for key, got in outcome.items() if isinstance(got, BaseException)}
    # exactly the callers whose records were in transaction 1 fail, each with the cause
    assert failed == {request for request in trail.batches[1]}
    assert failed and all(isinstance(outcome[k], AccessNotRecorded) and isinstance(
        outcome[k].__cause__, OperationalError) for k in failed)
    assert len(trail.batches) > 2  # later transactions ran
    ids = [i for got in outcome.values() if isinstance(got, list) for i in got]
    assert set(_saved(ledger, ids)) == set(ids)
    # nothing of the failed callers was written: the log holds only the others' records
    logged = [e.request_id for e in ledger.read_log(0, 10_000).events
              if isinstance(e, AccessRecord.Recorded)]
    assert sorted(logged) == sorted(r.request_id for r in _saved(ledger, ids).values())
    assert not failed & set(logged)


def test_a_lone_caller_saves_at_once(ledger: Ledger) -> None:
    trail = SlowTrail(ledger)
    student = ledger.register_student("Ada Lovelace", "12")
    (record_id,) = trail.record_accesses([_access(student, 0, 0)], AT)
    assert trail.batches == [["r0-0"]]
    saved = _saved(ledger, [record_id])[record_id]
    assert (saved.student_id, saved.read_at) == (student, AT)


def test_one_callers_records_are_never_split_even_past_the_cap(ledger: Ledger) -> None:
    trail = SlowTrail(ledger, max_batch=4)
    student = ledger.register_student("Ada Lovelace", "12")
    ids = trail.record_accesses([_access(student, 0, n) for n in range(10)], AT)
    assert len(trail.batches) == 1 and len(trail.batches[0]) == 10
    assert set(_saved(ledger, ids)) == set(ids)


def test_a_batch_is_all_or_nothing_in_the_database(ledger: Ledger) -> None:
    """The transaction itself: one record that cannot be written takes the others with it."""
    trail = AuditTrail(ledger)
    student = ledger.register_student("Ada Lovelace", "12")

    def record(request_id: str) -> AccessRecord:
        return AccessRecord(owner_id=student, actor_id=uuid4(), actor_role="teacher",
                            resource="/students/{person_id}", fields=[],
                            purpose="school_official", request_id=request_id,
                            on_behalf_of=None, read_at=AT)

    first = record("first")
    clash = copy.deepcopy(first)  # the same stream and version, still pending
    ledger.save(first)
    fresh = record("fresh")
    with pytest.raises(IntegrityError):
        trail._save([fresh, clash])
    assert _saved(ledger, [fresh.id]) == {}
    assert set(_saved(ledger, [first.id])) == {first.id}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(readers=st.integers(1, 6), per_reader=st.integers(1, 4), many=st.integers(1, 3),
       cap=st.integers(1, 8), failing=st.frozensets(st.integers(0, 6), max_size=2))
def test_property_each_caller_returns_its_records_saved_or_fails_with_none_written(
        ledger: Ledger, readers: int, per_reader: int, many: int, cap: int,
        failing: frozenset[int]) -> None:
    trail = SlowTrail(ledger, max_batch=cap, failing=failing)
    trail.gate.set()  # no pause: many examples
    student = ledger.register_student("Ada Lovelace", "12")
    outcome = _run(trail, student, readers, per_reader, many)
    assert len(outcome) == readers * per_reader
    batch_of = {request: n for n, batch in enumerate(trail.batches) for request in batch}
    assert set(batch_of) == set(outcome)  # every caller's records went in one transaction
    for batch in trail.batches:
        # a cap is exceeded only by one caller's own records
        assert len(batch) <= max(cap, many)
        assert len(set(batch)) * many == len(batch)
    saved_ids: list[UUID] = []
    for key, got in outcome.items():
        if batch_of[key] in failing:
            assert isinstance(got, AccessNotRecorded)
        else:
            assert isinstance(got, list) and len(got) == many
            saved_ids += got
    saved: dict[UUID, Any] = _saved(ledger, saved_ids)
    assert set(saved) == set(saved_ids)


def test_bulk_read_opens_what_one_by_one_opens_and_leaves_out_the_erased(
        ledger: Ledger) -> None:
    trail = AuditTrail(ledger)
    kept, erased = (ledger.register_student(n, "12") for n in ("Ada Lovelace", "Alan Turing"))
    ids = trail.record_accesses([_access(s, 0, n) for n in range(3) for s in (kept, erased)],
                                AT)
    bulk = trail.records([*ids, uuid4()])
    assert set(bulk) == set(ids)
    for record_id in ids:
        alone = trail.record(record_id)
        assert alone is not None
        assert vars(bulk[record_id]) == vars(alone)
    ledger.erase_subject(erased, "user_request")
    left = trail.records(ids)
    assert {r.student_id for r in left.values()} == {kept} and len(left) == 3
    assert trail.records([]) == {}
