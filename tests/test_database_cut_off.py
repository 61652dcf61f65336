"""The events database cut off for real, then restored (issue 18, finding 3).

A database of the test's own is made on the shared server; "cut off" is that database refusing
new connections (`ALLOW_CONNECTIONS false`) with every session of it ended, which is what a
network partition or a restarting server looks like to the ledger; the shared server itself is
never stopped. Before the supervised loops, the library's connection error ended the runner
threads for good, and the read models stayed behind until a restart. Waits poll a condition
with a deadline; nothing asserts on timing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import UUID, uuid4

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from api.services import Services
from api.supervision import LoopState, Supervision
from ledger.settings import Settings
from tests.conftest import POSTGRES_URL, postgres_url

pytestmark = pytest.mark.postgres


def eventually(condition: Callable[[], object], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if condition():
                return
        except Exception:  # the store is still coming back: ask again
            pass
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.05)


def _admin(statement: str, *params: object) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(statement, params or None)  # type: ignore[arg-type]


@pytest.fixture
def database() -> Iterator[str]:
    """A database of this test's own, dropped afterwards whatever happened."""
    postgres_url()  # skips, or fails in CI, when the server is unreachable
    name = f"cut_{uuid4().hex[:12]}"
    _admin(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        _admin(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _cut_off(name: str) -> None:
    _admin(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false")
    _admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
           " WHERE datname = %s AND pid <> pg_backend_pid()", name)


def _listed(svc: Services, person: UUID) -> bool:
    return bool(svc.directory_reader.entries_of([person]))


def test_the_events_database_cut_off_and_restored(database: str, tmp_path: Path) -> None:
    url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + database
    settings = Settings.build(database_url=url, schema="ledger", var_dir=str(tmp_path),
                              key_sync_seconds=0.2, purge_every_hours=0.0,
                              seal_every_seconds=0.05, statement_timeout_ms=1000,
                              lock_timeout_ms=500)
    svc = Services.open(settings)
    svc.supervision = Supervision(backoff_initial=0.02, backoff_max=0.3, watch_every=0.05)
    try:
        svc.start_projections(poll_seconds=0.02)
        svc.start_tree_keeping()
        with TestClient(create_app(svc)) as http:
            before = svc.ledger.register_student("Before", "12")
            eventually(lambda: _listed(svc, before))
            eventually(lambda: http.get("/readyz").status_code == 200)

            _cut_off(database)
            eventually(lambda: http.get("/readyz").status_code == 503)
            answer = http.get("/readyz")
            assert answer.headers["content-type"] == "application/problem+json"
            assert http.get("/livez").status_code == 200
            loops = svc.supervision.loops
            eventually(lambda: any(loop.current_state is LoopState.BACKING_OFF
                                   for loop in loops.values()))
            # A request that needs the store answers, and says it is unavailable.
            read = http.get("/healthz")
            assert read.status_code == 503 and read.json()["status"] == 503

            _admin(f"ALTER DATABASE {database} WITH ALLOW_CONNECTIONS true")
            made: list[UUID] = []

            def register() -> bool:
                made.append(svc.ledger.register_student("After", "12"))
                return True

            eventually(register)  # the pools reconnect
            eventually(lambda: _listed(svc, made[-1]))  # the runners went on by themselves
            eventually(lambda: http.get("/readyz").status_code == 200)
            assert all(loop.current_state is LoopState.RUNNING for loop in loops.values()
                       if loop.name.startswith("projection-"))
            assert svc.merkle_log.sealed_through() == svc.ledger.recorder.max_notification_id()
    finally:
        svc.close()
