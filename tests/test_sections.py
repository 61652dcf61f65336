"""Sections (PRG-5) and the age rules that ride on them (AGE-1, AGE-2), through `Sections`, on
both backends. Nothing here hashes a password: students are registered or teacher-created."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from ledger.accounts import Accounts
from ledger.application import Ledger, PersonNotFound
from ledger.enrolment import ConsentRequired, SectionNotFound, Sections
from ledger.identity import JOIN_CODE, USERNAME
from ledger.people import InvalidRecord, Student
from ledger.sections import JOIN_CODE_ALPHABET, JOIN_CODE_LENGTH, Section
from tests.test_accounts import states, stored_events


def identity_row_count(ledger: Ledger) -> int:
    with ledger.read_models.transaction(write=False) as cur:
        cur.execute("SELECT COUNT(*) FROM identity_index")
        count = int(cur.fetchone()[0])
        cur.execute("SELECT COUNT(*) FROM parent_links")
        return count + int(cur.fetchone()[0])


def not_found_message(call: Any) -> str:
    with pytest.raises(SectionNotFound) as raised:
        call()
    return str(raised.value)


# -- PRG-5 ------------------------------------------------------------------------------------
def test_PRG_5_sections_join_add_remove_leave_and_only_the_owner_sees_them(
        ledger: Ledger) -> None:
    sections = Sections(ledger)
    teacher, other = ledger.register_teacher("Ms A"), ledger.register_teacher("Mr B")
    ana, ben, cy = (ledger.register_student(n, "14") for n in ("Ana Marker", "Ben Marker",
                                                                "Cy Marker"))
    section_id = sections.create(teacher, "  Period 3  ", "csd", "8", "email")
    section = sections.section(section_id, teacher)
    assert (section.name, section.course, section.grade, section.login_type) == (
        "Period 3", "csd", "8", "email")
    assert section.teacher_id == teacher and section.students == []
    code = section.join_code
    assert len(code) == JOIN_CODE_LENGTH and set(code) <= set(JOIN_CODE_ALPHABET)
    assert ledger.identity.find(JOIN_CODE, code) == section_id

    # Students join with the code, in any case and with stray spaces; the teacher adds one.
    assert sections.join(ana, f" {code.lower()} ") == section_id
    assert sections.join(ana, code) == section_id  # already in: no second enrolment
    sections.join(ben, code.capitalize())
    sections.add_student(teacher, section_id, cy)
    sections.add_student(teacher, section_id, cy)
    assert sections.section(section_id).students == [ana, ben, cy]
    with pytest.raises(SectionNotFound):
        sections.join(ana, "BCDFGH" if code != "BCDFGH" else "CDFGHJ")

    # A student leaves; the teacher removes another; leaving a section one is not in is as if
    # it did not exist.
    sections.leave(ben, section_id)
    sections.remove(teacher, section_id, cy)
    with pytest.raises(SectionNotFound):
        sections.leave(ben, section_id)
    assert sections.section(section_id).students == [ana]
    sections.rename(teacher, section_id, "Period 4")
    sections.assign_course(teacher, section_id, "csp", "10")
    section = sections.section(section_id, teacher)
    assert (section.name, section.course, section.grade) == ("Period 4", "csp", "10")
    enrolments = [(type(e).__name__, e.student_id, e.how)
                  for e in stored_events(ledger, section_id)
                  if isinstance(e, Section.StudentEnrolled | Section.StudentUnenrolled)]
    assert enrolments == [("StudentEnrolled", ana, "joined"), ("StudentEnrolled", ben, "joined"),
                          ("StudentEnrolled", cy, "added"), ("StudentUnenrolled", ben, "left"),
                          ("StudentUnenrolled", cy, "removed")]
    # The section's stream holds student ids only: their names stay in their own streams.
    assert not any("Marker" in s for s in states(ledger, section_id))

    # Another teacher's section answers exactly as a section that does not exist.
    missing = uuid4()
    for sid in (section_id, missing, ana):
        for call in (
            lambda sid=sid: sections.section(sid, other),
            lambda sid=sid: sections.rename(other, sid, "Mine now"),
            lambda sid=sid: sections.assign_course(other, sid, "csa", "11"),
            lambda sid=sid: sections.add_student(other, sid, ben),
            lambda sid=sid: sections.remove(other, sid, ana),
            lambda sid=sid: sections.create_student(other, sid, "Dee", "15"),
            lambda sid=sid: sections.reset_secret(other, sid, ana),
            lambda sid=sid: sections.estimate_race(other, sid, {"asian": 10}),
        ):
            assert not_found_message(call) == "no such section"
    assert sections.section(section_id, teacher).students == [ana]
    assert sections.section(section_id, teacher).name == "Period 4"

    # Refused input writes nothing and spends no join code.
    rows, events = identity_row_count(ledger), len(stored_events(ledger))
    for bad in (("", "csd", "8", "email"), ("X", "latin", "8", "email"),
                ("X", "csd", "13", "email"), ("X", "csd", "8", "sms"),
                ("X\x00", "csd", "8", "email")):
        with pytest.raises(InvalidRecord):
            sections.create(teacher, *bad)
    assert (identity_row_count(ledger), len(stored_events(ledger))) == (rows, events)
    with pytest.raises(InvalidRecord):
        sections.assign_course(teacher, section_id, "csd", "13")


# -- AGE-1 ------------------------------------------------------------------------------------
def test_AGE_1_under_13_or_ageless_students_need_the_teachers_attestation_first(
        ledger: Ledger) -> None:
    accounts, sections = Accounts(ledger), Sections(ledger)
    teacher, colleague = ledger.register_teacher("Ms C"), ledger.register_teacher("Mr D")
    section_id = sections.create(teacher, "Year 2", "csf", "2", "picture")
    accounts.attest_parental_consent(colleague)  # someone else's attestation does not count

    rows, events = identity_row_count(ledger), len(stored_events(ledger))
    for age in ("4", "12", None):
        with pytest.raises(ConsentRequired):
            sections.create_student(teacher, section_id, "Eli Unique", age)
    # Nothing written: no event, no username claimed, nobody enrolled.
    assert (identity_row_count(ledger), len(stored_events(ledger))) == (rows, events)
    assert ledger.identity.find(USERNAME, "eliunique") is None
    assert sections.section(section_id).students == []
    assert not any("Eli Unique" in s for s in states(ledger))

    # 13 and over need no attestation.
    older = sections.create_student(teacher, section_id, "Fin", "13")
    with pytest.raises(InvalidRecord):
        accounts.attest_parental_consent(teacher, "2019-06-01")  # not the policy in force
    with pytest.raises(ConsentRequired):
        sections.create_student(teacher, section_id, "Eli Unique", "12")

    accounts.attest_parental_consent(teacher)
    young = sections.create_student(teacher, section_id, "Eli Unique", "7")
    ageless = sections.create_student(teacher, section_id, "Gia", None)
    student: Student = ledger.live(young, Student)
    assert (student.age, student.login_type, student.secret_kind) == (
        "7", "teacher_managed", "picture")
    assert student.username == "eliunique"
    assert sections.section(section_id).students == [older, young, ageless]

    # An email section's students sign up themselves: the teacher's command writes nothing.
    email_section = sections.create(teacher, "Year 9", "csd", "9", "email")
    rows, events = identity_row_count(ledger), len(stored_events(ledger))
    with pytest.raises(InvalidRecord):
        sections.create_student(teacher, email_section, "Hana", "14")
    assert (identity_row_count(ledger), len(stored_events(ledger))) == (rows, events)


# -- AGE-2 (a section's estimate) -------------------------------------------------------------
def test_AGE_2_a_race_estimate_only_for_a_class_of_under_13s_never_per_student(
        ledger: Ledger) -> None:
    accounts, sections = Accounts(ledger), Sections(ledger)
    teacher = ledger.register_teacher("Ms E")
    accounts.attest_parental_consent(teacher)
    section_id = sections.create(teacher, "Year 4", "csf", "4", "word")
    kids = [sections.create_student(teacher, section_id, f"Kid {i}", age)
            for i, age in enumerate(("9", "12", None))]
    estimate = {"white": 40, "hispanic": 30, "asian": 20}
    sections.estimate_race(teacher, section_id, estimate)
    assert sections.section(section_id, teacher).race_estimate == dict(sorted(estimate.items()))
    for kid in kids:  # never per student
        assert ledger.live(kid, Student).race is None
        assert not any(isinstance(e, Student.RaceGiven) for e in stored_events(ledger, kid))
        assert not any("white" in s for s in states(ledger, kid))

    for bad in ({"martian": 10}, {"white": 101}, {"white": -1}, {"white": 60, "asian": 41},
                {"white": 12.5}, {"white": True}):
        with pytest.raises(InvalidRecord):
            sections.estimate_race(teacher, section_id, bad)  # type: ignore[arg-type]

    # A class with anyone 13 or older is not a class of under-13s: ask them themselves.
    older = ledger.register_student("Teen", "13")
    sections.add_student(teacher, section_id, older)
    with pytest.raises(InvalidRecord):
        sections.estimate_race(teacher, section_id, {"white": 50})
    sections.remove(teacher, section_id, older)
    sections.estimate_race(teacher, section_id, {"white": 50})
    assert [e.distribution for e in stored_events(ledger, section_id)
            if isinstance(e, Section.RaceEstimated)] == [dict(sorted(estimate.items())),
                                                         {"white": 50}]


def test_PRG_5_a_section_stream_names_its_owner_only(ledger: Ledger) -> None:
    sections = Sections(ledger)
    teacher = ledger.register_teacher("Ms F")
    section_id = sections.create(teacher, "Owned", "ai", "other", "word")
    events = stored_events(ledger, section_id)
    assert events and all(e.owner_id == teacher for e in events)
    student = ledger.register_student("Stu", "15")
    with pytest.raises(PersonNotFound):  # only a teacher has sections
        sections.create(student, "Mine", "ai", "other", "word")
