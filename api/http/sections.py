"""A teacher's sections (PRG-5): create, read, change; the roster; students in and out; the
young sections' secrets (MIN-6); the class race estimate (AGE-2).

A teacher acts on their own sections only. Another teacher's section answers exactly like one
that does not exist (ACC-5): reads ask `Access.may_manage_section`, commands pass the teacher's
id to the ledger, which raises `SectionNotFound` for a section that is not theirs. A student
who is not in the section is, for these routes, a student not found in it.
"""

from __future__ import annotations

import logging
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response

from api.http.auth import Session, signed_in
from api.http.deps import Svc, Tokens, path_id
from api.http.idempotency import IdempotencyKey, made, once
from api.http.models import (
    NewSection,
    NewSectionStudent,
    RaceEstimate,
    RecordOut,
    RemovalPreview,
    SecretOut,
    SecretUnderAttack,
    SectionChange,
    SectionOut,
)
from api.http.problems import not_found, responses
from api.services import Services
from api.tokens import Permission
from projections.roster import SectionView

log = logging.getLogger("api.http")
router = APIRouter(tags=["sections"])

Teacher = Annotated[Session, Depends(signed_in(Permission.SECTIONS_MANAGE))]

_READ = responses(401, 403, 404, 503)
_WRITE = responses(401, 403, 404, 409, 410, 422, 503)
# AUD-1: what a removal preview and a new secret return of the student.
PREVIEW_FIELDS = ("deletes_account", "confirmation")
SECRET_FIELDS = ("student_id", "secret_kind", "secret")
UNDER_ATTACK_FIELDS = ("student_id", "failed_sign_ins")


def returned(row: RecordOut) -> list[str]:
    """The fields of a student's record a response holds, as their access record names them."""
    return sorted(row.model_fields_set)


def _own(svc: Services, me: Session, section_id: str) -> SectionView:
    """The caller's own section from the roster, or the 404 of a section that does not exist."""
    sid = path_id(section_id, "section")
    view = svc.roster_reader.section(sid) if svc.access.may_manage_section(
        me.principal, sid) else None
    if view is None or view.teacher_id != me.person_id:
        raise not_found("section")
    return view


def _member(svc: Services, me: Session, section_id: str, student_id: str) -> tuple[UUID, UUID]:
    """The section and student ids of a student in the caller's own section; else the 404 of
    a section (not theirs) or of a person (not in it), as for ids that do not exist."""
    sid, pid = path_id(section_id, "section"), path_id(student_id)
    svc.sections.section(sid, me.person_id)  # the section's 404 before the student's
    if not svc.access.may_manage_member(me.principal, sid, pid):
        raise not_found()
    return sid, pid


def _student(svc: Services, me: Session, student_id: UUID) -> RecordOut:
    """A roster row: the fields of the student this teacher may see (ACC-1)."""
    entry = svc.directory_reader.entry(student_id)
    fields = svc.access.student_fields(me.principal, student_id)
    if entry is None or not fields:
        raise not_found()
    return RecordOut.of_entry(entry, fields)


@router.post("/sections", status_code=201, response_model=SectionOut,
             response_model_exclude_none=True, responses=_WRITE)
def create_section(body: NewSection, svc: Svc, me: Teacher, response: Response,
                   idempotency_key: IdempotencyKey = None) -> SectionOut:
    """A section with a generated join code. Login type: "email" for students with their own
    sign-in, "word" or "picture" for young classes (secrets the ledger generates, MIN-6)."""
    section_id = once(svc, idempotency_key, me.principal, "/sections", "/sections", body,
                      lambda: svc.sections.create(me.person_id, body.name, body.course,
                                                  body.grade, body.login_type),
                      made, owner_id=me.person_id)
    svc.settle()
    log.info("section created section=%s principal=%s", section_id, me.principal.id)
    response.headers["Location"] = f"/sections/{section_id}"
    return SectionOut.of(_own(svc, me, str(section_id)), teacher=True)


@router.get("/sections/{section_id}", response_model=SectionOut,
            response_model_exclude_none=True, responses=_READ)
