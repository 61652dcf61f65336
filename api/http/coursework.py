"""Coursework (PRG-3, PRG-4): answers to prompts and surveys, and teachers' feedback.

A student answers as themself. Their teachers (and whoever else may see the student's work,
api/access.py) read the answers and every feedback comment; the student sees only the latest
comment per level. A section's survey answers reach its teacher without who gave them.
"""

from __future__ import annotations

import logging
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response

from api.http.auth import PurposeHeader, Session, require, signed_in, stated_purpose
from api.http.deps import Svc, path_id
from api.http.problems import not_found, responses
from api.http.work_models import (
    AnswerOut,
    FeedbackOut,
    NewFeedback,
    PromptAnswer,
    SurveyAnswers,
    SurveyTally,
)
from api.tokens import Permission, Principal

log = logging.getLogger("api.http")
router = APIRouter(tags=["coursework"])

StudentSelf = Annotated[Session, Depends(signed_in(Permission.ME_STUDENT))]
Teacher = Annotated[Session, Depends(signed_in(Permission.SECTIONS_MANAGE))]
Reader = Annotated[Principal, Depends(require(Permission.PROGRESS_READ))]
_WRITE = responses(401, 403, 404, 410, 422, 503)
_READ = responses(401, 403, 404, 410, 503)
# AUD-1: what each read returns, as its access record names it.
FEEDBACK_FIELDS = ("level", "comment", "teacher_id", "given_at")
ANSWER_FIELDS = ("prompt", "text", "answered_at")
SURVEY_FIELDS = ("survey_answers",)  # a section's tally: each student's answers, unnamed


@router.post("/me/answers", status_code=204, responses=_WRITE)
def answer_prompt(body: PromptAnswer, svc: Svc, me: StudentSelf) -> Response:
    """PRG-3: an answer to a course prompt, for the student's teachers."""
    svc.coursework.answer_prompt(me.person_id, body.prompt, body.text)
    return Response(status_code=204)


@router.post("/me/surveys", status_code=204, responses=_WRITE)
def answer_survey(body: SurveyAnswers, svc: Svc, me: StudentSelf) -> Response:
    """PRG-3: survey answers reach the teacher without the student's name."""
    svc.coursework.answer_survey(me.person_id, body.survey, dict(body.answers))
    return Response(status_code=204)


@router.get("/me/feedback", response_model=list[FeedbackOut], responses=_READ)
def my_feedback(svc: Svc, me: StudentSelf, request: Request) -> list[FeedbackOut]:
    """PRG-4: the latest comment per level."""
    latest = svc.coursework.latest_feedback(me.person_id)
    out = [FeedbackOut(level=level, comment=comment) for level, comment in sorted(latest.items())]
    # AUD-1, AUD-5: a no-op for the student; recorded when support acts as them.
    svc.record_access(me.principal, me.person_id, "/me/feedback", ("level", "comment"), None,
                      request.state.request_id)
    return out


@router.post("/students/{person_id}/feedback", status_code=201, responses=_WRITE)
def give_feedback(person_id: str, body: NewFeedback, svc: Svc, me: Teacher) -> Response:
    """PRG-4: a teacher comments on the work of a student in one of their sections; any
    other student answers as one that does not exist (ACC-5)."""
    subject = path_id(person_id)
    svc.coursework.give_feedback(me.person_id, subject, body.level, body.comment)
    log.info("feedback given id=%s principal=%s", subject, me.principal.id)
    return Response(status_code=201)


@router.get("/students/{person_id}/feedback", response_model=list[FeedbackOut],
            responses=_READ)
def feedback_history(person_id: str, svc: Svc, who: Reader, request: Request,
                     purpose: PurposeHeader = None) -> list[FeedbackOut]:
    """Every comment, oldest first per level: for those who may see the student's work.
    Anyone but the student leaves an access record (AUD-1)."""
    subject, stated = _visible(svc, who, person_id, purpose)
    if who.subject_id == subject:  # the student themself sees the latest only (PRG-4)
        return my_feedback(svc, Session(who, subject), request)
    out = [FeedbackOut(level=level, comment=comment, teacher_id=teacher, given_at=at)
           for level, comments in sorted(svc.coursework.feedback_history(subject).items())
           for teacher, comment, at in comments]
    svc.record_access(who, subject, "/students/{person_id}/feedback", FEEDBACK_FIELDS, stated,
                      request.state.request_id)
    return out


@router.get("/students/{person_id}/answers", response_model=list[AnswerOut], responses=_READ)
def prompt_answers(person_id: str, svc: Svc, who: Reader, request: Request,
                   purpose: PurposeHeader = None) -> list[AnswerOut]:
    """A student's answers to prompts (PRG-3); anyone but the student leaves an access
    record (AUD-1)."""
    subject, stated = _visible(svc, who, person_id, purpose)
    out = [AnswerOut(prompt=prompt, text=text, answered_at=at)
           for prompt, (text, at) in sorted(svc.coursework.prompt_answers(subject).items())]
    svc.record_access(who, subject, "/students/{person_id}/answers", ANSWER_FIELDS, stated,
                      request.state.request_id)
    return out


@router.get("/sections/{section_id}/surveys", response_model=list[SurveyTally],
            responses=responses(401, 403, 404, 422, 503))
def section_survey(section_id: str, svc: Svc, me: Teacher, request: Request,
                   survey: Annotated[str, Query(max_length=200)]) -> list[SurveyTally]:
    """The answers of a section's students to one survey, per question, sorted, without who
    gave them (PRG-3). Own sections only. Unnamed, but each answer is still a student's own
    words: each student whose answers are in the tally leaves an access record (AUD-1), all
    in one transaction."""
    roster = svc.section_roster(me.principal, path_id(section_id, "section"))
    if roster is None:
        raise not_found("section")
    tally: dict[str, list[str]] = {}
    answered = []
    for entry in roster.students:
        answers = svc.coursework.survey_answers(entry.id).get(survey, {})
        if answers:
            answered.append(entry.id)
        for question, answer in answers.items():
            tally.setdefault(question, []).append(answer)
    out = [SurveyTally(question=q, answers=sorted(a)) for q, a in sorted(tally.items())]
    svc.record_accesses(me.principal, [(s, SURVEY_FIELDS) for s in answered],
                        "/sections/{section_id}/surveys", None, request.state.request_id)
    return out


def _visible(svc: Svc, who: Principal, person_id: str, purpose: str | None
             ) -> tuple[UUID, str | None]:
    """The student, if this caller may see their work (404 else), and support's purpose."""
    stated = stated_purpose(who, purpose)
    subject = path_id(person_id)
    if not svc.access.may_see_progress(who, subject):
        raise not_found()
    log.info("coursework read id=%s role=%s purpose=%s principal=%s", subject, who.role,
             stated or "-", who.id)
    return subject, stated
