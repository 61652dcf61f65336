"""Password reset by email (MIN-1: the student's address is kept only as its keyed hash, and
this is one of the two things that hash is for).

A request names an address. If it is on file (found through its blind index) for an account
that signs in with a password, a one-time token is made and handed to the `Mailer` with the
address *as the request gave it*: the address is never stored, and the answer is the same
whether or not an account was found, so the endpoint tells no one who has an account. Only the
token's SHA-256 rests, for an hour, and it goes when used, when a newer one is made, or when
its person is erased. Requests are throttled per address typed, like sign-ins; a completed
reset forgets the account's failed sign-ins.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from uuid import UUID

from crypto import passwords
from crypto.sql import Cursor, delete_naming
from ledger import people
from ledger.accounts import valid_password
from ledger.application import ErasedPerson, Ledger
from ledger.identity import STUDENT_EMAIL, TEACHER_EMAIL
from ledger.people import Person
from ledger.signin import account_key
from ledger.throttle import Bucket, Delays, Throttle

log = logging.getLogger("ledger.password_reset")

TOKEN_TTL = timedelta(hours=1)
# Requests per address typed: five mails, then a quarter of an hour's wait, growing.
REQUESTS = Delays(free=5, first=timedelta(minutes=15), longest=timedelta(hours=4),
                  forget_after=timedelta(days=1))
_DDL = ("CREATE TABLE IF NOT EXISTS password_resets (token_hash TEXT PRIMARY KEY,"
        " subject_id TEXT NOT NULL, expires_at TEXT NOT NULL)")


class Mailer(Protocol):
    def send_password_reset(self, address: str, token: str) -> None: ...

    def send_inactivity_warning(self, address: str, deleted_after: date) -> None:
        """DEL-6: a teacher's account, unused, will be deleted after this day."""


class Outbox:
    """A mailer that keeps messages in memory: for development and tests (no mail leaves)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.warnings: list[tuple[str, date]] = []

    def send_password_reset(self, address: str, token: str) -> None:
        self.sent.append((address, token))
        log.info("password reset mail queued in memory (address withheld)")

    def send_inactivity_warning(self, address: str, deleted_after: date) -> None:
        self.warnings.append((address, deleted_after))
        log.info("inactivity warning queued in memory (address withheld)")


class ResetTokenInvalid(Exception):
    """Unknown, used, superseded, expired, or its person erased: one answer for all."""

    def __init__(self) -> None:
        super().__init__("the reset token is not valid")


class PasswordResets:
    def __init__(self, ledger: Ledger, mailer: Mailer, throttle: Throttle | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.ledger = ledger
        self.mailer = mailer
        self.throttle = throttle or Throttle(ledger.read_models)
        self.clock = clock or (lambda: datetime.now(UTC))
        with ledger.read_models.transaction() as cur:
            if ledger.read_models.backend == "postgres":
                cur.execute("SELECT pg_advisory_xact_lock(4246)")
            cur.execute(_DDL)
        ledger.on_erase_rows("password_resets", self.forget)

    def request(self, address: str) -> None:
        """Mail a reset token to `address` if it belongs to a password account; else nothing.
        The same outcome either way, in what it returns and in the work it does first."""
        valid = people.email("email", address)
        self.throttle.attempt([Bucket(self.ledger.identity.token("reset", valid.lower()),
                                      REQUESTS)], overall=False)
        person = self._account(valid)
        if person is None:
            return
        token = secrets.token_urlsafe(32)
        with self.ledger.read_models.transaction() as cur:
            cur.execute("DELETE FROM password_resets WHERE subject_id = ?", (str(person.id),))
            cur.execute("INSERT INTO password_resets (token_hash, subject_id, expires_at)"
                        " VALUES (?, ?, ?)", (_hash(token), str(person.id),
                                              (self.clock() + TOKEN_TTL).isoformat()))
        self.mailer.send_password_reset(valid, token)
        log.info("password reset requested id=%s", person.id)

    def complete(self, token: str, new_password: str) -> UUID:
        """Set a new password with a token from `request`; the token is then spent."""
        valid_password(new_password)
        hashed = _hash(token)
        with self.ledger.read_models.transaction() as cur:
            cur.execute("SELECT token_hash, subject_id, expires_at FROM password_resets"
                        " WHERE token_hash = ?", (hashed,))
            row = cur.fetchone()
            if row is None or not hmac.compare_digest(str(row[0]), hashed):
                raise ResetTokenInvalid()
            cur.execute("DELETE FROM password_resets WHERE token_hash = ?", (hashed,))
        if datetime.fromisoformat(row[2]) <= self.clock():
            raise ResetTokenInvalid()
        subject = UUID(row[1])
        person = self.ledger.person(subject)
        if isinstance(person, ErasedPerson):
            raise ResetTokenInvalid()
        person.set_password(passwords.hash_password(new_password))
        self.ledger.save(person)
        # Whoever holds the mailbox holds the account: the failures against it are forgotten.
        self.throttle.forget(account_key(self.ledger, subject))
        log.info("password reset completed id=%s", subject)
        return subject

    def forget(self, cur: Cursor, subject_ids: Sequence[UUID]) -> Counter[UUID]:
        counts = delete_naming(cur, "password_resets", ("subject_id",),
                               [str(s) for s in subject_ids])
        return Counter({s: counts[str(s)] for s in subject_ids})

    def _account(self, address: str) -> Person | None:
        identity = self.ledger.identity
        found = identity.find(STUDENT_EMAIL, address) or identity.find(TEACHER_EMAIL, address)
        person = self.ledger.person(found) if found else None
        if not isinstance(person, Person) or person.password_hash is None:
            return None  # unknown, erased, a ghost claim, or an account without a password
        return person


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
