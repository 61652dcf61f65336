"""Issue 18, finding 4: a stalled database answers 503 problem+json in seconds, not never.

Another session holds `LOCK TABLE ... IN ACCESS EXCLUSIVE MODE` (on the events table, then on
the read models' tables) while `/healthz`, a read and a write go through the app: each comes
back 503 `service-unavailable` with `Retry-After` (before, each waited as long as the lock was
held). The timeouts are test-sized (300 ms); no duration is asserted, only that the call came
back. Once the lock is gone, the same calls succeed. PostgreSQL only: SQLite's readers are never
blocked by a writer (WAL), and its writers' wait is the busy timeout, set from the same setting.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from api.services import Services
from ledger.persistence import events_table
from ledger.settings import Settings
from tests.conftest import POSTGRES_URL, drop_schemas, make_settings
from tests.test_api import Api, assert_problem

pytestmark = pytest.mark.postgres


@pytest.fixture
def api(tmp_path: Any) -> Iterator[Api]:
    settings = dataclasses.replace(make_settings("postgres", str(tmp_path)),
                                   statement_timeout_ms=300, lock_timeout_ms=300)
    services = Services.open(settings)
    client = Api(services)
    try:
        yield client
    finally:
        client.client.close()
        services.close()
        drop_schemas(settings.schema, settings.keystore_schema)


def read_model_tables(settings: Settings) -> list[str]:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s",
                            (settings.schema,)).fetchall()
    library = {events_table(settings), "ledger_snapshots"}
    return [f"{settings.schema}.{name}" for (name,) in rows if name not in library]


def calls(api: Api, student: str) -> list[tuple[str, str, Any]]:
    return [("GET", "/healthz", None), ("GET", f"/students/{student}", None),
            ("POST", "/students", {"display_name": "Ana", "age": "12"})]


@pytest.mark.parametrize("locked", ["events", "read models"])
def test_a_locked_table_is_503_at_once_and_the_calls_succeed_once_it_is_released(
        api: Api, locked: str) -> None:
    settings = api.services.settings
    student = api.student()
    api.services.settle()
    tables = ([f"{settings.schema}.{events_table(settings)}"] if locked == "events"
              else read_model_tables(settings))
    with psycopg.connect(POSTGRES_URL) as holder:
        holder.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
        # `/healthz` reads no read-model table (it pings the database): it is checked
        # against the events table only.
        for method, url, body in calls(api, student)[0 if locked == "events" else 1:]:
            response = api.call(method, url, body=body)
            assert_problem(response, 503)
            assert response.headers["Retry-After"]
        holder.rollback()  # the lock goes
    for method, url, body in calls(api, student):
        response = api.call(method, url, body=body)
        assert response.status_code in (200, 201), (url, response.text)
