"""The FERPA audit trail's access records (AUD-1, AUD-4, AUD-5, ACC-4).

Every read of a student's personal data by anyone but the student appends an access record
before the data leaves: who (an opaque principal, their role and, when acting as another user,
both identities), whose records, what (a resource and the fields), when, why (a purpose code)
and the request's id. No read without its record: `AuditTrail.record_access` saves it, and a
read whose record cannot be saved fails (`AccessNotRecorded`).

Group commit: concurrent readers' records are saved together, one transaction for many reads.
No timer and no background thread: a caller queues its records; if no save is in progress it
leads, saving what is queued (its own records first), else it waits. A leader saves one batch
(at most `MAX_BATCH` records, never splitting one caller's) and, if more are queued, hands the
lead to the first waiter left, so that no caller saves other people's batches for ever under
load. Every caller returns only once the transaction holding its records has committed; if that
transaction fails, each caller of it raises and nothing of it is written. A lone caller leads at
once and waits for nobody.

Each record is an event of a stream of its own (a fresh id), so concurrent reads never contend
for one stream's next version, and the log's append-only rule and (later) its Merkle tree cover
the trail. The record is the student's data: it is sealed under the student's key
(`sealed_for_owner`), so it goes with the student's erasure (AUD-4) and the erasure receipt
stays. The audit index (projections/audit.py) keeps the pseudonymous facts (ids, time, purpose
code) that queries need.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate, event

from ledger.application import Ledger
from ledger.people import InvalidRecord, one_of
from ledger.sealing import SealedMapper, sealing_subject

log = logging.getLogger("ledger.audit")
MAX_BATCH = 500  # records per group transaction (one caller's records are never split)

# Why a record was opened: a code from a fixed list, never free text (it is indexed in the clear).
PURPOSES = (
    "school_official",  # a teacher or administrator of the student's school (99.31(a)(1))
    "parent_access",  # a linked parent (99.10)
    "records_administration",  # the privacy officer, the registrar
    # support staff state one of these (ACC-4)
    "account_recovery", "technical_issue", "legal_request", "parent_request",
    "data_correction", "erasure_request",
    "support_session",  # support acting as the user, in a session they opened (AUD-5)
)
_RESOURCE = re.compile(r"^/[a-z0-9_/.{}-]{1,99}$")  # a route pattern, never a concrete path
_FIELD = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass(frozen=True)
class RecordsAccess:
    """One read of a student's records, as the API layer saw it."""

    actor_id: UUID  # the principal (a session's or a staff token's), never a name
    actor_role: str
    student_id: UUID
    resource: str  # the route pattern read, e.g. "/students/{person_id}"
    fields: Sequence[str]
    purpose: str
    request_id: str
    on_behalf_of: UUID | None = None  # AUD-5: the user a support session acts as


class AccessRecord(Aggregate):
    class Event(Aggregate.Event):
        sealed_for_owner = True
        owner_id: UUID

    class Recorded(Aggregate.Created, Event):
        actor_id: UUID
        actor_role: str
        resource: str
        fields: list[str]
        purpose: str
        request_id: str
        on_behalf_of: UUID | None
        read_at: datetime

    @event(Recorded)
    def __init__(self, owner_id: UUID, actor_id: UUID, actor_role: str, resource: str,
                 fields: list[str], purpose: str, request_id: str, on_behalf_of: UUID | None,
                 read_at: datetime) -> None:
        self.owner_id = owner_id
        self.actor_id = actor_id
        self.actor_role = actor_role
        self.resource = resource
        self.fields = fields
        self.purpose = purpose
        self.request_id = request_id
        self.on_behalf_of = on_behalf_of
        self.read_at = read_at

    @staticmethod
    def create_id(**_: Any) -> UUID:
        return uuid4()

    @property
    def student_id(self) -> UUID:
        return self.owner_id


class AccessNotRecorded(Exception):
    """The access record could not be saved: the read must fail and return nothing."""

    def __init__(self) -> None:
        super().__init__("the access record could not be saved")


@dataclass
class _Waiter:
    """One caller's records in the group-commit queue."""

    records: list[AccessRecord]
    woken: threading.Event = field(default_factory=threading.Event)  # set once
    leads: bool = False  # handed the lead: save what is queued
    done: bool = False  # the transaction holding `records` ended (`error` says how)
    error: BaseException | None = None


