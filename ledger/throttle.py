"""Repeated sign-in failures are throttled per account identifier (not per address: an IP is
personal data, and a school's students share one). The bucket is a blind-index token of the
identifier, so this table holds no username in the clear.

After `limit` failures within `window`, sign-in for that identifier is refused until the
window that began with the first failure ends, right password or not. `attempt` counts an
attempt before its password is checked, so that attempts made at once are counted too;
`check` and `failed` are the two halves of it for a caller that counts only afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from crypto.sql import Database

DEFAULT_LIMIT = 5
DEFAULT_WINDOW = timedelta(minutes=15)

_DDL = ("CREATE TABLE IF NOT EXISTS sign_in_failures (bucket {blob} PRIMARY KEY,"
        " window_start TEXT NOT NULL, failures INTEGER NOT NULL)")


class SignInThrottled(Exception):
    def __init__(self, retry_after: timedelta) -> None:
        super().__init__("too many failed sign-ins; wait before trying again")
        self.retry_after_seconds = max(1, int(retry_after.total_seconds()) + 1)


class Throttle:
    def __init__(self, db: Database, limit: int = DEFAULT_LIMIT,
                 window: timedelta = DEFAULT_WINDOW,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.limit = limit
        self.window = window
        self.clock = clock or (lambda: datetime.now(UTC))
        with db.transaction() as cur:
            if db.backend == "postgres":
                cur.execute("SELECT pg_advisory_xact_lock(4245)")
            cur.execute(_DDL.format(blob="BYTEA" if db.backend == "postgres" else "BLOB"))

    def check(self, bucket: bytes) -> None:
        """`SignInThrottled` if the bucket has used up its failures in the current window."""
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT window_start, failures FROM sign_in_failures WHERE bucket = ?",
                        (bucket,))
            row = cur.fetchone()
        if row is None:
            return
        ends = datetime.fromisoformat(row[0]) + self.window
        now = self.clock()
        if int(row[1]) >= self.limit and now < ends:
            raise SignInThrottled(ends - now)

    def attempt(self, bucket: bytes) -> None:
        """Count an attempt as a failure before its secret is checked (`succeeded` forgets it):
        `SignInThrottled` if the bucket's failures are used up. Atomic, so a burst of attempts
        at once gets no more checks than one after another."""
        now = self.clock()
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM sign_in_failures WHERE window_start < ?",
                        (_stamp(now - self.window),))
            cur.execute("INSERT INTO sign_in_failures (bucket, window_start, failures)"
                        " VALUES (?, ?, 0) ON CONFLICT DO NOTHING", (bucket, _stamp(now)))
            lock = " FOR UPDATE" if self.db.backend == "postgres" else ""
            cur.execute("SELECT window_start, failures FROM sign_in_failures WHERE bucket = ?"
                        + lock, (bucket,))
            start, failures = cur.fetchone()
            ends = datetime.fromisoformat(start) + self.window
            if ends <= now:
                cur.execute("UPDATE sign_in_failures SET window_start = ?, failures = 1"
                            " WHERE bucket = ?", (_stamp(now), bucket))
            elif int(failures) >= self.limit:
                raise SignInThrottled(ends - now)
            else:
                cur.execute("UPDATE sign_in_failures SET failures = failures + 1"
                            " WHERE bucket = ?", (bucket,))

    def failed(self, bucket: bytes) -> None:
        now = self.clock()
        with self.db.transaction() as cur:
            # Rows whose window has ended say nothing any more: none is kept past its use (a
            # bucket is a token of an identifier, perhaps of someone erased since).
            cur.execute("DELETE FROM sign_in_failures WHERE window_start < ?",
                        (_stamp(now - self.window),))
            cur.execute("SELECT window_start FROM sign_in_failures WHERE bucket = ?", (bucket,))
            row = cur.fetchone()
            if row is None or datetime.fromisoformat(row[0]) + self.window <= now:
                cur.execute("DELETE FROM sign_in_failures WHERE bucket = ?", (bucket,))
                cur.execute("INSERT INTO sign_in_failures (bucket, window_start, failures)"
                            " VALUES (?, ?, 1)", (bucket, _stamp(now)))
            else:
                cur.execute("UPDATE sign_in_failures SET failures = failures + 1"
                            " WHERE bucket = ?", (bucket,))

    def succeeded(self, bucket: bytes) -> None:
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM sign_in_failures WHERE bucket = ?", (bucket,))


def _stamp(moment: datetime) -> str:
    """UTC, to the microsecond, always the same width: so that stamps compare as text."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
