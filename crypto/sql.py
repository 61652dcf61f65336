"""The smallest SQL access that the key store and the read models need, on SQLite or PostgreSQL.

One `Database` per store. Write SQL with `?` placeholders; PostgreSQL gets `%s`. A failure to
reach the database is raised as `DatabaseUnavailable`, which callers turn into their own
retryable error; every other database error propagates unchanged.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import psycopg
import psycopg_pool

SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    # Deleted rows are overwritten with zeros, so a destroyed key leaves no bytes in the file.
    "PRAGMA secure_delete=ON",
)

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class DatabaseUnavailable(Exception):
    """The database could not be reached or is locked past its timeout."""


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    @property
    def description(self) -> Any: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Database(Protocol):
    backend: str

    def transaction(self, *, write: bool = True) -> Any: ...
    def close(self) -> None: ...


def valid_schema_name(name: str) -> str:
    if not _SCHEMA_NAME.match(name):
        raise ValueError("a schema name is lower-case letters, digits and underscores")
    return name


def session_options(statement_timeout_ms: int, lock_timeout_ms: int) -> str:
    """libpq `options` that bound every statement of a session and its every lock wait: a
    stalled database (a table locked by another session, say) fails a call in seconds
    instead of holding it, its connection and its caller for as long as the stall lasts."""
    return f"-c statement_timeout={statement_timeout_ms} -c lock_timeout={lock_timeout_ms}"


def ensure_schema(url: str, schema: str, timeout: float = 5.0) -> None:
    """Create a PostgreSQL schema if it is missing (neither psycopg's pool nor the library do)."""
    bound = max(1, int(timeout * 1000))
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout)),
                             options=session_options(bound, bound)) as conn:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {valid_schema_name(schema)}")
    except psycopg.OperationalError as error:
        raise DatabaseUnavailable(type(error).__name__) from None


class _PgCursor:
    """Adapts `?` placeholders to psycopg's `%s`."""

    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self._cursor = cursor
        self._pipeline: psycopg.Pipeline | None = None

    @property
    def rowcount(self) -> int:
        if self._pipeline is not None:
            self._pipeline.sync()  # in a pipeline the count comes with the reply: await it
        return self._cursor.rowcount

    @property
    def description(self) -> Any:
        return self._cursor.description

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cursor.execute(sql.replace("?", "%s"), params)

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        self._cursor.executemany(sql.replace("?", "%s"), params)
        if self._pipeline is not None:
            # In a pipeline psycopg (3.3) can hand a result of this executemany to the next
            # fetch on the cursor ("the last operation didn't produce records", seen about one
            # page in 70 of a rebuild under load): its results are awaited here, a round trip
            # per executemany, which a projection makes a few of a page.
            self._pipeline.sync()

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    @contextmanager
    def pipelined(self) -> Iterator[None]:
        """Statements sent without waiting for each reply (psycopg's pipeline mode), for a
        run of writes such as a projection's batch: a reply is awaited only when read (a
        fetch, or `rowcount`)."""
        with self._cursor.connection.pipeline() as pipeline:
            self._pipeline = pipeline
            try:
                yield
            finally:
                self._pipeline = None


