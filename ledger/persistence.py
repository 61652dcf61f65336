"""Set-up of the stores from `Settings`: the event store's environment for `eventsourcing`,
the append-only rule (LED-1), and the key store with its keyring."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

import psycopg
import psycopg_pool
from eventsourcing.persistence import ApplicationRecorder, InterfaceError, OperationalError
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresFactory
from eventsourcing.utils import get_topic

from crypto import SubjectKeys
from crypto.errors import KeyFileRefused
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
        # An empty recorder topic: the SQLite default, whatever the process environment says
        # (the library reads it too, and a PostgreSQL ledger's topic there would break this).
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": path,
                "APPLICATION_RECORDER_TOPIC": "",
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


# What an operator reads when a key file is missing from a ledger that exists: a new key in
# its place would make every wrapped key (the KEK) or every receipt and tree head (the signing
# key) look erased or forged, so the only way on is the original file.
_MISSING = ("{setting} names {path}, which is missing, but this ledger already exists: restore"
            " that file from your backup and start again (a new key would make {loss})")
_DIFFERENT = ("{setting} names {path}, which is not the key this ledger was started with:"
              " put the original file back from your backup (a different key would make {loss})")
_MALFORMED = "{setting} names {path}, which cannot be read as a key file: restore it from backup"
_KEK = ("LEDGER_KEK_FILE", "every person's data unreadable")
_KEK_INLINE = ("LEDGER_KEK", "every person's data unreadable")
_SIGNING = ("LEDGER_SIGNING_KEY_FILE", "every receipt and tree head fail to verify")
_SIGNING_INLINE = ("LEDGER_SIGNING_KEY", "every receipt and tree head fail to verify")


def _refuse(template: str, what: tuple[str, str], path: str) -> KeyFileRefused:
    setting, loss = what
    return KeyFileRefused(template.format(setting=setting, path=path, loss=loss))


@contextlib.contextmanager
def _reading_key_file(what: tuple[str, str], path: str) -> Iterator[None]:
    """A key file that cannot be read, as the one line an operator reads: missing, or not a
    key file (a `KeyFileRefused` raised inside already is that line)."""
    try:
        yield
    except FileNotFoundError:
        raise _refuse(_MISSING, what, path) from None
    except KeyFileRefused:
        raise
    except ValueError:
        raise _refuse(_MALFORMED, what, path) from None


def open_keyring(settings: Settings, store: KeyStore | None = None) -> Keyring:
    """The KEK keyring. With the key store (a start), the file is created only for a ledger
    that does not exist yet, and each version is checked against the check value recorded
    when it was first used. Without it (a worker of a started process), it is only read."""
    inline = bool(settings.kek_inline)
    what = _KEK_INLINE if inline else _KEK
    path = "the environment" if inline else settings.kek_file
    with _reading_key_file(what, path):
        if settings.kek_inline:
            try:
                ring = Keyring.from_environment(settings.kek_inline)
            except ValueError as error:  # its message names the setting, never the value
                raise KeyFileRefused(str(error)) from None
        else:
            create = store is not None and not store.holds_anything("kek:%")
            ring = Keyring.from_file(settings.kek_file, create=create)
    if store is not None:
        newest = store.newest_kek_version()
        # Rotation writes the file before the key store, so a file behind it is an old copy.
        if newest is not None and newest > max(ring.versions):
            raise _refuse(_DIFFERENT, what, path)
        for version in ring.live_versions:
            if not store.check_key_file(f"kek:{version}", ring.check_value(version)):
                raise _refuse(_DIFFERENT, what, path)
    return ring


def open_subject_keys(settings: Settings) -> SubjectKeys:
    store = KeyStore(open_database(settings.keystore_url, settings.keystore_schema, settings))
    try:
        keyring = open_keyring(settings, store)
    except BaseException:
        store.db.close()
        raise
    return SubjectKeys(store, keyring, sync_seconds=settings.key_sync_seconds)


def events_table(settings: Settings) -> str:
    """The library's table of stored events on this backend (see `enforce_append_only`)."""
    return "stored_events" if settings.backend == "sqlite" else "ledger_events"


def open_merkle_log(settings: Settings, signer: LedgerSigner | None = None) -> MerkleLog:
    """The Merkle log beside the events it covers; no data key is ever needed for it."""
    return MerkleLog(open_database(settings.database_url, settings.schema, settings),
                     events_table(settings), signer=signer)


def open_signer(settings: Settings, store: KeyStore | None = None) -> LedgerSigner:
    """The ledger's Ed25519 key (receipts, tree heads): inline if given, else the key file,
    created only for a ledger that does not exist yet and checked against the public key
    recorded in the key store (`store`, or the settings' own, opened for the check)."""
    own = store is None
    checked = store or KeyStore(open_database(settings.keystore_url, settings.keystore_schema,
                                              settings))
    inline = bool(settings.signing_key_inline)
    what = _SIGNING_INLINE if inline else _SIGNING
    path = "the environment" if inline else settings.signing_key_file
    try:
        with _reading_key_file(what, path):
            if settings.signing_key_inline:
                try:
                    signer = LedgerSigner.from_environment(settings.signing_key_inline)
                except ValueError:
                    raise KeyFileRefused("LEDGER_SIGNING_KEY is malformed: expected base64 of"
                                         " the raw 32-byte Ed25519 key") from None
            else:
                signer = LedgerSigner.from_file(settings.signing_key_file,
                                                create=not checked.holds_anything("signing"))
            if not checked.check_key_file("signing", signer.public_key.raw.hex()):
                raise _refuse(_DIFFERENT, what, path)
    finally:
        if own:
            checked.db.close()
    return signer
