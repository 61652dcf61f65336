"""The FERPA audit trail through HTTP: disclosures (AUD-2), the queries (AUD-3) and support
sessions acting as a user (AUD-5).

Who may ask, deny by default:
- a student's trail (`/students/{id}/audit-trail`, and `/access-records`, its access records
  only): `Access.may_audit`: the student, a linked parent, the custodian of the student's
  school, auditors and the operator; anyone else with `audit:read` gets the 404 of a student
  that does not exist (ACC-5);
- an actor's trail (`/audit/actors/{id}`): auditors and the operator only. Not custodians: one
  principal's reads span every school, and a custodian asks by student instead;
- disclosures to a party (`/audit/disclosures?party=`): auditors, the operator, and a custodian,
  who sees only their school's students' rows;
- recording a disclosure: the operator, or the custodian of the student's school.
Each query is itself recorded as an access of each student it returns (api/audit_queries.py).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response

from api.access import Relation
from api.audit_queries import ACTOR_TRAIL, PARTY_TRAIL, AuditQueries
from api.http.audit_models import (
    DisclosureCreated,
    NewDisclosure,
    NewSupportSession,
    StatementOut,
    SupportSessionOut,
    TrailPageOut,
    page_cursor_text,
)
from api.http.auth import require
from api.http.deps import Svc, Tokens, path_id
from api.http.idempotency import IdempotencyKey, made, once
from api.http.models import AccessRecordOut, AccessRecordPage
from api.http.problems import FORBIDDEN, VALIDATION, ProblemError, not_found, responses
from api.services import Services
from api.tokens import Permission, Principal, Role, TokenGrant
from crypto import KeyErased
from ledger.application import ErasedPerson
from ledger.disclosures import MAX_PARTY, Discloser, Disclosure
from ledger.grants import SUPPORT_SESSION_STARTED, Grant
from ledger.people import Person, short_text
from projections.audit import ACCESS, DISCLOSURE, KINDS, PageAfter

log = logging.getLogger("api.http")
router = APIRouter(tags=["audit"])

SUPPORT_SESSION_TTL = timedelta(hours=1)
SUPPORT_SESSION_LABEL = "support-session"
_READ = responses(401, 403, 404, 410, 422, 503)
_ACTOR_AUDITORS = frozenset({Role.AUDITOR, Role.OPERATOR})
_PARTY_AUDITORS = frozenset({Role.AUDITOR, Role.OPERATOR, Role.RECORDS_CUSTODIAN})

Auditor = Annotated[Principal, Depends(require(Permission.AUDIT_READ))]
Discloser_ = Annotated[Principal, Depends(require(Permission.DISCLOSURES_RECORD))]
Supporter = Annotated[Principal, Depends(require(Permission.SUPPORT_SESSIONS))]
Limit = Annotated[int, Query(ge=1, le=500)]
After = Annotated[str | None, Query(max_length=80,
                                    description="`next_after` of the previous page")]


def page_cursor(after: str | None) -> PageAfter | None:
    """A `next_after` value back as (time, record id); 422 if it is not one."""
    if after is None:
        return None
    time_text, _, record_text = after.rpartition(",")
    try:
        at, record = datetime.fromisoformat(time_text), UUID(record_text)
    except ValueError:
        raise _invalid("after", "a next_after value",
                       "after must be a next_after value from a previous page") from None
    if at.tzinfo is None:
        raise _invalid("after", "a next_after value", "after must carry a time zone")
    return at, record


def _invalid(field: str, rule: str, detail: str) -> ProblemError:
    return ProblemError(422, VALIDATION, "Invalid request", detail,
                        errors=[{"field": field, "rule": rule}])


def _window(since: datetime | None, until: datetime | None) -> None:
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise _invalid(name, "must carry a time zone", f"{name} must carry a time zone")


def _student(svc: Services, person_id: UUID) -> Person:
    """A live student: 410 (`KeyErased`) if erased; 404 if unknown or not a student."""
    person = svc.ledger.person(person_id)
    if isinstance(person, ErasedPerson):
        raise KeyErased(person_id)
    if person.kind != "student":
        raise not_found()
    return person


def _audited_student(svc: Services, who: Principal, person_id: str) -> UUID:
    subject = path_id(person_id)
    if not svc.access.may_audit(who, subject):
        raise not_found()
    _student(svc, subject)
    return subject


# -- a student's trail --------------------------------------------------------------------------
@router.get("/students/{person_id}/audit-trail", response_model=TrailPageOut, responses=_READ)
def student_trail(person_id: str, svc: Svc, who: Auditor, request: Request,
                  since: datetime | None = None, until: datetime | None = None,
                  kind: Literal["access", "disclosure"] | None = None,
                  limit: Limit = 100, after: After = None) -> TrailPageOut:
    """AUD-3: who read or received this student's records between `since` (inclusive) and
    `until` (exclusive) and why, in time order: access and disclosure records together (or
    one `kind`). This query is itself recorded."""
    subject = _audited_student(svc, who, person_id)
    _window(since, until)
    page = AuditQueries(svc).of_student(
        who, subject, request.state.request_id, since, until, limit, page_cursor(after),
        (kind,) if kind else KINDS)
    return TrailPageOut.of(page)


@router.get("/students/{person_id}/access-records", response_model=AccessRecordPage,
            responses=_READ)
def access_records(person_id: str, svc: Svc, who: Auditor, request: Request,
                   since: datetime | None = None, until: datetime | None = None,
                   limit: Limit = 100, after: After = None) -> AccessRecordPage:
    """AUD-3: who has read this student's records, when and why, in time order (the access
    records of `/audit-trail`, in their first shape). This query is itself recorded."""
    subject = _audited_student(svc, who, person_id)
    _window(since, until)
    page = AuditQueries(svc).of_student(
        who, subject, request.state.request_id, since, until, limit, page_cursor(after),
        (ACCESS,), resource="/students/{person_id}/access-records")
    return AccessRecordPage(items=[AccessRecordOut(
        record_id=item.record_id, actor_id=item.actor_id, actor_role=item.actor_role,
        purpose=item.code, read_at=item.at, resource=item.resource or "",
        fields=item.fields) for item in page.items],
        next_after=page_cursor_text(page.next_after))


# -- disclosures ----------------------------------------------------------------------------------
@router.post("/students/{person_id}/disclosures", status_code=201,
             response_model=DisclosureCreated, responses=responses(401, 403, 404, 410, 422, 503))
def record_disclosure(person_id: str, body: NewDisclosure, svc: Svc, who: Discloser_,
                      request: Request, response: Response,
                      idempotency_key: IdempotencyKey = None) -> DisclosureCreated:
    """AUD-2: a disclosure of this student's records outside the school-official path. The
    operator, or the records custodian of the student's school; anyone else: 404 (ACC-5)."""
    subject = path_id(person_id)
    if who.role != Role.OPERATOR and not (
            who.role == Role.RECORDS_CUSTODIAN
            and svc.access.relation(who, subject) == Relation.IN_SCOPE):
        raise not_found()
    _student(svc, subject)
    disclosure = Disclosure(subject, body.recipient, body.disclosed_on, body.legal_basis,
                            body.legitimate_interest, body.disclosed, body.redisclosure_parties,
                            body.threat)
    # In a support session (AUD-5) the support principal discloses, as the user it acts as.
    by = Discloser(who.acted_by or who.id, who.role, request.state.request_id,
                   who.subject_id if who.acted_by else None)
    record_id = once(svc, idempotency_key, who, "/students/{person_id}/disclosures",
                     f"/students/{subject}/disclosures", body,
                     lambda: svc.disclosures.record(disclosure, by), made, owner_id=subject)
    svc.audit_view.catch_up()  # the discloser reads it in the trail next
    log.info("disclosure recorded id=%s student=%s basis=%s principal=%s", record_id, subject,
             body.legal_basis, who.id)
    response.headers["Location"] = f"/students/{subject}/audit-trail?kind={DISCLOSURE}"
    record = svc.disclosures.record_of(record_id)
    return DisclosureCreated(record_id=record_id, student_id=subject, statements=[
        StatementOut.model_validate(s) for s in (record.statements if record else [])])


