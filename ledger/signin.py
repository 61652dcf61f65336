"""Signing in (MIN-5, MIN-6): by username or email and password, or, in a young section, by
join code, username and secret. Each success is an event with its time and a coarse region
only; failures answer the same whatever went wrong, and are throttled (`ledger.throttle`):

- per account, whatever identifier names it (username, email, any case or spacing): the
  bucket is a keyed token of the account's id. A login that names no account with a password
  (or no student of that section with a secret) is throttled on a token of the identifier
  typed instead, with the same delays, so the answers do not say whether an account exists;
- per client address (a keyed token of it; the address is never stored), when the caller
  knows one;
- overall: every failure of the minute, whoever made it (`Throttle.overall_per_minute`).

Young sections' secrets are few, so their accounts' delays grow to two days, and a success
does not forget them (only time, or the teacher's new secret, does): otherwise a child signing
in every morning would hand an attacker a fresh allowance each day. Under `YOUNG`:

- guesses a year against one child's account, whatever addresses are used: at most 205 (10
  free, then waits of 1, 2, 4 ... minutes reach the two-day cap after the 22nd failure, 2.8
  days in; then one guess every two days: 22 + 182. Going quiet for `forget_after`, 90 days,
  to start again from nothing earns 22 guesses per 93 days: fewer);
- the secret space of new secrets: 40^3 = 64,000 for three pictures, 115^3 = 1,520,875 for
  three words (`ledger.sign_in_secrets`);
- so the chance of guessing a child's secret within a school year: 205 / 64,000 = 0.32% for
  pictures, 0.013% for words. (A secret made before there were three, one picture or two
  words, is far weaker: the teacher's reset gives the child a new one.)

After `UNDER_ATTACK` failures not yet forgotten, the child's teacher is told
(`secrets_under_attack`: ids and counts only, nothing of who tried); a new secret from the
teacher forgets the account's failures.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from uuid import UUID

from crypto import passwords
from ledger import people, sign_in_secrets
from ledger.application import ErasedPerson, Ledger, PersonNotFound
from ledger.identity import JOIN_CODE, STUDENT_EMAIL, TEACHER_EMAIL, USERNAME
from ledger.people import Person, Student
from ledger.sections import Section, normalise_join_code
from ledger.throttle import ACCOUNT, ADDRESS, Bucket, Counted, Delays, Throttle

# Verified against when the account is unknown, so that a miss costs what a hit costs and the
# time taken does not say whether an account exists.
_DECOY_HASH = passwords.hash_password("decoy password, never anyone's")

# A young section's account (see the module's docstring for what these numbers buy).
YOUNG = Delays(free=10, first=timedelta(minutes=1), longest=timedelta(days=2),
               forget_after=timedelta(days=90))
UNDER_ATTACK = 15  # failures on a young account before its teacher is told
_PURPOSE = "throttle"


def account_key(ledger: Ledger, person_id: UUID) -> bytes:
    """The throttle's bucket of one account, whichever door and identifier are used."""
    return ledger.identity.token(_PURPOSE, f"account {person_id}")


def address_buckets(ledger: Ledger, client: str | None) -> list[Bucket]:
    """The bucket of the client's address, a keyed token of it; none when no address is known
    (a caller inside the service: the command line, a test)."""
    if client is None:
        return []
    return [Bucket(ledger.identity.token(_PURPOSE, f"address {client}"), ADDRESS)]


class SignInFailed(Exception):
    """One answer for an unknown account, a wrong password or secret, and an erased account."""

    def __init__(self) -> None:
        super().__init__("sign-in failed")


class ReauthenticationFailed(Exception):
    """The person signed in did not give their current password, or gave a wrong one."""

    def __init__(self) -> None:
        super().__init__("the current password is required and must match")


