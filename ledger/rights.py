"""Rights requests (RGT-1..4): the request ledger, rectification with its statements, and
restriction or objection.

A subject (a student or a teacher) asks, or a linked parent or the school's records custodian
or the privacy officer asks for them: to see their records (access), to have them all
(export), to correct a field they gave (rectify), to be erased (erase), to have their data
kept but left out of analytics and non-essential processing (restrict, object). Each request is
received at a time from the injected `clock` and is due 30 days later (RGT-4).

Extension: a request may be extended once or more, each time with a reason and a notice to the
requester, before it falls due, and never past 45 days after receipt. The bound is FERPA's
(34 CFR 99.10(b): an education record is shown "in no case more than 45 days after" the
request); GDPR's Article 12(3) allows "two further months" on top of one month, so 45 days
keeps a request inside both laws at once. The notice is an event of the request, and a mail
when a mailer that can send it is configured and the requester has an address on file (a
linked parent's, a teacher's own); a student has none (MIN-1), so their notice is the event,
shown with their requests.

Everything of one subject lives in one stream, their *rights file*, sealed under their key
(`sealed_for_owner`): the requests (a proposed value is personal data), the statements and the
restriction. So it all goes with their erasure; the read model (projections/rights.py) keeps
only pseudonymous facts, for the overdue report and the list of restricted subjects.

Rectification (RGT-2, 34 CFR 99.20-99.21): a request names a field the subject gave and the
value proposed, validated when filed. Granted (`fulfil`), the change goes through the same
commands as any other edit (`Accounts`), so every rule of the record still holds; refused,
with a reason, the student or parent may attach a statement to the contested field. The
statement stays with the subject, goes out in every later export next to the field, and is
what `statements_of` hands to the disclosures (AUD-2).

Restriction and objection (RGT-3): granted, the subject is restricted until the restriction
is lifted. Restricted subjects are left out of analytics and of any processing the service
does not need to deliver what the subject asked for; `is_restricted` (from the log, exact) and
the read model's `restricted_subjects` are the contract for whoever does such processing.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol, runtime_checkable
from uuid import UUID, uuid4, uuid5

from eventsourcing.domain import Aggregate, event

from crypto import KeyErased
from ledger import bounds, people
from ledger.accounts import Accounts
from ledger.application import ErasedPerson, Ledger
from ledger.people import InvalidRecord, Person, Student, Teacher, one_of, short_text

log = logging.getLogger("ledger.rights")

RIGHTS_NAMESPACE = UUID("5e0c2a61-8f4b-4d7e-b1a9-3c6d2e8f0a17")
KINDS = ("access", "export", "rectify", "erase", "restrict", "object")
# Who filed: the subject, a linked parent, or staff on the subject's behalf.
FILERS = ("subject", "parent", "custodian", "operator")
STATUSES = ("open", "fulfilled", "refused", "withdrawn")
RESPONSE_TIME = timedelta(days=30)  # RGT-4
LONGEST_RESPONSE_TIME = timedelta(days=45)  # FERPA 99.10(b); inside GDPR's 1 + 2 months
MAX_REASON = 500
MAX_STATEMENT = 2_000
# RGT-2: the fields a subject gives, per kind of subject. Not a student's email: only its
# keyed hash is kept (MIN-1), so a request could only hold the address itself; a student
# changes it at /me/email.
RECTIFIABLE: dict[type[Person], tuple[str, ...]] = {
    Student: ("display_name", "age", "gender", "race", "parent_email"),
    Teacher: ("display_name", "gender", "email"),
}
RESTRICTING = ("restrict", "object")


def rights_file_id(subject_id: UUID) -> UUID:
    return uuid5(RIGHTS_NAMESPACE, str(subject_id))


# -- errors -----------------------------------------------------------------------------------
class RequestNotFound(LookupError):
    def __init__(self) -> None:
        super().__init__("no such rights request")


class RequestStateConflict(Exception):
    """The request is not in a state that allows this (closed, not a refused rectification)."""


class SubjectRestricted(Exception):
    """RGT-3: the subject is restricted; this non-essential processing is not done."""

    def __init__(self) -> None:
        super().__init__("the subject has restricted or objected to this processing (RGT-3)")


# -- views ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Extension:
    due_at: datetime
    reason: str
    by: str
    at: datetime
    notice: str  # "mailed" or "recorded" (no address on file, or no mailer)


@dataclass(frozen=True)
class RightsRequest:
    id: UUID
    subject_id: UUID
    kind: str
    filed_by: str
    filer: str  # the principal's id or a command-line operator's label, never a name
    received_at: datetime
    due_at: datetime
    status: str
    field: str | None
    proposed: str | None
    extensions: tuple[Extension, ...]
    closed_at: datetime | None
    closed_by: str | None
    outcome: str | None  # the reason of a refusal

    @property
    def open(self) -> bool:
        return self.status == "open"

    def overdue(self, at: datetime) -> bool:
        return self.open and self.due_at < at


@dataclass(frozen=True)
class Statement:
    """RGT-2: the subject's own words on a field whose amendment was refused."""

    id: UUID
    subject_id: UUID
    request_id: UUID
    field: str
    text: str
    by: str  # "subject" or "parent"
    at: datetime