class SQLiteDatabase:
    """One connection per thread; every write is BEGIN IMMEDIATE, so writers never interleave."""

    backend = "sqlite"

    def __init__(self, path: str, busy_timeout_ms: int = 5000) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                # A directory that cannot be made is as unreachable as a file that cannot be
                # opened: both are `DatabaseUnavailable`, not a bare OSError.
                if self.path != ":memory:":
                    os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                for pragma in SQLITE_PRAGMAS:
                    conn.execute(pragma)
                # A writer waits this long for another's lock, then fails (503), not for ever.
                conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
                if self.path != ":memory:":
                    os.chmod(self.path, 0o600)
            except (sqlite3.OperationalError, OSError) as error:
                raise DatabaseUnavailable(str(error)) from None
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Cursor]:
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.OperationalError as error:
            raise DatabaseUnavailable(str(error)) from None
        cursor = conn.cursor()
        try:
            yield cursor
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")
        finally:
            cursor.close()

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the file and truncate it (no old pages left in it)."""
        self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


class PostgresDatabase:
    """A psycopg pool whose connections see only `schema` (created if missing). Every
    statement is bounded by `statement_timeout_ms`, every lock wait by `lock_timeout_ms`, and
    the wait for a pooled connection by `timeout` seconds."""

    backend = "postgres"

    def __init__(self, url: str, schema: str, *, max_size: int = 4, timeout: float = 5.0,
                 statement_timeout_ms: int = 5000, lock_timeout_ms: int = 2000) -> None:
        self.url = url
        self.schema = valid_schema_name(schema)
        self.timeout = timeout
        self.options = session_options(statement_timeout_ms, lock_timeout_ms)
        self._pool: psycopg_pool.ConnectionPool[Any] | None = None
        self._lock = threading.Lock()
        self._max_size = max_size

    def _get_pool(self) -> psycopg_pool.ConnectionPool[Any]:
        with self._lock:
            if self._pool is None:
                ensure_schema(self.url, self.schema, self.timeout)
                self._pool = psycopg_pool.ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self._max_size,
                    # Autocommit: a read is one round trip; writes open a transaction block.
                    kwargs={"options": f"-c search_path={self.schema} {self.options}",
                            "autocommit": True},
                    open=True,
                    name=f"ledger-{self.schema}",
                )
            return self._pool

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Cursor]:
        pool = self._get_pool()
        try:
            # Binary results: bytea (wrapped keys, sealed fields) arrives as is, not hex-encoded.
            with (pool.connection(timeout=self.timeout) as conn,
                  conn.cursor(binary=True) as cursor):
                if write:
                    with conn.transaction():
                        yield _PgCursor(cursor)
                else:
                    yield _PgCursor(cursor)
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as error:
            raise DatabaseUnavailable(type(error).__name__) from None

    def vacuum(self, table: str) -> None:
        """Prune dead rows so that deleted values leave the table's data file now, not later.

        Index clean-up is skipped: indexes hold ids only, and skipping keeps this fast."""
        pool = self._get_pool()
        try:
            with pool.connection(timeout=self.timeout) as conn:
                conn.execute(f"VACUUM (INDEX_CLEANUP OFF, TRUNCATE OFF) {table}")
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as error:
            raise DatabaseUnavailable(type(error).__name__) from None

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None


def delete_naming(cur: Cursor, table: str, columns: Sequence[str], ids: Sequence[str],
                  chunk: int = 200) -> Counter[str]:
    """Delete every row of `table` where any of `columns` holds one of `ids`; how many rows
    went for each id (a row counts for the first of its columns that names one). A few
    statements whatever the number of ids, on either backend (SQLite caps parameters)."""
    return _naming(cur, f"DELETE FROM {table} WHERE {{where}} RETURNING {', '.join(columns)}",
                   columns, ids, chunk)


def count_naming(cur: Cursor, table: str, columns: Sequence[str], ids: Sequence[str],
                 chunk: int = 200) -> Counter[str]:
    """How many rows `delete_naming` would delete for each id, deleting nothing."""
    return _naming(cur, f"SELECT {', '.join(columns)} FROM {table} WHERE {{where}}", columns,
                   ids, chunk)


def _naming(cur: Cursor, statement: str, columns: Sequence[str], ids: Sequence[str],
            chunk: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    for start in range(0, len(ids), chunk):
        part = list(ids[start:start + chunk])
        wanted = set(part)
        marks = ", ".join("?" * len(part))
        where = " OR ".join(f"{column} IN ({marks})" for column in columns)
        cur.execute(statement.format(where=where), part * len(columns))
        for row in cur.fetchall():
            counts[next(str(value) for value in row if str(value) in wanted)] += 1
    return counts


def insert_rows(cur: Cursor, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                then: str = "", chunk: int = 500) -> None:
    """`INSERT INTO table (columns) VALUES (...), (...) then` for every row, a statement per
    `chunk` rows: one statement instead of an `executemany`, whose rows psycopg sends one by
    one and whose replies a pipeline must await (`_PgCursor.executemany`). `then` follows the
    values (an `ON CONFLICT` clause, say); rows of one statement must not conflict."""
    one = f"({', '.join('?' * len(columns))})"
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        cur.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES"
                    f" {', '.join([one] * len(part))} {then}",
                    [value for row in part for value in row])
