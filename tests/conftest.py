"""Fixtures that run every behaviour on both backends.

PostgreSQL tests use `LEDGER_TEST_POSTGRES_URL` (default: the local server). Where that server
cannot be reached they skip, unless `LEDGER_REQUIRE_POSTGRES=1` (set by `.ci/run`), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pytest

from api.services import Services
from crypto import passwords
from ledger.application import Ledger
from ledger.settings import Settings

POSTGRES_URL = os.environ.get("LEDGER_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("LEDGER_REQUIRE_POSTGRES") == "1"

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def postgres_url() -> str:
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            pass
    except psycopg.OperationalError as error:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL is required here and unreachable: {error}")
        pytest.skip("PostgreSQL unreachable (set LEDGER_REQUIRE_POSTGRES=1 to fail instead)")
    return POSTGRES_URL


def drop_schemas(*schemas: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def make_settings(backend: str, var_dir: str, schema: str | None = None) -> Settings:
    if backend == "sqlite":
        return Settings.build(var_dir=var_dir, key_sync_seconds=0.2)
    return Settings.build(database_url=postgres_url(), schema=schema or f"t_{uuid4().hex[:12]}",
                          var_dir=var_dir, key_sync_seconds=0.2)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(backend: str, tmp_path: object) -> Iterator[Settings]:
    settings = make_settings(backend, str(tmp_path))
    yield settings
    if backend == "postgres":
        drop_schemas(settings.schema, settings.keystore_schema)


@pytest.fixture
def ledger(settings: Settings) -> Iterator[Ledger]:
    app = Ledger(settings)
    yield app
    app.close()


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    opened = Services.open(settings)
    yield opened
    opened.close()


class Clock:
    """A clock a test moves (the deletion lifecycle's, the token store's)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 9, 7, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, days: float) -> None:
        self.now += timedelta(days=days)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """scrypt at n=2^4: tests that make many passwords need not wait 50 ms a hash."""
    real, cheap = passwords.hash_password, passwords.ScryptCost(log2_n=4)
    monkeypatch.setattr(passwords, "hash_password", lambda pw, cost=cheap: real(pw, cost))


@pytest.fixture
def api(settings: Settings) -> Iterator[Any]:
    """An HTTP client over fresh services on the test's backend (tests.test_api_accounts)."""
    from tests.test_api_accounts import serving  # a test module, which imports this one
    with serving(Services.open(settings)) as client:
        yield client


# The settings that name the stores; the command line reads them from the environment.
_STORE_VARIABLES = ("LEDGER_DATABASE_URL", "LEDGER_READ_MODELS_URL", "LEDGER_SCHEMA",
                    "LEDGER_KEYSTORE_SCHEMA", "LEDGER_KEYSTORE_URL", "LEDGER_KEK",
                    "LEDGER_KEK_FILE", "LEDGER_SIGNING_KEY", "LEDGER_SIGNING_KEY_FILE")


def point_the_command_line_at(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `ledger ...` (Settings.from_env) open the stores of `settings`, both backends."""
    for name in _STORE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LEDGER_VAR_DIR", settings.var_dir)
    if settings.backend == "postgres":
        monkeypatch.setenv("LEDGER_DATABASE_URL", settings.database_url)
        monkeypatch.setenv("LEDGER_SCHEMA", settings.schema)
        monkeypatch.setenv("LEDGER_KEYSTORE_SCHEMA", settings.keystore_schema)


@pytest.fixture
def var_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The command line on the embedded default, in the test's own directory."""
    point_the_command_line_at(Settings.build(var_dir=str(tmp_path)), monkeypatch)
    return tmp_path
