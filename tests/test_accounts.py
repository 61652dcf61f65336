"""Account rules of the policy (MIN-1..3, MIN-7, AGE-2, AGE-5, AGE-6) through `Accounts`, on both
backends. What rests is checked twice: in the stored events, opened one by one from the log, and
in the raw bytes of every database file and row (the leak scan's haystack).

scrypt costs ~0.1 s a hash: only the tests about emails and passwords sign people up; the others
register through the ledger, which hashes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
from datetime import date
from typing import Any
from uuid import UUID, uuid4

import pytest

from api.services import Services
from crypto import KeyErased
from ledger.accounts import Accounts, ProfileChange
from ledger.application import AlreadyInUse, Ledger, PersonNotFound
from ledger.enrolment import ConsentRequired, Sections
from ledger.identity import (
    PARENT_EMAIL,
    STUDENT_EMAIL,
    TEACHER_EMAIL,
    USERNAME,
    IdentityIndex,
    secret_subject,
)
from ledger.people import AGES, RACES, InvalidRecord, Person, Student, Teacher
from ledger.policy import CURRENT_POLICY_VERSION
from ledger.signin import SignIn, SignInFailed
from tests.test_leak_scan import haystack

PASSWORD = "correct horse battery"


def stored_events(ledger: Ledger, stream: UUID | None = None) -> list[Any]:
    """Every event in the log, opened (all streams, or one)."""
    events: list[Any] = []
    after = 0
    while True:
        page = ledger.read_log(after, 500)
        if not page.events:
            break
        events += page.events
        after = page.last_id
    return [e for e in events if stream is None or e.originator_id == stream]


def states(ledger: Ledger, stream: UUID | None = None) -> list[str]:
    """The opened state of every stored event as text, for searching."""
    return [repr(vars(e)) for e in stored_events(ledger, stream)]


def identity_rows(ledger: Ledger, subject_id: UUID) -> int:
    with ledger.read_models.transaction(write=False) as cur:
        cur.execute("SELECT COUNT(*) FROM identity_index WHERE subject_id = ?", (str(subject_id),))
        count = int(cur.fetchone()[0])
        cur.execute("SELECT COUNT(*) FROM parent_links WHERE student_id = ?", (str(subject_id),))
        return count + int(cur.fetchone()[0])


# -- MIN-1 ------------------------------------------------------------------------------------
def test_MIN_1_student_email_is_kept_only_as_a_keyed_hash(services: Services) -> None:
    ledger, accounts, sign_in = services.ledger, services.accounts, services.sign_in
    address = f"Ana.{uuid4().hex[:8]}@Example.org"
    student_id = accounts.sign_up_student("Ana", "15", f"  {address} ", PASSWORD)

    # The record holds HMAC-SHA256 under the versioned server secret, over the trimmed,
    # lower-cased address, computed here independently of the ledger's code.
    secret = ledger.keys.server_secret(secret_subject(1))
    expected = (1).to_bytes(2, "big") + hmac.new(
        secret, b"student_email\x00" + address.lower().encode(), hashlib.sha256).digest()
    student = ledger.live(student_id, Student)
    assert student.email_hash == expected.hex()
    hashes = [e.email_hash for e in stored_events(ledger, student_id)
              if isinstance(e, Student.EmailHashSet)]
    assert hashes == [expected.hex()]
    assert not any(address.lower() in s.lower() for s in states(ledger))
    assert haystack(services.settings).find({"address": address.encode(),
                                             "address lower": address.lower().encode()}) == []

    # It serves sign-in, whatever the case and spacing typed.
    assert sign_in.with_password(f" {address.upper()}", PASSWORD).id == student_id

    # A new address releases the old hash: the old one finds nobody and is free again.
    new_address = f"ana.new.{uuid4().hex[:8]}@example.org"
    accounts.set_email(student_id, new_address)
    assert ledger.identity.find(STUDENT_EMAIL, address) is None
    assert ledger.identity.find(STUDENT_EMAIL, new_address) == student_id
    with pytest.raises(SignInFailed):
        sign_in.with_password(address, PASSWORD)
    assert sign_in.with_password(new_address, PASSWORD).id == student_id
    other = accounts.sign_up_student("Bea", "16", address, PASSWORD)
    assert ledger.identity.find(STUDENT_EMAIL, address) == other
    with pytest.raises(AlreadyInUse):
        accounts.set_email(student_id, address.upper())
    assert not any(a.lower() in s.lower() for s in states(ledger)
                   for a in (address, new_address))
    assert haystack(services.settings).find({"old": address.lower().encode(),
                                             "new": new_address.encode()}) == []


# -- MIN-2 ------------------------------------------------------------------------------------
def test_MIN_2_teacher_and_parent_emails_are_stored_sealed(services: Services) -> None:
    ledger, accounts = services.ledger, services.accounts
    teacher_email = f"ms.t.{uuid4().hex[:8]}@school.example"
    parent_email = f"parent.{uuid4().hex[:8]}@home.example"
    teacher_id = accounts.sign_up_teacher("Ms T", teacher_email, PASSWORD)
    student_id = accounts.sign_up_student("Cal", "11", f"cal.{uuid4().hex[:8]}@example.org",
                                          PASSWORD, parent_email=parent_email)

    # Stored: readable with the subject's key (it is used to write to them)...
    assert ledger.live(teacher_id, Teacher).email == teacher_email
    assert ledger.live(student_id, Student).consent("parent_email") == parent_email
    assert any(teacher_email in s for s in states(ledger, teacher_id))
    assert any(parent_email in s for s in states(ledger, student_id))
    # ...and only in the stream of its own subject, never in the clear anywhere at rest.
    assert not any(parent_email in s for s in states(ledger, teacher_id))
    assert haystack(services.settings).find({"teacher": teacher_email.encode(),
                                             "parent": parent_email.encode()}) == []
    assert ledger.identity.find(TEACHER_EMAIL, teacher_email.upper()) == teacher_id
    assert ledger.identity.children_of(
        ledger.identity.token(PARENT_EMAIL, parent_email.upper())) == {student_id}


def test_MIN_2_a_teacher_changing_only_the_case_of_their_email_can_still_sign_in(
        services: Services) -> None:
    ledger, accounts = services.ledger, services.accounts
    address = f"ms.u.{uuid4().hex[:8]}@school.example"
    teacher_id = accounts.sign_up_teacher("Ms U", address, PASSWORD)
    accounts.set_email(teacher_id, address.upper())
    assert ledger.live(teacher_id, Teacher).email == address.upper()
    assert ledger.identity.find(TEACHER_EMAIL, address) == teacher_id
    assert services.sign_in.with_password(address, PASSWORD).id == teacher_id
    changed = f"ms.u.{uuid4().hex[:8]}@other.example"
    accounts.set_email(teacher_id, changed)
    assert ledger.identity.find(TEACHER_EMAIL, address) is None
    assert ledger.identity.find(TEACHER_EMAIL, changed) == teacher_id


# -- MIN-3 ------------------------------------------------------------------------------------
def test_MIN_3_no_birth_date_can_be_given_and_ages_are_4_to_20_or_21_plus(
        ledger: Ledger) -> None:
    accounts, sections = Accounts(ledger), Sections(ledger)
    # No command has a place for a birth date.
    for command in (accounts.sign_up_student, accounts.sign_up_teacher, accounts.give_age,
                    sections.create_student, ledger.register_student, ledger.register_teacher,
                    ledger.register):
        names = " ".join(inspect.signature(command).parameters).lower()
        assert "birth" not in names and "dob" not in names and "born" not in names, command
    with pytest.raises(TypeError):
        ledger.register_student("Dee", None, birth_date=date(2015, 3, 1))  # type: ignore[call-arg]

    for value in AGES:
        student_id = ledger.register_student(f"Age {value}", value)
        assert ledger.live(student_id, Student).age == value
    before = len(stored_events(ledger))
    refused: list[Any] = ["3", "21", "22", "0", "-1", "2015-03-01", "03/01/2015", "12.5", " 12",
                          "", 12, date(2015, 3, 1)]
    for value in refused:
        with pytest.raises(InvalidRecord) as raised:
            ledger.register_student("Eve", value)
        assert str(raised.value) == 'age: must be a whole number from 4 to 20, or "21+"'
    student_id = ledger.register_student("Fay", "9")
    for value in refused:
        with pytest.raises(InvalidRecord):
            accounts.give_age(student_id, value)
    assert len(stored_events(ledger)) == before + 1
    for e in stored_events(ledger):
        assert not any("birth" in key or "dob" in key for key in vars(e))
        assert not any(value == date(2015, 3, 1) or value in ("2015-03-01", "03/01/2015")
                       for value in vars(e).values())

    # The day an age was given has come already: a date to come is refused, wherever it goes.
    with pytest.raises(InvalidRecord) as raised:
        accounts.give_age(student_id, "10", date(2099, 1, 1))
    assert raised.value.field == "age_given_on"
    with pytest.raises(InvalidRecord):
        ledger.register_student("Fay", "10", date(2099, 1, 1))
    with pytest.raises(InvalidRecord):
        ledger.register(Student, "Fay", "14", date(2099, 1, 1))
    assert len(stored_events(ledger)) == before + 1

    # The age is kept with the date it was given, and may be taken away (then: under 13).
    accounts.give_age(student_id, "10", date(2025, 9, 1))
    fay = ledger.live(student_id, Student)
    assert (fay.age, fay.age_given_on) == ("10", date(2025, 9, 1))
    accounts.give_age(student_id, None)
    assert ledger.live(student_id, Student).under_13


def test_MIN_3_a_missing_age_counts_as_under_13_for_every_age_rule(ledger: Ledger) -> None:
    accounts, sections = Accounts(ledger), Sections(ledger)
    ageless = ledger.register_student("Gus", None)
    assert ledger.live(ageless, Student).age is None
    with pytest.raises(InvalidRecord):  # AGE-2
        accounts.give_race(ageless, "asian")
    with pytest.raises(InvalidRecord):  # AGE-6
        accounts.give_study_contact(ageless, "gus@example.org")
    teacher = ledger.register_teacher("Mr V")
    section = sections.create(teacher, "Class", "csf", "3", "word")
    with pytest.raises(ConsentRequired):  # AGE-1
        sections.create_student(teacher, section, "Hal")
    sections.add_student(teacher, section, ageless)
    sections.estimate_race(teacher, section, {"asian": 50})  # AGE-2: a class of under-13s
    with pytest.raises(InvalidRecord):  # a personal sign-up needs an age
        accounts.sign_up_student("Ivy", None, "ivy@example.org", PASSWORD)  # type: ignore[arg-type]


def test_MIN_3_teachers_are_21_plus(ledger: Ledger) -> None:
    accounts = Accounts(ledger)
    for value in ("20", "18", "12", None):
        with pytest.raises(InvalidRecord):
            ledger.register_teacher("Ms W", value)  # type: ignore[arg-type]
        with pytest.raises(InvalidRecord):
            ledger.register(Teacher, "Ms W", value)
    teacher_id = ledger.register_teacher("Ms W")
    assert ledger.live(teacher_id, Teacher).age == "21+"
    with pytest.raises(PersonNotFound):
        accounts.give_age(teacher_id, "12")
    assert ledger.live(teacher_id, Teacher).age == "21+"


# -- MIN-7 ------------------------------------------------------------------------------------
def test_MIN_7_usernames_are_generated_from_the_display_name_unique_with_a_suffix(
        ledger: Ledger) -> None:
    def username(name: str, age: str | None = "10") -> str:
        person: Person = ledger.live(ledger.register_student(name, age))
        assert person.display_name == name.strip()  # the display name stays free
        return str(person.username)

    assert [username("Ana") for _ in range(3)] == ["ana", "ana1", "ana2"]
    assert username("  José Álvarez-Núñez ") == "josealvareznunez"
    assert username("ANA") == "ana3"
    assert username("李小龙") == "coder"
    assert username("🦊") == "coder1"
    assert username("Ana1") == "ana11"  # a base that looks like a suffixed one: suffixed too
    teacher: Teacher = ledger.live(ledger.register_teacher("Ana"))
    assert teacher.username.startswith("ana")
    found = {ledger.identity.find(USERNAME, u) for u in ("ana", "ANA1", "ana2", "coder")}
    assert None not in found and len(found) == 4


# -- AGE-2 (a person's race) ------------------------------------------------------------------
def test_AGE_2_race_only_for_13_plus_from_a_fixed_list_never_for_teachers(
        ledger: Ledger) -> None:
    accounts = Accounts(ledger)
    older = ledger.register_student("Jo", "13")
    accounts.give_race(older, "hispanic")
    assert ledger.live(older, Student).race == "hispanic"
    with pytest.raises(InvalidRecord):
        accounts.give_race(older, "martian")
    for age in ("12", "4", None):
        young = ledger.register_student("Kit", age)
        for race in RACES:
            with pytest.raises(InvalidRecord):
                accounts.give_race(young, race)
        accounts.give_race(young, None)  # no race: always allowed, and nothing written
        assert not any(isinstance(e, Student.RaceGiven) for e in stored_events(ledger, young))
    teacher = ledger.register_teacher("Mr X")
    with pytest.raises(InvalidRecord):
        accounts.give_race(teacher, "white")
    assert not any("race" in s for s in states(ledger, teacher))

    # An age that drops under 13 (or goes missing) takes the race with it.
    accounts.give_age(older, "12")
    assert ledger.live(older, Student).race is None
    assert [e.race for e in stored_events(ledger, older)
            if isinstance(e, Student.RaceGiven)] == ["hispanic", None]
    accounts.give_age(older, "14")
    accounts.give_race(older, "asian")
    accounts.give_age(older, None)
    assert ledger.live(older, Student).race is None


# -- AGE-5 ------------------------------------------------------------------------------------
def test_AGE_5_every_consent_change_is_an_event_with_before_and_after(ledger: Ledger) -> None:
    accounts = Accounts(ledger)
    teacher = ledger.register_teacher("Ms Y")
    student = ledger.register_student("Lu", "14")
    parent = f"lu.parent.{uuid4().hex[:6]}@example.org"
    parent_token = ledger.identity.token(PARENT_EMAIL, parent)

    accounts.opt_in_to_email(teacher, True)
    accounts.opt_in_to_email(teacher, True)  # no change, no event
    accounts.opt_in_to_email(teacher, False)
    accounts.share_with_partner(teacher, "khan", True)
    accounts.attest_parental_consent(teacher)
    accounts.attest_parental_consent(teacher)
    accounts.share_with_partner(student, "khan", True)
    accounts.share_with_partner(student, "khan", False)
    accounts.connect_provider(student, "google", "g-123")
    accounts.disconnect_provider(student, "google")
    accounts.disconnect_provider(student, "google")
    accounts.link_parent_email(student, parent)
    assert ledger.identity.children_of(parent_token) == {student}
    accounts.link_parent_email(student, None)
    assert ledger.identity.children_of(parent_token) == set()

    def changes(person: UUID) -> list[tuple[str, object, object]]:
        return [(e.consent, e.before, e.after) for e in accounts.consents(person)]

    assert changes(teacher) == [
        ("email_opt_in", None, True),
        ("email_opt_in", True, False),
        ("partner_sharing:khan", None, True),
        (f"parental_consent:{CURRENT_POLICY_VERSION}", None, True),
    ]
    assert changes(student) == [
        ("partner_sharing:khan", None, True),
        ("partner_sharing:khan", True, False),
        ("sign_in:google", None, "g-123"),
        ("sign_in:google", "g-123", None),
        ("parent_email", None, parent),
        ("parent_email", parent, None),
    ]
    # Each is in the log as it was saved, with its time: who (the stream), when, what.
    logged = [e for e in stored_events(ledger) if isinstance(e, Person.ConsentChanged)]
    assert len(logged) == 10 and all(e.timestamp is not None for e in logged)
    with pytest.raises(InvalidRecord):
        accounts.attest_parental_consent(teacher, "2019-01-01")
    with pytest.raises(InvalidRecord):
        accounts.connect_provider(student, "myspace", "x")
    assert len([e for e in stored_events(ledger) if isinstance(e, Person.ConsentChanged)]) == 10


def test_AGE_5_a_third_party_account_reconnected_with_another_id_frees_the_old_one(
        ledger: Ledger) -> None:
    accounts = Accounts(ledger)
    first, second = ledger.register_student("Mo", "15"), ledger.register_student("Ned", "15")
    accounts.connect_provider(first, "google", "g-old")
    with pytest.raises(AlreadyInUse):
        accounts.connect_provider(second, "google", "g-old")
    accounts.connect_provider(first, "google", "g-new")
    assert ledger.live(first, Student).consent("sign_in:google") == "g-new"
    accounts.connect_provider(second, "google", "g-old")  # no longer anyone else's
    with pytest.raises(AlreadyInUse):
        accounts.connect_provider(second, "google", "g-new")


# -- AGE-6 ------------------------------------------------------------------------------------
def test_AGE_6_study_contact_only_18_plus_and_removed_when_the_age_drops(ledger: Ledger) -> None:
    accounts = Accounts(ledger)
    contact = f"study.{uuid4().hex[:8]}@example.org"
    for age in ("17", "12", None):
        minor = ledger.register_student("Oz", age)
        version = ledger.live(minor, Student).version
        with pytest.raises(InvalidRecord) as raised:
            accounts.give_study_contact(minor, contact)
        assert raised.value.field == "study_contact" and contact not in str(raised.value)
        assert ledger.live(minor, Student).version == version  # nothing kept
    assert not any(contact in s for s in states(ledger))

    adult = ledger.register_student("Pat", "18")
    accounts.give_study_contact(adult, contact)
    assert ledger.live(adult, Student).consent("study_contact") == contact
    accounts.give_age(adult, "19")
    assert ledger.live(adult, Student).consent("study_contact") == contact
    accounts.give_age(adult, "17")
    assert ledger.live(adult, Student).consent("study_contact") is None
    assert [(e.before, e.after) for e in accounts.consents(adult)
            if e.consent == "study_contact"] == [(None, contact), (contact, None)]
    accounts.give_age(adult, "18")
    assert ledger.live(adult, Student).consent("study_contact") is None  # not back by itself


# -- erasure ----------------------------------------------------------------------------------
def test_erasure_removes_every_identity_row_of_the_subject(services: Services) -> None:
    ledger, accounts = services.ledger, services.accounts
    address = f"quin.{uuid4().hex[:8]}@example.org"
    parent = f"quin.parent.{uuid4().hex[:8]}@example.org"
    student = accounts.sign_up_student("Quin", "12", address, PASSWORD, parent_email=parent)
    accounts.connect_provider(student, "microsoft", "ms-77")
    sibling = ledger.register_student("Quin", "9")
    accounts.link_parent_email(sibling, parent)
    username = ledger.live(student, Student).username
    assert username == "quin" and identity_rows(ledger, student) == 4

    ledger.erase_subject(student, "parent_request")
    assert identity_rows(ledger, student) == 0
    assert ledger.identity.find(USERNAME, "quin") is None
    assert ledger.identity.find(STUDENT_EMAIL, address) is None
    assert ledger.identity.children_of(ledger.identity.token(PARENT_EMAIL, parent)) == {sibling}
    with pytest.raises(KeyErased):
        accounts.give_age(student, "13")
    # What they held is free again: the username goes to the next "Quin", the address and the
    # third-party account to whoever has them now.
    assert ledger.live(ledger.register_student("Quin", "10"), Student).username == "quin"
    accounts.connect_provider(sibling, "microsoft", "ms-77")
    again = accounts.sign_up_student("Quin", "15", address, PASSWORD)
    assert ledger.identity.find(STUDENT_EMAIL, address) == again


def test_MIN_1_the_same_address_given_again_after_a_secret_rotation_keeps_its_row(
        ledger: Ledger) -> None:
    accounts = Accounts(ledger)
    address = f"rot.{uuid4().hex[:8]}@example.org"
    student_id = accounts.sign_up_student("Rot", "15", address, PASSWORD)
    ledger.identity = IdentityIndex(ledger.read_models, ledger.keys, version=2)  # rotated
    accounts.set_email(student_id, address.upper())
    assert ledger.live(student_id, Student).email_hash == ledger.identity.token(
        STUDENT_EMAIL, address).hex()
    assert ledger.identity.find(STUDENT_EMAIL, address) == student_id
    assert SignIn(ledger).with_password(address, PASSWORD).id == student_id


def test_MIN_2_a_refused_parent_email_at_sign_up_writes_and_spends_nothing(
        ledger: Ledger) -> None:
    accounts = Accounts(ledger)
    reserved = ledger.keys.new_subject  # ids come with a key made ahead: none may be spent
    spent: list[UUID] = []

    def spending() -> UUID:
        spent.append(reserved())
        return spent[-1]

    ledger.keys.new_subject = spending  # type: ignore[method-assign]
    events = len(stored_events(ledger))
    with pytest.raises(InvalidRecord) as raised:
        accounts.sign_up_student("Uma", "10", "uma@example.org", PASSWORD,
                                 parent_email="not an address")
    assert raised.value.field == "parent_email"
    assert spent == [] and len(stored_events(ledger)) == events
    assert ledger.identity.find(USERNAME, "uma") is None
    assert ledger.identity.find(STUDENT_EMAIL, "uma@example.org") is None


def test_MIN_1_an_address_is_one_accounts_whether_student_or_teacher(services: Services) -> None:
    """Sign-in by email looks among students' hashes, then teachers' addresses: an address of
    both kinds would lock one of them out. So a taken address is taken for either kind."""
    ledger, accounts, sign_in = services.ledger, services.accounts, services.sign_in
    teachers = f"both.t.{uuid4().hex[:8]}@example.org"
    students = f"both.s.{uuid4().hex[:8]}@example.org"
    teacher = accounts.sign_up_teacher("Ms Both", teachers, PASSWORD)
    student = accounts.sign_up_student("Both", "15", students, PASSWORD)
    events = len(stored_events(ledger))
    with pytest.raises(AlreadyInUse):
        accounts.sign_up_student("Copy", "15", teachers.upper(), "another password")
    with pytest.raises(AlreadyInUse):
        accounts.sign_up_teacher("Ms Copy", students, "another password")
    with pytest.raises(AlreadyInUse):
        accounts.set_email(student, teachers)
    with pytest.raises(AlreadyInUse):
        accounts.set_email(teacher, students)
    assert len(stored_events(ledger)) == events
    assert ledger.identity.find(USERNAME, "copy") is None
    assert sign_in.with_password(teachers, PASSWORD).id == teacher
    assert sign_in.with_password(students, PASSWORD).id == student


def test_a_profile_change_is_saved_whole_or_not_at_all(ledger: Ledger) -> None:
    accounts = Accounts(ledger)
    child = ledger.register_student("Ana", "12")
    version = ledger.live(child).version

    with pytest.raises(InvalidRecord) as refused:
        accounts.change_profile(child, ProfileChange(display_name="Anna", gender="female",
                                                     race="asian"))
    assert refused.value.field == "race"
    assert ledger.live(child).version == version  # neither the name nor the gender was kept

    accounts.change_profile(child, ProfileChange(age="13", race="asian", display_name="Anna"))
    after = ledger.live(child)
    assert (after.age, after.race, after.display_name, after.gender) == ("13", "asian", "Anna",
                                                                         None)