class SignIn:
    def __init__(self, ledger: Ledger, throttle: Throttle | None = None) -> None:
        self.ledger = ledger
        self.throttle = throttle or Throttle(ledger.read_models)

    def with_password(self, login: str, password: str, region: str | None = None,
                      client: str | None = None) -> Person:
        """`login` is a username or an email address; `client` the address the request came
        from (to throttle on, never kept). A deleted account cannot sign in (DEL-1): it fails
        like a wrong password."""
        people.region(region)
        person = self._checked(login, password, client)
        if person.deleted:
            raise SignInFailed()
        return self._record(person, "email" if "@" in login else "password", region)

    def account_to_recover(self, login: str, password: str, client: str | None = None
                           ) -> Person:
        """The owner of a deleted account proving it is theirs, to recover it (DEL-2): the
        same checks and throttle as signing in, and no sign-in is recorded."""
        return self._checked(login, password, client)

    def _checked(self, login: str, password: str, client: str | None) -> Person:
        person = self._by_login(login)
        stored = person.password_hash if person is not None else None
        if person is None or stored is None:
            own = self._miss(f"login {' '.join(login.split()).lower()}", ACCOUNT)
        else:
            own = self._account(person)
        counted = self.throttle.attempt([own, *self._from(client)])  # failed until it succeeds
        if not passwords.verify_password(password, stored or _DECOY_HASH) or person is None \
                or stored is None:
            self.throttle.failed(counted)
            raise SignInFailed()
        self._succeeded(counted, own)
        return person

    def with_secret(self, join_code: str, username: str, secret: str,
                    region: str | None = None, client: str | None = None) -> Person:
        """A young section's sign-in: the section's code, the student's username, the secret
        words or pictures their teacher handed out."""
        people.region(region)
        code = normalise_join_code(join_code)
        student = self._young(code, username)
        own = (self._account(student) if student is not None else
               self._miss(f"section {code}/{' '.join(username.split()).lower()}", YOUNG))
        counted = self.throttle.attempt([own, *self._from(client)])
        if student is None or student.secret is None \
                or not sign_in_secrets.matches(secret, student.secret) or student.deleted:
            self.throttle.failed(counted)
            raise SignInFailed()
        self._succeeded(counted, own)
        return self._record(student, f"secret_{student.secret_kind}", region)

    def confirm_password(self, person_id: UUID, password: str | None,
                         client: str | None = None) -> None:
        """Re-authentication before a password or email change: the person signed in gives
        their current password, throttled as a sign-in to the same account. An account with
        no password yet (a teacher-managed student adding a personal login) has none to give."""
        person: Person = self.ledger.live(person_id)
        stored = person.password_hash
        if stored is None:
            return
        if password is None:
            raise ReauthenticationFailed()
        own = self._account(person)
        counted = self.throttle.attempt([own, *self._from(client)])
        if not passwords.verify_password(password, stored):
            self.throttle.failed(counted)
            raise ReauthenticationFailed()
        self._succeeded(counted, own)

    def secrets_under_attack(self, student_ids: Iterable[UUID]) -> dict[UUID, int]:
        """Which of these students' accounts have had `UNDER_ATTACK` or more failed sign-ins
        not yet forgotten, with their counts: for their teacher."""
        keys = {account_key(self.ledger, student_id): student_id for student_id in student_ids}
        return {keys[key]: failures
                for key, failures in self.throttle.failures(keys, UNDER_ATTACK).items()}

    def forget_failures(self, person_id: UUID) -> None:
        """A new secret (or password) from someone entitled to give one: the guesses at the
        old are moot, and the child must not wait for them."""
        self.throttle.forget(account_key(self.ledger, person_id))

    def _account(self, person: Person) -> Bucket:
        young = isinstance(person, Student) and person.secret is not None
        return Bucket(account_key(self.ledger, person.id), YOUNG if young else ACCOUNT)

    def _miss(self, identifier: str, delays: Delays) -> Bucket:
        return Bucket(self.ledger.identity.token(_PURPOSE, identifier), delays)

    def _from(self, client: str | None) -> list[Bucket]:
        return address_buckets(self.ledger, client)

    def _succeeded(self, counted: Counted, own: Bucket) -> None:
        """A young account's failures stay (the child's success must not give a guesser a
        fresh allowance); any other account's are forgotten."""
        self.throttle.succeeded(counted, forget=None if own.delays is YOUNG else own.key)

    def _by_login(self, login: str) -> Person | None:
        identity = self.ledger.identity
        if "@" in login:
            found = (identity.find(STUDENT_EMAIL, login) or identity.find(TEACHER_EMAIL, login))
        else:
            found = identity.find(USERNAME, login.strip())
        return self._person(found)

    def _young(self, code: str, username: str) -> Student | None:
        """The student this sign-in could succeed for: in the section of the code, with a
        secret of the section's kind."""
        section_id = self.ledger.identity.find(JOIN_CODE, code)
        section = self.ledger.aggregate(section_id, Section) if section_id else None
        person = self._person(self.ledger.identity.find(USERNAME, username.strip()))
        if section is None or not isinstance(person, Student) or person.secret is None:
            return None
        if person.id not in section.students or person.secret_kind != section.login_type:
            return None
        return person

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
