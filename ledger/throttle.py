"""Failed attempts (sign-ins, re-authentication, join codes) are throttled with growing delays,
per subject, in buckets that hold no plaintext.

A bucket is keyed by a blind-index token (`ledger.identity.token`) of what it counts: an
account id, an identifier nobody holds, a client address. The address itself is stored
nowhere (MIN-5): only its keyed token, and only until the bucket's row expires. One further
bucket counts every failure of the current minute, whoever made it (`overall_per_minute`),
keyed by the minute alone: it is read as an attempt comes and written only when one fails
(`failed`), so that successful sign-ins, however many at once, never queue on its row.

`Delays` are growing, not a lock: the first `free` failures cost nothing; then each failure
makes its subject wait `first`, doubling with every further failure up to `longest`. A refused
attempt (429) counts nothing, so nobody can keep a subject waiting longer than the delay its
failures earned; the count is forgotten `forget_after` the last failure (waiting a little
resets nothing), when a success proves the secret, or when `forget` is called (a teacher's
new secret, a completed password reset).

`attempt` counts an attempt as a failure in its subjects' buckets before the secret is
checked, in one transaction, so that attempts made at once get no more checks than one after
another; `succeeded` takes the count back (and forgets the account's), `failed` adds the
failure to the minute's. Expired rows are deleted as attempts come in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from crypto.sql import Database

_DDL = ("CREATE TABLE IF NOT EXISTS throttle_buckets (bucket {blob} PRIMARY KEY,"
        " failures INTEGER NOT NULL, blocked_until TEXT NOT NULL, expires TEXT NOT NULL)")
_INDEX = "CREATE INDEX IF NOT EXISTS throttle_buckets_expires ON throttle_buckets (expires)"
# The identifier-keyed table of before growing delays: its rows say nothing any more.
_RETIRED = "DROP TABLE IF EXISTS sign_in_failures"

OVERALL_PER_MINUTE = 600
_OVERALL = b"overall failures "


@dataclass(frozen=True)
class Delays:
    free: int
    first: timedelta
    longest: timedelta
    forget_after: timedelta

    def wait_after(self, failures: int) -> timedelta:
        """How long the subject waits after its `failures`th failure."""
        if failures < self.free:
            return timedelta(0)
        doublings = failures - self.free
        if doublings >= 40:  # far past any `longest`; and the shift stays small
            return self.longest
        return min(self.first * (1 << doublings), self.longest)


# A password account, by whatever identifier names it (and an identifier nobody holds, alike).
ACCOUNT = Delays(free=5, first=timedelta(minutes=1), longest=timedelta(minutes=15),
                 forget_after=timedelta(days=1))
# One client address: a school's classes share one, so more free failures, shorter waits.
ADDRESS = Delays(free=30, first=timedelta(seconds=1), longest=timedelta(minutes=5),
                 forget_after=timedelta(minutes=30))


@dataclass(frozen=True)
class Bucket:
    key: bytes  # a keyed token: never a value in the clear
    delays: Delays


@dataclass(frozen=True)
class Counted:
    """What an `attempt` counted, for `succeeded` to take back."""

    keys: tuple[bytes, ...]
    at: datetime
    overall: bool  # whether a failure counts in the minute's bucket too


class SignInThrottled(Exception):
    def __init__(self, retry_after: timedelta) -> None:
        super().__init__("too many failed attempts; wait before trying again")
        self.retry_after_seconds = max(1, int(retry_after.total_seconds()) + 1)


class Throttle:
    def __init__(self, db: Database, clock: Callable[[], datetime] | None = None,
                 overall_per_minute: int = OVERALL_PER_MINUTE) -> None:
        self.db = db
        self.clock = clock or (lambda: datetime.now(UTC))
        self.overall_per_minute = overall_per_minute
        with db.transaction() as cur:
            if db.backend == "postgres":
                cur.execute("SELECT pg_advisory_xact_lock(4245)")
            cur.execute(_DDL.format(blob="BYTEA" if db.backend == "postgres" else "BLOB"))
            cur.execute(_INDEX)
            cur.execute(_RETIRED)

    def attempt(self, buckets: Sequence[Bucket], overall: bool = True) -> Counted:
        """Count an attempt as a failure in every bucket (and, with `overall`, in the
        minute's), or `SignInThrottled`, counting nothing, if any of them is still waiting."""
        now = self.clock()
        plans = {b.key: b.delays for b in buckets}
        keys = sorted(plans)  # one lock order for every transaction: no deadlocks
        marks = ", ".join("?" for _ in keys)
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM throttle_buckets WHERE expires <= ?", (_stamp(now),))
            if overall:
                cur.execute("SELECT blocked_until FROM throttle_buckets WHERE bucket = ?",
                            (_overall_key(now),))
                row = cur.fetchone()
                if row is not None and datetime.fromisoformat(row[0]) > now:
                    raise SignInThrottled(datetime.fromisoformat(row[0]) - now)
            cur.execute("INSERT INTO throttle_buckets (bucket, failures, blocked_until, expires)"
                        f" VALUES {', '.join('(?, 0, ?, ?)' for _ in keys)}"
                        " ON CONFLICT DO NOTHING",
                        [v for key in keys for v in (key, _stamp(now), _stamp(now))])
            lock = " FOR UPDATE" if self.db.backend == "postgres" else ""
            cur.execute("SELECT bucket, failures, blocked_until FROM throttle_buckets"
                        f" WHERE bucket IN ({marks}) ORDER BY bucket{lock}", keys)
            rows = {bytes(row[0]): (int(row[1]), datetime.fromisoformat(row[2]))
                    for row in cur.fetchall()}
            waits = [until - now for _, until in rows.values() if until > now]
            if waits:
                raise SignInThrottled(max(waits))
            updates = []
            for key in keys:
                failures = rows[key][0] + 1
                delays = plans[key]
                blocked = now + delays.wait_after(failures)
                updates.append((failures, _stamp(blocked), _stamp(now + delays.forget_after),
                                key))
            cur.executemany("UPDATE throttle_buckets SET failures = ?, blocked_until = ?,"
                            " expires = ? WHERE bucket = ?", updates)
        return Counted(tuple(keys), now, overall)

    def failed(self, counted: Counted) -> None:
        """The attempt failed: its subjects' buckets counted it already; the minute's counts
        it now, and past `overall_per_minute` makes everyone wait for the next minute."""
        if not counted.overall:
            return
        now = self.clock()
        minute_ends = _stamp(now.replace(second=0, microsecond=0) + timedelta(minutes=1))
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO throttle_buckets (bucket, failures, blocked_until, expires)"
                        " VALUES (?, 1, ?, ?) ON CONFLICT (bucket) DO UPDATE"
                        " SET failures = throttle_buckets.failures + 1,"
                        " blocked_until = CASE WHEN throttle_buckets.failures + 1 >= ?"
                        " THEN excluded.expires ELSE excluded.blocked_until END",
                        (_overall_key(now), minute_ends if self.overall_per_minute <= 1
                         else _stamp(now), minute_ends, self.overall_per_minute))

    def succeeded(self, counted: Counted, forget: bytes | None = None) -> None:
        """The attempt was not a failure after all: its counts are taken back (the wait it
        may have started too: it was allowed when it came), and `forget`'s bucket, the
        account the secret was proven for, starts again from nothing."""
        keys = [key for key in counted.keys if key != forget]
        at = _stamp(counted.at)
        with self.db.transaction() as cur:
            if forget is not None:
                cur.execute("DELETE FROM throttle_buckets WHERE bucket = ?", (forget,))
            if keys:
                cur.execute("UPDATE throttle_buckets SET failures = failures - 1,"
                            " blocked_until = CASE WHEN blocked_until > ? THEN ?"
                            " ELSE blocked_until END"
                            f" WHERE failures > 0 AND bucket IN ({', '.join('?' for _ in keys)})",
                            (at, at, *keys))

    def forget(self, key: bytes) -> None:
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM throttle_buckets WHERE bucket = ?", (key,))

    def failures(self, keys: Iterable[bytes], at_least: int) -> dict[bytes, int]:
        """The buckets among `keys` with `at_least` failures not yet forgotten."""
        wanted = list(keys)
        if not wanted:
            return {}
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT bucket, failures FROM throttle_buckets WHERE failures >= ?"
                        f" AND expires > ? AND bucket IN ({', '.join('?' for _ in wanted)})",
                        (at_least, _stamp(self.clock()), *wanted))
            return {bytes(row[0]): int(row[1]) for row in cur.fetchall()}


def _overall_key(now: datetime) -> bytes:
    return _OVERALL + now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M").encode()


def _stamp(moment: datetime) -> str:
    """UTC, to the microsecond, always the same width: so that stamps compare as text."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
