"""Rights requests (RGT-1..4) over HTTP: filing and following them, managing them, the overdue
report, statements, lifting a restriction, and the export.

Who, besides the role's permission (api/tokens.py):
- files, follows and withdraws: the student, a linked parent, the records custodian of the
  student's school, the privacy officer (operator);
- attaches a statement after a refused rectification: the student or a linked parent only;
- extends, fulfils, refuses, lifts a restriction, reads the overdue report: the custodian for
  their school's students, the operator for anyone;
- exports: `Access.may_export` (the student, a linked parent, the custodian, the operator).
Anyone else with the permission gets the 404 of a student who does not exist (ACC-5), and a
refusal writes nothing. Reading a student's requests or their export, by anyone but the student,
leaves an access record first (AUD-1).
"""

from __future__ import annotations

import logging
from datetime import datetime
from itertools import islice
from typing import Annotated, Literal
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from api.access import Relation
from api.exports import Exporter
from api.http.auth import require
from api.http.deps import Svc, path_id
from api.http.idempotency import IdempotencyKey, made, once
from api.http.problems import FORBIDDEN, VALIDATION, ProblemError, not_found, responses
from api.http.rights_models import (
    ExtensionIn,
    LiftOut,
    NewRightsRequest,
    Reason,
    RequestEntryOut,
    RestrictionOut,
    RightsFileOut,
    RightsRequestOut,
    StatementIn,
    StatementOut,
)
from api.services import Services
from api.tokens import Permission, Principal, Role
from crypto import KeyErased
from ledger.application import ErasedPerson
from ledger.people import Person, Student
from projections.rights import RequestEntry

log = logging.getLogger("api.http")
router = APIRouter(tags=["rights"])

Requester = Annotated[Principal, Depends(require(Permission.RIGHTS_REQUEST))]
Manager = Annotated[Principal, Depends(require(Permission.RIGHTS_MANAGE))]
Exporting = Annotated[Principal, Depends(require(Permission.RECORDS_EXPORT))]

_READ = responses(401, 403, 404, 410, 422, 503)
_WRITE = responses(401, 403, 404, 409, 410, 422, 503)

# Who files for the student, by role and relation; the operator files for anyone.
_FILED_BY: dict[tuple[str, Relation], str] = {
    (Role.STUDENT, Relation.SELF): "subject", (Role.PARENT, Relation.PARENT): "parent",
    (Role.RECORDS_CUSTODIAN, Relation.IN_SCOPE): "custodian"}
_STATEMENT_BY: dict[str, str] = {Role.STUDENT: "subject", Role.PARENT: "parent"}


def _filed_by(svc: Services, who: Principal, subject: UUID) -> str | None:
    if who.role == Role.OPERATOR:
        return "operator"
    return _FILED_BY.get((who.role, svc.access.relation(who, subject)))


def _manages(svc: Services, who: Principal, subject: UUID) -> bool:
    return who.role == Role.OPERATOR or (
        who.role == Role.RECORDS_CUSTODIAN
        and svc.access.relation(who, subject) == Relation.IN_SCOPE)


def _student(svc: Services, subject: UUID) -> Student:
    """The student: 410 if erased, 404 if unknown or a teacher."""
    person = svc.ledger.person(subject)
    if isinstance(person, ErasedPerson):
        raise KeyErased(subject)
    if not isinstance(person, Student):
        raise not_found()
    return person


def _requester_of(svc: Services, who: Principal, person_id: str) -> tuple[UUID, str]:
    subject = path_id(person_id)
    filed_by = _filed_by(svc, who, subject)
    if filed_by is None:
        raise not_found()
    _student(svc, subject)
    return subject, filed_by


def _managed(svc: Services, who: Principal, person_id: str) -> UUID:
    subject = path_id(person_id)
    if not _manages(svc, who, subject):
        raise not_found()
    _student(svc, subject)
    return subject


def _shown(svc: Services, who: Principal, subject: UUID, request: Request,
           out: RightsRequestOut) -> RightsRequestOut:
    """A request (a proposed value, reasons) is the student's data: answered to anyone but the
    student with an access record, saved before the answer leaves (AUD-1)."""
    svc.record_access(who, subject, "/students/{person_id}/rights-requests",
                      ["rights_requests"], None, request.state.request_id)
    return out


def _by(who: Principal) -> str:
    """Who acted, as the request keeps it: the principal's id (AUD-5: and who stood behind)."""
    return f"{who.id}" if who.acted_by is None else f"{who.id} acted by {who.acted_by}"


# -- filing and following -------------------------------------------------------------------
@router.post("/students/{person_id}/rights-requests", status_code=201,
             response_model=RightsRequestOut, responses=_WRITE)