# -- by actor, by party ---------------------------------------------------------------------------
def _role_among(who: Principal, roles: frozenset[Role]) -> None:
    if who.role not in roles:
        raise ProblemError(403, FORBIDDEN, "Forbidden",
                           "This token's role does not allow this request.")


@router.get("/audit/actors/{actor_id}", response_model=TrailPageOut,
            responses=responses(401, 403, 422, 503))
def actor_trail(actor_id: UUID, svc: Svc, who: Auditor, request: Request,
                since: datetime | None = None, until: datetime | None = None,
                limit: Limit = 100, after: After = None) -> TrailPageOut:
    """AUD-3: what this principal read, and the disclosures they recorded, between `since` and
    `until`, in time order. Auditors and the operator. Recorded for each student returned."""
    _role_among(who, _ACTOR_AUDITORS)
    _window(since, until)
    return TrailPageOut.of(AuditQueries(svc).of_actor(
        who, actor_id, request.state.request_id, since, until, limit, page_cursor(after),
        ACTOR_TRAIL))


@router.get("/audit/disclosures", response_model=TrailPageOut,
            responses=responses(401, 403, 422, 503))
def party_trail(svc: Svc, who: Auditor, request: Request,
                party: Annotated[str, Query(min_length=1, max_length=MAX_PARTY,
                                            description="the recipient's name")],
                since: datetime | None = None, until: datetime | None = None,
                limit: Limit = 100, after: After = None) -> TrailPageOut:
    """AUD-3: every disclosure to this party (its name compared without case or spacing), in
    time order. Auditors and the operator; a records custodian sees their school's students
    only. Recorded for each student returned."""
    _role_among(who, _PARTY_AUDITORS)
    _window(since, until)
    name = short_text("party", party, MAX_PARTY)  # InvalidRecord: 422 naming the field
    return TrailPageOut.of(AuditQueries(svc).to_party(
        who, name, request.state.request_id, since, until, limit, page_cursor(after),
        PARTY_TRAIL))


