"""Students and teachers: each is a data subject whose stream is sealed under their own key.

Every value here is personal data and rests only in that sealed stream. The rules of the
policy that concern one person's own record live here, so no door (HTTP, command line,
import) can get round them: no birth date (MIN-3), no race under 13 or for teachers (AGE-2),
no study contact under 18 (AGE-6), consents as events with their before and after (AGE-5).

Validation errors name the field and the rule, never the value: messages end up in logs.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger import bounds
from ledger.bounds import InvalidRecord

__all__ = ["InvalidRecord"]  # the domain's refusal, defined with the bounds it enforces

AGES = (*(str(n) for n in range(4, 21)), "21+")
ADULT_AGES = ("18", "19", "20", "21+")
MAX_DISPLAY_NAME = bounds.MAX_DISPLAY_NAME
# Fixed lists: free text here would invite more than the policy allows.
GENDERS = ("female", "male", "nonbinary", "not_listed", "prefer_not_to_say")
RACES = ("american_indian", "asian", "black", "hispanic", "hawaiian", "white", "other",
         "prefer_not_to_say")
LOGIN_TYPES = ("personal", "teacher_managed", "roster_managed")
PROVIDERS = ("google", "microsoft", "clever")
SECRET_KINDS = ("word", "picture")

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,253}\.[^@\s.]{1,63}$")
_REGION = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")


# -- values -------------------------------------------------------------------------------
def display_name(value: str) -> str:
    """MIN-7: free text, but short, printable, and not blank."""
    name = bounds.unicode_text("display_name", value)
    if len(name) > 4 * MAX_DISPLAY_NAME:  # before normalising: no work on a megabyte
        raise InvalidRecord("display_name", f"must be at most {MAX_DISPLAY_NAME} characters")
    name = unicodedata.normalize("NFC", name).strip()
    if not name:
        raise InvalidRecord("display_name", "must not be blank")
    if len(name) > MAX_DISPLAY_NAME:
        raise InvalidRecord("display_name", f"must be at most {MAX_DISPLAY_NAME} characters")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in name):
        raise InvalidRecord("display_name", "must not contain control characters")
    return name


def short_text(field: str, value: str, max_chars: int) -> str:
    """A name of a thing (a section, a project, a school): 1 to `max_chars` printable
    characters."""
    text = bounds.unicode_text(field, value)
    if len(text) > 4 * max_chars:  # before normalising: no work on a megabyte
        raise InvalidRecord(field, f"must be 1-{max_chars} characters")
    text = unicodedata.normalize("NFC", text).strip()
    if not text or len(text) > max_chars:
        raise InvalidRecord(field, f"must be 1-{max_chars} characters")
    if any(unicodedata.category(c).startswith("C") for c in text):
        raise InvalidRecord(field, "must not contain control characters")
    return text


def age(value: str | None) -> str | None:
    """MIN-3: an age from 4 to 20, or "21+", or none given. Never a date of birth."""
    if value is not None and value not in AGES:
        raise InvalidRecord("age", 'must be a whole number from 4 to 20, or "21+"')
    return value


def day_given(value: date) -> date:
    """MIN-3: the day an age was given, which has come already (a day or so ahead is allowed
    for the time zones). A date to come is no such day, whatever it is."""
    day = value.date() if isinstance(value, datetime) else value
    if not isinstance(day, date) or day > datetime.now(UTC).date() + timedelta(days=1):
        raise InvalidRecord("age_given_on", "must be the day the age was given, not later")
    return bounds.day_happened("age_given_on", day)


def is_under_13(age_value: str | None) -> bool:
    """A missing age counts as under 13 for every age rule (MIN-3)."""
    return age_value is None or (age_value != "21+" and int(age_value) < 13)


def is_adult(age_value: str | None) -> bool:
    return age_value in ADULT_AGES


def one_of(field: str, value: str | None, allowed: tuple[str, ...]) -> str | None:
    if value is not None and value not in allowed:
        raise InvalidRecord(field, f"must be one of {', '.join(allowed)}")
    return value


def email(field: str, value: str) -> str:
    """An address as given, NFKC-normalised and trimmed; refused with anything invisible in
    it, so that no second spelling of one address can claim a second account."""
    if len(value) > 4 * bounds.MAX_EMAIL:  # before normalising: no work on a megabyte
        raise InvalidRecord(field, "must be an email address")
    address = bounds.identifier(field, value, bounds.MAX_EMAIL)
    if not _EMAIL.match(address):
        raise InvalidRecord(field, "must be an email address")
    return address


def slug(field: str, value: str) -> str:
    if not _SLUG.match(value):
        raise InvalidRecord(field, "must be 1-40 lower-case letters, digits, '_' or '-'")
    return value


def region(value: str | None) -> str | None:
    """MIN-5: a country, or a country and state (ISO 3166), never anything finer."""
    if value is not None and not _REGION.match(value):
        raise InvalidRecord("region", 'must be a country or country-state code, as "US-WA"')
    return value


@dataclass(frozen=True)
class PendingDeletion:
    """A soft delete waiting for its grace window to end (DEL-1): why, who asked (a role and
    an opaque principal id, never a name), when, and the teacher it cascaded from (DEL-5)."""

    reason: str
    requested_by: str
    requested_at: datetime
    cascade_of: UUID | None = None
    dependents: tuple[UUID, ...] = ()


# -- the aggregates -----------------------------------------------------------------------
class Person(Aggregate):
    """What every account has."""

    class Registered(Aggregate.Created):
        display_name: str
        username: str
        age: str | None
        age_given_on: date | None
        login_type: str
        gender: str | None

    class Renamed(Aggregate.Event):
        display_name: str

    class AgeGiven(Aggregate.Event):
        age: str | None
        age_given_on: date

    class GenderGiven(Aggregate.Event):
        gender: str | None

    class PasswordSet(Aggregate.Event):
        password_hash: str

    class SignedIn(Aggregate.Event):
        method: str
        region: str | None

    class DeletionRequested(Aggregate.Event):
        """DEL-1: a soft delete. Nothing else changes: recovery (DEL-2) is withdrawing it.
        `cascade_of` is the teacher whose own deletion took this student with it (DEL-5)."""

        reason: str
        requested_by: str
        requested_at: datetime  # from the lifecycle's clock, which tests move
        cascade_of: UUID | None
        dependents: list[UUID]  # a teacher's: the students deleted with them (DEL-5)

    class DeletionWithdrawn(Aggregate.Event):
        """DEL-2: recovered within the grace window, exactly as it was."""

        recovered_by: str

    class InactivityWarned(Aggregate.Event):
        """DEL-6: told (a teacher, by email) that the unused account will be deleted."""

        warned_at: datetime

    class ConsentChanged(Aggregate.Event):
        """AGE-5: every consent is one of these, with its state before and after."""

        consent: str
        before: object
        after: object

    @event(Registered)
    def __init__(self, id: UUID, display_name: str, username: str, age: str | None,
                 age_given_on: date | None, login_type: str, gender: str | None) -> None:
        self.display_name = display_name
        self.username = username
        self.age = age
        self.age_given_on = age_given_on
        self.login_type = login_type
        self.gender = gender
        self.password_hash: str | None = None
        self.consents: dict[str, object] = {}
        self.last_signed_in: object = None
        # A plain list, not a `PendingDeletion`, so that snapshots transcode it.
        self.pending_deletion: list[Any] | None = None
        self.inactivity_warned_at: datetime | None = None
        self._start()

    def _start(self) -> None:
        """What a kind of person has before any event sets it (one constructor for all)."""

    @event(Renamed)
    def rename(self, display_name: str) -> None:
        self.display_name = display_name

    @event(AgeGiven)
    def give_age(self, age: str | None, age_given_on: date) -> None:
        self.age = age
        self.age_given_on = age_given_on

    @event(GenderGiven)
    def give_gender(self, gender: str | None) -> None:
        self.gender = gender

    @event(PasswordSet)
    def set_password(self, password_hash: str) -> None:
        self.password_hash = password_hash

    @event(SignedIn)
    def record_sign_in(self, method: str, region: str | None) -> None:
        self.last_signed_in = (method, region)
        self.inactivity_warned_at = None  # active again: a later lapse is warned anew

    @event(InactivityWarned)
    def warn_of_inactivity(self, warned_at: datetime) -> None:
        self.inactivity_warned_at = warned_at

    @event(DeletionRequested)
    def _request_deletion(self, reason: str, requested_by: str, requested_at: datetime,
                          cascade_of: UUID | None, dependents: list[UUID]) -> None:
        self.pending_deletion = [reason, requested_by, requested_at, cascade_of,
                                 tuple(dependents)]

    def request_deletion(self, reason: str, requested_by: str, at: datetime,
                         cascade_of: UUID | None = None,
                         dependents: Sequence[UUID] = ()) -> bool:
        """False (and no event) if a deletion is already pending: the first one's clock runs."""
        if self.pending_deletion is not None:
            return False
        self._request_deletion(reason, requested_by, at, cascade_of, list(dependents))
        return True

    @event(DeletionWithdrawn)
    def withdraw_deletion(self, recovered_by: str) -> None:
        self.pending_deletion = None

    @property
    def deletion(self) -> PendingDeletion | None:
        return PendingDeletion(*self.pending_deletion) if self.pending_deletion else None

    @property
    def deleted(self) -> bool:
        """Soft-deleted: no sign-in, in no teacher's or administrator's view (DEL-1)."""
        return self.pending_deletion is not None

    @event(ConsentChanged)
    def _change_consent(self, consent: str, before: object, after: object) -> None:
        if after is None or after is False:
            self.consents.pop(consent, None)
        else:
            self.consents[consent] = after

    def consent(self, name: str) -> object:
        return self.consents.get(name)

    def change_consent(self, name: str, after: object) -> bool:
        """Record a consent's new state; False (and no event) if it is already so."""
        before = self.consents.get(name)
        if before == after or (before is None and after is False):
            return False
        self._change_consent(name, before, after)
        return True

    @property
    def kind(self) -> str:
        return type(self).__name__.lower()

    @property
    def under_13(self) -> bool:
        return is_under_13(self.age)

    # Third-party sign-in (AGE-5): the provider's subject id is the consent's state.
    def connect_provider(self, provider: str, provider_subject: str) -> bool:
        one_of("provider", provider, PROVIDERS)
        provider_subject = bounds.identifier("provider_subject", provider_subject,
                                             bounds.MAX_PROVIDER_SUBJECT)
        if not provider_subject:
            raise InvalidRecord("provider_subject", "must be 1-255 characters")
        return self.change_consent(f"sign_in:{provider}", provider_subject)

    def disconnect_provider(self, provider: str) -> bool:
        one_of("provider", provider, PROVIDERS)
        return self.change_consent(f"sign_in:{provider}", None)

    def share_with_partner(self, partner: str, opted_in: bool) -> bool:
        return self.change_consent(f"partner_sharing:{slug('partner', partner)}", opted_in)


