"""A teacher's section (PRG-5): name, course, grade, login type, join code, and who is in it.

The stream holds student ids only; names stay in the students' own streams (DESIGN). It is
sealed under the owning teacher's key (`sealed_for_owner`), so erasing the teacher makes the
section unreadable with everything else of theirs.
"""

from __future__ import annotations

import secrets
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger import bounds
from ledger.people import RACES, InvalidRecord, one_of, short_text

SECTION_LOGIN_TYPES = ("email", "word", "picture")  # word and picture: for young classes
GRADES = ("K", *(str(n) for n in range(1, 13)), "other")
COURSES = ("csf", "csd", "csp", "csa", "ai", "hoc", "other")
ENROLMENT_WAYS = ("joined", "added", "roster")
LEAVING_WAYS = ("left", "removed", "roster")
MAX_NAME = 100
# No vowels or look-alikes: a code that cannot spell a word, and is easy to read aloud.
JOIN_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXYZ"
JOIN_CODE_LENGTH = 6


def new_join_code() -> str:
    return "".join(secrets.choice(JOIN_CODE_ALPHABET) for _ in range(JOIN_CODE_LENGTH))


def normalise_join_code(code: str) -> str:
    """NFKC, so that a full-width code typed on a phone is the same code."""
    return bounds.identifier("join_code", code, bounds.MAX_JOIN_CODE).upper()


def section_name(value: str) -> str:
    return short_text("name", value, MAX_NAME)


def race_estimate(distribution: dict[str, int]) -> dict[str, int]:
    """AGE-2: a section's estimated racial distribution in whole percents, never per student."""
    for race, percent in distribution.items():
        one_of("race", race, RACES)
        if not isinstance(percent, int) or isinstance(percent, bool) or not 0 <= percent <= 100:
            raise InvalidRecord("race_estimate", "each share is a whole percent, 0 to 100")
    if sum(distribution.values()) > 100:
        raise InvalidRecord("race_estimate", "the shares add up to at most 100")
    return dict(sorted(distribution.items()))


class Section(Aggregate):
    class Event(Aggregate.Event):
        sealed_for_owner = True
        owner_id: UUID

    class Created(Aggregate.Created, Event):
        name: str
        course: str
        grade: str
        login_type: str
        join_code: str

    class Renamed(Event):
        name: str

    class CourseAssigned(Event):
        course: str
        grade: str

    class StudentEnrolled(Event):
        student_id: UUID
        how: str

    class StudentUnenrolled(Event):
        student_id: UUID
        how: str

    class RaceEstimated(Event):
        distribution: dict[str, int]

    @event(Created)
    def __init__(self, id: UUID, owner_id: UUID, name: str, course: str, grade: str,
                 login_type: str, join_code: str) -> None:
        self.owner_id = owner_id
        self.name = name
        self.course = course
        self.grade = grade
        self.login_type = login_type
        self.join_code = join_code
        self.students: list[UUID] = []
        self.race_estimate: dict[str, int] | None = None

    @property
    def teacher_id(self) -> UUID:
        return self.owner_id

    @event(Renamed)
    def _rename(self, owner_id: UUID, name: str) -> None:
        self.name = name

    def rename(self, name: str) -> None:
        self._rename(self.owner_id, section_name(name))

    @event(CourseAssigned)
    def _assign(self, owner_id: UUID, course: str, grade: str) -> None:
        self.course, self.grade = course, grade

    def assign_course(self, course: str, grade: str) -> None:
        one_of("course", course, COURSES)
        one_of("grade", grade, GRADES)
        self._assign(self.owner_id, course, grade)

    @event(StudentEnrolled)
    def _enrol(self, owner_id: UUID, student_id: UUID, how: str) -> None:
        self.students.append(student_id)

    def enrol(self, student_id: UUID, how: str) -> bool:
        """False (and no event) if the student is in already."""
        one_of("how", how, ENROLMENT_WAYS)
        if student_id in self.students:
            return False
        self._enrol(self.owner_id, student_id, how)
        return True

    @event(StudentUnenrolled)
    def _unenrol(self, owner_id: UUID, student_id: UUID, how: str) -> None:
        self.students.remove(student_id)

    def unenrol(self, student_id: UUID, how: str) -> bool:
        one_of("how", how, LEAVING_WAYS)
        if student_id not in self.students:
            return False
        self._unenrol(self.owner_id, student_id, how)
        return True

    @event(RaceEstimated)
    def _estimate(self, owner_id: UUID, distribution: dict[str, int]) -> None:
        self.race_estimate = distribution

    def estimate_race(self, distribution: dict[str, int]) -> None:
        self._estimate(self.owner_id, race_estimate(distribution))


def validate(name: str, course: str, grade: str, login_type: str) -> None:
    section_name(name)
    one_of("course", course, COURSES)
    one_of("grade", grade, GRADES)
    one_of("login_type", login_type, SECTION_LOGIN_TYPES)


def new_section(section_id: UUID, teacher_id: UUID, name: str, course: str, grade: str,
                login_type: str, join_code: str) -> Section:
    validate(name, course, grade, login_type)
    return Section(section_id, teacher_id, section_name(name), course, grade, login_type,
                   join_code)