def get_section(section_id: str, svc: Svc, me: Teacher) -> SectionOut:
    # No access record (AUD-1): the section's own fields, nothing of any student.
    return SectionOut.of(_own(svc, me, section_id), teacher=True)


@router.patch("/sections/{section_id}", response_model=SectionOut,
              response_model_exclude_none=True, responses=_WRITE)
def change_section(section_id: str, body: SectionChange, svc: Svc, me: Teacher) -> SectionOut:
    """Name, or course and grade (either may be sent alone; the other stays)."""
    sid = path_id(section_id, "section")
    if body.name is not None:
        svc.sections.rename(me.person_id, sid, body.name)
    if body.course is not None or body.grade is not None:
        current = svc.sections.section(sid, me.person_id)
        svc.sections.assign_course(me.person_id, sid, body.course or current.course,
                                   body.grade or current.grade)
    svc.settle()
    return SectionOut.of(_own(svc, me, section_id), teacher=True)


@router.get("/sections/{section_id}/students", response_model=list[RecordOut],
            response_model_exclude_unset=True, responses=_READ)
def roster(section_id: str, svc: Svc, me: Teacher, request: Request) -> list[RecordOut]:
    """Each student's display name and sign-in details (username, login type, and in a young
    section the secret to hand out); never email, parent email, race or gender (ACC-1). One
    access record per student (AUD-1), all saved in one transaction."""
    roster = svc.section_roster(me.principal, path_id(section_id, "section"))
    if roster is None:
        raise not_found("section")
    rows = [RecordOut.of_entry(entry, roster.fields) for entry in roster.students]
    svc.record_accesses(me.principal, [(entry.id, returned(row)) for entry, row in zip(
        roster.students, rows, strict=True)], "/sections/{section_id}/students", None,
        request.state.request_id)
    return rows


@router.post("/sections/{section_id}/students", status_code=201, response_model=RecordOut,
             response_model_exclude_unset=True, responses=_WRITE)
def create_student(section_id: str, body: NewSectionStudent, svc: Svc, me: Teacher,
                   response: Response, request: Request) -> RecordOut:
    """A teacher-managed student, enrolled at once, with a generated username and (in a word or
    picture section) secret. Under 13, or no age given, needs the teacher's attestation of
    parental consent first (AGE-1): else 403 consent-required."""
    sid = path_id(section_id, "section")
    student_id = svc.sections.create_student(me.person_id, sid, body.display_name, body.age,
                                             body.age_given_on, body.gender)
    svc.settle()
    log.info("student created id=%s section=%s principal=%s", student_id, sid, me.principal.id)
    response.headers["Location"] = f"/students/{student_id}"
    row = _student(svc, me, student_id)
    # AUD-1: the answer is the new student's record (their secret, in a young section).
    svc.record_access(me.principal, student_id, "/sections/{section_id}/students",
                      returned(row), None, request.state.request_id)
    return row


@router.put("/sections/{section_id}/students/{student_id}", status_code=204,
            responses=_WRITE)
def add_student(section_id: str, student_id: str, svc: Svc, me: Teacher) -> Response:
    """Enrol an existing student who is already yours (moving between your sections, say).
    Anyone else joins with the section's code: a student you do not teach answers exactly as
    one that does not exist, and nothing is written."""
    sid = path_id(section_id, "section")
    svc.sections.section(sid, me.person_id)  # the section's 404 before the student's
    student = path_id(student_id)
    if not svc.access.may_enrol(me.principal, sid, student):
        raise not_found()
    svc.sections.add_student(me.person_id, sid, student)
    svc.settle()
    log.info("student added id=%s section=%s principal=%s", student_id, sid, me.principal.id)
    return Response(status_code=204)


@router.get("/sections/{section_id}/students/{student_id}/removal",
            response_model=RemovalPreview, responses=_WRITE)
