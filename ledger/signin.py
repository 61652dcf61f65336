"""Signing in (MIN-5, MIN-6): by username or email and password, or, in a young section, by
join code, username and secret. Each success is an event with its time and a coarse region
only; failures are throttled per identifier and answer the same whatever went wrong.
"""

from __future__ import annotations

from uuid import UUID

from crypto import passwords
from ledger import people, sign_in_secrets
from ledger.application import ErasedPerson, Ledger, PersonNotFound
from ledger.identity import JOIN_CODE, STUDENT_EMAIL, TEACHER_EMAIL, USERNAME
from ledger.people import Person, Student
from ledger.sections import Section, normalise_join_code
from ledger.throttle import Throttle

# Verified against when the account is unknown, so that a miss costs what a hit costs and the
# time taken does not say whether an account exists.
_DECOY_HASH = passwords.hash_password("decoy password, never anyone's")


class SignInFailed(Exception):
    """One answer for an unknown account, a wrong password or secret, and an erased account."""

    def __init__(self) -> None:
        super().__init__("sign-in failed")


class SignIn:
    def __init__(self, ledger: Ledger, throttle: Throttle | None = None) -> None:
        self.ledger = ledger
        self.throttle = throttle or Throttle(ledger.read_models)

    def with_password(self, login: str, password: str, region: str | None = None) -> Person:
        """`login` is a username or an email address. A deleted account cannot sign in
        (DEL-1): it fails like a wrong password."""
        people.region(region)
        person = self._checked(login, password)
        if person.deleted:
            raise SignInFailed()
        return self._record(person, "email" if "@" in login else "password", region)

    def account_to_recover(self, login: str, password: str) -> Person:
        """The owner of a deleted account proving it is theirs, to recover it (DEL-2): the
        same checks and throttle as signing in, and no sign-in is recorded."""
        return self._checked(login, password)

    def _checked(self, login: str, password: str) -> Person:
        bucket = self.ledger.identity.token("throttle", login.strip().lower())
        self.throttle.attempt(bucket)  # counted as failed until it succeeds
        person = self._by_login(login)
        stored = person.password_hash if person is not None else None
        if not passwords.verify_password(password, stored or _DECOY_HASH) or person is None \
                or stored is None:
            raise SignInFailed()
        self.throttle.succeeded(bucket)
        return person

    def with_secret(self, join_code: str, username: str, secret: str,
                    region: str | None = None) -> Person:
        """A young section's sign-in: the section's code, the student's username, the secret
        words or picture their teacher handed out."""
        people.region(region)
        code = normalise_join_code(join_code)
        bucket = self.ledger.identity.token("throttle", f"{code}/{username.strip().lower()}")
        self.throttle.attempt(bucket)
        student = self._by_secret(code, username, secret)
        if student is None or student.deleted:
            raise SignInFailed()
        self.throttle.succeeded(bucket)
        return self._record(student, f"secret_{student.secret_kind}", region)

    def _by_login(self, login: str) -> Person | None:
        identity = self.ledger.identity
        if "@" in login:
            found = (identity.find(STUDENT_EMAIL, login) or identity.find(TEACHER_EMAIL, login))
        else:
            found = identity.find(USERNAME, login.strip())
        return self._person(found)

    def _by_secret(self, code: str, username: str, secret: str) -> Student | None:
        section_id = self.ledger.identity.find(JOIN_CODE, code)
        section = self.ledger.aggregate(section_id, Section) if section_id else None
        person = self._person(self.ledger.identity.find(USERNAME, username.strip()))
        if section is None or not isinstance(person, Student) or person.secret is None:
            return None
        if person.id not in section.students or person.secret_kind != section.login_type:
            return None
        return person if sign_in_secrets.matches(secret, person.secret) else None

    def _person(self, person_id: UUID | None) -> Person | None:
        if person_id is None:
            return None
        try:
            person = self.ledger.person(person_id)
        except PersonNotFound:  # a claim left by a crash before its events were saved
            return None
        return None if isinstance(person, ErasedPerson) else person

    def _record(self, person: Person, method: str, region: str | None) -> Person:
        person.record_sign_in(method, region)
        self.ledger.save(person)
        return person
