"""Issue 18: a projection never dies of one event. An event it cannot open or apply is set aside
(position, error class, digest: never a value) with its position moving past it, and it goes
on; an operator sees it (`status`), applies it again (`retry`) or acknowledges it (`skip`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
import pytest

from api.cli.main import main
from api.services import Services
from ledger.persistence import events_table
from ledger.progress import progress_id_for
from ledger.settings import Settings, sqlite_path
from projections.runner import (
    PENDING,
    SKIPPED,
    FoldingProjection,
    NotSetAside,
    ProjectionRunner,
)
from tests.conftest import Clock, point_the_command_line_at
from tests.test_api_accounts import serving
from tests.test_progress import attempt
from tests.test_purge_job import deleted_students, statuses

RUNNER_NAMES = ["directory", "roster", "progress", "projects_view", "lifecycle_view",
                "audit_view", "rights_view", "analytics_view"]
VICTIM_NAME = "Poisonous Quintessa"


def test_every_runner_is_covered(services: Services) -> None:
    """The poison test below runs over each runner of `Services.runners` by name."""
    named = {name: getattr(services, name) for name in RUNNER_NAMES}
    assert sorted(r.projection.name for r in named.values()) \
        == sorted(r.projection.name for r in services.runners)


class Poison(Exception):
    pass


class Poisoner:
    """Wraps a projection's entry points: any event of a poisoned stream makes them raise, as a
    value the projection chokes on would; the events passed on are remembered."""

    def __init__(self, runner: ProjectionRunner, monkeypatch: pytest.MonkeyPatch) -> None:
        self.streams: set[UUID] = set()
        self.seen: set[UUID] = set()
        projection = runner.projection
        names = ["fold"] if isinstance(projection, FoldingProjection) \
            else ["process", "process_page"]
        for name in names:
            monkeypatch.setattr(projection, name, self.wrap(getattr(projection, name)))

    def wrap(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def poisoned(*args: Any) -> Any:
            events = args[-1] if isinstance(args[-1], list | tuple) else [args[-1]]
            ids = {event.originator_id for event in events}
            if ids & self.streams:
                raise Poison(VICTIM_NAME)  # a message quoting a value: never stored
            self.seen |= ids
            return real(*args)
        return poisoned


def student_with_progress(services: Services, name: str) -> tuple[UUID, set[UUID]]:
    student = services.ledger.register_student(name, "12")
    services.attempts.record_many(student, [attempt()])
    return student, {student, progress_id_for(student)}


def set_aside_table_text(runner: ProjectionRunner) -> bytes:
    with runner.db.transaction(write=False) as cur:
        cur.execute("SELECT * FROM projection_set_aside")
        return repr(cur.fetchall()).encode()


@pytest.mark.parametrize("runner_name", RUNNER_NAMES)
def test_a_poison_event_is_set_aside_and_the_projection_goes_on(
        services: Services, monkeypatch: pytest.MonkeyPatch, runner_name: str) -> None:
    runner: ProjectionRunner = getattr(services, runner_name)
    before, _ = student_with_progress(services, "Before")
    services.catch_up()
    poisoner = Poisoner(runner, monkeypatch)
    victim, poisoner.streams = student_with_progress(services, VICTIM_NAME)
    later, later_streams = student_with_progress(services, "Later")

    services.catch_up()  # raised the projection's error before issue 18
    services.settle()

    status = runner.status()
    assert status["position"] == status["head"] and status["lag"] == 0
    pending = status["needs_attention"]
    assert pending and {p["error"] for p in pending} == {"Poison"}
    assert poisoner.seen & later_streams, "the events after the poison were applied"
    assert services.directory_reader.entry(later) is not None
    table = set_aside_table_text(runner)
    assert VICTIM_NAME.encode() not in table and str(victim).encode() not in table

    # the cause fixed, a retry applies them and they leave the table
    poisoner.streams = set()
    outcomes = runner.retry()
    assert outcomes and all(o.applied for o in outcomes)
    assert runner.status()["needs_attention"] == []
    assert poisoner.seen & {victim, progress_id_for(victim)}

    # a second poison, acknowledged: it stays unapplied, recorded as skipped
    _, poisoner.streams = student_with_progress(services, VICTIM_NAME)
    services.catch_up()
    still = [s["position"] for s in runner.status()["needs_attention"]]
    assert still
    assert [o.applied for o in runner.retry(still[0])] == [False]
    for position in still:
        runner.skip(position)
    status = runner.status()
    assert status["needs_attention"] == []
    assert [s["position"] for s in status["skipped"]] == still
    assert {s.error for s in runner.set_aside(status=SKIPPED)} == {"Poison"}
    with pytest.raises(NotSetAside):
        runner.skip(still[-1] + 10_000)
    assert before is not None


def test_a_page_failing_whole_sets_aside_only_its_bad_event(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = services.directory
    poisoner = Poisoner(runner, monkeypatch)
    people = [services.ledger.register_student(f"S{i}", "12") for i in range(5)]
    poisoner.streams = {people[2]}
    services.catch_up()
    assert {people[0], people[1], people[3], people[4]} <= poisoner.seen
    positions = [s.position for s in runner.set_aside(status=PENDING)]
    assert len(positions) == 1
    assert {e.id for e in services.directory_reader.entries()} \
        == {people[0], people[1], people[3], people[4]}


# -- a corrupt stored event --------------------------------------------------------------------
def flip_last_byte(settings: Settings, stream: UUID) -> int:
    """One flipped byte in the stored state of `stream`'s first event (in its AEAD tag, so it
    no longer opens), past the append-only guard as only the database's owner could; its
    notification id."""
    table = events_table(settings)
    if settings.backend == "sqlite":
        conn = sqlite3.connect(sqlite_path(settings.database_url), isolation_level=None)
        try:
            conn.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            nid, state = conn.execute(
                f"SELECT rowid, state FROM {table} WHERE originator_id = ?"
                " AND originator_version = 1", (stream.hex,)).fetchone()
            conn.execute(f"UPDATE {table} SET state = ? WHERE rowid = ?",
                         (bytes(state[:-1]) + bytes([state[-1] ^ 1]), nid))
        finally:
            conn.close()
        return int(nid)
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        pg.execute(f"SET search_path = {settings.schema}")  # type: ignore[arg-type]
        row = pg.execute(f"SELECT notification_id, state FROM {table}"  # type: ignore[arg-type]
                         " WHERE originator_id = %s AND originator_version = 1",
                         (stream,)).fetchone()
        assert row is not None
        nid, state = row
        pg.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")  # type: ignore[arg-type]
        pg.execute(f"UPDATE {table} SET state = %s WHERE notification_id = %s",  # type: ignore[arg-type]
                   (bytes(state[:-1]) + bytes([state[-1] ^ 1]), nid))
        pg.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")  # type: ignore[arg-type]
    return int(nid)


@pytest.fixture
def corrupt(settings: Settings) -> Iterator[tuple[Settings, UUID, int]]:
    """A ledger with a stored event that no longer opens, not yet read by the read models."""
    services = Services.open(settings)
    try:
        services.ledger.register_student("Before", "12")
        services.catch_up()
        victim = services.ledger.register_student(VICTIM_NAME, "12")
    finally:
        services.close()
    yield settings, victim, flip_last_byte(settings, victim)


def test_a_corrupt_stored_event_leaves_sign_ups_working(
        corrupt: tuple[Settings, UUID, int]) -> None:
    settings, victim, position = corrupt
    with serving(Services.open(settings)) as api:
        created = api.call("POST", "/sign-up/student", body={
            "display_name": "After", "age": "15", "email": "after@school.example",
            "password": "a long enough passphrase 1"})
        assert created.status_code == 201, created.text
        api.svc.settle()
        assert api.svc.directory_reader.entry(UUID(created.json()["id"])) is not None
        api.svc.catch_up()  # the other read models, as their threads would
        for runner in api.svc.runners:
            status = runner.status()
            assert status["lag"] == 0
            assert all(s["error"] == "MapperDeserialisationError"
                       for s in status["needs_attention"])
        (aside,) = api.svc.directory.set_aside()
        assert aside.position == position
        # not the cause fixed: a retry fails again and the event stays set aside
        assert [o.applied for o in api.svc.directory.retry()] == [False]
        assert [s.position for s in api.svc.directory.set_aside(status=PENDING)] == [position]
        text = set_aside_table_text(api.svc.directory)
        assert VICTIM_NAME.encode() not in text and str(victim).encode() not in text


@pytest.mark.parametrize("projection", ["student_directory", "analytics"])
def test_a_rebuild_sets_aside_a_corrupt_stored_event_and_says_so(
        corrupt: tuple[Settings, UUID, int], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], projection: str) -> None:
    settings, _, position = corrupt
    point_the_command_line_at(settings, monkeypatch)
    assert main(["rebuild", projection]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["set_aside"] == 1
    services = Services.open(settings)
    try:
        runner = next(r for r in services.runners if r.projection.name == projection)
        assert [s.position for s in runner.set_aside()] == [position]
    finally:
        services.close()


def test_a_rebuild_in_worker_processes_sets_aside_a_corrupt_stored_event(
        corrupt: tuple[Settings, UUID, int]) -> None:
    settings, _, position = corrupt
    services = Services.open(settings)
    try:
        live = services.analytics_view
        runner = ProjectionRunner(services.ledger, services.read_models, live.projection,
                                  fold_in_workers=True)
        assert runner.folds_in_workers(runner.live_generation() + 1)
        generation = runner.rebuild()
        assert [s.position for s in runner.set_aside(generation)] == [position]
        assert runner.status()["lag"] == 0
    finally:
        services.close()


def test_the_purge_fails_a_corrupt_subject_and_goes_on_to_the_others(
        settings: Settings, cheap_hashes: None) -> None:
    clock = Clock(datetime.now(UTC))
    svc = Services.open(settings, clock=clock)
    try:
        first, second, third = deleted_students(svc, clock, 3)
        flip_last_byte(settings, first)  # read by the views already; their own stream fails
        # and one the work list's view has not read yet, which its catch-up meets first
        flip_last_byte(settings, svc.ledger.register_student(VICTIM_NAME, "12"))
        svc.ledger.keys.forget_cached_keys()
        clock.advance(29)
        report = svc.purge_job.run()
        assert statuses(report) == [(first, "failed"), (second, "purged"), (third, "purged")]
        assert [(s, e) for s, _, e, _ in svc.purge_job.review.items()] == [
            (first, "MapperDeserialisationError")]
        assert [s.error for s in svc.lifecycle_view.set_aside()] == ["MapperDeserialisationError"]
    finally:
        svc.close()


def test_the_commands_show_retry_and_skip_a_set_aside_event(
        corrupt: tuple[Settings, UUID, int], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    settings, victim, position = corrupt
    point_the_command_line_at(settings, monkeypatch)
    services = Services.open(settings)
    try:
        services.catch_up()
    finally:
        services.close()

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert main(["projections", "status"]) == 0
    status = {s["projection"]: s for s in lines()}
    assert [a["position"] for a in status["student_directory"]["needs_attention"]] == [position]
    assert status["student_directory"]["lag"] == 0
    assert main(["projections", "retry", "student_directory"]) == 1  # still does not open
    assert lines() == [{"projection": "student_directory", "position": position,
                        "applied": False, "error": "MapperDeserialisationError"}]
    assert main(["projections", "skip", "nonesuch", "--position", "1"]) == 2
    assert main(["projections", "skip", "student_directory", "--position", "1"]) == 1
    assert "nothing set aside" in capsys.readouterr().err
    assert main(["projections", "skip", "student_directory", "--position", str(position)]) == 0
    capsys.readouterr()
    assert main(["projections", "status"]) == 0
    directory = next(s for s in lines() if s["projection"] == "student_directory")
    assert directory["needs_attention"] == []
    assert [s["position"] for s in directory["skipped"]] == [position]
    assert str(victim) not in json.dumps(directory)


def test_the_operator_sees_and_skips_over_http(corrupt: tuple[Settings, UUID, int]) -> None:
    settings, _, position = corrupt
    with serving(Services.open(settings)) as api:
        api.svc.catch_up()
        operator = api.staff("operator")
        assert api.call("GET", "/operations/projections", api.staff("registrar")).status_code \
            == 403
        items = api.call("GET", "/operations/projections", operator).json()["items"]
        directory = next(i for i in items if i["projection"] == "student_directory")
        assert [a["position"] for a in directory["needs_attention"]] == [position]
        # ... and so does a metrics scraper, by count only.
        metrics = api.call("GET", "/metrics", operator).text
        assert 'ledger_projection_set_aside_events{projection="student_directory"} 1' in metrics
        missing = api.call("POST", "/operations/projections/nonesuch/skip", operator,
                           {"position": position})
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        bad = api.call("POST", "/operations/projections/student_directory/skip", operator,
                       {"position": "x"})
        assert bad.status_code == 422
        retried = api.call("POST", "/operations/projections/student_directory/retry", operator,
                           {"position": position})
        assert retried.json()["outcomes"][0]["applied"] is False
        skipped = api.call("POST", "/operations/projections/student_directory/skip", operator,
                           {"position": position})
        assert skipped.status_code == 200, skipped.text
        metrics = api.call("GET", "/metrics", operator).text
        assert 'ledger_projection_set_aside_events{projection="student_directory"} 0' in metrics
        again = api.call("POST", "/operations/projections/student_directory/skip", operator,
                         {"position": position + 1000})
        assert again.status_code == 404
