"""Coursework through the service (PRG-3, PRG-4), both backends: answers kept sealed under the
student's key, feedback only from the student's own teachers, the student seeing the latest
comment per level and the teachers every one."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from api.services import Services
from crypto import KeyErased
from ledger.application import PersonNotFound
from ledger.coursework import Coursework
from ledger.people import InvalidRecord
from ledger.progress import Progress, progress_id_for
from tests.test_leak_scan import haystack


def classroom(services: Services) -> tuple[Coursework, UUID, UUID, UUID]:
    """A teacher, a student of theirs and another teacher; coursework knowing who teaches whom
    from the section aggregates themselves (no read model needed for the domain's rules)."""
    accounts, sections = services.accounts, services.sections
    teacher = accounts.sign_up_teacher("Ms Frizzle", f"{uuid4().hex}@school.example", "pw pw pw pw")
    other = accounts.sign_up_teacher("Mr Ratburn", f"{uuid4().hex}@school.example", "pw pw pw pw")
    section = sections.create(teacher, "Period 1", "csd", "8", "email")
    student = services.ledger.register_student("Arnold", "14")
    sections.add_student(teacher, section, student)

    def teaches(teacher_id: UUID, student_id: UUID) -> bool:
        found = sections.section(section)
        return found.teacher_id == teacher_id and student_id in found.students

    return Coursework(services.ledger, teaches), teacher, student, other


def test_PRG_3_answers_are_kept_sealed_and_the_latest_answer_counts(services: Services) -> None:
    work, _, student, _ = classroom(services)
    first, second = f"a loop {uuid4().hex}", f"a function {uuid4().hex}"
    work.answer_prompt(student, "csd/unit-1/reflection", first)
    work.answer_prompt(student, "csd/unit-1/reflection", second)
    work.answer_survey(student, "csd/unit-1/survey", {"enjoyed": "yes", "hard": "a bit"})

    assert work.prompt_answers(student)["csd/unit-1/reflection"][0] == second
    assert work.survey_answers(student) == {"csd/unit-1/survey": {"enjoyed": "yes",
                                                                  "hard": "a bit"}}
    answered = [e for e in services.ledger.history(progress_id_for(student))
                if isinstance(e, Progress.PromptAnswered)]
    assert [e.text for e in answered] == [first, second]  # both kept, in order
    assert haystack(services.settings).find({"first": first.encode(),
                                             "second": second.encode()}) == []


def test_PRG_4_the_student_sees_the_latest_comment_per_level_the_teacher_every_one(
        services: Services) -> None:
    work, teacher, student, _ = classroom(services)
    work.give_feedback(teacher, student, "csd/unit-1/level-3", "Nice loop!")
    work.give_feedback(teacher, student, "csd/unit-1/level-3", "Now try it with a function.")
    work.give_feedback(teacher, student, "csd/unit-1/level-4", "Great start.")

    assert work.latest_feedback(student) == {
        "csd/unit-1/level-3": "Now try it with a function.",
        "csd/unit-1/level-4": "Great start."}
    history = work.feedback_history(student)["csd/unit-1/level-3"]
    assert [(t, c) for t, c, _ in history] == [(teacher, "Nice loop!"),
                                               (teacher, "Now try it with a function.")]


def test_PRG_4_only_the_students_own_teachers_give_feedback(services: Services) -> None:
    work, _, student, other = classroom(services)
    with pytest.raises(PersonNotFound):  # as if the student did not exist (ACC-5)
        work.give_feedback(other, student, "csd/unit-1/level-3", "Hello")
    with pytest.raises(PersonNotFound):
        work.give_feedback(other, uuid4(), "csd/unit-1/level-3", "Hello")
    assert work.latest_feedback(student) == {}


@pytest.mark.parametrize(("call", "field"), [
    (lambda w, t, s: w.answer_prompt(s, "csd/unit-1/reflection", "   "), "text"),
    (lambda w, t, s: w.answer_prompt(s, "Reflection 1", "text"), "level"),
    (lambda w, t, s: w.answer_survey(s, "csd/survey", {}), "answers"),
    (lambda w, t, s: w.answer_survey(s, "csd/survey", {"Q 1": "yes"}), "answers"),
    (lambda w, t, s: w.give_feedback(t, s, "csd/unit-1/level-3", "x" * 2001), "comment"),
])
def test_bad_coursework_is_refused_naming_the_field_and_writes_nothing(
        services: Services, call: object, field: str) -> None:
    work, teacher, student, _ = classroom(services)
    before = services.ledger.recorder.max_notification_id()
    with pytest.raises(InvalidRecord) as refused:
        call(work, teacher, student)  # type: ignore[operator]
    assert refused.value.field == field
    assert services.ledger.recorder.max_notification_id() == before


def test_coursework_goes_with_the_students_erasure(services: Services) -> None:
    work, teacher, student, _ = classroom(services)
    work.answer_prompt(student, "csd/unit-1/reflection", "mine")
    work.give_feedback(teacher, student, "csd/unit-1/level-3", "Nice")
    services.ledger.erase_subject(student, "user_request")
    with pytest.raises(KeyErased):
        work.latest_feedback(student)
    with pytest.raises(KeyErased):
        work.answer_prompt(student, "csd/unit-1/reflection", "again")