def file_request(person_id: str, body: NewRightsRequest, svc: Svc, who: Requester,
                 request: Request, idempotency_key: IdempotencyKey = None) -> RightsRequestOut:
    """RGT-4: a request about the student, received now and due in 30 days."""
    subject, filed_by = _requester_of(svc, who, person_id)
    chosen = uuid4()  # named in the key's record, which the request is not an aggregate of
    request_id = once(svc, idempotency_key, who, "/students/{person_id}/rights-requests",
                      f"/students/{subject}/rights-requests", body,
                      lambda: svc.rights.file(subject, body.kind, filed_by, _by(who),
                                              body.field, body.proposed_value, chosen),
                      made, owner_id=subject, result_id=chosen)
    svc.rights_view.catch_up()
    log.info("rights request filed id=%s request=%s kind=%s principal=%s", subject,
             request_id, body.kind, who.id)
    return _shown(svc, who, subject, request,
                  RightsRequestOut.of(svc.rights.request(subject, request_id)))


@router.get("/students/{person_id}/rights-requests", response_model=RightsFileOut,
            responses=_READ)
def rights_file(person_id: str, svc: Svc, who: Requester, request: Request) -> RightsFileOut:
    """The student's requests (oldest first), statements and restriction."""
    subject = path_id(person_id)
    if _filed_by(svc, who, subject) is None:
        raise not_found()
    _student(svc, subject)
    svc.record_access(who, subject, "/students/{person_id}/rights-requests",
                      ["rights_requests", "statements", "restriction"], None,
                      request.state.request_id)
    return RightsFileOut(
        requests=[RightsRequestOut.of(r) for r in svc.rights.requests_of(subject)],
        statements=[StatementOut.of(s) for s in svc.rights.statements_of(subject)],
        restriction=RestrictionOut.of(svc.rights.restriction(subject)))


@router.post("/students/{person_id}/rights-requests/{request_id}/withdrawal",
             response_model=RightsRequestOut, responses=_WRITE)
def withdraw(person_id: str, request_id: str, svc: Svc, who: Requester, request: Request
             ) -> RightsRequestOut:
    subject, _ = _requester_of(svc, who, person_id)
    done = svc.rights.withdraw(subject, path_id(request_id, "rights request"), _by(who))
    svc.rights_view.catch_up()
    return _shown(svc, who, subject, request, RightsRequestOut.of(done))


@router.post("/students/{person_id}/rights-requests/{request_id}/statements",
             status_code=201, response_model=StatementOut, responses=_WRITE)
def attach_statement(person_id: str, request_id: str, body: StatementIn, svc: Svc,
                     who: Requester) -> StatementOut:
    """RGT-2: after a refused rectification, the student's or parent's statement on the field;
    it goes out with the field in every later export and disclosure."""
    by = _STATEMENT_BY.get(who.role)
    if by is None:
        raise ProblemError(403, FORBIDDEN, "Forbidden",
                           "A statement is the student's or a parent's own.")
    subject, _ = _requester_of(svc, who, person_id)
    statement_id = svc.rights.attach_statement(
        subject, path_id(request_id, "rights request"), body.text, by)
    log.info("statement attached id=%s principal=%s", subject, who.id)
    (found,) = [s for s in svc.rights.statements_of(subject) if s.id == statement_id]
    return StatementOut.of(found)


# -- managing -------------------------------------------------------------------------------
@router.post("/students/{person_id}/rights-requests/{request_id}/extension",
             response_model=RightsRequestOut, responses=_WRITE)
def extend(person_id: str, request_id: str, body: ExtensionIn, svc: Svc, who: Manager,
           request: Request) -> RightsRequestOut:
    """RGT-4: a later due date (at most 45 days after receipt), before the current one has
    passed, with a reason the requester is told."""
    subject = _managed(svc, who, person_id)
    wanted = path_id(request_id, "rights request")
    svc.rights.extend(subject, wanted, body.due_at, body.reason, _by(who))
    svc.rights_view.catch_up()
    return _shown(svc, who, subject, request,
                  RightsRequestOut.of(svc.rights.request(subject, wanted)))


@router.post("/students/{person_id}/rights-requests/{request_id}/fulfilment",
             response_model=RightsRequestOut, responses=_WRITE)
def fulfil(person_id: str, request_id: str, svc: Svc, who: Manager, request: Request
           ) -> RightsRequestOut:
    """Grant: a rectification is applied, a restriction or objection restricts the student."""
    subject = _managed(svc, who, person_id)
    done = svc.rights.fulfil(subject, path_id(request_id, "rights request"), _by(who))
    svc.settle()
    svc.rights_view.catch_up()
    log.info("rights request fulfilled id=%s kind=%s principal=%s", subject, done.kind, who.id)
    return _shown(svc, who, subject, request, RightsRequestOut.of(done))


