"""Set-up of the stores from `Settings`: the event store's environment for `eventsourcing`,
the append-only rule (LED-1), and the key store with its keyring."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

import psycopg
import psycopg_pool
from eventsourcing.persistence import ApplicationRecorder, InterfaceError, OperationalError
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresFactory
from eventsourcing.utils import get_topic

from crypto import SubjectKeys
from crypto.kek import Keyring
from crypto.keystore import KeyStore
from crypto.signing import LedgerSigner
from crypto.sql import (
    Database,
    PostgresDatabase,
    SQLiteDatabase,
    ensure_schema,
    session_options,
)
from ledger.merkle_log import MerkleLog
from ledger.settings import Settings, is_postgres, sqlite_path

APPEND_ONLY_MESSAGE = "the ledger is append-only: events are never updated or deleted"
REPLACE_MESSAGE = "the ledger is append-only: this event position is already taken"

F = TypeVar("F", bound=Callable[..., Any])
# Errors of a wait that ran out: trying again would only wait as long again.
TIMEOUTS = (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable,
            psycopg_pool.PoolTimeout)


def _once_more_unless_timed_out(method: F) -> F:
    """The library retries its recorder's calls 10 times, 0.2 s apart, on any operational
    error: under a stalled database that is ten statement timeouts in a row. Here a call is
    tried again once, after a broken connection (a server restart, say), and never after a
    timeout, so a call on a stalled database fails within one statement timeout."""
    @wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (InterfaceError, OperationalError) as error:
            if isinstance(error.__cause__, TIMEOUTS):
                raise
        return method(*args, **kwargs)
    return call  # type: ignore[return-value]


def _unretried(name: str) -> Any:
    """The library's method `name` without its retry decorator (`functools.wraps` keeps it)."""
    return getattr(PostgresApplicationRecorder, name).__wrapped__


class BoundedPostgresRecorder(PostgresApplicationRecorder):
    """The library's recorder, its retries bounded (`_once_more_unless_timed_out`)."""

    insert_events = _once_more_unless_timed_out(_unretried("insert_events"))
    select_events = _once_more_unless_timed_out(_unretried("select_events"))
    select_notifications = _once_more_unless_timed_out(_unretried("select_notifications"))
    max_notification_id = _once_more_unless_timed_out(_unretried("max_notification_id"))


def bound_library_sessions(factory: object, settings: Settings) -> None:
    """Give the library's PostgreSQL connections the statement and lock timeouts of ours: its
    pool takes no session options from the environment, so they go into the pool's connection
    arguments before its first connection is made."""
    if isinstance(factory, PostgresFactory):
        options = session_options(settings.statement_timeout_ms, settings.lock_timeout_ms)
        kwargs = factory.datastore.pool.kwargs
        assert isinstance(kwargs, dict), "the library gives its pool a dict of arguments"
        kwargs["options"] = options


def eventsourcing_env(settings: Settings) -> dict[str, str]:
    if settings.backend == "sqlite":
        path = sqlite_path(settings.database_url)
        if ":memory:" not in path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": path,
                # Whole seconds; at least one, since none means the library's default of 5.
                "SQLITE_LOCK_TIMEOUT": str(max(1, math.ceil(settings.lock_timeout_ms / 1000)))}
    url = urlparse(settings.database_url)
    # The library needs its schema to exist; creating it is ours.
    ensure_schema(settings.database_url, settings.schema)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": url.path.lstrip("/") or "postgres",
        "POSTGRES_HOST": url.hostname or "localhost",
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": unquote(url.username or os.environ.get("USER", "postgres")),
        "POSTGRES_PASSWORD": unquote(url.password or ""),
        "POSTGRES_SCHEMA": settings.schema,
        # The library sets its own lock timeout, in whole seconds, for the table lock of every
        # insert (0 would wait for ever); the session's statement timeout cuts it shorter.
        "POSTGRES_LOCK_TIMEOUT": str(max(1, math.ceil(settings.lock_timeout_ms / 1000))),
        # Its pool's wait for a connection, in whole seconds (its default is 30).
        "POSTGRES_CONNECT_TIMEOUT": str(max(1, math.ceil(settings.statement_timeout_ms / 1000))),
        "APPLICATION_RECORDER_TOPIC": get_topic(BoundedPostgresRecorder),
    }


