"""Background work keeps going through faults (issue 18): supervised loops, /livez, /readyz and
/metrics.

Faults are injected by patching a runner's `run_once` or the sealer's `seal` to raise while a
switch is on; the shared PostgreSQL server is never stopped. Waits poll a condition with a
deadline; nothing asserts on timing.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import eventsourcing.persistence
import psycopg
import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from api.services import Services
from api.supervision import LoopState, Supervision
from api.tokens import TokenStore
from crypto import KeyStoreUnavailable
from crypto.sql import DatabaseUnavailable
from ledger.settings import Settings

PERSONAL = "Quillonia Zabriskie-Vantongeren"
FAULTS: list[Callable[[], BaseException]] = [
    lambda: psycopg.OperationalError(f"connection lost for {PERSONAL}"),
    lambda: eventsourcing.persistence.OperationalError(f"server closed for {PERSONAL}"),
    lambda: DatabaseUnavailable(),
    lambda: KeyStoreUnavailable(),
    lambda: Exception(f"something about {PERSONAL}"),
]


def eventually(condition: Callable[[], object], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


class Fault:
    """Raises `error()` while `on`, or `times` times; then calls through."""

    def __init__(self, real: Callable[..., Any], error: Callable[[], BaseException],
                 times: int | None = None) -> None:
        self.real, self.error, self.times = real, error, times
        self.on = times is None
        self.raised = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.on or (self.times is not None and self.raised < self.times):
            self.raised += 1
            raise self.error()
        return self.real(*args, **kwargs)


# -- the supervisor alone -----------------------------------------------------------------------
@pytest.mark.parametrize("fault", FAULTS)
def test_a_loop_survives_any_error_and_recovers_when_it_ends(
        fault: Callable[[], BaseException], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    supervision = Supervision(backoff_initial=0.01, backoff_max=0.05, watch_every=0.05)
    calls: list[int] = []
    body = Fault(lambda: calls.append(1), fault, times=4)
    try:
        loop = supervision.start("test-loop", body, every=0.01)
        eventually(lambda: loop.runs >= 2)
        assert body.raised == 4 and loop.failures == 4
        assert loop.current_state is LoopState.RUNNING and loop.consecutive_failures == 0
        assert loop.last_error == type(fault()).__name__ and loop.last_success is not None
        assert loop.restarts == 0  # survived in its own thread
    finally:
        supervision.stop()
    assert loop.current_state is LoopState.STOPPED
    assert PERSONAL not in caplog.text  # the class is logged, never the message
    assert type(fault()).__name__ in caplog.text


def test_the_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    supervision = Supervision(backoff_initial=0.5, backoff_max=30.0)
    for failures, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (7, 30.0), (500, 30.0)):
        waits = [supervision.backoff(failures) for _ in range(50)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits)


def test_a_loop_is_backing_off_while_the_fault_lasts() -> None:
    supervision = Supervision(backoff_initial=0.01, backoff_max=0.02, watch_every=0.05)
    body = Fault(lambda: None, lambda: psycopg.OperationalError("down"))
    try:
        loop = supervision.start("test-loop", body, every=0.01)
        eventually(lambda: body.raised >= 3)
        assert loop.current_state is LoopState.BACKING_OFF and not loop.healthy
        body.on = False
        eventually(lambda: loop.current_state is LoopState.RUNNING)
    finally:
        supervision.stop()


def test_a_loop_whose_thread_dies_is_restarted() -> None:
    """Only a BaseException gets past the loop; the watchdog starts the thread again."""
    supervision = Supervision(backoff_initial=0.01, backoff_max=0.02, watch_every=0.02)
    body = Fault(lambda: None, lambda: SystemExit(), times=1)
    try:
        loop = supervision.start("test-loop", body, every=0.01)
        eventually(lambda: loop.restarts >= 1 and loop.runs >= 1)
        assert loop.thread is not None and loop.thread.is_alive()
        assert loop.current_state is LoopState.RUNNING
    finally:
        supervision.stop()


def test_a_dead_thread_shows_as_dead_until_restarted() -> None:
    supervision = Supervision(watch_every=3600)  # the watchdog will not come in this test
    started = threading.Event()

    def die() -> None:
        started.set()
        raise SystemExit

    try:
        loop = supervision.start("test-loop", die, every=0.01)
        eventually(lambda: loop.thread is not None and not loop.thread.is_alive())
        assert loop.current_state is LoopState.DEAD and not loop.healthy
        assert supervision.check() == ["test-loop"] and loop.restarts == 1
    finally:
        supervision.stop()


# -- the services' loops, both backends ---------------------------------------------------------
@pytest.fixture
def svc(settings: Settings) -> Iterator[Services]:
    opened = Services.open(dataclasses.replace(settings, seal_every_seconds=0.05,
                                               purge_every_hours=0.0))
    opened.supervision = Supervision(backoff_initial=0.01, backoff_max=0.05, watch_every=0.05)
    yield opened
    opened.close()


@pytest.fixture
def http(svc: Services) -> Iterator[TestClient]:
    with TestClient(create_app(svc)) as client:
        yield client


def service_token(svc: Services, role: str = "service") -> dict[str, str]:
    issued = TokenStore(svc.read_models).issue(role, "probe", timedelta(hours=1))
    return {"Authorization": f"Bearer {issued.token}"}


@pytest.mark.parametrize("fault", FAULTS[:2], ids=["psycopg", "eventsourcing"])
def test_projection_loops_ride_out_a_database_fault_and_readyz_says_so(
        svc: Services, http: TestClient, monkeypatch: pytest.MonkeyPatch,
        fault: Callable[[], BaseException]) -> None:
    runner = svc.directory
    broken = Fault(runner.run_once, fault)
    monkeypatch.setattr(runner, "run_once", broken)
    student = svc.ledger.register_student("Ana", "12")
    svc.start_projections(poll_seconds=0.01)
    loop = svc.supervision.loops["projection-student_directory"]
    eventually(lambda: broken.raised >= 3)
    assert loop.current_state is LoopState.BACKING_OFF
    assert http.get("/livez").status_code == 200
    answer = http.get("/readyz")
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["type"] == "https://ledger.invalid/problems/not-ready"
    assert body["checks"]["loop:projection-student_directory"]["state"] == "backing_off"
    check = body["checks"]["loop:projection-student_directory"]
    assert check["last_error"] == type(fault()).__name__
    assert body["checks"]["event_store"]["state"] == "ok"
    assert PERSONAL not in answer.text
    assert http.get("/healthz").status_code == 503

    broken.on = False  # the fault ends
    eventually(lambda: loop.current_state is LoopState.RUNNING)
    eventually(lambda: svc.directory_reader.entries_of([student]))
    eventually(lambda: http.get("/readyz").status_code == 200)
    ready = http.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["checks"]["loop:projection-student_directory"] == {
        "state": "running", "restarts": 0, "failures": broken.raised,
        "last_error": type(fault()).__name__}
    assert http.get("/livez").status_code == 200
    assert http.get("/healthz").status_code == 200


def test_readyz_says_not_ready_while_a_read_model_is_behind(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A runner that follows nothing (stuck, yet not failing) leaves its read model behind."""
    svc = Services.open(dataclasses.replace(settings, ready_max_lag=0))
    try:
        monkeypatch.setattr(svc.roster, "run_once", lambda *args, **kwargs: 0)
        svc.start_projections(poll_seconds=0.01)
        with TestClient(create_app(svc)) as http:
            svc.ledger.register_student("Ana", "12")
            eventually(lambda: http.get("/readyz").status_code == 503)
            check = http.get("/readyz").json()["checks"]["projection:roster"]
            assert check["state"] == "behind" and check["lag"] >= 1
            monkeypatch.undo()  # unstuck
            eventually(lambda: http.get("/readyz").status_code == 200)
    finally:
        svc.close()


