"""Schools: organisations, not people, so their records are sealed under the ledger's own key.

A teacher chooses a school (MIN-4: a school name, district and school type, never a student's
address). Administrators are scoped to a school or to its district (ACC-2); a district's id is
derived from its name so that schools of one district share it without a district registry.
"""

from __future__ import annotations

from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from ledger.people import one_of, short_text

SCHOOL_TYPES = ("public", "private", "charter", "homeschool", "afterschool", "other")
DISTRICT_NAMESPACE = UUID("6a1c7f0e-2d4b-4c1e-9b7a-5e3f2a8d9c01")
MAX_NAME = 200


def district_id_for(district: str) -> UUID:
    return uuid5(DISTRICT_NAMESPACE, district.casefold())


def _name(field: str, value: str) -> str:
    return short_text(field, value, MAX_NAME)


class School(Aggregate):
    class Event(Aggregate.Event):
        sealed_for_ledger = True

    class Registered(Aggregate.Created, Event):
        name: str
        district: str
        school_type: str

    @event(Registered)
    def __init__(self, name: str, district: str, school_type: str) -> None:
        self.name = name
        self.district = district
        self.school_type = school_type

    @property
    def district_id(self) -> UUID:
        return district_id_for(self.district)


def new_school(name: str, district: str, school_type: str) -> School:
    one_of("school_type", school_type, SCHOOL_TYPES)
    return School(_name("name", name), _name("district", district), school_type)