# -- support sessions (AUD-5) ---------------------------------------------------------------------
@router.post("/support-sessions", status_code=201, response_model=SupportSessionOut,
             responses=responses(401, 403, 404, 410, 422, 503))
def start_support_session(body: NewSupportSession, svc: Svc, tokens: Tokens, who: Supporter
                          ) -> SupportSessionOut:
    """Act as a user for an hour, with a stated purpose (ACC-4): a token with the user's role
    and id, and `acted_by` the support principal, so that what is done in it is recorded with
    both identities. Starting it is recorded (a grant, sealed for the user)."""
    person = svc.ledger.live(body.person_id)

    def record(grant: TokenGrant) -> object:
        return svc.grants.record(Grant(
            SUPPORT_SESSION_STARTED, who.id, who.role, grant.principal_id, grant.role,
            grant.scope, grant.subject_id, grant.expires_at, body.purpose))

    issued = tokens.issue(person.kind, SUPPORT_SESSION_LABEL, SUPPORT_SESSION_TTL,
                          subject_id=person.id, acted_by=who.id, record_grant=record)
    log.info("support session principal=%s as %s id=%s by=%s purpose=%s", issued.principal_id,
             person.kind, person.id, who.id, body.purpose)
    return SupportSessionOut(token=issued.token, principal_id=issued.principal_id,
                             person_id=person.id, role=issued.role, acted_by=who.id,
                             expires_at=issued.expires_at)

