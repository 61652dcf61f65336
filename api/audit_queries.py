"""The audit trail's queries (AUD-3), shared by the HTTP routes and `ledger audit`.

Each query catches the audit index up (every record saved so far is in the answer), reads one
page of the index in (time, record id) order, opens each record's details with its student's
key, and records itself as an access of each student it returns before anything is returned
(AUD-1: the answer is the students' data). Who may ask is the caller's question
(`Access.may_audit` for a student's trail); a query over many students (by actor, by party)
keeps only the rows of students the caller may audit.

A page holds at most `limit` index rows; `next_after` is the last row read, so the next page
starts exactly after it even when rows were left out or two records share a timestamp.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any
from uuid import UUID

from api.services import Services
from api.tokens import Principal
from crypto import KeyErased
from ledger.audit import AccessRecord
from ledger.disclosures import LEGAL_BASES
from projections.audit import ACCESS, DISCLOSURE, AuditEntry, PageAfter

STUDENT_TRAIL = "/students/{person_id}/audit-trail"
ACTOR_TRAIL = "/audit/actors/{actor_id}"
PARTY_TRAIL = "/audit/disclosures"
_FIELDS = {ACCESS: "access_records", DISCLOSURE: "disclosure_records"}


@dataclass(frozen=True)
class TrailItem:
    """One record of the trail: an access or a disclosure, with its sealed details opened."""

    kind: str
    record_id: UUID
    at: datetime
    student_id: UUID
    actor_id: UUID
    actor_role: str
    code: str  # an access's purpose; a disclosure's legal basis
    on_behalf_of: UUID | None = None
    # an access
    resource: str | None = None
    fields: list[str] = field(default_factory=list)
    # a disclosure
    recipient: str | None = None
    disclosed_on: date | None = None
    legal_basis_label: str | None = None
    legitimate_interest: str | None = None
    redisclosure_parties: list[str] = field(default_factory=list)
    disclosed: list[str] = field(default_factory=list)
    threat: str | None = None
    statements: list[dict[str, str]] = field(default_factory=list)  # RGT-2, sent along


@dataclass(frozen=True)
class TrailPage:
    items: list[TrailItem]
    next_after: PageAfter | None


class AuditQueries:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def of_student(self, who: Principal, student_id: UUID, request_id: str,
                   since: datetime | None = None, until: datetime | None = None,
                   limit: int = 100, after: PageAfter | None = None,
                   kinds: Sequence[str] = (ACCESS, DISCLOSURE),
                   resource: str = STUDENT_TRAIL) -> TrailPage:
        """A student's trail; the caller has checked `Access.may_audit`. Recorded even when
        empty: asking is itself an access of the student's records."""
        self.svc.audit_view.catch_up()
        entries = self.svc.audit_reader.of_student(student_id, since, until, limit, after,
                                                   kinds)
        self.svc.record_access(who, student_id, resource, [_FIELDS[k] for k in kinds], None,
                               request_id)
        return TrailPage(self._open_page(entries), _next(entries, limit))

    def of_actor(self, who: Principal, actor_id: UUID, request_id: str,
                 since: datetime | None = None, until: datetime | None = None,
                 limit: int = 100, after: PageAfter | None = None,
                 resource: str = ACTOR_TRAIL) -> TrailPage:
        self.svc.audit_view.catch_up()
        entries = self.svc.audit_reader.of_actor(actor_id, since, until, limit, after)
        return self._many(who, entries, limit, resource, request_id)

    def to_party(self, who: Principal, party: str, request_id: str,
                 since: datetime | None = None, until: datetime | None = None,
                 limit: int = 100, after: PageAfter | None = None,
                 resource: str = PARTY_TRAIL) -> TrailPage:
        self.svc.audit_view.catch_up()
        tokens = self.svc.disclosures.party_tokens(party)
        entries = self.svc.audit_reader.to_party(tokens, since, until, limit, after)
        return self._many(who, entries, limit, resource, request_id)

    def _many(self, who: Principal, entries: list[AuditEntry], limit: int, resource: str,
              request_id: str) -> TrailPage:
        """Rows of several students: only those the caller may audit; the query recorded for
        each of them, all in one transaction, before anything is returned."""
        may: Callable[[UUID], bool] = _memo(lambda s: self.svc.access.may_audit(who, s))
        items = self._open_page([entry for entry in entries if may(entry.student_id)])
        kinds: dict[UUID, set[str]] = {}
        for item in items:
            kinds.setdefault(item.student_id, set()).add(_FIELDS[item.kind])
        self.svc.record_accesses(who, [(student, sorted(fields)) for student, fields in
                                       kinds.items()], resource, None, request_id)
        return TrailPage(items, _next(entries, limit))

    def _open_page(self, entries: list[AuditEntry]) -> list[TrailItem]:
        """The entries with their records' details, in order; the access records of a page
        opened together (one query, one key fetch); a student erased meanwhile drops out."""
        accesses = self.svc.audit.records(e.record_id for e in entries if e.kind == ACCESS)
        return [item for entry in entries if (item := self._open(entry, accesses))]

    def _open(self, entry: AuditEntry, accesses: dict[UUID, AccessRecord]
              ) -> TrailItem | None:
        base = TrailItem(entry.kind, entry.record_id, entry.at, entry.student_id,
                         entry.actor_id, entry.actor_role, entry.code)
        if entry.kind == ACCESS:
            access = accesses.get(entry.record_id)
            return None if access is None else replace(
                base, on_behalf_of=access.on_behalf_of, resource=access.resource,
                fields=list(access.fields))
        try:
            disclosure = self.svc.disclosures.record_of(entry.record_id)
        except KeyErased:
            return None
        return None if disclosure is None else replace(
            base, on_behalf_of=disclosure.on_behalf_of, recipient=disclosure.recipient,
            disclosed_on=disclosure.disclosed_on,
            legal_basis_label=LEGAL_BASES.get(disclosure.legal_basis),
            legitimate_interest=disclosure.legitimate_interest,
            redisclosure_parties=list(disclosure.redisclosure_parties),
            disclosed=list(disclosure.disclosed), threat=disclosure.threat,
            statements=[dict(s) for s in disclosure.statements])


