"""Idempotency keys: the record that a client's key was used, saved with the command it guarded.

A client that lost the answer to a write retries it with the same `Idempotency-Key`. The key's
record is a stream of one event at an id derived from the key (HMAC-SHA256 under a server
secret over the caller's scope, the route and the key: unpredictable to anyone without the
secret, and distinct per caller), and it is written by the very `Ledger.save` that writes the
command's events: one transaction, so a key is remembered if and only if its command committed.
A retry finds the record and is answered from it; a duplicate that races the first meets a
version clash on the record's stream (`IntegrityError`), its whole save is refused, and it too
is answered from the record.

The record holds no personal data: the route (a template), the status answered, the id of what
was made, and a keyed digest of the request (never the request). It is sealed as owned by the
person it concerns (the student whose attempts, the person signed up), so that erasing them
erases it; one that concerns nobody is sealed under the ledger's key. It is remembered as long
as the log: a key cannot be used twice on one route by one caller, ever.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID, uuid5

import orjson
from eventsourcing.domain import Aggregate, event

from crypto import KeyErased
from ledger.identity import SECRET_NAMESPACE
from ledger.people import Person
from ledger.sealing import LEDGER_SUBJECT, ErasedEvent

if TYPE_CHECKING:
    from ledger.application import Ledger

MAX_KEY = 128
# Printable, no spaces or quotes: a key is an opaque token (a UUID, a ULID, base64url).
KEY_PATTERN = r"^[A-Za-z0-9._~:+/=-]{1,128}$"
_KEY = re.compile(KEY_PATTERN)
SECRET_SUBJECT = uuid5(SECRET_NAMESPACE, "idempotency/1")

T = TypeVar("T")


class InvalidIdempotencyKey(ValueError):
    """A key that breaks the bounds (`KEY_PATTERN`): never stored, never echoed."""


class IdempotencyKeyReused(ValueError):
    """The key was used on this route for a different request: nothing is done."""

    def __init__(self) -> None:
        super().__init__("idempotency key already used for a different request")


class IdempotencyRecord(Aggregate):
    class Event(Aggregate.Event):
        sealed_for_owner = True
        owner_id: UUID  # the person the command concerned, or the ledger

    @classmethod
    def create_id(cls, record_id: UUID, **_: object) -> UUID:
        return record_id

    class Used(Aggregate.Created, Event):
        record_id: UUID
        route: str
        digest: str
        status: int
        result_id: UUID | None
        used_at: datetime

    @event(Used)
    def __init__(self, record_id: UUID, owner_id: UUID, route: str, digest: str, status: int,
                 result_id: UUID | None, used_at: datetime) -> None:
        self.owner_id = owner_id
        self.route = route
        self.digest = digest
        self.status = status
        self.result_id = result_id
        self.used_at = used_at


@dataclass(frozen=True)
class Used:
    """What a key's record says: enough to answer a retry again from the current state."""

    route: str
    status: int
    result_id: UUID | None
    owner_id: UUID
    used_at: datetime
    digest: str = field(repr=False)


@dataclass
class Claim:
    """A key about to be used: its record's id, and what the record will say. `owner_id` None:
    the person the command creates (a sign-up), else the ledger. `result_id` None: the id of
    the first aggregate the command creates, if any."""

    record_id: UUID
    route: str
    digest: str
    status: int = 201
    owner_id: UUID | None = None
    result_id: UUID | None = None
    used: bool = field(default=False, compare=False)


# The claim the current request's next `Ledger.save` writes. A context variable rather than a
# parameter of every command: each service stays as it is, and FastAPI runs each request in
# its own copy of the context, so no other request's save can pick it up.
_PENDING: ContextVar[Claim | None] = ContextVar("idempotency_claim", default=None)


def with_pending_record(objs: tuple[Any, ...]) -> tuple[Any, ...]:
    """`objs`, plus the record of the pending claim if there is one not yet written. Called by
    `Ledger.save`: the first save of a guarded command carries the record."""
    claim = _PENDING.get()
    if claim is None or claim.used:
        return objs
    claim.used = True
    created = [obj for obj in objs if isinstance(obj, Aggregate) and obj.pending_events
               and obj.pending_events[0].originator_version == 1]
    owner = claim.owner_id or next(
        (obj.id for obj in created if isinstance(obj, Person)), LEDGER_SUBJECT)
    result = claim.result_id or (created[0].id if created else None)
    return (*objs, IdempotencyRecord(
        record_id=claim.record_id, owner_id=owner, route=claim.route, digest=claim.digest,
        status=claim.status, result_id=result, used_at=datetime.now(UTC)))


def check_key(key: str) -> str:
    if len(key) > MAX_KEY or not _KEY.fullmatch(key):
        raise InvalidIdempotencyKey("an idempotency key is 1 to 128 of A-Z a-z 0-9 . _ ~ : + / = -")
    return key


class IdempotencyKeys:
    """Runs a command once per key: `once(claim, run, replay)`."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._secret = ledger.keys.server_secret(SECRET_SUBJECT)

    def _mac(self, *parts: bytes) -> bytes:
        mac = hmac.new(self._secret, digestmod=hashlib.sha256)
        for part in parts:  # length-prefixed: no two lists of parts give the same input
            mac.update(len(part).to_bytes(4, "big"))
            mac.update(part)
        return mac.digest()

    def record_id(self, scope: str, route: str, key: str) -> UUID:
        """The record's stream id for `key` used by `scope` (a caller) on `route` (a template)."""
        digest = self._mac(b"record", scope.encode(), route.encode(), check_key(key).encode())
        return UUID(bytes=digest[:16], version=4)

    def digest(self, target: str, body: Any) -> str:
        """A keyed digest of the request (the path it named and its body as JSON, keys sorted),
        so that the record says whether a retry is the same request without holding it."""
        canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        return self._mac(b"request", target.encode(), canonical).hex()

    def find(self, record_id: UUID) -> Used | None:
        """The record at `record_id`, if the key was used: one read of the log (one row).
        `KeyErased` if it was, and the person it concerned has since been erased."""
        rows = self.ledger.recorder.select_events(record_id, limit=1)
        if not rows:
            return None
        found: Any = self.ledger.mapper.to_domain_event(rows[0])
        if isinstance(found, ErasedEvent):
            raise KeyErased(record_id)
        return Used(route=found.route, status=found.status, result_id=found.result_id,
                    owner_id=found.owner_id, used_at=found.used_at, digest=found.digest)

    def once(self, claim: Claim, run: Callable[[], T], replay: Callable[[Used], T]) -> T:
        """`run()` with the claim's record saved by its first save; or, if the key was used
        already (before, or by a duplicate racing this one), `replay(record)` instead.
        `IdempotencyKeyReused` if the key was used for another request."""
        found = self.find(claim.record_id)
        if found is None:
            token = _PENDING.set(claim)
            try:
                return run()
            except Exception:
                # A duplicate may have committed while this one ran: its record refused this
                # save (a version clash), or its claims refused this one's (an email in use).
                with contextlib.suppress(Exception):
                    found = self.find(claim.record_id)
                if found is None:
                    raise
            finally:
                _PENDING.reset(token)
        if not hmac.compare_digest(found.digest, claim.digest):
            raise IdempotencyKeyReused
        return replay(found)