class AuditTrail:
    def __init__(self, ledger: Ledger, max_batch: int = MAX_BATCH) -> None:
        self.ledger = ledger
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Waiter] = []
        self._saving = False

    def record_access(self, access: RecordsAccess, at: datetime) -> UUID:
        """Save the record (durably: the save commits before this returns). Raises
        `AccessNotRecorded` if it cannot be written, and the caller must then not return the
        data."""
        return self.record_accesses([access], at)[0]

    def record_accesses(self, accesses: Sequence[RecordsAccess], at: datetime) -> list[UUID]:
        """Save all of these records in one transaction (a read of many students), together
        with other callers' (group commit). All or none: `AccessNotRecorded` if it fails."""
        records = [access_record(access, at) for access in accesses]
        if not records:
            return []
        self._commit(_Waiter(records))
        return [record.id for record in records]

    def _commit(self, waiter: _Waiter) -> None:
        with self._lock:
            self._queue.append(waiter)
            waiter.leads = not self._saving
            self._saving = True
        if not waiter.leads:
            waiter.woken.wait()  # woken once: handed the lead, or its batch done
        if not waiter.done:
            self._lead()
        if waiter.error is not None:
            raise AccessNotRecorded() from waiter.error

    def _lead(self) -> None:
        """Save one batch from the head of the queue (the leader's own records are in it: a
        leader is always the queue's head), then pass the lead on, or end it."""
        with self._lock:
            batch: list[_Waiter] = []
            count = 0
            while self._queue and (not batch or count + len(self._queue[0].records)
                                   <= self.max_batch):
                taken = self._queue.pop(0)
                batch.append(taken)
                count += len(taken.records)
        error: BaseException | None = None
        try:
            self._save([record for taken in batch for record in taken.records])
        except BaseException as failed:  # every caller of the batch gets it, then it goes on
            log.warning("access records not saved (%s): %d reads fail", type(failed).__name__,
                        len(batch))
            error = failed
        with self._lock:
            if self._queue:
                self._queue[0].leads = True
                self._queue[0].woken.set()
            else:
                self._saving = False
        for taken in batch:
            taken.error = error
            taken.done = True
            taken.woken.set()

    def _save(self, records: list[AccessRecord]) -> None:
        """One transaction: the library records all of a `save`'s events together."""
        self.ledger.save(*records)

    def record(self, record_id: UUID) -> AccessRecord | None:
        """A record's details, opened with the student's key (None once they are erased)."""
        found: AccessRecord | None = self.ledger.aggregate(record_id, AccessRecord)
        return found

    def records(self, record_ids: Iterable[UUID]) -> dict[UUID, AccessRecord]:
        """Many records' details at once (a page of a query): one query for their events and
        one for their keys. An erased student's records are left out."""
        ids = list(dict.fromkeys(record_ids))
        if not ids:
            return {}
        rows = self.ledger.first_events(ids)  # a record is one event
        mapper = self.ledger.mapper
        assert isinstance(mapper, SealedMapper)
        subjects = {sealing_subject(state, stream) for stream, _, _, state in rows}
        openers = self.ledger.keys.openers({s for s in subjects if s is not None})
        found: dict[UUID, AccessRecord] = {}
        for stream, version, topic, state in rows:
            subject = sealing_subject(state, stream)
            aead = openers.get(subject) if subject is not None else None
            recorded = mapper.open_stored(UUID(bytes=stream), stream, version, topic, state,
                                          aead)
            if isinstance(recorded, AccessRecord.Recorded):
                record = recorded.mutate(None)
                if isinstance(record, AccessRecord):
                    found[record.id] = record
        return found

def access_record(access: RecordsAccess, at: datetime) -> AccessRecord:
    """A new access record, checked (InvalidRecord), not saved."""
    one_of("purpose", access.purpose, PURPOSES)
    if not _RESOURCE.match(access.resource) or not all(
            _FIELD.match(f) for f in access.fields):
        raise InvalidRecord("resource", "a route pattern and field names")
    return AccessRecord(owner_id=access.student_id, actor_id=access.actor_id,
                        actor_role=access.actor_role, resource=access.resource,
                        fields=sorted(access.fields), purpose=access.purpose,
                        request_id=access.request_id, on_behalf_of=access.on_behalf_of,
                        read_at=at)
