"""Progress (PRG-1) and its views: a student's attempts and progress, a teacher's grid of their
own section (ACC-1), one student's progress for those who may see it, and a school's report for
its administrators (ACC-2).

A student records attempts only as themself (the session's person). Reads that name a section,
a student or a school the caller may not see answer exactly like one that does not exist
(ACC-5). Logs carry ids and counts, never a level's code or answers.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request

from api.http.auth import PurposeHeader, Session, require, signed_in, stated_purpose
from api.http.deps import Svc, path_id
from api.http.idempotency import IdempotencyKey, once
from api.http.models import (
    AttemptBatch,
    AttemptIn,
    CountsOut,
    GridStudent,
    ReportGroup,
    ReportStudent,
    SchoolProgressOut,
    SectionProgressOut,
    StudentProgressOut,
)
from api.http.problems import not_found, responses
from api.services import ReportRow
from api.tokens import Permission, Principal
from ledger.accounts import SchoolNotFound
from ledger.progress import Attempt
from projections.progress import ProgressCounts

log = logging.getLogger("api.http")
router = APIRouter(tags=["progress"])

Recorder = Annotated[Session, Depends(signed_in(Permission.PROGRESS_RECORD))]
StudentSelf = Annotated[Session, Depends(signed_in(Permission.ME_STUDENT))]
Teacher = Annotated[Session, Depends(signed_in(Permission.SECTIONS_MANAGE))]
Reader = Annotated[Principal, Depends(require(Permission.PROGRESS_READ))]
Administrator = Annotated[Principal, Depends(require(Permission.SCHOOL_PROGRESS_READ))]

_READ = responses(401, 403, 404, 410, 503)
# AUD-1: the fields of a student's progress each read returns, as its access record names them.
PROGRESS_FIELDS = ("student_id", "levels")
GRID_FIELDS = ("id", "display_name", "levels")
REPORT_FIELDS = ("id", "display_name", "section_id", "teacher_id", "grade", "counts")
LevelsParam = Annotated[str | None, Query(
    max_length=20_000, description="only these levels, comma-separated")]


def _attempt(body: AttemptIn, now: datetime) -> Attempt:
    return Attempt(level=body.level, result=body.result, attempted_at=body.attempted_at or now,
                   seconds=body.seconds, hints=body.hints, code=body.code,
                   answers=dict(body.answers))


@router.post("/me/attempts", status_code=201, response_model=StudentProgressOut,
             responses=responses(401, 403, 410, 422, 503))
def record_attempts(body: AttemptIn | AttemptBatch, svc: Svc, me: Recorder,
                    idempotency_key: IdempotencyKey = None) -> StudentProgressOut:
    """One attempt, or `{"attempts": [...]}` (at most 500, all or nothing). Answers the
    progress of the levels touched, as the views show it from now on (read-your-writes).
    With an `Idempotency-Key`, a retry records nothing again and answers the same levels."""
    now = datetime.now(UTC)
    sent = body.attempts if isinstance(body, AttemptBatch) else [body]
    once(svc, idempotency_key, me.principal, "/me/attempts", "/me/attempts", body,
         lambda: svc.attempts.record_many(me.person_id, [_attempt(a, now) for a in sent]),
         lambda used: None, owner_id=me.person_id)
    svc.progress.catch_up()
    touched = {a.level for a in sent}
    levels = svc.progress_reader.grid([me.person_id], sorted(touched)).get(me.person_id, {})
    log.info("attempts recorded id=%s count=%d principal=%s", me.person_id, len(sent),
             me.principal.id)
    return StudentProgressOut.of(me.person_id, levels)


@router.get("/me/progress", response_model=StudentProgressOut, responses=_READ)
def my_progress(svc: Svc, me: StudentSelf, request: Request) -> StudentProgressOut:
    """Tries, best result and latest try per level."""
    out = StudentProgressOut.of(me.person_id, svc.progress_reader.of_student(me.person_id))
    # AUD-1, AUD-5: a no-op for the student; recorded when support acts as them.
    svc.record_access(me.principal, me.person_id, "/me/progress", PROGRESS_FIELDS, None,
                      request.state.request_id)
    return out


def _levels(levels: str | None) -> list[str] | None:
    if levels is None:
        return None
    return [level for level in (part.strip() for part in levels.split(",")) if level]


@router.get("/sections/{section_id}/progress", response_model=SectionProgressOut,
            responses=responses(401, 403, 404, 422, 503))
def section_progress(section_id: str, svc: Svc, me: Teacher, request: Request,
                     levels: LevelsParam = None) -> SectionProgressOut:
    """The grid of a teacher's own section (ACC-1): each student's display name and levels.
    One access record per student in it (AUD-1), all saved in one transaction."""
    grid = svc.section_progress(me.principal, path_id(section_id, "section"), _levels(levels))
    if grid is None:
        raise not_found("section")
    out = SectionProgressOut(section_id=grid.section.id, students=[
        GridStudent(id=entry.id, display_name=entry.display_name,
                    levels=StudentProgressOut.of(entry.id, grid.levels.get(entry.id, {})).levels)
        for entry in grid.students])
    svc.record_accesses(me.principal, [(s.id, GRID_FIELDS) for s in out.students],
                        "/sections/{section_id}/progress", None, request.state.request_id)
    return out


@router.get("/students/{person_id}/progress", response_model=StudentProgressOut,
            responses=_READ)
def student_progress(person_id: str, svc: Svc, who: Reader, request: Request,
                     purpose: PurposeHeader = None) -> StudentProgressOut:
    """A student's progress, for whoever may see the student (api/access.py); anyone but the
    student leaves an access record (AUD-1)."""
    stated = stated_purpose(who, purpose)
    subject = path_id(person_id)
    if not svc.access.may_see_progress(who, subject):
        raise not_found()
    out = StudentProgressOut.of(subject, svc.progress_reader.of_student(subject))
    svc.record_access(who, subject, "/students/{person_id}/progress", PROGRESS_FIELDS, stated,
                      request.state.request_id)
    log.info("progress read id=%s role=%s purpose=%s principal=%s", subject, who.role,
             stated or "-", who.id)
    return out


def _counts(counts: ProgressCounts) -> CountsOut:
    return CountsOut(levels=counts.levels, solved=counts.solved, optimal=counts.optimal,
                     attempts=counts.attempts)


def _groups(rows: list[ReportRow], key: Callable[[ReportRow], str]) -> list[ReportGroup]:
    """Totals per group, each student counted once in a group (two sections, one teacher)."""
    groups: dict[str, dict[UUID, ProgressCounts]] = defaultdict(dict)
    for row in rows:
        groups[key(row)][row.student.id] = row.counts
    return [ReportGroup(key=k, students=len(members),
                        counts=_counts(sum(members.values(), ProgressCounts())))
            for k, members in sorted(groups.items())]


@router.get("/schools/{school_id}/progress", response_model=SchoolProgressOut,
            responses=responses(401, 403, 404, 503))
def school_progress(school_id: str, svc: Svc, who: Administrator, request: Request
                    ) -> SchoolProgressOut:
    """ACC-2: totals by student (display name), section, teacher and grade, and the school's.
    A student in two sections appears once per section, and once in the school's total. Each
    student listed leaves one access record (AUD-1), all in one transaction."""
    try:
        school = svc.accounts.school(path_id(school_id, "school"))
    except SchoolNotFound:
        raise not_found("school") from None
    if not svc.access.may_see_school(who, school.id, school.district_id):
        raise not_found("school")
    rows = svc.school_report(school.id)
    once = {row.student.id: row.counts for row in rows}
    out = SchoolProgressOut(
        school_id=school.id,
        students=[ReportStudent(id=row.student.id, display_name=row.student.display_name,
                                section_id=row.section.id, teacher_id=row.section.teacher_id,
                                grade=row.section.grade, counts=_counts(row.counts))
                  for row in rows],
        by_section=_groups(rows, lambda row: str(row.section.id)),
        by_teacher=_groups(rows, lambda row: str(row.section.teacher_id)),
        by_grade=_groups(rows, lambda row: row.section.grade),
        school=_counts(sum(once.values(), ProgressCounts())),
    )
    svc.record_accesses(who, [(student, REPORT_FIELDS) for student in once],
                        "/schools/{school_id}/progress", None, request.state.request_id)
    log.info("school progress read school=%s principal=%s", school.id, who.id)
    return out

