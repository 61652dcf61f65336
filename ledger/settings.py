"""Every setting, read once from the environment. Defaults give a working embedded ledger.

LEDGER_DATABASE_URL     sqlite:///var/ledger.sqlite3 (default) or postgresql://user@host/db
LEDGER_SCHEMA           PostgreSQL schema of the events and read models (default: ledger)
LEDGER_READ_MODELS_URL  default: var/read_models.sqlite3 on SQLite; the events' PostgreSQL database
LEDGER_KEYSTORE_URL     default: var/keys.sqlite3 on SQLite; the same PostgreSQL database
LEDGER_KEYSTORE_SCHEMA  PostgreSQL schema of the key store (default: <LEDGER_SCHEMA>_keys)
LEDGER_MEDIA_URL        uploads (default: var/media.sqlite3; the events' PostgreSQL database)
LEDGER_MAX_UPLOAD_BYTES the largest upload accepted (default: 5 MiB)
LEDGER_MAX_BODY_BYTES   the largest JSON request body (default: 64 KiB)
LEDGER_MAX_LARGE_BODY_BYTES  the largest body of a project's source or a batch of attempts
                        (default: 4 MiB)
LEDGER_KEK_FILE         the KEK keyring file (default: var/kek.json, mode 0600)
LEDGER_KEK              a KEK keyring given inline ("1:<base64>,..."); overrides the file
LEDGER_SIGNING_KEY_FILE the ledger's Ed25519 signing key (default: var/signing-key.json, mode 0600)
LEDGER_SIGNING_KEY      the signing key inline (base64 of the raw 32 bytes); overrides the file
LEDGER_RETENTION        the retention schedule (default: ledger/retention.json in the repo)
LEDGER_RESIDUE          "on" (default) or "off": keep a de-identified residue at purge (DEL-10)
LEDGER_ANALYTICS_MIN_CELL  the smallest count an analytics table shows (default 10, ANA-2)
LEDGER_PURGE_EVERY_HOURS  how often `ledger serve` runs the purge job (default 24; 0: never)
LEDGER_SEAL_EVERY_SECONDS  how often `ledger serve` seals new events into the Merkle log (default 1)
LEDGER_TREE_HEAD_EVERY_MINUTES  how often `ledger serve` signs a tree head (default 60; 0: never)
LEDGER_READY_MAX_LAG    events a read model may be behind the log before /readyz says not ready
                        (default 1000)
LEDGER_VAR_DIR          where the embedded files live (default: ./var)
LEDGER_KEY_SYNC_SECONDS bound on how long another process may still open an erased key (1.0)
LEDGER_STATEMENT_TIMEOUT_MS  the longest one SQL statement of a request may run, and the longest
                        it waits for a pooled connection (default 5000; PostgreSQL)
LEDGER_LOCK_TIMEOUT_MS  the longest a statement waits for a lock (default 2000; SQLite's busy
                        timeout as well)
LEDGER_JOB_STATEMENT_TIMEOUT_MS  the statement timeout of `ledger rebuild` and `ledger purge`
                        (default 60000: a page or a batch is one big statement)
LEDGER_TRUSTED_PROXIES  addresses or CIDRs, comma-separated, of the proxies in front whose
                        X-Forwarded-For is believed (default: none; then the peer is the client)
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlparse

from crypto.sql import valid_schema_name

N = TypeVar("N", int, float)

DEFAULT_RETENTION = os.path.join(os.path.dirname(__file__), "retention.json")


class SettingsError(ValueError):
    """A setting that cannot be used; the message names it (never its value: a URL or a key
    may be in it)."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    schema: str = "ledger"
    keystore_url: str = ""
    read_models_url: str = ""
    keystore_schema: str = ""
    kek_file: str = ""
    kek_inline: str | None = field(default=None, repr=False)
    var_dir: str = "var"
    key_sync_seconds: float = 1.0
    media_url: str = ""
    max_upload_bytes: int = 5 * 1024 * 1024
    max_body_bytes: int = 64 * 1024
    max_large_body_bytes: int = 4 * 1024 * 1024
    signing_key_file: str = ""
    signing_key_inline: str | None = field(default=None, repr=False)
    retention_file: str = DEFAULT_RETENTION
    keep_residue: bool = True
    purge_every_hours: float = 24.0
    seal_every_seconds: float = 1.0  # the longest a stored event waits for its leaf (LED-2)
    tree_head_every_minutes: float = 60.0
    analytics_min_cell: int = 10  # ANA-2: smaller counts are withheld
    trusted_proxies: tuple[str, ...] = ()  # networks, as CIDRs
    ready_max_lag: int = 1000  # events behind the log; more: not ready (/readyz)
    # Bounded waits (issue 18): a stalled database answers 503 in seconds, not never.
    statement_timeout_ms: int = 5000
    lock_timeout_ms: int = 2000
    job_statement_timeout_ms: int = 60_000

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        var_dir = env.get("LEDGER_VAR_DIR", "var")
        return cls.build(
            database_url=env.get("LEDGER_DATABASE_URL", ""),
            schema=env.get("LEDGER_SCHEMA", "ledger"),
            keystore_url=env.get("LEDGER_KEYSTORE_URL", ""),
            read_models_url=env.get("LEDGER_READ_MODELS_URL", ""),
            keystore_schema=env.get("LEDGER_KEYSTORE_SCHEMA", ""),
            kek_file=env.get("LEDGER_KEK_FILE", ""),
            kek_inline=env.get("LEDGER_KEK") or None,
            var_dir=var_dir,
            key_sync_seconds=_number(env, "LEDGER_KEY_SYNC_SECONDS", "1.0", float),
            media_url=env.get("LEDGER_MEDIA_URL", ""),
            max_upload_bytes=_number(env, "LEDGER_MAX_UPLOAD_BYTES", str(5 * 1024 * 1024), int),
            max_body_bytes=_number(env, "LEDGER_MAX_BODY_BYTES", str(64 * 1024), int),
            max_large_body_bytes=_number(env, "LEDGER_MAX_LARGE_BODY_BYTES",
                                         str(4 * 1024 * 1024), int),
            signing_key_file=env.get("LEDGER_SIGNING_KEY_FILE", ""),
            signing_key_inline=env.get("LEDGER_SIGNING_KEY") or None,
            retention_file=env.get("LEDGER_RETENTION", DEFAULT_RETENTION),
            keep_residue=_on_or_off("LEDGER_RESIDUE", env.get("LEDGER_RESIDUE", "on")),
            purge_every_hours=_number(env, "LEDGER_PURGE_EVERY_HOURS", "24", float),
            seal_every_seconds=_number(env, "LEDGER_SEAL_EVERY_SECONDS", "1", float),
            tree_head_every_minutes=_number(env, "LEDGER_TREE_HEAD_EVERY_MINUTES", "60", float),
            analytics_min_cell=_number(env, "LEDGER_ANALYTICS_MIN_CELL", "10", int),
            trusted_proxies=tuple(part for part in env.get("LEDGER_TRUSTED_PROXIES", "").split(",")
                                  if part.strip()),
            ready_max_lag=_number(env, "LEDGER_READY_MAX_LAG", "1000", int),
            statement_timeout_ms=_number(env, "LEDGER_STATEMENT_TIMEOUT_MS", "5000", int),
            lock_timeout_ms=_number(env, "LEDGER_LOCK_TIMEOUT_MS", "2000", int),
            job_statement_timeout_ms=_number(env, "LEDGER_JOB_STATEMENT_TIMEOUT_MS", "60000",
                                             int),
        )

    @classmethod
    def build(cls, *, database_url: str = "", schema: str = "ledger", keystore_url: str = "",
              read_models_url: str = "",
              keystore_schema: str = "", kek_file: str = "", kek_inline: str | None = None,
              var_dir: str = "var", key_sync_seconds: float = 1.0, media_url: str = "",
              max_upload_bytes: int = 5 * 1024 * 1024, max_body_bytes: int = 64 * 1024,
              max_large_body_bytes: int = 4 * 1024 * 1024, signing_key_file: str = "",
              signing_key_inline: str | None = None, retention_file: str = DEFAULT_RETENTION,
              keep_residue: bool = True, purge_every_hours: float = 24.0,
              seal_every_seconds: float = 1.0, tree_head_every_minutes: float = 60.0,
              analytics_min_cell: int = 10,
              trusted_proxies: tuple[str, ...] = (), ready_max_lag: int = 1000,
              statement_timeout_ms: int = 5000, lock_timeout_ms: int = 2000,
              job_statement_timeout_ms: int = 60_000) -> Settings:
        """Fill in the defaults that depend on other settings."""
        database_url = database_url or f"sqlite:///{os.path.join(var_dir, 'ledger.sqlite3')}"
        if not keystore_url:
            keystore_url = (
                database_url if is_postgres(database_url)
                else f"sqlite:///{os.path.join(var_dir, 'keys.sqlite3')}"
            )
        if not read_models_url:
            read_models_url = (
                database_url if is_postgres(database_url)
                else f"sqlite:///{os.path.join(var_dir, 'read_models.sqlite3')}"
            )
        if not media_url:
            media_url = (
                database_url if is_postgres(database_url)
                else f"sqlite:///{os.path.join(var_dir, 'media.sqlite3')}"
            )
        if max_upload_bytes <= 0:
            raise SettingsError("LEDGER_MAX_UPLOAD_BYTES must be positive")
        if not 1024 <= max_body_bytes <= max_large_body_bytes:
            raise SettingsError("LEDGER_MAX_BODY_BYTES must be at least 1024 and at most"
                                " LEDGER_MAX_LARGE_BODY_BYTES")
        if not 0 <= purge_every_hours < 24 * 366:
            raise SettingsError("LEDGER_PURGE_EVERY_HOURS must be 0 (never) or a number of hours")
        if not 0 < seal_every_seconds <= 3600:
            raise SettingsError("LEDGER_SEAL_EVERY_SECONDS must be a number of seconds, at most"
                             " 3600")
        if not 0 <= tree_head_every_minutes <= 60 * 24 * 31:
            raise SettingsError("LEDGER_TREE_HEAD_EVERY_MINUTES must be 0 (never) or a number of"
                             " minutes")
        if ready_max_lag < 0:
            raise SettingsError("LEDGER_READY_MAX_LAG must be a count of events, 0 or more")
        if not 2 <= analytics_min_cell <= 1000:
            raise SettingsError("LEDGER_ANALYTICS_MIN_CELL must be a count from 2 to 1000")
        for name, value in (("LEDGER_STATEMENT_TIMEOUT_MS", statement_timeout_ms),
                            ("LEDGER_LOCK_TIMEOUT_MS", lock_timeout_ms),
                            ("LEDGER_JOB_STATEMENT_TIMEOUT_MS", job_statement_timeout_ms)):
            # 0 would mean "wait for ever" to PostgreSQL: exactly what these settings prevent.
            if not 1 <= value <= 3_600_000:
                raise SettingsError(f"{name} must be a number of milliseconds, 1 to 3600000")
        return cls(
            database_url=database_url,
            media_url=media_url,
            max_upload_bytes=max_upload_bytes,
            max_body_bytes=max_body_bytes,
            max_large_body_bytes=max_large_body_bytes,
            read_models_url=read_models_url,
            schema=_schema("LEDGER_SCHEMA", schema),
            keystore_url=keystore_url,
            keystore_schema=_schema("LEDGER_KEYSTORE_SCHEMA", keystore_schema or f"{schema}_keys"),
            kek_file=kek_file or os.path.join(var_dir, "kek.json"),
            kek_inline=kek_inline,
            var_dir=var_dir,
            key_sync_seconds=key_sync_seconds,
            signing_key_file=signing_key_file or os.path.join(var_dir, "signing-key.json"),
            signing_key_inline=signing_key_inline,
            retention_file=retention_file,
            keep_residue=keep_residue,
            purge_every_hours=purge_every_hours,
            seal_every_seconds=seal_every_seconds,
            tree_head_every_minutes=tree_head_every_minutes,
            analytics_min_cell=analytics_min_cell,
            trusted_proxies=tuple(_network(part) for part in trusted_proxies),
            ready_max_lag=ready_max_lag,
            statement_timeout_ms=statement_timeout_ms,
            lock_timeout_ms=lock_timeout_ms,
            job_statement_timeout_ms=job_statement_timeout_ms,
        )

    def for_a_job(self) -> Settings:
        """The settings of a long job (a rebuild, a purge): its own connections may run one
        statement for longer than a request may; its lock waits stay as short."""
        return dataclasses.replace(self, statement_timeout_ms=max(
            self.statement_timeout_ms, self.job_statement_timeout_ms))

    @property
    def backend(self) -> str:
        return "postgres" if is_postgres(self.database_url) else "sqlite"


def _number(env: Mapping[str, str], name: str, default: str, kind: type[N]) -> N:
    try:
        return kind(env.get(name, default))
    except ValueError:
        raise SettingsError(f"{name} must be a number") from None


def _network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise SettingsError("LEDGER_TRUSTED_PROXIES must be addresses or CIDRs, comma-separated"
                            ) from None


def _schema(name: str, value: str) -> str:
    try:
        return valid_schema_name(value)
    except ValueError as error:
        raise SettingsError(f"{name}: {error}") from None


def _on_or_off(name: str, value: str) -> bool:
    if value not in ("on", "off"):
        raise SettingsError(f"{name} must be on or off")
    return value == "on"


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def sqlite_path(url: str) -> str:
    """`sqlite:///relative/path`, `sqlite:////absolute/path` or a bare path."""
    if url.startswith("sqlite://"):
        return urlparse(url).path[1:] if url.startswith("sqlite:///") else url[len("sqlite://"):]
    return url