@router.post("/students/{person_id}/rights-requests/{request_id}/refusal",
             response_model=RightsRequestOut, responses=_WRITE)
def refuse(person_id: str, request_id: str, body: Reason, svc: Svc, who: Manager,
           request: Request) -> RightsRequestOut:
    subject = _managed(svc, who, person_id)
    done = svc.rights.refuse(subject, path_id(request_id, "rights request"), body.reason,
                             _by(who))
    svc.rights_view.catch_up()
    return _shown(svc, who, subject, request, RightsRequestOut.of(done))


@router.post("/students/{person_id}/restriction/lift", response_model=LiftOut,
             responses=_WRITE)
def lift_restriction(person_id: str, body: Reason, svc: Svc, who: Manager) -> LiftOut:
    """RGT-3: the student is processed as anyone again."""
    subject = _managed(svc, who, person_id)
    lifted = svc.rights.lift_restriction(subject, body.reason, _by(who))
    svc.rights_view.catch_up()
    return LiftOut(lifted=lifted)


Status = Literal["open", "fulfilled", "refused", "withdrawn"]
Limit = Annotated[int, Query(ge=1, le=1_000)]
_SCAN = 100_000  # rows read before the caller's are picked out: requests are few


def _theirs(svc: Services, who: Principal, entries: list[RequestEntry], limit: int
            ) -> list[RequestEntryOut]:
    """The entries of the caller's students (the operator: everyone's), up to `limit`."""
    mine = (e for e in entries if _manages(svc, who, e.subject_id))
    return [RequestEntryOut.of(e) for e in islice(mine, limit)]


@router.get("/rights-requests", response_model=list[RequestEntryOut], responses=_READ)
def requests(svc: Svc, who: Manager, status: Status | None = None, limit: Limit = 500
             ) -> list[RequestEntryOut]:
    """The requests of the caller's students (the operator: everyone's), oldest first."""
    svc.rights_view.catch_up()
    return _theirs(svc, who, svc.rights_reader.requests(status, _SCAN), limit)


@router.get("/rights-requests/overdue", response_model=list[RequestEntryOut],
            responses=_READ)
def overdue(svc: Svc, who: Manager, at: datetime | None = None, limit: Limit = 500
            ) -> list[RequestEntryOut]:
    """RGT-4: the open requests past their due date at `at` (default: now), oldest first."""
    if at is not None and at.tzinfo is None:
        raise ProblemError(422, VALIDATION, "Invalid request", "at must carry a time zone",
                           errors=[{"field": "at", "rule": "must carry a time zone"}])
    svc.rights_view.catch_up()
    return _theirs(svc, who, svc.rights_reader.overdue(at or svc.rights.clock(), _SCAN), limit)


# -- the export (RGT-1) ---------------------------------------------------------------------
def _exported(svc: Services, who: Principal, person_id: str) -> Person:
    subject = path_id(person_id)
    if not svc.access.may_export(who, subject):
        raise not_found()
    return _student(svc, subject)


@router.get("/students/{person_id}/export", responses={
    **_READ, 200: {"content": {"application/json": {}},
                   "description": "the whole export, streamed"}})
def export(person_id: str, svc: Svc, who: Exporting, request: Request) -> StreamingResponse:
    """RGT-1: all of the student's data as one JSON document, streamed. Anyone but the
    student leaves an access record, saved before the first byte."""
    student = _exported(svc, who, person_id)
    exporter = Exporter(svc)
    svc.record_access(who, student.id, "/students/{person_id}/export", exporter.names, None,
                      request.state.request_id)
    log.info("export id=%s role=%s principal=%s", student.id, who.role, who.id)
    return StreamingResponse(exporter.json(student), media_type="application/json",
                             headers={"Content-Disposition": "attachment;"
                                                             f' filename="{student.id}.json"'})


@router.get("/students/{person_id}/export/{table}.csv", response_class=StreamingResponse,
            responses={**_READ, 200: {"content": {"text/csv": {}},
                                      "description": "one table, streamed"}})
def export_table(person_id: str, table: str, svc: Svc, who: Exporting, request: Request
                 ) -> StreamingResponse:
    """RGT-1: one table of the export as CSV (the tables are the JSON document's sections)."""
    student = _exported(svc, who, person_id)
    exporter = Exporter(svc)
    section = exporter.section(table)
    if section is None:
        raise not_found("export table")
    svc.record_access(who, student.id, "/students/{person_id}/export/{table}.csv",
                      [section.name], None, request.state.request_id)
    return StreamingResponse(exporter.csv(student, section), media_type="text/csv",
                             headers={"Content-Disposition": "attachment;"
                                                             f' filename="{section.name}.csv"'})
