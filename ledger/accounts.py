"""Account commands: sign-up, profile, credentials and consents (MIN, AGE), for any door.

Each command loads the person, asks the aggregate to change (the aggregate holds the rules of
one record), claims any unique value it needs (`Ledger.claiming`), and saves. Callers are the
HTTP routes and the command line; who may run a command on whom is decided before, in `api`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from crypto import passwords
from crypto.blind_index import normalise_email
from ledger import people
from ledger.application import AlreadyInUse, Claim, Ledger
from ledger.identity import PROVIDER, STUDENT_EMAIL, TEACHER_EMAIL
from ledger.people import InvalidRecord, Person, Student, Teacher
from ledger.policy import CURRENT_POLICY_VERSION
from ledger.schools import School, new_school

MIN_PASSWORD = 8


def valid_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidRecord("password", f"must be at least {MIN_PASSWORD} characters")
    if len(password.encode()) > passwords.MAX_PASSWORD_BYTES:
        raise InvalidRecord("password", f"must be at most {passwords.MAX_PASSWORD_BYTES} bytes")
    return password


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()  # a profile field left as it is


@dataclass(frozen=True)
class ProfileChange:
    """The fields of `Accounts.change_profile`; each left as it is unless given."""

    display_name: str | None = KEEP
    age: str | None = KEEP
    age_given_on: date | None = None
    race: str | None = KEEP
    gender: str | None = KEEP


class Accounts:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    # -- sign-up (personal logins) ---------------------------------------------------------
    def sign_up_student(self, display_name: str, age: str, email: str, password: str, *,
                        parent_email: str | None = None, gender: str | None = None) -> UUID:
        """A personal student account: the email is kept only as its keyed hash (MIN-1). An
        under-13 needs a parent's email (COPPA: the parent is who gets told)."""
        address = people.email("email", email)
        if people.age(age) is None:
            raise InvalidRecord("age", "is required")
        if people.is_under_13(age) and parent_email is None:
            raise InvalidRecord("parent_email", "is required for a student under 13")
        if parent_email is not None:  # before an id (and the key made with it) is spent
            people.email("parent_email", parent_email)
        self._not_the_other_kinds(STUDENT_EMAIL, address, None)
        hashed = passwords.hash_password(valid_password(password))

        def then(person: Person, claim: Claim) -> list[Any]:
            assert isinstance(person, Student)
            claim(STUDENT_EMAIL, address, person.id)
            person.set_email_hash(self.ledger.identity.token(STUDENT_EMAIL, address).hex())
            person.set_password(hashed)
            if parent_email is not None:
                person.link_parent_email(parent_email)
            return []

        student = self.ledger.register(Student, display_name, age, login_type="personal",
                                       gender=gender, then=then)
        if parent_email is not None:
            self.ledger.identity.link_parent(parent_email, student.id)
        return student.id

    def sign_up_teacher(self, display_name: str, email: str, password: str, *,
                        school_id: UUID | None = None, email_opt_in: bool = False,
                        gender: str | None = None) -> UUID:
        """MIN-2: a teacher's email is kept (sealed), since it is used to write to them."""
        address = people.email("email", email)
        self._not_the_other_kinds(TEACHER_EMAIL, address, None)
        hashed = passwords.hash_password(valid_password(password))
        if school_id is not None:
            self.school(school_id)

        def then(person: Person, claim: Claim) -> list[Any]:
            assert isinstance(person, Teacher)
            claim(TEACHER_EMAIL, address, person.id)
            person.set_email(address)
            person.set_password(hashed)
            if school_id is not None:
                person.choose_school(school_id)
            person.opt_in_to_email(email_opt_in)
            return []

        return self.ledger.register(Teacher, display_name, "21+", gender=gender, then=then).id

    # -- profile ---------------------------------------------------------------------------
    def rename(self, person_id: UUID, display_name: str) -> None:
        self.ledger.rename(person_id, display_name)

    def give_age(self, student_id: UUID, age: str | None, given_on: date | None = None) -> None:
        student: Student = self.ledger.live(student_id, Student)
        student.change_age(age, given_on or datetime.now(UTC).date())
        self.ledger.save(student)

    def change_profile(self, person_id: UUID, change: ProfileChange) -> None:
        """Several profile fields at once, saved together or not at all. Age goes first, so
        that a new age of 13 and a race can come together (AGE-2)."""
        person: Person = self.ledger.live(person_id)
        if change.age is not KEEP:
            if not isinstance(person, Student):
                raise InvalidRecord("age", 'a teacher is "21+"')
            person.change_age(change.age,
                              change.age_given_on or datetime.now(UTC).date())
        elif change.age_given_on is not None:
            raise InvalidRecord("age_given_on", "is given with an age")
        if change.race is not KEEP:
            if not isinstance(person, Student):
                raise InvalidRecord("race", "is never recorded for teachers (AGE-2)")
            person.give_race(change.race)
        if change.gender is not KEEP and change.gender != person.gender:
            person.give_gender(people.one_of("gender", change.gender,
                                             people.GENDERS))
        if change.display_name is not KEEP:
            if not isinstance(change.display_name, str):
                raise InvalidRecord("display_name", "must not be null")
            person.rename(people.display_name(change.display_name))
        if person.pending_events:
            self.ledger.save(person)

    def give_gender(self, person_id: UUID, gender: str | None) -> None:
        self.change_profile(person_id, ProfileChange(gender=gender))

    def give_race(self, person_id: UUID, race: str | None) -> None:
        """AGE-2: 13 or older, fixed list, never for teachers."""
        self.change_profile(person_id, ProfileChange(race=race))

    def set_password(self, person_id: UUID, password: str) -> None:
        person: Person = self.ledger.live(person_id)
        person.set_password(passwords.hash_password(valid_password(password)))
        self.ledger.save(person)

    def set_email(self, person_id: UUID, email: str) -> None:
        """A student's as its keyed hash only (MIN-1); a teacher's sealed (MIN-2)."""
        address = people.email("email", email)
        person: Person = self.ledger.live(person_id)
        purpose = STUDENT_EMAIL if isinstance(person, Student) else TEACHER_EMAIL
        self._not_the_other_kinds(purpose, address, person.id)
        with self.ledger.claiming() as claim:
            claim(purpose, address, person.id)
            if isinstance(person, Student):
                old = person.email_hash
                person.set_email_hash(self.ledger.identity.token(purpose, address).hex())
            else:
                assert isinstance(person, Teacher)
                old = person.email
                person.set_email(address)
            self.ledger.save(person)
        if old is not None and isinstance(person, Teacher) \
                and normalise_email(old) != normalise_email(address):
            # Not when only the case changed: the old address's row is the new one's.
            self.ledger.identity.release(purpose, old, person.id)
        if old is not None and isinstance(person, Student) and old != person.email_hash \
                and not self.ledger.identity.blind.matches(bytes.fromhex(old), purpose,
                                                           normalise_email(address)):
            # Not when the old hash is the same address's under an older secret: the index row
            # that the claim found is that one.
            self.ledger.identity.release_token(purpose, bytes.fromhex(old), person.id)

    def _not_the_other_kinds(self, purpose: str, address: str, person_id: UUID | None) -> None:
        """An address belongs to one account, student or teacher: sign-in by email looks among
        students' hashes first, so a student's copy of a teacher's address would lock the
        teacher out (and the other way round). Refused as any address in use is."""
        other = TEACHER_EMAIL if purpose == STUDENT_EMAIL else STUDENT_EMAIL
        owner = self.ledger.identity.find(other, address)
        if owner is not None and owner != person_id:
            raise AlreadyInUse(purpose)

    # -- consents (AGE-5): each an event with its before and after --------------------------
    def link_parent_email(self, student_id: UUID, address: str | None) -> None:
        student: Student = self.ledger.live(student_id, Student)
        before = student.consent("parent_email")
        if student.link_parent_email(address):
            self.ledger.save(student)
            if isinstance(before, str):
                self.ledger.identity.unlink_parent(before, student.id)
            if address is not None:
                self.ledger.identity.link_parent(address, student.id)

    def connect_provider(self, person_id: UUID, provider: str, provider_subject: str) -> None:
        person: Person = self.ledger.live(person_id)
        before = person.consent(f"sign_in:{provider}")
        with self.ledger.claiming() as claim:
            claim(PROVIDER, f"{provider}:{provider_subject}", person.id)
            if person.connect_provider(provider, provider_subject):
                self.ledger.save(person)
        if isinstance(before, str) and before != provider_subject:
            # Reconnected with another account of the provider: the old one is no longer theirs.
            self.ledger.identity.release(PROVIDER, f"{provider}:{before}", person.id)

    def disconnect_provider(self, person_id: UUID, provider: str) -> None:
        person: Person = self.ledger.live(person_id)
        before = person.consent(f"sign_in:{provider}")
        if person.disconnect_provider(provider):
            self.ledger.save(person)
            self.ledger.identity.release(PROVIDER, f"{provider}:{before}", person.id)

    def share_with_partner(self, person_id: UUID, partner: str, opted_in: bool) -> None:
        person: Person = self.ledger.live(person_id)
        if person.share_with_partner(partner, opted_in):
            self.ledger.save(person)

    def give_study_contact(self, student_id: UUID, contact: str | None) -> None:
        """AGE-6: refused (and nothing kept) for anyone under 18."""
        student: Student = self.ledger.live(student_id, Student)
        if student.give_study_contact(contact):
            self.ledger.save(student)

    def opt_in_to_email(self, teacher_id: UUID, opted_in: bool) -> None:
        teacher: Teacher = self.ledger.live(teacher_id, Teacher)
        if teacher.opt_in_to_email(opted_in):
            self.ledger.save(teacher)

    def attest_parental_consent(self, teacher_id: UUID,
                                policy_version: str = CURRENT_POLICY_VERSION) -> None:
        """AGE-1: the teacher attests that the school holds parental consent."""
        if policy_version != CURRENT_POLICY_VERSION:
            raise InvalidRecord("policy_version", f"must be {CURRENT_POLICY_VERSION}, the policy"
                                                  " in force")
        teacher: Teacher = self.ledger.live(teacher_id, Teacher)
        if teacher.attest_parental_consent(policy_version):
            self.ledger.save(teacher)

    def consents(self, person_id: UUID) -> list[Person.ConsentChanged]:
        """AGE-5: the consent history, oldest first, with before and after of each change."""
        self.ledger.live(person_id)
        return [e for e in self.ledger.history(person_id)
                if isinstance(e, Person.ConsentChanged)]

    # -- schools ---------------------------------------------------------------------------
    def register_school(self, name: str, district: str, school_type: str) -> UUID:
        school = new_school(name, district, school_type)
        self.ledger.save(school)
        return school.id

    def school(self, school_id: UUID) -> School:
        found: School | None = self.ledger.aggregate(school_id, School)
        if found is None:
            raise SchoolNotFound(school_id)
        return found

    def choose_school(self, teacher_id: UUID, school_id: UUID | None) -> None:
        if school_id is not None:
            self.school(school_id)
        teacher: Teacher = self.ledger.live(teacher_id, Teacher)
        if teacher.school_id != school_id:
            teacher.choose_school(school_id)
            self.ledger.save(teacher)


class SchoolNotFound(LookupError):
    def __init__(self, school_id: UUID) -> None:
        super().__init__(f"no school {school_id}")
