"""Section commands (PRG-5) and the age rules that ride on them (AGE-1, AGE-2).

A teacher acts only on their own sections: another teacher's section answers `SectionNotFound`
exactly as a section that does not exist (ACC-5).
"""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID, uuid4

from ledger import people
from ledger.application import AlreadyInUse, Claim, Ledger
from ledger.identity import JOIN_CODE
from ledger.people import InvalidRecord, Person, Student, Teacher
from ledger.policy import CURRENT_POLICY_VERSION
from ledger.sections import (
    Section,
    new_join_code,
    new_section,
    normalise_join_code,
    validate,
)
from ledger.sign_in_secrets import new_secret
from ledger.signin import account_key, address_buckets
from ledger.throttle import ACCOUNT, Bucket, Throttle

JOIN_CODE_ATTEMPTS = 20


class SectionNotFound(LookupError):
    def __init__(self, section_id: UUID | None = None) -> None:
        super().__init__("no such section")
        self.section_id = section_id


class ConsentRequired(PermissionError):
    """AGE-1: under-13 accounts need the teacher's attestation of parental consent first."""

    def __init__(self) -> None:
        super().__init__("record an attestation of parental consent (AGE-1) first")


class Sections:
    def __init__(self, ledger: Ledger, throttle: Throttle | None = None) -> None:
        self.throttle = throttle or Throttle(ledger.read_models)
        self.ledger = ledger

    def section(self, section_id: UUID, teacher_id: UUID | None = None) -> Section:
        """The section; if `teacher_id` is given, only if it is theirs."""
        found: Section | None = self.ledger.aggregate(section_id, Section)
        if found is None or (teacher_id is not None and found.owner_id != teacher_id):
            raise SectionNotFound(section_id)
        return found

    def create(self, teacher_id: UUID, name: str, course: str, grade: str,
               login_type: str) -> UUID:
        self.ledger.live(teacher_id, Teacher)
        validate(name, course, grade, login_type)  # before a code is spent on it
        section_id = uuid4()
        with self.ledger.claiming() as claim:
            code = self._claim_code(section_id, teacher_id, claim)
            self.ledger.save(new_section(section_id, teacher_id, name, course, grade,
                                         login_type, code))
        return section_id

    def _claim_code(self, section_id: UUID, teacher_id: UUID, claim: Claim) -> str:
        for _ in range(JOIN_CODE_ATTEMPTS):
            code = new_join_code()
            if claim(JOIN_CODE, code, section_id, required=False, owner_id=teacher_id):
                return code
        raise AlreadyInUse("join_code")

    def rename(self, teacher_id: UUID, section_id: UUID, name: str) -> None:
        section = self.section(section_id, teacher_id)
        section.rename(name)
        self.ledger.save(section)

    def assign_course(self, teacher_id: UUID, section_id: UUID, course: str, grade: str) -> None:
        section = self.section(section_id, teacher_id)
        section.assign_course(course, grade)
        self.ledger.save(section)

    # -- students in and out ---------------------------------------------------------------
    def create_student(self, teacher_id: UUID, section_id: UUID, display_name: str,
                       age: str | None = None, age_given_on: date | None = None,
                       gender: str | None = None) -> UUID:
        """A teacher-managed student, enrolled at once. Under 13, or no age given (which
        counts as under 13), needs the teacher's attestation (AGE-1). In a word or picture
        section the student gets a generated secret (MIN-6)."""
        section = self.section(section_id, teacher_id)
        teacher: Teacher = self.ledger.live(teacher_id, Teacher)
        if people.is_under_13(people.age(age)) and not teacher.has_attested(
                CURRENT_POLICY_VERSION):
            raise ConsentRequired()
        if section.login_type == "email":
            raise InvalidRecord("section", "students of an email section sign up themselves"
                                           " and join with the code")

        def then(person: Person, claim: Claim) -> list[Any]:
            assert isinstance(person, Student)
            person.set_secret(section.login_type, new_secret(section.login_type))
            section.enrol(person.id, "added")
            return [section]

        return self.ledger.register(Student, display_name, age, age_given_on,
                                    login_type="teacher_managed", gender=gender, then=then).id

    def add_student(self, teacher_id: UUID, section_id: UUID, student_id: UUID) -> None:
        """Enrol an existing student (a roster's, or one who moved between sections)."""
        section = self.section(section_id, teacher_id)
        student: Student = self.ledger.live(student_id, Student)
        if section.enrol(student.id, "added"):
            self.ledger.save(section)

    def join(self, student_id: UUID, join_code: str, client: str | None = None) -> UUID:
        """A student joins with the code; an unknown code is `SectionNotFound`, and a failure
        throttled per joining account, per client address (`client`, never kept) and overall,
        as sign-ins are: codes are not to be found by trying them."""
        student: Student = self.ledger.live(student_id, Student)
        joiner = Bucket(self.ledger.identity.token("throttle", f"joiner {student_id}"), ACCOUNT)
        counted = self.throttle.attempt([joiner, *address_buckets(self.ledger, client)])
        found = self.ledger.identity.find(JOIN_CODE, normalise_join_code(join_code))
        if found is None:
            self.throttle.failed(counted)
            raise SectionNotFound()
        self.throttle.succeeded(counted)
        section = self.section(found)
        if section.enrol(student.id, "joined"):
            self.ledger.save(section)
        return section.id

    def leave(self, student_id: UUID, section_id: UUID) -> None:
        section = self.section(section_id)
        if not section.unenrol(student_id, "left"):
            raise SectionNotFound(section_id)  # not in it: as if it did not exist
        self.ledger.save(section)

    def remove(self, teacher_id: UUID, section_id: UUID, student_id: UUID) -> None:
        section = self.section(section_id, teacher_id)
        if section.unenrol(student_id, "removed"):
            self.ledger.save(section)

    def reset_secret(self, teacher_id: UUID, section_id: UUID, student_id: UUID) -> str:
        """MIN-6: a new generated secret for a student of a word or picture section."""
        section = self.section(section_id, teacher_id)
        if student_id not in section.students:
            raise SectionNotFound(section_id)
        if section.login_type == "email":
            raise InvalidRecord("section", "an email section's students use passwords")
        student: Student = self.ledger.live(student_id, Student)
        secret = new_secret(section.login_type)
        student.set_secret(section.login_type, secret)
        self.ledger.save(student)
        # The guesses at the old secret are moot; the child must not wait for them.
        self.throttle.forget(account_key(self.ledger, student_id))
        return secret

    def estimate_race(self, teacher_id: UUID, section_id: UUID,
                      distribution: dict[str, int]) -> None:
        """AGE-2: a class of under-13s gets an estimate for the class, never per student."""
        section = self.section(section_id, teacher_id)
        for student_id in section.students:
            person = self.ledger.person(student_id)
            if isinstance(person, Student) and not person.under_13:
                raise InvalidRecord("race_estimate", "is for classes of students under 13; ask"
                                                     " older students themselves (AGE-2)")
        section.estimate_race(distribution)
        self.ledger.save(section)

