"""The FERPA audit trail's access records (AUD-1, AUD-4, AUD-5, ACC-4).

Every read of a student's personal data by anyone but the student appends an access record
before the data leaves: who (an opaque principal, their role and, when acting as another user,
both identities), whose records, what (a resource and the fields), when, why (a purpose code)
and the request's id. No read without its record: `AuditTrail.record_access` saves it, and a
read whose record cannot be saved fails.

Each record is an event of a stream of its own (a fresh id), so concurrent reads never contend
for one stream's next version, and the log's append-only rule and (later) its Merkle tree cover
the trail. The record is the student's data: it is sealed under the student's key
(`sealed_for_owner`), so it goes with the student's erasure (AUD-4) and the erasure receipt
stays. The audit index (projections/audit.py) keeps the pseudonymous facts (ids, time, purpose
code) that queries need.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate, event

from ledger.application import Ledger
from ledger.people import InvalidRecord, one_of

# Why a record was opened: a code from a fixed list, never free text (it is indexed in the clear).
PURPOSES = (
    "school_official",  # a teacher or administrator of the student's school (99.31(a)(1))
    "parent_access",  # a linked parent (99.10)
    "records_administration",  # the privacy officer, the registrar
    # support staff state one of these (ACC-4)
    "account_recovery", "technical_issue", "legal_request", "parent_request",
    "data_correction", "erasure_request",
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


class AuditTrail:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def record_access(self, access: RecordsAccess, at: datetime) -> UUID:
        """Save the record (durably: the save commits before this returns). Raises if it
        cannot be written, and the caller must then not return the data."""
        one_of("purpose", access.purpose, PURPOSES)
        if not _RESOURCE.match(access.resource) or not all(
                _FIELD.match(f) for f in access.fields):
            raise InvalidRecord("resource", "a route pattern and field names")
        record = AccessRecord(owner_id=access.student_id, actor_id=access.actor_id,
                              actor_role=access.actor_role, resource=access.resource,
                              fields=sorted(access.fields), purpose=access.purpose,
                              request_id=access.request_id, on_behalf_of=access.on_behalf_of,
                              read_at=at)
        self.ledger.save(record)
        return record.id

    def record(self, record_id: UUID) -> AccessRecord | None:
        """A record's details, opened with the student's key (None once they are erased)."""
        found: AccessRecord | None = self.ledger.aggregate(record_id, AccessRecord)
        return found