def enforce_append_only(recorder: ApplicationRecorder, backend: str) -> None:
    """Make the database itself refuse UPDATE and DELETE on events and snapshots (LED-1)."""
    datastore: Any = recorder.datastore  # type: ignore[attr-defined]
    if backend == "sqlite":
        statements = [
            f"CREATE TRIGGER IF NOT EXISTS {table}_no_{verb.lower()} BEFORE {verb} ON {table}"
            f" BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
            for table in ("stored_events", "stored_snapshots")
            for verb in ("UPDATE", "DELETE")
        ] + [
            # REPLACE (INSERT OR REPLACE, REPLACE INTO) deletes the old row without firing
            # DELETE triggers: refuse any insert at a position that is already taken.
            f"CREATE TRIGGER IF NOT EXISTS {table}_no_replace BEFORE INSERT ON {table}"
            f" WHEN EXISTS (SELECT 1 FROM {table} WHERE originator_id = NEW.originator_id"
            " AND originator_version = NEW.originator_version)"
            f" BEGIN SELECT RAISE(ABORT, '{REPLACE_MESSAGE}'); END"
            for table in ("stored_events", "stored_snapshots")
        ]
    else:
        schema = datastore.schema
        statements = [
            "CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger"
            f" LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}'"
            " USING ERRCODE = 'insufficient_privilege'; END $$",
        ]
        for table in ("ledger_events", "ledger_snapshots"):
            for verb, level in (("UPDATE OR DELETE", "ROW"), ("TRUNCATE", "STATEMENT")):
                name = f"{table}_append_only_{level.lower()}"
                statements.append(
                    f"CREATE OR REPLACE TRIGGER {name} BEFORE {verb} ON {schema}.{table}"
                    f" FOR EACH {level} EXECUTE FUNCTION ledger_refuse_change()"
                )
    with datastore.transaction(commit=True) as cursor:
        if backend == "postgres":
            cursor.execute(f"SET LOCAL search_path = {datastore.schema}")
            cursor.execute("SELECT pg_advisory_xact_lock(4242)")  # replicas start together
        for statement in statements:
            cursor.execute(statement)


def open_database(url: str, schema: str, settings: Settings | None = None) -> Database:
    """One of our stores, its waits bounded by `settings` (or their defaults)."""
    bounds = settings or Settings.build()
    if is_postgres(url):
        return PostgresDatabase(url, schema, timeout=bounds.statement_timeout_ms / 1000,
                                statement_timeout_ms=bounds.statement_timeout_ms,
                                lock_timeout_ms=bounds.lock_timeout_ms)
    return SQLiteDatabase(sqlite_path(url), busy_timeout_ms=bounds.lock_timeout_ms)


def open_keyring(settings: Settings) -> Keyring:
    if settings.kek_inline:
        return Keyring.from_environment(settings.kek_inline)
    return Keyring.from_file(settings.kek_file)


def open_subject_keys(settings: Settings) -> SubjectKeys:
    store = KeyStore(open_database(settings.keystore_url, settings.keystore_schema, settings))
    return SubjectKeys(store, open_keyring(settings), sync_seconds=settings.key_sync_seconds)


def events_table(settings: Settings) -> str:
    """The library's table of stored events on this backend (see `enforce_append_only`)."""
    return "stored_events" if settings.backend == "sqlite" else "ledger_events"


def open_merkle_log(settings: Settings, signer: LedgerSigner | None = None) -> MerkleLog:
    """The Merkle log beside the events it covers; no data key is ever needed for it."""
    return MerkleLog(open_database(settings.database_url, settings.schema, settings),
                     events_table(settings), signer=signer)


def open_signer(settings: Settings) -> LedgerSigner:
    """The ledger's Ed25519 key (receipts, tree heads): inline if given, else the key file."""
    if settings.signing_key_inline:
        return LedgerSigner.from_environment(settings.signing_key_inline)
    return LedgerSigner.from_file(settings.signing_key_file)
