"""Properties of data minimisation (MIN-1, MIN-3, MIN-7, AGE-2, AGE-6), on both backends.

- Usernames stay unique under any sequence of display names: accents, emoji, names with no
  letters at all, blank-ish names (refused, and then nothing claimed), and clashes.
- No sequence of account commands leaves, in any stored event (each opened from the log), a
  birth date, a plaintext student email, a race for an under-13 or a study contact for an
  under-18; nor, in the raw bytes of any database file or row, any email address at all.

The ledger of a test is shared by its examples, so names and addresses pile up across them and
clashes get likelier as the run goes on. scrypt costs ~0.1 s a hash: sign-ups are rationed.
"""

from __future__ import annotations

import contextlib
import re
from datetime import date, datetime
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.services import Services
from ledger.application import AlreadyInUse, Ledger, PersonNotFound
from ledger.enrolment import ConsentRequired, SectionNotFound
from ledger.identity import USERNAME
from ledger.people import AGES, RACES, InvalidRecord, Person, Student, is_adult, is_under_13
from ledger.policy import CURRENT_POLICY_VERSION
from ledger.usernames import base_of
from tests.test_accounts import stored_events
from tests.test_leak_scan import haystack

PROPERTY = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
PASSWORD = "correct horse battery"
_USERNAME = re.compile(r"^[a-z0-9]{2,}$")
_DATE_TEXT = re.compile(r"\b(19|20)\d\d[-/.](0?[1-9]|1[0-2])[-/.](0?[1-9]|[12]\d|3[01])\b")

# -- usernames --------------------------------------------------------------------------------
_tricky_names = st.sampled_from([
    "Ana", "ana", "ANA", "Ána", "Ana1", "Ana 1", "José", "Jose", "Zoë", "Łukasz", "Ægir",
    "李小龙", "Мария", "محمد", "🦊", "🦊🦊 Fox", "A", "a!", "x" * 100, "ana" * 10,
    "Coder", "coder1", "O'Brien", "Mary-Jane", "Dr. Who 2",
])
_blankish = st.sampled_from(["", "   ", "\t", "\u200b", "a\x00b", "\u2028"])
names = st.one_of(_tricky_names, _blankish,
                  st.text(min_size=1, max_size=30),
                  st.text(alphabet="aAáÁ🦊 1", min_size=1, max_size=4))


@PROPERTY
@given(batch=st.lists(names, min_size=1, max_size=12))
def test_MIN_7_usernames_stay_unique_under_any_sequence_of_names(
        ledger: Ledger, batch: list[str]) -> None:
    for name in batch:
        events_before = len(stored_events(ledger))
        try:
            student_id = ledger.register_student(name, "10")
        except InvalidRecord as refused:
            assert refused.field == "display_name"
            assert len(stored_events(ledger)) == events_before  # and nothing claimed:
            assert ledger.identity.find(USERNAME, base_of(name)) is None or \
                base_of(name) in _registered_usernames(ledger).values()
            continue
        username = ledger.live(student_id, Student).username
        assert _USERNAME.match(username), username
        assert username.startswith(base_of(name))
        assert ledger.identity.find(USERNAME, username) == student_id
        assert ledger.identity.find(USERNAME, username.upper()) == student_id
    registered = _registered_usernames(ledger)
    assert len(set(registered.values())) == len(registered)
    with ledger.read_models.transaction(write=False) as cur:
        cur.execute("SELECT subject_id FROM identity_index WHERE purpose = ?", (USERNAME,))
        claimed = [UUID(row[0]) for row in cur.fetchall()]
    assert sorted(claimed) == sorted(registered)  # one claim per person, none left over


def _registered_usernames(ledger: Ledger) -> dict[UUID, str]:
    return {e.originator_id: e.username for e in stored_events(ledger)
            if isinstance(e, Person.Registered)}


# -- minimisation under any commands ----------------------------------------------------------
_ages = st.sampled_from([*AGES, None])
_hostile_ages: list[Any] = ["2012-04-05", "04/05/2012", "1990-01-01", date(2012, 4, 5), "3",
                            "21", 12]
_races = st.sampled_from([*RACES, None, "martian"])


class World:
    """The people of one example, and every address handed to the ledger, by kind."""

    def __init__(self, services: Services, tag: int) -> None:
        self.services = services
        self.tag = tag
        self.students: list[UUID] = []
        self.student_emails: set[str] = set()
        self.other_emails: set[str] = set()  # parents', teachers', study contacts (sealed)
        self.sign_ups = 0
        self.teacher = services.ledger.register_teacher("Teacher")
        self.section = services.sections.create(self.teacher, "Class", "csf", "3", "word")
        self.attested = False
        self.students.append(services.ledger.register_student("First", "14"))

    def address(self, kind: str, n: int) -> str:
        return f"{kind}{n}.t{self.tag}@example.org"


_commands = st.sampled_from([
    "register", "sign_up", "give_age", "give_hostile_age", "give_race", "link_parent",
    "unlink_parent", "study_contact", "set_email", "create_student", "attest", "rename",
])
_tags = iter(range(10 ** 9))


