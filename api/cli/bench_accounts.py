"""The account workload of `ledger bench`: sign-in and a teacher's roster read, through the
service layer (and the roster through HTTP in-process too), against plain `eventsourcing` in
the same run.

A sign-in (`SignIn.with_password`, `SignIn.with_secret`) reads one person and appends one
`SignedIn` event, around blind-index lookups and the throttle's table; so its plain counterpart
is a `repository.get` of one short stream, one event recorded and a `save()`
(`plain_append_get`). A password sign-in also verifies one scrypt hash, slow on purpose, which
would hide the rest: the bench times the hash inside each sign-in (by wrapping
`crypto.passwords.verify_password` for the phase) and reports the sign-in minus its hash, and
the scrypt cost alone (`hashlib.scrypt` at the project's cost), apart.

The roster read is what backs `GET /sections/{id}/students` (`api/http/sections.py`): may
this teacher manage the section, the section's row and its students from the roster read
model, then each student's directory entry (opened with the student's key) and the fields the
teacher may see (ACC-1). No stream is replayed; its plain counterpart is a `repository.get` of
`SECTION_SIZE` short streams (`plain_read`). Through HTTP, the same read goes through FastAPI's
`TestClient` with a teacher's session token: routing, authentication, the response model.

Set-up, outside every timing: `TEACHERS` teachers sign up with a password; the first attests
to parental consent (AGE-1) and creates a word section of `SECTION_SIZE` students, who sign
in with their secret words (MIN-6). The plain side gets as many short streams of its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from eventsourcing.application import Application
from starlette.exceptions import StarletteDeprecationWarning

from api.cli.bench_workload import BenchSubject, payload
from api.http.app import create_app
from api.services import Services
from api.tokens import Principal, TokenStore
from crypto import passwords
from ledger.people import Student

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

TEACHERS = 4
SECTION_SIZE = 30
PASSWORD = "bench password, made up"  # noqa: S105 (made-up accounts in a throwaway store)
REGION = "US-WA"


@dataclass(frozen=True)
class AccountFixture:
    teacher_id: UUID
    teacher_logins: list[str]  # usernames, all with PASSWORD
    section_id: UUID
    join_code: str
    students: list[tuple[str, str]]  # (username, secret words)
    principal: Principal  # the first teacher's session, for the roster read


def set_up(services: Services, teachers: int = TEACHERS) -> AccountFixture:
    accounts, sections, ledger = services.accounts, services.sections, services.ledger
    ids = [accounts.sign_up_teacher(f"Bench Teacher {n}", f"teacher{n}@bench.example", PASSWORD)
           for n in range(teachers)]
    teacher = ids[0]
    accounts.attest_parental_consent(teacher)
    section_id = sections.create(teacher, "Bench Section", "csf", "3", "word")
    students = []
    for n in range(SECTION_SIZE):
        student: Student = ledger.live(
            sections.create_student(teacher, section_id, f"Bench Student {n}", "9"), Student)
        assert student.secret is not None
        students.append((student.username, student.secret))
    services.settle()  # the roster and the directory know the section and its students
    issued = TokenStore(services.read_models).issue("teacher", "session", timedelta(hours=1),
                                                    subject_id=teacher)
    principal = TokenStore(services.read_models).authenticate(issued.token)
    assert principal is not None
    return AccountFixture(
        principal=principal,
        teacher_id=teacher,
        teacher_logins=[ledger.live(t).username for t in ids],
        section_id=section_id,
        join_code=sections.section(section_id).join_code,
        students=students,
    )


# -- plain eventsourcing: get one short stream, append one event ------------------------------
def plain_streams(app: Application[UUID], count: int, events: int = 2) -> list[UUID]:
    """`count` streams of `events` events each (a new student has two: registered, secret)."""
    ids = []
    for serial in range(count):
        subject = BenchSubject(uuid4(), **payload(serial, 0))
        for step in range(1, events):
            subject.record(**payload(serial, step))
        app.save(subject)
        ids.append(subject.id)
    return ids


def plain_append_get(app: Application[UUID], ids: Sequence[UUID], count: int,
                     offset: int) -> float:
    """`count` times: get a stream, record one small event, save. Seconds in all."""
    started = time.perf_counter()
    for i in range(offset, offset + count):
        subject: BenchSubject = app.repository.get(ids[i % len(ids)])
        subject.sign_in("secret_word", REGION)
        app.save(subject)
    return time.perf_counter() - started


def plain_read(app: Application[UUID], ids: Sequence[UUID]) -> float:
    """Get every stream of `ids` once (the plain counterpart of a roster read). Seconds."""
    started = time.perf_counter()
    for stream_id in ids:
        app.repository.get(stream_id)
    return time.perf_counter() - started


# -- the ledger's sign-ins ------------------------------------------------------------------
@contextlib.contextmanager
def timed_password_checks() -> Iterator[list[float]]:
    """Within the block, every `passwords.verify_password` call adds its seconds to the list."""
    original = passwords.verify_password
    spent: list[float] = []

    def timed(password: str, encoded: str) -> bool:
        started = time.perf_counter()
        try:
            return original(password, encoded)
        finally:
            spent.append(time.perf_counter() - started)

    setattr(passwords, "verify_password", timed)  # noqa: B010 (mypy: no assigning to a def)
    try:
        yield spent
    finally:
        setattr(passwords, "verify_password", original)  # noqa: B010


def password_sign_ins(services: Services, logins: Sequence[str], count: int,
                      offset: int) -> tuple[float, float]:
    """`count` sign-ins by username and password: (seconds in all, seconds in the hash)."""
    with timed_password_checks() as hashing:
        started = time.perf_counter()
        for i in range(offset, offset + count):
            services.sign_in.with_password(logins[i % len(logins)], PASSWORD, REGION)
        total = time.perf_counter() - started
    if len(hashing) != count:
        raise RuntimeError(f"{len(hashing)} password checks for {count} sign-ins")
    return total, sum(hashing)


def secret_sign_ins(services: Services, join_code: str, students: Sequence[tuple[str, str]],
                    count: int, offset: int) -> float:
    """`count` sign-ins with a join code, a username and secret words. Seconds in all."""
    started = time.perf_counter()
    for i in range(offset, offset + count):
        username, secret = students[i % len(students)]
        services.sign_in.with_secret(join_code, username, secret, REGION)
    return time.perf_counter() - started


def scrypt_alone(count: int, cost: passwords.ScryptCost = passwords.DEFAULT_COST) -> float:
    """`count` scrypt hashes at the project's cost, nothing else. Seconds in all."""
    elapsed = 0.0
    for _ in range(count):
        salt = os.urandom(passwords.SALT_BYTES)
        started = time.perf_counter()
        hashlib.scrypt(PASSWORD.encode(), salt=salt, n=2 ** cost.log2_n, r=cost.r, p=cost.p,
                       maxmem=cost.maxmem, dklen=passwords.HASH_BYTES)
        elapsed += time.perf_counter() - started
    return elapsed