@dataclass(frozen=True)
class Restriction:
    since: datetime
    requests: tuple[UUID, ...]  # the granted restrict/object requests


@runtime_checkable
class ExtensionNotices(Protocol):
    """A mailer that can tell a requester their request was extended (with why, and when it
    is now due). `ledger.password_reset.Outbox` does not: a deployment's mailer may."""

    def send_rights_extension(self, address: str, request_id: UUID, due: date,
                              reason: str) -> None: ...


# -- the aggregate ----------------------------------------------------------------------------
class RightsFile(Aggregate):
    """One subject's requests, statements and restriction."""

    class Event(Aggregate.Event):
        sealed_for_owner = True
        owner_id: UUID

    class Opened(Aggregate.Created, Event):
        pass

    class Filed(Event):
        request_id: UUID
        kind: str
        filed_by: str
        filer: str
        received_at: datetime
        due_at: datetime
        field: str | None
        proposed: str | None

    class Extended(Event):
        request_id: UUID
        due_at: datetime
        reason: str
        by: str
        at: datetime
        notice: str

    class Fulfilled(Event):
        request_id: UUID
        by: str
        at: datetime

    class Refused(Event):
        request_id: UUID
        by: str
        at: datetime
        reason: str

    class Withdrawn(Event):
        request_id: UUID
        by: str
        at: datetime

    class Restricted(Event):
        request_id: UUID
        by: str
        at: datetime

    class RestrictionLifted(Event):
        by: str
        at: datetime
        reason: str

    class StatementAttached(Event):
        statement_id: UUID
        request_id: UUID
        field: str
        text: str
        by: str
        at: datetime

    @staticmethod
    def create_id(owner_id: UUID, **_: Any) -> UUID:
        return rights_file_id(owner_id)

    @event(Opened)
    def __init__(self, owner_id: UUID) -> None:
        self.owner_id = owner_id
        # Plain values, so that snapshots transcode them. request id -> its state.
        self.requests: dict[str, dict[str, Any]] = {}
        self.statements: list[list[Any]] = []  # [id, request id, field, text, by, at]
        self.restricted_since: datetime | None = None
        self.restricting: list[str] = []  # request ids of the restriction in place

    @event(Filed)
    def _file(self, owner_id: UUID, request_id: UUID, kind: str, filed_by: str, filer: str,
              received_at: datetime, due_at: datetime, field: str | None,
              proposed: str | None) -> None:
        self.requests[str(request_id)] = {
            "kind": kind, "filed_by": filed_by, "filer": filer, "received_at": received_at,
            "due_at": due_at, "status": "open", "field": field, "proposed": proposed,
            "extensions": [], "closed_at": None, "closed_by": None, "outcome": None}

    @event(Extended)
    def _extend(self, owner_id: UUID, request_id: UUID, due_at: datetime, reason: str, by: str,
                at: datetime, notice: str) -> None:
        state = self.requests[str(request_id)]
        state["due_at"] = due_at
        state["extensions"].append([due_at, reason, by, at, notice])

    def _close(self, request_id: UUID, status: str, by: str, at: datetime,
               outcome: str | None = None) -> None:
        self.requests[str(request_id)].update(status=status, closed_at=at, closed_by=by,
                                              outcome=outcome)

    @event(Fulfilled)
    def _fulfil(self, owner_id: UUID, request_id: UUID, by: str, at: datetime) -> None:
        self._close(request_id, "fulfilled", by, at)

    @event(Refused)
    def _refuse(self, owner_id: UUID, request_id: UUID, by: str, at: datetime,
                reason: str) -> None:
        self._close(request_id, "refused", by, at, reason)

    @event(Withdrawn)
    def _withdraw(self, owner_id: UUID, request_id: UUID, by: str, at: datetime) -> None:
        self._close(request_id, "withdrawn", by, at)

    @event(Restricted)
    def _restrict(self, owner_id: UUID, request_id: UUID, by: str, at: datetime) -> None:
        if self.restricted_since is None:
            self.restricted_since = at
        self.restricting.append(str(request_id))

    @event(RestrictionLifted)
    def _lift(self, owner_id: UUID, by: str, at: datetime, reason: str) -> None:
        self.restricted_since = None
        self.restricting = []

    @event(StatementAttached)
    def _attach(self, owner_id: UUID, statement_id: UUID, request_id: UUID, field: str,
                text: str, by: str, at: datetime) -> None:
        self.statements.append([statement_id, request_id, field, text, by, at])

    # -- reads ------------------------------------------------------------------------------
    def request(self, request_id: UUID) -> RightsRequest:
        state = self.requests.get(str(request_id))
        if state is None:
            raise RequestNotFound()
        return RightsRequest(
            id=request_id, subject_id=self.owner_id, kind=state["kind"],
            filed_by=state["filed_by"], filer=state["filer"],
            received_at=state["received_at"], due_at=state["due_at"], status=state["status"],
            field=state["field"], proposed=state["proposed"],
            extensions=tuple(Extension(*e) for e in state["extensions"]),
            closed_at=state["closed_at"], closed_by=state["closed_by"],
            outcome=state["outcome"])

    @property
    def all_requests(self) -> list[RightsRequest]:
        """Oldest first; in filing order when received at the same time."""
        found = [self.request(UUID(key)) for key in self.requests]
        return sorted(found, key=lambda r: r.received_at)

    @property
    def all_statements(self) -> list[Statement]:
        return [Statement(UUID(str(s)), self.owner_id, UUID(str(r)), f, t, b, at)
                for s, r, f, t, b, at in self.statements]

    @property
    def restriction(self) -> Restriction | None:
        if self.restricted_since is None:
            return None
        return Restriction(self.restricted_since, tuple(UUID(r) for r in self.restricting))