class Student(Person):
    class RaceGiven(Aggregate.Event):
        race: str | None

    class EmailHashSet(Aggregate.Event):
        """MIN-1: the keyed hash of the address; the address itself is never stored."""

        email_hash: str | None

    class SecretSet(Aggregate.Event):
        """MIN-6: secret words or a picture, generated by the ledger, for young sections."""

        secret_kind: str
        secret: str

    def _start(self) -> None:
        self.race: str | None = None
        self.email_hash: str | None = None
        self.secret_kind: str | None = None
        self.secret: str | None = None

    @event(RaceGiven)
    def _give_race(self, race: str | None) -> None:
        self.race = race

    def give_race(self, race: str | None) -> None:
        """AGE-2: only 13 or older, only from the fixed list."""
        one_of("race", race, RACES)
        if race is not None and self.under_13:
            raise InvalidRecord("race", "is recorded only for students 13 or older (AGE-2)")
        if race != self.race:
            self._give_race(race)

    def change_age(self, new_age: str | None, given_on: date) -> None:
        """A new age takes with it what the new age may not have (AGE-2, AGE-6)."""
        self.give_age(age(new_age), day_given(given_on))
        if self.under_13 and self.race is not None:
            self._give_race(None)
        if not is_adult(self.age):
            self.change_consent("study_contact", None)

    @event(EmailHashSet)
    def set_email_hash(self, email_hash: str | None) -> None:
        self.email_hash = email_hash

    @event(SecretSet)
    def set_secret(self, secret_kind: str, secret: str) -> None:
        self.secret_kind = secret_kind
        self.secret = secret

    def link_parent_email(self, address: str | None) -> bool:
        """MIN-2: sealed under the student's key, like everything in this stream."""
        return self.change_consent(
            "parent_email", email("parent_email", address) if address is not None else None)

    def give_study_contact(self, contact: str | None) -> bool:
        """AGE-6: only 18 or older; from anyone younger nothing is kept."""
        if contact is not None and not is_adult(self.age):
            raise InvalidRecord("study_contact",
                                "is offered only to students 18 or older (AGE-6)")
        return self.change_consent(
            "study_contact", email("study_contact", contact) if contact is not None else None)


