"""Students, teachers and the directory. Thin: each route checks the caller, calls the ledger.

Reading one person: the role must allow `people:read`, support staff must state a purpose
(ACC-4), and `Access` must let this caller see this person; a student is rendered with only the
fields `Access.student_fields` allows. Ids in paths that are malformed, unknown, of the other
kind, or of someone the caller may not see all answer the same 404 (ACC-5).
"""

from __future__ import annotations

import logging
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response

from api.http.auth import PurposeHeader, require, stated_purpose
from api.http.deps import Svc, path_id
from api.http.models import (
    DirectoryItem,
    DirectoryPage,
    Kind,
    NewStudent,
    NewTeacher,
    PersonOut,
    RecordOut,
    Rename,
)
from api.http.problems import not_found, responses
from api.services import Services
from api.tokens import Permission, Principal
from crypto import KeyErased
from ledger.application import ErasedPerson
from ledger.people import Person

log = logging.getLogger("api.http")
router = APIRouter(tags=["people"])

_READ = responses(401, 403, 404, 410, 422, 503)  # 422: FastAPI lists it for any params
_WRITE = responses(401, 403, 404, 409, 410, 422, 503)
# AUD-1: what the directory shows of each student it lists.
DIRECTORY_FIELDS = tuple(sorted(DirectoryItem.model_fields))


Creator = Annotated[Principal, Depends(require(Permission.PEOPLE_CREATE))]
Reader = Annotated[Principal, Depends(require(Permission.PEOPLE_READ))]
Renamer = Annotated[Principal, Depends(require(Permission.PEOPLE_RENAME))]
Lister = Annotated[Principal, Depends(require(Permission.DIRECTORY_READ))]


def _live(svc: Services, person_id: UUID, kind: str | None = None) -> Person:
    """The person; 410 (via `KeyErased`) if erased; 404 if unknown or of another kind."""
    person = svc.ledger.person(person_id)
    if isinstance(person, ErasedPerson):
        raise KeyErased(person_id)
    if kind is not None and person.kind != kind:
        raise not_found()
    return person


def _created(svc: Services, response: Response, person_id: UUID, who: Principal) -> PersonOut:
    person = _live(svc, person_id)
    log.info("registered %s id=%s principal=%s", person.kind, person_id, who.id)
    response.headers["Location"] = f"/{person.kind}s/{person_id}"
    return PersonOut.of(person)


@router.post("/students", status_code=201, response_model=PersonOut,
             responses=responses(401, 403, 404, 422, 503))
def create_student(body: NewStudent, svc: Svc, who: Creator, response: Response) -> PersonOut:
    """A registrar creates a student in a section of their own school (`section_id`), as the
    section's teacher would (AGE-1 and the section's sign-in apply); a section elsewhere is
    404. The operator may create one in no section."""
    if not svc.access.may_place_at(who, body.section_id):
        raise not_found("section")
    if body.section_id is None:
        person_id = svc.ledger.register_student(body.display_name, body.age, body.age_given_on)
    else:
        section = svc.sections.section(body.section_id)
        person_id = svc.sections.create_student(section.owner_id, section.id,
                                                body.display_name, body.age, body.age_given_on)
        svc.settle()
    return _created(svc, response, person_id, who)


@router.post("/teachers", status_code=201, response_model=PersonOut,
             responses=responses(401, 403, 422, 503))
def create_teacher(body: NewTeacher, svc: Svc, who: Creator, response: Response) -> PersonOut:
    """A registrar's teacher is at the registrar's school from the start."""
    school_id = svc.access.school_of(who)
    if school_id is not None:
        svc.accounts.school(school_id)  # a scope naming no school: 422, nothing written
    person_id = svc.ledger.register_teacher(body.display_name, body.age, body.age_given_on,
                                            school_id=school_id)
    svc.settle()
    return _created(svc, response, person_id, who)


@router.get("/students/{person_id}", response_model=RecordOut,
            response_model_exclude_unset=True, responses=_READ)
def get_student(person_id: str, svc: Svc, who: Reader, request: Request,
                purpose: PurposeHeader = None) -> RecordOut:
    """The fields of the student's record this caller may see (api/access.py). Anyone but
    the student leaves an access record (AUD-1), saved before the record is returned."""
    stated = stated_purpose(who, purpose)
    subject = path_id(person_id)
    fields = svc.access.student_fields(who, subject)
    if not fields:
        raise not_found()
    student = _live(svc, subject, "student")
    svc.record_access(who, subject, "/students/{person_id}", fields, stated,
                      request.state.request_id)
    log.info("student read id=%s role=%s purpose=%s principal=%s", subject, who.role,
             stated or "-", who.id)
    return RecordOut.of(student, fields)


@router.get("/teachers/{person_id}", response_model=PersonOut, responses=_READ)
def get_teacher(person_id: str, svc: Svc, who: Reader, purpose: PurposeHeader = None
                ) -> PersonOut:
    stated_purpose(who, purpose)
    subject = path_id(person_id)
    if not svc.access.may_see_teacher(who, subject):
        raise not_found()
    return PersonOut.of(_live(svc, subject, "teacher"))


@router.patch("/people/{person_id}", response_model=PersonOut, responses=_WRITE)
def rename(person_id: str, body: Rename, svc: Svc, who: Renamer) -> PersonOut:
    """The operator renames anyone; a registrar the students and teachers of their school."""
    subject = path_id(person_id)
    if not svc.access.may_rename(who, subject):
        raise not_found()
    svc.ledger.rename(subject, body.display_name)
    log.info("renamed id=%s principal=%s", subject, who.id)
    return PersonOut.of(_live(svc, subject))


@router.get("/people", response_model=DirectoryPage, responses=responses(401, 403, 422, 503))
def directory(svc: Svc, who: Lister, request: Request, kind: Kind | None = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 100,
              after: UUID | None = None) -> DirectoryPage:
    """The directory (a read model, paged by id; it may lag the latest writes briefly): a
    registrar's lists the students and teachers of their school, the operator's everyone.
    Each student listed leaves an access record (AUD-1), saved before the page is returned."""
    among = svc.access.directory_scope(who)
    entries = svc.directory_reader.entries(kind=kind, limit=limit, after=after, among=among)
    items = [DirectoryItem.of(e) for e in entries]
    svc.record_accesses(who, [(item.id, DIRECTORY_FIELDS) for item in items
                              if item.kind == "student"], "/people", None,
                        request.state.request_id)
    return DirectoryPage(items=items, next_after=entries[-1].id if entries else None)