def run(world: World, command: str, who: int, age: str | None, race: str | None,
        n: int) -> None:
    services = world.services
    ledger, accounts, sections = services.ledger, services.accounts, services.sections
    person = world.students[who % len(world.students)] if world.students else None
    if command == "register":
        world.students.append(ledger.register_student(f"Kid {n}", age))
    elif command == "sign_up" and world.sign_ups < 2:
        world.sign_ups += 1
        email = world.address("student", n)
        parent = world.address("parent", n)
        world.student_emails.add(email)
        world.other_emails.add(parent)
        world.students.append(accounts.sign_up_student(
            f"Kid {n}", age or "13", email, PASSWORD,
            parent_email=parent if n % 2 or is_under_13(age or "13") else None))
    elif command == "create_student":
        world.students.append(sections.create_student(world.teacher, world.section,
                                                      f"Kid {n}", age))
    elif command == "attest" and not world.attested:
        accounts.attest_parental_consent(world.teacher)
        world.attested = True
    elif person is None:
        return
    elif command == "give_age":
        accounts.give_age(person, age)
    elif command == "give_hostile_age":
        accounts.give_age(person, _hostile_ages[n % len(_hostile_ages)])
    elif command == "give_race":
        accounts.give_race(person, race)
    elif command == "link_parent":
        parent = world.address("parent", n)
        world.other_emails.add(parent)
        accounts.link_parent_email(person, parent)
    elif command == "unlink_parent":
        accounts.link_parent_email(person, None)
    elif command == "study_contact":
        contact = world.address("study", n)
        world.other_emails.add(contact)
        accounts.give_study_contact(person, contact)
    elif command == "set_email":
        email = world.address("student", n % 3)
        world.student_emails.add(email)
        accounts.set_email(person, email)
    elif command == "rename":
        accounts.rename(person, f"Kid {n} renamed")


REFUSALS = (InvalidRecord, AlreadyInUse, ConsentRequired, SectionNotFound, PersonNotFound)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(_commands, st.integers(0, 5), _ages, _races,
                                st.integers(0, 6)), min_size=1, max_size=25))
def test_no_sequence_of_commands_stores_a_birth_date_an_email_or_a_race_under_13(
        services: Services, steps: list[tuple[str, int, str | None, str | None, int]]) -> None:
    world = World(services, next(_tags))
    for step in steps:
        with contextlib.suppress(*REFUSALS):
            run(world, *step)

    ledger = services.ledger
    events = stored_events(ledger)
    texts = [repr(vars(e)).lower() for e in events]
    for text in texts:
        # The one date allowed in a value: the version of the policy a teacher attested to.
        assert not _DATE_TEXT.search(text.replace(CURRENT_POLICY_VERSION, "policy"))
        for email in world.student_emails:
            assert email not in text
    for e in events:  # the only dates kept: when an age was given, and the events' own times
        for key, value in vars(e).items():
            assert "birth" not in key and "dob" not in key
            if isinstance(value, date) and not isinstance(value, datetime):
                assert key == "age_given_on", (type(e).__name__, key)
            if isinstance(value, str):
                assert not _DATE_TEXT.search(value.replace(CURRENT_POLICY_VERSION, "policy")), (
                    type(e).__name__, key)

    by_stream: dict[UUID, list[Any]] = {}
    for e in events:
        by_stream.setdefault(e.originator_id, []).append(e)
    for stream in by_stream.values():
        check_a_students_history(stream)
    for student_id in world.students:
        student: Student = ledger.live(student_id, Student)
        assert student.age in (*AGES, None)
        assert student.race is None or not student.under_13
        assert student.consent("study_contact") is None or is_adult(student.age)

    found = haystack(services.settings).find(
        {f"address {a}": a.encode() for a in world.student_emails | world.other_emails})
    assert found == []


def check_a_students_history(stream: list[Any]) -> None:
    """Fold a student's events: after every save, no race under 13, no study contact under 18.
    (A change of age is one save of its `AgeGiven` and what it takes away.)"""
    if not stream or not isinstance(stream[0], Student.Registered):
        return
    age: str | None = stream[0].age
    race: str | None = None
    contact: object = None
    for i, e in enumerate(stream):
        if isinstance(e, Person.AgeGiven):
            age = e.age
        elif isinstance(e, Student.RaceGiven):
            race = e.race
            assert race is None or not is_under_13(age), "a race stored for an under-13"
        elif isinstance(e, Person.ConsentChanged) and e.consent == "study_contact":
            contact = e.after
            assert contact is None or is_adult(age), "a study contact stored for an under-18"
        following = stream[i + 1] if i + 1 < len(stream) else None
        if isinstance(e, Person.AgeGiven) and following is not None and (
                isinstance(following, Student.RaceGiven | Person.ConsentChanged)):
            continue  # the same save goes on to take away what the new age may not have
        assert race is None or not is_under_13(age), "an under-13 left with a race"
        if not isinstance(e, Student.RaceGiven) or following is None or not isinstance(
                following, Person.ConsentChanged):
            assert contact is None or is_adult(age), "an under-18 left with a study contact"