# -- values -----------------------------------------------------------------------------------
def statement_text(value: str) -> str:
    """Free text, 1 to `MAX_STATEMENT` characters; line breaks allowed, other controls not."""
    text = unicodedata.normalize("NFC", value).strip()
    if not text or len(text) > MAX_STATEMENT:
        raise InvalidRecord("text", f"must be 1-{MAX_STATEMENT} characters")
    if any(unicodedata.category(c).startswith("C") and c not in "\n\t" for c in text):
        raise InvalidRecord("text", "must not contain control characters")
    return text


def proposed_value(person: Person, field: str | None, value: str | None) -> tuple[str, str]:
    """RGT-2: a field this kind of subject gives, and a value its rules accept."""
    allowed = next((fields for kind, fields in RECTIFIABLE.items() if isinstance(person, kind)),
                   ())
    if field is None or field not in allowed:
        raise InvalidRecord("field", f"must be one of {', '.join(allowed)}")
    if value is None:
        raise InvalidRecord("proposed_value", "is required for a rectification")
    if field == "display_name":
        return field, people.display_name(value)
    if field == "age":
        return field, str(people.age(value))
    if field == "gender":
        return field, str(one_of("proposed_value", value, people.GENDERS))
    if field == "race":
        return field, str(one_of("proposed_value", value, people.RACES))
    return field, people.email("proposed_value", value)  # email, parent_email


