"""A small synthetic school for a first start: made-up first names, no real person."""

from __future__ import annotations

import random
from uuid import UUID

from ledger.application import Ledger

FIRST_NAMES = ("Amara", "Bo", "Chen", "Dara", "Eli", "Farah", "Gus", "Hana", "Ines", "Jun",
               "Kofi", "Lena", "Mato", "Nia", "Omar", "Pia", "Quinn", "Rosa", "Sami", "Tove")
TEACHERS = ("Ms Rivera", "Mr Okafor")


def seed_school(ledger: Ledger, students: int = 20, rng: random.Random | None = None
                ) -> dict[str, list[UUID]]:
    rng = rng or random.Random(2022)  # noqa: S311 (made-up data, not secrets)
    teachers = [ledger.register_teacher(name) for name in TEACHERS]
    pupils = [
        ledger.register_student(rng.choice(FIRST_NAMES), str(rng.randint(9, 17)))
        for _ in range(students)
    ]
    return {"teachers": teachers, "students": pupils}