def test_the_sealer_recovers_from_a_fault(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = Fault(svc.merkle_log.seal, FAULTS[0], times=3)
    monkeypatch.setattr(svc.merkle_log, "seal", broken)
    svc.ledger.register_student("Ana", "12")
    svc.start_tree_keeping()
    loop = svc.supervision.loops["merkle-sealer"]
    eventually(lambda: loop.runs >= 1)
    assert broken.raised == 3 and loop.failures == 3
    end = svc.ledger.recorder.max_notification_id()
    assert svc.merkle_log.sealed_through() == end


def test_a_failed_purge_run_is_counted_and_retried(
        svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    svc.settings = dataclasses.replace(svc.settings, purge_every_hours=0.00001)  # ~0.04 s
    broken = Fault(svc.purge_job.run, lambda: psycopg.OperationalError("down"), times=2)
    monkeypatch.setattr(svc.purge_job, "run", broken)
    svc.start_purge_schedule()
    loop = svc.supervision.loops["purge-schedule"]
    eventually(lambda: loop.runs >= 1)
    assert svc.purge_metrics.runs["failed"] == 2 and svc.purge_metrics.runs["ok"] >= 1


# -- /metrics -----------------------------------------------------------------------------------
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = rf'{_NAME}="(?:[^"\\\n]|\\.)*"'
_SAMPLE = re.compile(rf"^({_NAME})(\{{{_LABEL}(?:,{_LABEL})*\}})? (-?[0-9.e+-]+|\+Inf|NaN)$")
_META = re.compile(rf"^# (HELP|TYPE) ({_NAME}) (.+)$")


def parse(text: str) -> dict[str, list[tuple[str, float]]]:
    """Every sample by name (its label text and value); fails on a line out of the format, a
    sample of an undeclared family, or a family declared twice."""
    assert text.endswith("\n")
    samples: dict[str, list[tuple[str, float]]] = {}
    typed: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            meta = _META.match(line)
            assert meta, line
            if meta.group(1) == "TYPE":
                assert meta.group(2) not in typed, line
                assert meta.group(3) in ("counter", "gauge", "histogram", "summary", "untyped")
                typed[meta.group(2)] = meta.group(3)
            continue
        found = _SAMPLE.match(line)
        assert found, line
        name = found.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in typed else name
        assert family in typed, line
        samples.setdefault(name, []).append((found.group(2) or "", float(found.group(3))))
    return samples


def test_metrics_in_prometheus_text_without_personal_values(
        svc: Services, http: TestClient) -> None:
    student = svc.ledger.register_student(PERSONAL, "12")
    svc.settle()
    svc.start_projections(poll_seconds=0.01)
    svc.start_tree_keeping()
    headers = service_token(svc)
    assert http.get(f"/students/{student}", headers=headers).status_code == 403
    http.get(f"/no/such/{student}")
    svc.lifecycle.erase_now(svc.ledger.register_student("Gone", "12"), "operator",
                            "school_request")
    eventually(lambda: all(loop.runs for loop in svc.supervision.loops.values()))

    answer = http.get("/metrics", headers=headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = answer.text
    assert PERSONAL not in text and str(student) not in text
    samples = parse(text)
    for name in ("ledger_http_request_duration_seconds_bucket",
                 "ledger_http_request_duration_seconds_count",
                 "ledger_projection_lag_events", "ledger_projection_set_aside_events",
                 "ledger_background_loop_state",
                 "ledger_background_loop_restarts_total", "ledger_erasures",
                 "ledger_purge_runs_total", "ledger_sealer_lag_events",
                 "ledger_key_cache_lookups_total", "ledger_up"):
        assert name in samples, name
    routes = {labels for labels, _ in samples["ledger_http_request_duration_seconds_count"]}
    assert any('route="/students/{person_id}"' in labels and 'status="403"' in labels
               for labels in routes)
    assert any('route="(unmatched)"' in labels for labels in routes)
    assert dict(samples["ledger_erasures"])[""] >= 1
    lags = dict(samples["ledger_projection_lag_events"])
    assert '{projection="student_directory"}' in lags
    running = dict(samples["ledger_background_loop_state"])
    assert running['{loop="projection-student_directory",state="running"}'] == 1


@pytest.mark.parametrize("role, status", [(None, 401), ("student", 403), ("auditor", 403),
                                          ("operator", 200), ("service", 200)])
def test_metrics_is_for_the_service_role_and_the_operator(
        svc: Services, http: TestClient, role: str | None, status: int) -> None:
    headers = service_token(svc, role) if role else {}
    answer = http.get("/metrics", headers=headers)
    assert answer.status_code == status
    if status != 200:
        assert answer.headers["content-type"] == "application/problem+json"


def test_livez_and_readyz_need_no_token(http: TestClient) -> None:
    assert http.get("/livez").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert {"key_store", "event_store", "read_models", "projection:student_directory"} <= set(
        ready.json()["checks"])