class Teacher(Person):
    class EmailSet(Aggregate.Event):
        email: str

    class SchoolChosen(Aggregate.Event):
        school_id: UUID | None

    def _start(self) -> None:
        self.email: str | None = None
        self.school_id: UUID | None = None

    @event(EmailSet)
    def set_email(self, email: str) -> None:
        self.email = email

    @event(SchoolChosen)
    def choose_school(self, school_id: UUID | None) -> None:
        self.school_id = school_id

    def opt_in_to_email(self, opted_in: bool) -> bool:
        return self.change_consent("email_opt_in", opted_in)

    def attest_parental_consent(self, policy_version: str) -> bool:
        """AGE-1: who (this teacher), when (the event's time), under which policy version."""
        return self.change_consent(f"parental_consent:{policy_version}", True)

    def has_attested(self, policy_version: str) -> bool:
        return self.consent(f"parental_consent:{policy_version}") is True


def register(kind: type[Person], name: str, age_value: str | None, given_on: date,
             new_id: Callable[[], UUID], *, username: Callable[[UUID, str], str] | None = None,
             login_type: str = "personal", gender: str | None = None) -> Person:
    """A new person, validated first; then `new_id()` gives their id (the ledger's ids come
    with a data key already made, so bad input must not spend one), then `username(name)`
    claims a username for that id."""
    if kind is Teacher and age_value != "21+":
        raise InvalidRecord("age", 'a teacher is "21+"')
    valid_name, valid_age = display_name(name), age(age_value)
    if valid_age is not None:
        given_on = day_given(given_on)
    one_of("login_type", login_type, LOGIN_TYPES)
    one_of("gender", gender, GENDERS)
    person_id = new_id()
    handle = username(person_id, valid_name) if username else ""
    return kind(person_id, valid_name, handle, valid_age,
                given_on if valid_age is not None else None, login_type, gender)
