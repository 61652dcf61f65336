"""A small synthetic school for a first start: made-up names, no real person.

One school, two teachers who signed up with an email and a password, and their sections:

- Ms Rivera teaches a young class in a word section. She has attested to parental consent
  (AGE-1), so she creates her students herself; each gets generated secret words (MIN-6).
- Mr Okafor teaches an email section for older students. A few signed up themselves with an
  email (kept only as a keyed hash, MIN-1) and joined with the code; the rest come from the
  school's roster and he added them.

Every seeded password is `SEED_PASSWORD`, so that the views can be tried by signing in; the
usernames are generated from the names (MIN-7), and `seed_school` returns them.

Then a term of progress (PRG-1, `seed_progress`): each student works through their section's
course ("csf-2024/unit-1/lesson-1/level-1", ...) at a pace and a skill of their own, over the
12 weeks before the seed: a few tries at each level until it is solved (sometimes optimally,
sometimes given up), hints on the harder tries, short code, and answers at each lesson's
assessment level. Thousands of attempts in all, recorded a batch per save.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from uuid import UUID

from ledger.accounts import Accounts
from ledger.application import Ledger
from ledger.attempts import MAX_BATCH, Attempts
from ledger.enrolment import Sections
from ledger.people import Person
from ledger.progress import Attempt

FIRST_NAMES = ("Amara", "Bo", "Chen", "Dara", "Eli", "Farah", "Gus", "Hana", "Ines", "Jun",
               "Kofi", "Lena", "Mato", "Nia", "Omar", "Pia", "Quinn", "Rosa", "Sami", "Tove")
TEACHERS = (("Ms Rivera", "rivera@northside.example"), ("Mr Okafor", "okafor@northside.example"))
SCHOOL = ("Northside Middle School", "Lakeview District", "public")
SEED_PASSWORD = "synthetic school"  # noqa: S105 (made-up accounts of a local first start)
YOUNG_SHARE = 0.4  # of the students: in the young word section, created by their teacher
SIGN_UPS = 3  # older students who signed up themselves with an email
COURSES = {"csf": "csf-2024", "csd": "csd-2024"}  # a section's course -> its levels' prefix
UNITS, LESSONS, LEVELS = 3, 5, 8  # a course: 3 units of 5 lessons of 8 levels (the last: a quiz)
TERM_WEEKS = 12
MAX_TRIES = 5  # then a student gives the level up for now
CODE_LINES = ("moveForward();", "turnLeft(90);", "turnRight(90);", "penDown();",
              "moveForwardBy({n});", "turnRightBy({a});", "collectTreasure();",
              "if (isPathAhead()) {{ moveForward(); }}")
QUIZ = {"q1": ("a", "b", "c", "d"), "q2": ("a loop", "an event", "a condition", "not sure")}


def seed_school(ledger: Ledger, students: int = 20, rng: random.Random | None = None,
                progress: bool = True) -> dict[str, list[UUID]]:
    """Seed the school; `students` in all, with a term of progress each unless not
    `progress`. Returns the ids by kind, and `sections`."""
    rng = rng or random.Random(2022)  # noqa: S311 (made-up data, not secrets)
    accounts, sections = Accounts(ledger), Sections(ledger)
    school = accounts.register_school(*SCHOOL)
    rivera, okafor = (
        accounts.sign_up_teacher(name, email, SEED_PASSWORD, school_id=school,
                                 email_opt_in=(n == 0))
        for n, (name, email) in enumerate(TEACHERS)
    )
    accounts.attest_parental_consent(rivera)
    young = sections.create(rivera, "Room 4 Explorers", "csf", "3", "word")
    older = sections.create(okafor, "Period 2 CS Discoveries", "csd", "8", "email")
    code = sections.section(older).join_code

    young_count = round(students * YOUNG_SHARE)
    sign_ups = min(SIGN_UPS, students - young_count)
    pupils = [
        sections.create_student(rivera, young, rng.choice(FIRST_NAMES), str(rng.randint(8, 10)))
        for _ in range(young_count)
    ]
    for n in range(sign_ups):
        name = rng.choice(FIRST_NAMES)
        student = accounts.sign_up_student(name, str(rng.randint(13, 15)),
                                           f"{name.lower()}.{n}@students.example", SEED_PASSWORD)
        sections.join(student, code)
        pupils.append(student)
    for _ in range(students - young_count - sign_ups):
        student = ledger.register_student(rng.choice(FIRST_NAMES), str(rng.randint(12, 17)))
        sections.add_student(okafor, older, student)
        pupils.append(student)
    if progress:
        seed_progress(ledger, pupils[:young_count], "csf", rng)
        seed_progress(ledger, pupils[young_count:], "csd", rng)
    return {"teachers": [rivera, okafor], "students": pupils, "sections": [young, older],
            "schools": [school]}


def course_levels(course: str) -> list[str]:
    """A course's levels in order: "csf-2024/unit-1/lesson-1/level-1", ..."""
    prefix = COURSES[course]
    return [f"{prefix}/unit-{u}/lesson-{le}/level-{lv}" for u in range(1, UNITS + 1)
            for le in range(1, LESSONS + 1) for lv in range(1, LEVELS + 1)]


