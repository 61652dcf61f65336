"""Students and teachers: each is a data subject whose stream is sealed under their own key.

Validation errors name the field and the rule, never the value: messages end up in logs.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import date
from uuid import UUID

from eventsourcing.domain import Aggregate, event

AGES = (*(str(n) for n in range(4, 21)), "21+")
MAX_DISPLAY_NAME = 100


class InvalidRecord(ValueError):
    """A value that the policy does not allow. `field` says which, `rule` says why."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


def display_name(value: str) -> str:
    """MIN-7: free text, but short, printable, and not blank."""
    name = unicodedata.normalize("NFC", value).strip()
    if not name:
        raise InvalidRecord("display_name", "must not be blank")
    if len(name) > MAX_DISPLAY_NAME:
        raise InvalidRecord("display_name", f"must be at most {MAX_DISPLAY_NAME} characters")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in name):
        raise InvalidRecord("display_name", "must not contain control characters")
    return name


def age(value: str) -> str:
    """MIN-3: an age from 4 to 20, or "21+". Never a date of birth."""
    if value not in AGES:
        raise InvalidRecord("age", 'must be a whole number from 4 to 20, or "21+"')
    return value


def is_under_13(age_value: str | None) -> bool:
    """A missing age counts as under 13 for every age rule (MIN-3)."""
    return age_value is None or (age_value != "21+" and int(age_value) < 13)


class Person(Aggregate):
    """What every account has. The display name and age live only in this sealed stream."""

    class Registered(Aggregate.Created):
        display_name: str
        age: str
        age_given_on: date

    class Renamed(Aggregate.Event):
        display_name: str

    @event(Registered)
    def __init__(self, id: UUID, display_name: str, age: str, age_given_on: date) -> None:
        self.display_name = display_name
        self.age = age
        self.age_given_on = age_given_on

    @event(Renamed)
    def rename(self, display_name: str) -> None:
        self.display_name = display_name

    @property
    def kind(self) -> str:
        return type(self).__name__.lower()


class Student(Person):
    pass


class Teacher(Person):
    pass


def register(kind: type[Person], name: str, age_value: str, given_on: date,
             new_id: Callable[[], UUID]) -> Person:
    """A new person, validated first; then `new_id()` gives their id (the ledger's ids come
    with a data key already made, so bad input must not spend one)."""
    if kind is Teacher and age_value != "21+":
        raise InvalidRecord("age", 'a teacher is "21+"')
    valid_name, valid_age = display_name(name), age(age_value)
    return kind(new_id(), valid_name, valid_age, given_on)
