"""A small synthetic school for a first start: made-up names, no real person.

One school, two teachers who signed up with an email and a password, and their sections:

- Ms Rivera teaches a young class in a word section. She has attested to parental consent
  (AGE-1), so she creates her students herself; each gets generated secret words (MIN-6).
- Mr Okafor teaches an email section for older students. A few signed up themselves with an
  email (kept only as a keyed hash, MIN-1) and joined with the code; the rest come from the
  school's roster and he added them.

Every seeded password is `SEED_PASSWORD`, so that the views can be tried by signing in; the
usernames are generated from the names (MIN-7), and `seed_school` returns them.
"""

from __future__ import annotations

import random
from uuid import UUID

from ledger.accounts import Accounts
from ledger.application import Ledger
from ledger.enrolment import Sections
from ledger.people import Person

FIRST_NAMES = ("Amara", "Bo", "Chen", "Dara", "Eli", "Farah", "Gus", "Hana", "Ines", "Jun",
               "Kofi", "Lena", "Mato", "Nia", "Omar", "Pia", "Quinn", "Rosa", "Sami", "Tove")
TEACHERS = (("Ms Rivera", "rivera@northside.example"), ("Mr Okafor", "okafor@northside.example"))
SCHOOL = ("Northside Middle School", "Lakeview District", "public")
SEED_PASSWORD = "synthetic school"  # noqa: S105 (made-up accounts of a local first start)
YOUNG_SHARE = 0.4  # of the students: in the young word section, created by their teacher
SIGN_UPS = 3  # older students who signed up themselves with an email


def seed_school(ledger: Ledger, students: int = 20, rng: random.Random | None = None
                ) -> dict[str, list[UUID]]:
    """Seed the school; `students` in all. Returns the ids by kind, and `sections`."""
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
    return {"teachers": [rivera, okafor], "students": pupils, "sections": [young, older],
            "schools": [school]}


def usernames(ledger: Ledger, ids: list[UUID]) -> list[str]:
    """The generated usernames of seeded people, to sign in with `SEED_PASSWORD`."""
    return [person.username for person_id in ids
            if isinstance(person := ledger.person(person_id), Person)]
