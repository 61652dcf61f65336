"""Rebuilds from the log (ANA-3): stopped at any point, a rebuild resumes where it stopped and
converges to the tables of an uninterrupted rebuild and of the live runner, while the old
generation keeps serving; the unfinished generation is never served, switched to or dropped by
the background runner. Keys are fetched once per subject per rebuild."""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.services import Services
from crypto import Aead
from crypto.sql import Cursor
from ledger.log import RebuildOpeners
from ledger.sealing import ErasedEvent
from projections.runner import Projection, ProjectionRunner, table_name
from tests.test_attempts import attempt


class Stopped(BaseException):
    """Stands for a Ctrl-C, a SIGTERM or a crash in the middle of a batch: a BaseException, as
    KeyboardInterrupt is, since an Exception from a projection sets its event aside."""


class Wrapping:
    """A test's projection that wraps another: the same name, tables and subject columns."""

    inner: Projection

    def create_tables(self, cur: Cursor, table: str, blob: str) -> None:
        self.inner.create_tables(cur, table, blob)

    def drop_tables(self, cur: Cursor, table: str) -> None:
        self.inner.drop_tables(cur, table)

    def subject_columns(self, table: str) -> list[tuple[str, tuple[str, ...]]]:
        return self.inner.subject_columns(table)

    def shape(self, table: str) -> dict[str, frozenset[str]]:
        return self.inner.shape(table)


class StopsAfter(Wrapping, Projection):
    """The projection it wraps, stopped after `events` events have been applied."""

    def __init__(self, inner: Projection, events: int) -> None:
        self.inner = inner
        self.name = inner.name
        self.left = events

    def process(self, cur: Cursor, table: str, event: Any) -> None:
        if self.left == 0:
            raise Stopped
        self.left -= 1
        self.inner.process(cur, table, event)


def history_with_erasures(services: Services) -> None:
    """Students with attempts over several levels, some erased part way through."""
    students = [services.ledger.register_student(f"S{i}", "12") for i in range(6)]
    for round_ in range(3):
        for n, student in enumerate(students[round_:], start=round_):
            services.attempts.record(student, attempt(level=f"csf/unit-1/level-{n % 3}",
                                                      result="solved" if n % 2 else "failed",
                                                      minute=round_ * 10 + n))
        services.ledger.erase_subject(students[round_], "user_request")


def tables(services: Services, runner: ProjectionRunner) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the live generation's tables, by the table's name without its generation."""
    generation = runner.live_generation()
    table = table_name(runner.projection, generation)
    rows = {}
    with services.read_models.transaction(write=False) as cur:
        for name in runner.projection.shape(table) or [table]:
            cur.execute(f"SELECT * FROM {name}")
            key = name.replace(f"_g{generation}", "")
            rows[key] = sorted(tuple(str(v) for v in row) for row in cur.fetchall())
    return rows


def stopping_runner(services: Services, runner: ProjectionRunner,
                    events: int) -> ProjectionRunner:
    return ProjectionRunner(services.ledger, services.read_models,
                            StopsAfter(runner.projection, events), batch_size=4,
                            rebuild_batch_size=4)


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kills=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=3))
def test_ANA_3_a_rebuild_killed_at_random_points_resumes_and_converges(
        services: Services, kills: list[int]) -> None:
    runner = services.progress
    if services.ledger.recorder.max_notification_id() is None:
        history_with_erasures(services)
    services.catch_up()
    live = tables(services, runner)
    serving = runner.live_generation()

    for events in kills:
        try:
            stopping_runner(services, runner, events).rebuild()
        except Stopped:
            pass
        else:
            serving = runner.live_generation()  # it ran to the end: switched over
            continue
        # Stopped part way: the old generation still serves, and untouched.
        assert runner.live_generation() == serving
        assert tables(services, runner) == live
        # The background runner follows the live generation only, and leaves the partial one.
        unfinished = runner.unfinished_generation()
        assert unfinished is not None and unfinished > serving
        runner.catch_up()
        assert runner.unfinished_generation() == unfinished

    runner.rebuild()  # resumes whatever is unfinished and switches over
    assert runner.unfinished_generation() is None
    assert tables(services, runner) == live
    runner.rebuild()  # and an uninterrupted rebuild gives the same
    assert tables(services, runner) == live


def test_a_rebuild_resumes_from_its_tracked_position_rather_than_starting_over(
        services: Services) -> None:
    history_with_erasures(services)
    services.catch_up()
    runner = services.progress
    with contextlib.suppress(Stopped):
        stopping_runner(services, runner, 9).rebuild()
    unfinished = runner.unfinished_generation()
    assert unfinished is not None
    resumed_from = runner.position(unfinished)
    assert resumed_from == 8  # two batches of four committed; the third rolled back

    seen: list[int] = []
    assert runner.rebuild(on_progress=lambda done, total: seen.append(done)) == unfinished
    assert seen and seen[0] > resumed_from  # the bar starts where the last run stopped
    assert runner.position() == services.ledger.recorder.max_notification_id()


class CountingKeyStore:
    """The key store, counting for each subject how often it was asked for."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.asked: Counter[UUID] = Counter()

    def load(self, subject_id: UUID) -> Any:
        self.asked[subject_id] += 1
        return self.store.load(subject_id)

    def load_many(self, subject_ids: list[UUID]) -> Any:
        self.asked.update(subject_ids)
        return self.store.load_many(subject_ids)

    def tombstones_for(self, subject_ids: list[UUID]) -> Any:
        self.asked.update(subject_ids)
        return self.store.tombstones_for(subject_ids)

    def tombstone(self, subject_id: UUID) -> Any:
        self.asked[subject_id] += 1
        return self.store.tombstone(subject_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_a_rebuild_asks_the_key_store_about_each_subject_at_most_once(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    history_with_erasures(services)
    services.catch_up()
    runner = services.progress
    events = services.ledger.read_log(0, 10_000, runner.wanted).events
    erased = sum(1 for event in events if isinstance(event, ErasedEvent))
    assert erased > 0
    keys = services.ledger.keys
    keys.forget_cached_keys()  # as in a fresh process
    # A shared key cache crowded by the server's other work keeps one key at a time: the
    # rebuild's own openers must not depend on it.
    monkeypatch.setattr(keys, "_key_cache", 1)
    counting = CountingKeyStore(keys.store)
    monkeypatch.setattr(keys, "store", counting)
    mapper = services.ledger.mapper
    real_open = mapper.open_stored
    keyless_opens = 0

    def open_stored(originator_id: Any, stream: bytes, version: int, topic: str,
                    state: bytes, aead: Aead | None) -> Any:
        nonlocal keyless_opens
        keyless_opens += aead is None
        return real_open(originator_id, stream, version, topic, state, aead)

    monkeypatch.setattr(mapper, "open_stored", open_stored)
    runner.rebuild_batch_size = 3  # each student's events span many pages

    runner.rebuild()

    assert counting.asked and max(counting.asked.values()) == 1
    # The erased students' events were handed no key: no attempt to decrypt them.
    assert keyless_opens == erased


def test_an_erasure_during_a_rebuild_voids_the_key_it_already_fetched(
        services: Services) -> None:
    ana = services.ledger.register_student("Ana", "12")
    openers = RebuildOpeners(services.ledger.keys)
    assert openers.of({ana.bytes})[ana.bytes] is not None
    services.ledger.erase_subject(ana, "user_request")
    assert openers.of({ana.bytes}) == {ana.bytes: None}