def disclosures_of(svc: Services, student_id: UUID) -> Iterator[dict[str, Any]]:
    """A student's disclosure records, oldest first, for the export (RGT-1): not recorded
    here (the export records its own access). The keys are the export's columns."""
    svc.audit_view.catch_up()
    after: PageAfter | None = None
    while page := svc.audit_reader.of_student(student_id, limit=500, after=after,
                                              kinds=(DISCLOSURE,)):
        for entry in page:
            record = svc.disclosures.record_of(entry.record_id)
            if record is not None:
                yield {"disclosure_id": record.id, "recipient": record.recipient,
                       "legal_basis": record.legal_basis,
                       "legitimate_interest": record.legitimate_interest,
                       "redisclosure_parties": list(record.redisclosure_parties),
                       "threat": record.threat, "disclosed_at": record.disclosed_on,
                       "disclosed_by": record.actor_id, "disclosed": list(record.disclosed),
                       "statements": [f"{s['field']}: {s['text']}" for s in record.statements]}
        after = (page[-1].at, page[-1].record_id)


def _next(entries: list[AuditEntry], limit: int) -> PageAfter | None:
    last = entries[-1] if len(entries) == limit else None
    return (last.at, last.record_id) if last else None


def _memo(ask: Callable[[UUID], bool]) -> Callable[[UUID], bool]:
    known: dict[UUID, bool] = {}

    def cached(student_id: UUID) -> bool:
        if student_id not in known:
            known[student_id] = ask(student_id)
        return known[student_id]

    return cached
