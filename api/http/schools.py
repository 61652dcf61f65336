"""Schools (organisations, not people) and the school roster for administrators (ACC-2).

A school administrator sees the roster of their own school, a district administrator that of
any school in their district (their token's scope, `ledger token issue --school/--district`);
any other school answers exactly like one that does not exist (ACC-5). The roster lists each
section of the school's teachers with its students' display names, nothing more.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from api.http.auth import require
from api.http.deps import Svc, path_id
from api.http.models import NewSchool, RosterMember, RosterSection, SchoolOut, SchoolRoster
from api.http.problems import not_found, responses
from api.services import Services
from api.tokens import Permission, Principal
from ledger.accounts import SchoolNotFound
from ledger.schools import School
from projections.roster import SCHOOL_SCOPE

log = logging.getLogger("api.http")
router = APIRouter(tags=["schools"])

Creator = Annotated[Principal, Depends(require(Permission.SCHOOLS_CREATE))]
Reader = Annotated[Principal, Depends(require(Permission.SCHOOLS_READ))]
Administrator = Annotated[Principal, Depends(require(Permission.SCHOOL_ROSTER_READ))]


def _school(svc: Services, school_id: str) -> School:
    try:
        return svc.accounts.school(path_id(school_id, "school"))
    except SchoolNotFound:
        raise not_found("school") from None


@router.post("/schools", status_code=201, response_model=SchoolOut,
             responses=responses(401, 403, 422, 503))
def register_school(body: NewSchool, svc: Svc, who: Creator, response: Response) -> SchoolOut:
    """A school's name, district and type (MIN-4: what a teacher may give instead of any
    address)."""
    school_id = svc.accounts.register_school(body.name, body.district, body.school_type)
    log.info("school registered school=%s principal=%s", school_id, who.id)
    response.headers["Location"] = f"/schools/{school_id}"
    return SchoolOut.of(svc.accounts.school(school_id))


@router.get("/schools/{school_id}", response_model=SchoolOut,
            responses=responses(401, 403, 404, 503))
def get_school(school_id: str, svc: Svc, who: Reader) -> SchoolOut:
    # No access record (AUD-1): a school's name, district and type, no student's data.
    return SchoolOut.of(_school(svc, school_id))


@router.get("/schools/{school_id}/roster", response_model=SchoolRoster,
            responses=responses(401, 403, 404, 503))
def school_roster(school_id: str, svc: Svc, who: Administrator, request: Request
                  ) -> SchoolRoster:
    """Sections of the school's teachers, with their students' display names (ACC-2). Each
    student listed leaves one access record (AUD-1), all saved in one transaction."""
    school = _school(svc, school_id)
    if not svc.access.may_see_school(who, school.id, school.district_id):
        raise not_found("school")
    roster, directory = svc.roster_reader, svc.directory_reader
    views = [view for teacher_id in sorted(roster.teachers_in_scope(
        f"{SCHOOL_SCOPE}:{school.id}")) for view in roster.sections_of_teacher(teacher_id)]
    members = {view.id: roster.students_of_section(view.id) for view in views}
    entries = directory.entries_of(list(dict.fromkeys(s for ids in members.values()
                                                      for s in ids)))
    sections = [RosterSection(id=view.id, teacher_id=view.teacher_id, name=view.name,
                              course=view.course, grade=view.grade,
                              students=[RosterMember(id=s, display_name=entries[s].display_name)
                                        for s in members[view.id] if s in entries])
                for view in views]
    listed = dict.fromkeys(m.id for section in sections for m in section.students)
    svc.record_accesses(who, [(student, ("id", "display_name")) for student in listed],
                        "/schools/{school_id}/roster", None, request.state.request_id)
    log.info("school roster read school=%s principal=%s", school.id, who.id)
    return SchoolRoster(school_id=school.id, sections=sections)