def seed_progress(ledger: Ledger, students: Sequence[UUID], course: str, rng: random.Random,
                  term_end: datetime | None = None) -> int:
    """A term of attempts for each of `students` in `course`, over the `TERM_WEEKS` weeks
    before `term_end` (now, by default). Returns how many attempts were recorded."""
    term_end = term_end or datetime.now(UTC)
    term_start = datetime.combine((term_end - timedelta(weeks=TERM_WEEKS)).date(), time(8),
                                  tzinfo=UTC)
    attempts, recorded = Attempts(ledger), 0
    for student in students:
        term = term_of_progress(course_levels(course), term_start, rng)
        for i in range(0, len(term), MAX_BATCH):
            attempts.record_many(student, term[i:i + MAX_BATCH])
        recorded += len(term)
    return recorded


def term_of_progress(levels: Sequence[str], term_start: datetime, rng: random.Random
                     ) -> list[Attempt]:
    """One student's term: levels in order, as far as their pace takes them, each tried until
    solved or given up, in class time on school days."""
    skill = rng.uniform(0.35, 0.9)
    reached = rng.randint(len(levels) // 3, len(levels))
    term_days = TERM_WEEKS * 7
    out: list[Attempt] = []
    for n, level in enumerate(levels[:reached]):
        day = int(n / reached * term_days)
        day += (-day % 7 + 1) if day % 7 >= 5 else 0  # a weekend's work moves to Monday
        at = term_start + timedelta(days=min(day, term_days - 1),
                                    minutes=rng.randint(0, 6 * 60))
        difficulty = 0.1 + 0.5 * (n % LEVELS) / LEVELS + 0.1 * (n // (LESSONS * LEVELS))
        quiz = (n + 1) % LEVELS == 0
        for tries in range(1, MAX_TRIES + 1):
            solved = rng.random() < skill * (1.05 - difficulty) + 0.04 * tries
            result = ("optimal" if solved and rng.random() < skill * 0.7
                      else "solved" if solved else "failed")
            seconds = int(rng.uniform(20, 90) * (1 + 3 * difficulty))
            out.append(Attempt(
                level=level, result=result, attempted_at=at, seconds=seconds,
                hints=rng.choices((0, 1, 2, 3), (6, 2 + 4 * difficulty, 1, 1))[0]
                if not solved or tries > 1 else 0,
                code="" if quiz else _code(rng),
                answers=({q: rng.choice(choices) for q, choices in QUIZ.items()} if quiz
                         else {})))
            at += timedelta(seconds=seconds + rng.randint(5, 60))
            if solved:
                break
    return out


def _code(rng: random.Random) -> str:
    lines = rng.sample(CODE_LINES, rng.randint(2, 5))
    body = "\n".join("  " + line.format(n=rng.choice((50, 100, 150)), a=rng.choice((60, 90)))
                     for line in lines)
    return f"for (var i = 0; i < {rng.randint(2, 6)}; i++) {{\n{body}\n}}"


def usernames(ledger: Ledger, ids: list[UUID]) -> list[str]:
    """The generated usernames of seeded people, to sign in with `SEED_PASSWORD`."""
    return [person.username for person_id in ids
            if isinstance(person := ledger.person(person_id), Person)]
