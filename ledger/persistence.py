"""Set-up of the stores from `Settings`: the event store's environment for `eventsourcing`,
the append-only rule (LED-1), and the key store with its keyring."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlparse

from eventsourcing.persistence import ApplicationRecorder

from crypto import SubjectKeys
from crypto.kek import Keyring
from crypto.keystore import KeyStore
from crypto.signing import LedgerSigner
from crypto.sql import Database, PostgresDatabase, SQLiteDatabase, ensure_schema
from ledger.merkle_log import MerkleLog
from ledger.settings import Settings, is_postgres, sqlite_path

APPEND_ONLY_MESSAGE = "the ledger is append-only: events are never updated or deleted"
REPLACE_MESSAGE = "the ledger is append-only: this event position is already taken"


def eventsourcing_env(settings: Settings) -> dict[str, str]:
    if settings.backend == "sqlite":
        path = sqlite_path(settings.database_url)
        if ":memory:" not in path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": path}
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


def open_database(url: str, schema: str) -> Database:
    if is_postgres(url):
        return PostgresDatabase(url, schema)
    return SQLiteDatabase(sqlite_path(url))


def open_keyring(settings: Settings) -> Keyring:
    if settings.kek_inline:
        return Keyring.from_environment(settings.kek_inline)
    return Keyring.from_file(settings.kek_file)


def open_subject_keys(settings: Settings) -> SubjectKeys:
    store = KeyStore(open_database(settings.keystore_url, settings.keystore_schema))
    return SubjectKeys(store, open_keyring(settings), sync_seconds=settings.key_sync_seconds)


def events_table(settings: Settings) -> str:
    """The library's table of stored events on this backend (see `enforce_append_only`)."""
    return "stored_events" if settings.backend == "sqlite" else "ledger_events"


def open_merkle_log(settings: Settings, signer: LedgerSigner | None = None) -> MerkleLog:
    """The Merkle log beside the events it covers; no data key is ever needed for it."""
    return MerkleLog(open_database(settings.database_url, settings.schema),
                     events_table(settings), signer=signer)


def open_signer(settings: Settings) -> LedgerSigner:
    """The ledger's Ed25519 key (receipts, tree heads): inline if given, else the key file."""
    if settings.signing_key_inline:
        return LedgerSigner.from_environment(settings.signing_key_inline)
    return LedgerSigner.from_file(settings.signing_key_file)