# -- the service ------------------------------------------------------------------------------
class RightsRequests:
    """File, extend, fulfil, refuse and withdraw requests; statements; restriction."""

    def __init__(self, ledger: Ledger, accounts: Accounts, clock: Callable[[], datetime],
                 notices: ExtensionNotices | None = None) -> None:
        self.ledger = ledger
        self.accounts = accounts
        self.clock = clock
        self.notices = notices

    # -- requests ---------------------------------------------------------------------------
    def file(self, subject_id: UUID, kind: str, filed_by: str, filer: str,
             field: str | None = None, proposed: str | None = None,
             request_id: UUID | None = None) -> UUID:
        """A new request, received now and due in 30 days. A rectification names the field
        and the value proposed (checked now: a request that could never be granted is not
        filed). `KeyErased` for an erased subject; `PersonNotFound` for an unknown one.
        `request_id`: the new request's id, if the caller chose it (an idempotent retry names
        it in the key's record before the save)."""
        one_of("kind", kind, KINDS)
        one_of("filed_by", filed_by, FILERS)
        person = self._person(subject_id)
        if kind == "rectify":
            field, proposed = proposed_value(person, field, proposed)
        elif field is not None or proposed is not None:
            raise InvalidRecord("field", "is given only with a rectification")
        rights = self._file_of(subject_id) or RightsFile(subject_id)
        request_id, now = request_id or uuid4(), self.clock()
        rights._file(subject_id, request_id, kind, filed_by, filer, now, now + RESPONSE_TIME,
                     field, proposed)
        self.ledger.save(rights)
        log.info("rights request filed request=%s subject=%s kind=%s", request_id, subject_id,
                 kind)
        return request_id

    def extend(self, subject_id: UUID, request_id: UUID, due_at: datetime, reason: str,
               by: str) -> Extension:
        """RGT-4: a later due date, before the current one has passed and at most 45 days
        after receipt, with a reason that goes to the requester."""
        rights, request = self._open(subject_id, request_id)
        why = short_text("reason", reason, MAX_REASON)
        now = self.clock()
        bounds.ahead("due_at", due_at, now)  # before any comparison: 9999-12-31-12:00 overflows
        if now > request.due_at:
            raise InvalidRecord("due_at", "an extension is given before the request falls due")
        if due_at <= request.due_at:
            raise InvalidRecord("due_at", "must be later than the current due date")
        if due_at > request.received_at + LONGEST_RESPONSE_TIME:
            raise InvalidRecord("due_at", "must be at most 45 days after the request was"
                                          " received (34 CFR 99.10(b))")
        notice = self._notify(subject_id, request, due_at, why)
        rights._extend(subject_id, request_id, due_at, why, by, now, notice)
        self.ledger.save(rights)
        log.info("rights request extended request=%s notice=%s", request_id, notice)
        return Extension(due_at, why, by, now, notice)

    def fulfil(self, subject_id: UUID, request_id: UUID, by: str) -> RightsRequest:
        """Grant: a rectification's change is made through `Accounts` (every rule of the
        record holds: a refused change is `InvalidRecord` and the request stays open); a
        restriction or objection restricts the subject, in the same save as the request's
        closing. Access, export and erasure are done by their own routes (the export, the
        deletion lifecycle) and recorded here as done."""
        rights, request = self._open(subject_id, request_id)
        if request.kind == "rectify":
            self._apply(subject_id, str(request.field), str(request.proposed))
        now = self.clock()
        if request.kind in RESTRICTING:
            rights._restrict(subject_id, request_id, by, now)
        rights._fulfil(subject_id, request_id, by, now)
        self.ledger.save(rights)
        log.info("rights request fulfilled request=%s kind=%s", request_id, request.kind)
        return rights.request(request_id)

    def refuse(self, subject_id: UUID, request_id: UUID, reason: str, by: str
               ) -> RightsRequest:
        rights, _ = self._open(subject_id, request_id)
        rights._refuse(subject_id, request_id, by, self.clock(),
                       short_text("reason", reason, MAX_REASON))
        self.ledger.save(rights)
        log.info("rights request refused request=%s", request_id)
        return rights.request(request_id)

    def withdraw(self, subject_id: UUID, request_id: UUID, by: str) -> RightsRequest:
        rights, _ = self._open(subject_id, request_id)
        rights._withdraw(subject_id, request_id, by, self.clock())
        self.ledger.save(rights)
        return rights.request(request_id)

    def requests_of(self, subject_id: UUID) -> list[RightsRequest]:
        rights = self._file_of(subject_id)
        return rights.all_requests if rights else []

    def request(self, subject_id: UUID, request_id: UUID) -> RightsRequest:
        rights = self._file_of(subject_id)
        if rights is None:
            raise RequestNotFound()
        return rights.request(request_id)

    # -- statements (RGT-2) -----------------------------------------------------------------
    def attach_statement(self, subject_id: UUID, request_id: UUID, text: str, by: str) -> UUID:
        """After a refused rectification, the subject's (or parent's) statement on the field."""
        one_of("by", by, ("subject", "parent"))
        rights = self._file_of(subject_id)
        if rights is None:
            raise RequestNotFound()
        request = rights.request(request_id)
        if request.kind != "rectify" or request.status != "refused":
            raise RequestStateConflict("a statement is attached to a refused rectification")
        statement_id = uuid4()
        rights._attach(subject_id, statement_id, request_id, str(request.field),
                       statement_text(text), by, self.clock())
        self.ledger.save(rights)
        return statement_id

    def statements_of(self, subject_id: UUID) -> list[Statement]:
        """Every statement on the subject's contested fields, oldest first: for the export and
        for every disclosure of the record (34 CFR 99.21(c))."""
        rights = self._file_of(subject_id)
        return rights.all_statements if rights else []

    # -- restriction (RGT-3) ----------------------------------------------------------------
    def restriction(self, subject_id: UUID) -> Restriction | None:
        """Read from the log, never from a view that may lag."""
        rights = self._file_of(subject_id)
        return rights.restriction if rights else None

    def is_restricted(self, subject_id: UUID) -> bool:
        return self.restriction(subject_id) is not None

    def refuse_if_restricted(self, subject_id: UUID) -> None:
        """For non-essential processing: `SubjectRestricted` while a restriction is in place."""
        if self.is_restricted(subject_id):
            raise SubjectRestricted()

    def lift_restriction(self, subject_id: UUID, reason: str, by: str) -> bool:
        """False if there was none to lift."""
        rights = self._file_of(subject_id)
        if rights is None or rights.restriction is None:
            return False
        rights._lift(subject_id, by, self.clock(), short_text("reason", reason, MAX_REASON))
        self.ledger.save(rights)
        log.info("restriction lifted subject=%s", subject_id)
        return True

    # -- helpers ----------------------------------------------------------------------------
    def _person(self, subject_id: UUID) -> Person:
        person = self.ledger.person(subject_id)  # PersonNotFound for an unknown id
        if isinstance(person, ErasedPerson):
            raise KeyErased(subject_id)
        return person

    def _file_of(self, subject_id: UUID) -> RightsFile | None:
        found: RightsFile | None = self.ledger.aggregate(rights_file_id(subject_id), RightsFile)
        return found

    def _open(self, subject_id: UUID, request_id: UUID) -> tuple[RightsFile, RightsRequest]:
        rights = self._file_of(subject_id)
        if rights is None:
            raise RequestNotFound()
        request = rights.request(request_id)
        if not request.open:
            raise RequestStateConflict(f"the request is {request.status}")
        return rights, request

    def _apply(self, subject_id: UUID, field: str, value: str) -> None:
        accounts = self.accounts
        if field == "display_name":
            accounts.rename(subject_id, value)
        elif field == "age":
            accounts.give_age(subject_id, value, self.clock().date())
        elif field == "gender":
            accounts.give_gender(subject_id, value)
        elif field == "race":
            accounts.give_race(subject_id, value)
        elif field == "email":
            accounts.set_email(subject_id, value)
        elif field == "parent_email":
            accounts.link_parent_email(subject_id, value)
        else:  # a field checked when filed: unreachable unless the list changed since
            raise InvalidRecord("field", "is no longer one a subject may have corrected")

    def _notify(self, subject_id: UUID, request: RightsRequest, due_at: datetime,
                reason: str) -> str:
        """Mail the requester, if they have an address on file and a mailer can; else the
        event is the notice."""
        address = self._requester_address(subject_id, request)
        if address is None or self.notices is None:
            return "recorded"
        self.notices.send_rights_extension(address, request.id, due_at.date(), reason)
        return "mailed"

    def _requester_address(self, subject_id: UUID, request: RightsRequest) -> str | None:
        person = self.ledger.person(subject_id)
        if isinstance(person, Student) and request.filed_by == "parent":
            found = person.consent("parent_email")
            return found if isinstance(found, str) else None
        if isinstance(person, Teacher) and request.filed_by == "subject":
            return person.email
        return None