def latencies_ms(call: Callable[[], object], count: int) -> list[float]:
    """`count` calls of `call`, each timed, in milliseconds."""
    out = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000.0)
    return out


# -- the teacher's roster of a section --------------------------------------------------------
def roster_rows(services: Services, principal: Principal, section_id: UUID
                ) -> list[dict[str, Any]]:
    """`GET /sections/{id}/students` without HTTP: each student's fields this teacher sees."""
    roster = services.section_roster(principal, section_id)
    if roster is None:
        raise LookupError("not this teacher's section")
    return [{name: getattr(entry, name) for name in sorted(roster.fields) if hasattr(entry, name)}
            for entry in roster.students]


class HttpRoster:
    """The roster read through the HTTP app in-process, as the teacher, signed in by password."""

    def __init__(self, services: Services, fixture: AccountFixture) -> None:
        with warnings.catch_warnings():  # starlette's notice about httpx, on import
            warnings.simplefilter("ignore", StarletteDeprecationWarning)
            from fastapi.testclient import TestClient
        # Entered once, as a server keeps its event loop: a TestClient outside `with` starts an
        # event-loop thread for every request, which would be most of what is measured.
        self.client: TestClient = TestClient(create_app(services)).__enter__()
        self.path = f"/sections/{fixture.section_id}/students"
        with quiet_request_log():
            answer = self.client.post("/sign-in", json={"login": fixture.teacher_logins[0],
                                                        "password": PASSWORD})
        if answer.status_code != 200:
            raise RuntimeError(f"the bench teacher could not sign in: {answer.status_code}")
        self.client.headers["Authorization"] = f"Bearer {answer.json()['token']}"

    def read(self) -> list[dict[str, Any]]:
        answer = self.client.get(self.path)
        if answer.status_code != 200:
            raise RuntimeError(f"GET {{section}}/students answered {answer.status_code}")
        rows: list[dict[str, Any]] = answer.json()
        return rows

    def close(self) -> None:
        self.client.__exit__(None, None, None)


@contextlib.contextmanager
def quiet_request_log() -> Iterator[None]:
    """The app (and the test client's httpx) log a line per request at INFO: not for hundreds
    of timed requests."""
    loggers = [logging.getLogger(name) for name in ("api.http", "httpx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