def removal_preview(section_id: str, student_id: str, svc: Svc, me: Teacher,
                    request: Request) -> RemovalPreview:
    """DEL-5: whether removing the student deletes their account; ask before removing. That
    says whether the student has a login of their own and other teachers: facts of their
    record, so it leaves an access record (AUD-1)."""
    _, student = _member(svc, me, section_id, student_id)
    removal = svc.lifecycle.removal(me.person_id, student)
    out = RemovalPreview(deletes_account=bool(removal.deletes),
                         confirmation=removal.confirmation if removal.deletes else None)
    svc.record_access(me.principal, student, "/sections/{section_id}/students/{student_id}"
                      "/removal", PREVIEW_FIELDS, None, request.state.request_id)
    return out


@router.delete("/sections/{section_id}/students/{student_id}", status_code=204,
               responses=responses(401, 403, 404, 409, 410, 422, 503))
def remove_student(section_id: str, student_id: str, svc: Svc, me: Teacher, tokens: Tokens,
                   confirmation: Annotated[str | None, Query(
                       max_length=64, description="from the removal preview, when it says the"
                                                  " account is deleted (DEL-5)")] = None,
                   ) -> Response:
    """Unenrol the student. One who depends on you alone (no personal login, in no other
    teacher's section) is deleted too, once confirmed: 409 confirmation-required otherwise."""
    sid, student = _member(svc, me, section_id, student_id)
    deleted = svc.lifecycle.remove_from_section(
        me.person_id, sid, student, f"{me.principal.role}:{me.principal.id}", confirmation)
    if deleted:
        tokens.forget_subject(student)
    svc.settle()
    log.info("student removed id=%s section=%s deleted=%s principal=%s", student, sid,
             deleted, me.principal.id)
    return Response(status_code=204)


@router.post("/sections/{section_id}/students/{student_id}/secret", response_model=SecretOut,
             responses=_WRITE)
def reset_secret(section_id: str, student_id: str, svc: Svc, me: Teacher, request: Request
                 ) -> SecretOut:
    """MIN-6: new secret words or picture, generated by the ledger; the old ones stop working.
    The answer is the student's sign-in secret: it leaves an access record (AUD-1)."""
    sid, pid = _member(svc, me, section_id, student_id)
    secret = svc.sections.reset_secret(me.person_id, sid, pid)
    svc.settle()
    out = SecretOut(student_id=pid, secret_kind=svc.sections.section(sid).login_type,
                    secret=secret)
    svc.record_access(me.principal, pid, "/sections/{section_id}/students/{student_id}/secret",
                      SECRET_FIELDS, None, request.state.request_id)
    log.info("secret reset id=%s section=%s principal=%s", pid, sid, me.principal.id)
    return out


@router.get("/sections/{section_id}/secrets-under-attack",
            response_model=list[SecretUnderAttack], responses=_READ)
def secrets_under_attack(section_id: str, svc: Svc, me: Teacher, request: Request
                         ) -> list[SecretUnderAttack]:
    """MIN-6: the section's students whose secret someone keeps guessing at (15 or more
    failed sign-ins not yet forgotten): give them a new one (`POST .../secret`), which also
    forgets the failures. Empty when no one is under attack."""
    section = svc.sections.section(path_id(section_id, "section"), me.person_id)
    attacked = svc.sign_in.secrets_under_attack(section.students)
    rows = [SecretUnderAttack(student_id=student, failed_sign_ins=attacked[student])
            for student in section.students if student in attacked]
    svc.record_accesses(me.principal, [(row.student_id, UNDER_ATTACK_FIELDS) for row in rows],
                        "/sections/{section_id}/secrets-under-attack", None,
                        request.state.request_id)
    return rows


@router.put("/sections/{section_id}/race-estimate", status_code=204, responses=_WRITE)
def estimate_race(section_id: str, body: RaceEstimate, svc: Svc, me: Teacher) -> Response:
    """AGE-2: for a class of under-13s, an estimated distribution for the whole class; a class
    with a student 13 or older is refused (ask those students themselves)."""
    sid = path_id(section_id, "section")
    svc.sections.estimate_race(me.person_id, sid, body.distribution)
    log.info("race estimated section=%s principal=%s", sid, me.principal.id)
    return Response(status_code=204)
