"""Idempotency keys (issue 17) on both backends: a write retried with its `Idempotency-Key`
records once and answers as the first did, also when the first committed and its answer was
lost; two racing requests with one key record once; a key reused for another request is a 422
that writes nothing; a malformed key is a 422. Effects are counted by the log's length and by
reading back what was recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from api.services import Services
from ledger.application import Ledger
from ledger.idempotency import IdempotencyRecord
from ledger.settings import Settings
from tests.test_api_accounts import PASSWORD, Client, problem, serving
from tests.test_disclosures import build_world, disclosure_body

L1, L2 = "csf/unit-1/level-1", "csf/unit-1/level-2"


class Crash(RuntimeError):
    """A failure injected into a request (the process dying, the connection dropping): the
    client sees a 500 internal problem, or nothing at all."""


def crashed(response: Any) -> bool:
    return problem(response, 500, "internal") is not None


@pytest.fixture
def api(settings: Settings) -> Iterator[Client]:
    with serving(Services.open(settings)) as client:
        yield client


def key() -> str:
    return str(uuid4())


def student(api: Client) -> tuple[UUID, dict[str, str]]:
    teacher = api.teacher()
    pupil = api.pupil(teacher, api.section(teacher), "Sunny", "14")
    return pupil, api.session(pupil)


def attempt(api: Client, auth: dict[str, str], body: dict[str, Any], used: str | None
            ) -> Any:
    return api.call("POST", "/me/attempts", auth, body,
                    {"Idempotency-Key": used} if used is not None else None)


def tries(api: Client, student_id: UUID) -> dict[str, int]:
    """The attempts recorded, read back from the student's progress stream."""
    return {level: p.tries for level, p in api.svc.attempts.progress(student_id).items()}


def records(api: Client) -> int:
    """How many idempotency records the log holds (each key used once is one)."""
    return sum(1 for n in api.svc.ledger.recorder.select_notifications(start=None, limit=10**6)
               if n.topic.endswith("IdempotencyRecord.Used"))


class Failures:
    """`arm(point)` makes the next request fail once at `point`: "before" the save commits
    (nothing stored), "at" it (the save committed, then raised), "after" it (the answer is
    lost: the view's catch-up, which the route runs after the save, raises)."""

    def __init__(self, api: Client, monkeypatch: pytest.MonkeyPatch) -> None:
        ledger, runner = api.svc.ledger, api.svc.progress
        real_save, real_catch_up = Ledger.save, runner.catch_up
        self.armed: set[str] = set()

        def save(*objs: Any, **kwargs: Any) -> Any:
            self._fail("before")
            done = real_save(ledger, *objs, **kwargs)
            self._fail("at")
            return done

        def catch_up(*args: Any, **kwargs: Any) -> Any:
            self._fail("after")
            return real_catch_up(*args, **kwargs)

        monkeypatch.setattr(ledger, "save", save)
        monkeypatch.setattr(runner, "catch_up", catch_up)

    def arm(self, point: str) -> None:
        self.armed.add(point)

    def disarm(self) -> None:
        """Failures armed but never reached (a request answered from its record saves
        nothing)."""
        self.armed.clear()

    def _fail(self, point: str) -> None:
        if point in self.armed:
            self.armed.discard(point)
            raise Crash(f"injected {point} the commit")


@pytest.fixture
def failing(api: Client, monkeypatch: pytest.MonkeyPatch) -> Failures:
    return Failures(api, monkeypatch)


# -- attempts ------------------------------------------------------------------------------------
def test_a_retried_attempt_records_once_and_answers_the_same(api: Client) -> None:
    pupil, auth = student(api)
    used, body = key(), {"level": L1, "result": "solved", "answers": {"q1": "a loop"}}
    before = api.position()
    first = attempt(api, auth, body, used)
    assert first.status_code == 201, first.text
    written = api.position()
    assert written > before
    again = attempt(api, auth, body, used)
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert api.position() == written  # nothing written by the retry
    assert tries(api, pupil) == {L1: 1}
    # A batch, the same way; a new key is a new request.
    batch = {"attempts": [{"level": L1, "result": "optimal"}, {"level": L2, "result": "failed"}]}
    other = key()
    assert attempt(api, auth, batch, other).status_code == 201
    assert attempt(api, auth, batch, other).json() == attempt(api, auth, batch, other).json()
    assert tries(api, pupil) == {L1: 2, L2: 1}
    assert records(api) == 2


def test_without_a_key_a_retry_records_again_as_before(api: Client) -> None:
    pupil, auth = student(api)
    body = {"level": L1, "result": "solved"}
    assert attempt(api, auth, body, None).status_code == 201
    assert attempt(api, auth, body, None).status_code == 201
    assert tries(api, pupil) == {L1: 2}
    assert records(api) == 0


def test_the_answer_lost_after_the_commit_a_retry_records_nothing_more(
        api: Client, failing: Failures) -> None:
    pupil, auth = student(api)
    used, body = key(), {"level": L1, "result": "solved"}
    failing.arm("after")
    assert crashed(attempt(api, auth, body, used))
    committed = api.position()
    assert tries(api, pupil) == {L1: 1}  # it was stored although the client saw a failure
    again = attempt(api, auth, body, used)
    assert again.status_code == 201, again.text
    assert again.json()["levels"][L1]["tries"] == 1
    assert api.position() == committed
    assert tries(api, pupil) == {L1: 1}


def test_a_failure_before_the_commit_leaves_the_key_unused(
        api: Client, failing: Failures) -> None:
    pupil, auth = student(api)
    used, body = key(), {"level": L1, "result": "solved"}
    failing.arm("before")
    before = api.position()
    assert crashed(attempt(api, auth, body, used))
    assert api.position() == before and records(api) == 0
    assert attempt(api, auth, body, used).status_code == 201
    assert tries(api, pupil) == {L1: 1}


def test_two_racing_requests_with_one_key_record_once(
        api: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    pupil, auth = student(api)
    used, body = key(), {"level": L1, "result": "solved"}
    attempts = api.svc.attempts
    real = attempts.record_many
    # Both requests have looked for the key's record and found none before either saves.
    both_looked = threading.Barrier(2, timeout=60)

    def record_many(*args: Any) -> None:
        both_looked.wait()
        real(*args)

    monkeypatch.setattr(attempts, "record_many", record_many)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: attempt(api, auth, body, used), range(2)))
    assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
    assert answers[0].json() == answers[1].json()
    assert tries(api, pupil) == {L1: 1}
    assert records(api) == 1


def test_a_key_reused_for_another_request_is_refused_and_writes_nothing(api: Client) -> None:
    pupil, auth = student(api)
    used = key()
    assert attempt(api, auth, {"level": L1, "result": "solved"}, used).status_code == 201
    before = api.position()
    refused = problem(attempt(api, auth, {"level": L2, "result": "solved"}, used), 422,
                      "idempotency-key-reused")
    assert L2 not in str(refused)
    assert api.position() == before
    assert tries(api, pupil) == {L1: 1}


def test_keys_are_per_caller(api: Client) -> None:
    """One key used by two students is two keys: neither sees the other's answer."""
    (s, s_auth), (r, r_auth) = student(api), student(api)
    used, body = key(), {"level": L1, "result": "solved"}
    assert attempt(api, s_auth, body, used).json()["student_id"] == str(s)
    assert attempt(api, r_auth, body, used).json()["student_id"] == str(r)
    assert tries(api, s) == tries(api, r) == {L1: 1}


@pytest.mark.parametrize("bad", ["", "has space", "a" * 129, "quote\"d", "é-accent"])
def test_a_malformed_key_is_a_422_and_writes_nothing(api: Client, bad: str) -> None:
    _, auth = student(api)
    before = api.position()
    response = api.http.post("/me/attempts", json={"level": L1, "result": "solved"},
                             headers={**auth, "Idempotency-Key": bad.encode()})
    problem(response, 422, "validation")
    assert api.position() == before


def test_the_record_names_ids_only_and_goes_with_the_students_erasure(api: Client) -> None:
    pupil, auth = student(api)
    used = key()
    body = {"level": L1, "result": "solved", "code": "move()", "answers": {"q1": "a loop"}}
    assert attempt(api, auth, body, used).status_code == 201
    (row,) = [n for n in api.svc.ledger.recorder.select_notifications(start=None, limit=10**6)
              if n.topic.endswith("IdempotencyRecord.Used")]
    assert used.encode() not in row.state and b"move()" not in row.state
    record = api.svc.ledger.aggregate(row.originator_id, IdempotencyRecord)
    assert record.owner_id == pupil and record.route == "/me/attempts"
    assert set(vars(record)) <= {"_id", "_version", "_created_on", "_modified_on",
                                 "_pending_events", "owner_id", "route", "digest", "status",
                                 "result_id", "used_at"}
    api.svc.ledger.erase_subject(pupil, "user_request")
    assert api.svc.ledger.aggregate(row.originator_id, IdempotencyRecord) is None


# -- sign-ups, disclosures, rights requests --------------------------------------------------------
def test_a_retried_sign_up_makes_one_account_also_when_the_answer_was_lost(
        api: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    used = key()
    body = {"display_name": "Quinn Retry", "age": "15", "email": f"q-{used[:8]}@home.example",
            "password": PASSWORD}
    real_settle = api.svc.settle
    lost = {"once": True}

    def settle() -> None:  # runs after the account is saved: its answer is lost
        if lost.pop("once", False):
            raise Crash("after the save: the answer is lost")
        real_settle()

    monkeypatch.setattr(api.svc, "settle", settle)
    assert crashed(api.call("POST", "/sign-up/student", body=body,
                            headers={"Idempotency-Key": used}))
    committed = api.position()
    first = api.call("POST", "/sign-up/student", body=body, headers={"Idempotency-Key": used})
    assert first.status_code == 201, first.text
    again = api.call("POST", "/sign-up/student", body=body, headers={"Idempotency-Key": used})
    assert (again.status_code, again.json(), again.headers["Location"]) == (
        201, first.json(), first.headers["Location"])
    assert api.position() == committed  # one account, made by the request whose answer was lost
    problem(api.call("POST", "/sign-up/student", body={**body, "age": "16"},
                     headers={"Idempotency-Key": used}), 422, "idempotency-key-reused")
    assert api.position() == committed
    # Without the key, the retry is a second sign-up with the same address: refused as before.
    problem(api.call("POST", "/sign-up/student", body=body), 409, "already-in-use")


def test_a_retried_teacher_sign_up_answers_the_same(api: Client) -> None:
    used = key()
    body = {"display_name": "Ms Retry", "email": f"t-{used[:8]}@school.example",
            "password": PASSWORD}
    first = api.call("POST", "/sign-up/teacher", body=body, headers={"Idempotency-Key": used})
    assert first.status_code == 201, first.text
    written = api.position()
    again = api.call("POST", "/sign-up/teacher", body=body, headers={"Idempotency-Key": used})
    assert (again.status_code, again.json()) == (201, first.json())
    assert api.position() == written


def test_a_retried_disclosure_records_once(api: Client) -> None:
    world = build_world(api)
    used, path = key(), f"/students/{world.S}/disclosures"
    first = api.call("POST", path, world.custodian_in, disclosure_body(),
                     {"Idempotency-Key": used})
    assert first.status_code == 201, first.text
    written = api.position()
    again = api.call("POST", path, world.custodian_in, disclosure_body(),
                     {"Idempotency-Key": used})
    assert (again.status_code, again.json(), again.headers["Location"]) == (
        201, first.json(), first.headers["Location"])
    assert api.position() == written
    trail = api.call("GET", f"/students/{world.S}/audit-trail?kind=disclosure", world.auditor)
    assert len(trail.json()["items"]) == 1


def test_a_retried_rights_request_is_filed_once(api: Client) -> None:
    world = build_world(api)
    used, path = key(), f"/students/{world.S}/rights-requests"
    first = api.call("POST", path, world.parent, {"kind": "access"}, {"Idempotency-Key": used})
    assert first.status_code == 201, first.text
    again = api.call("POST", path, world.parent, {"kind": "access"}, {"Idempotency-Key": used})
    assert (again.status_code, again.json()) == (201, first.json())
    problem(api.call("POST", path, world.parent, {"kind": "export"}, {"Idempotency-Key": used}),
            422, "idempotency-key-reused")
    filed = api.call("GET", path, world.parent).json()
    assert len(filed["requests"]) == 1


# -- the property -------------------------------------------------------------------------------
BODIES = ({"level": L1, "result": "solved"},
          {"attempts": [{"level": L1, "result": "failed"}, {"level": L2, "result": "optimal"}]})
Step = tuple[str, int, str | None]  # key, body, where a failure is injected (None: nowhere)
steps = st.lists(st.tuples(st.sampled_from(["k1", "k2", "k3"]), st.sampled_from([0, 1]),
                           st.sampled_from([None, None, "before", "at", "after"])),
                 min_size=1, max_size=8)


def levels_of(body: dict[str, Any]) -> list[str]:
    return [a["level"] for a in body.get("attempts", [body])]


@hypothesis_settings(max_examples=12, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])
@given(sequence=steps)
def test_every_key_that_committed_has_exactly_one_effect(
        api: Client, failing: Failures, sequence: list[Step]) -> None:
    pupil, auth = student(api)
    prefix = uuid4().hex[:8]  # keys are per student anyway; fresh ones per example too
    committed: dict[str, int] = {}  # key -> the body its committing request carried
    for name, body, failure in sequence:
        used, position = f"{prefix}-{name}", api.position()
        if failure is not None:
            failing.arm(failure)
        response = attempt(api, auth, BODIES[body], used)
        answer = None if response.status_code == 500 and crashed(response) else response
        if name in committed:
            # Used before: answered from its record (its answer lost again if the route fails
            # after), or refused for another body; either way nothing is written.
            if committed[name] == body:
                assert (answer is None) == (failure == "after")
                assert answer is None or answer.status_code == 201, answer.text
            else:
                assert answer is not None
                problem(answer, 422, "idempotency-key-reused")
            assert api.position() == position
        elif failure == "before":
            assert answer is None and api.position() == position
        else:
            # "at": committed, then failed inside the save: answered from the record at once;
            # "after": committed, answer lost; None: committed and answered.
            assert (answer is None) == (failure == "after")
            assert api.position() > position
            committed[name] = body
        failing.disarm()
    expected: dict[str, int] = {}
    for body in committed.values():
        for level in levels_of(BODIES[body]):
            expected[level] = expected.get(level, 0) + 1
    assert tries(api, pupil) == expected



def test_the_header_is_in_the_openapi_of_each_guarded_route(api: Client) -> None:
    spec = api.call("GET", "/openapi.json").json()
    for path in ("/me/attempts", "/sign-up/student", "/sign-up/teacher",
                 "/students/{person_id}/disclosures", "/students/{person_id}/rights-requests"):
        (header,) = [p for p in spec["paths"][path]["post"].get("parameters", [])
                     if p["name"] == "Idempotency-Key"]
        assert header["in"] == "header" and not header.get("required", False)
        assert "retry" in header["description"]


def test_a_retried_section_or_project_is_made_once(api: Client) -> None:
    teacher = api.teacher()
    me = api.session(teacher)
    used, body = key(), {"name": "Period 2", "course": "csd", "grade": "7",
                         "login_type": "email"}
    first = api.call("POST", "/sections", me, body, {"Idempotency-Key": used})
    assert first.status_code == 201, first.text
    written = api.position()
    again = api.call("POST", "/sections", me, body, {"Idempotency-Key": used})
    assert (again.status_code, again.json()) == (201, first.json())
    assert api.position() == written
    _, auth = student(api)
    project = {"kind": "app", "name": "Clicker"}
    made = api.call("POST", "/me/projects", auth, project, {"Idempotency-Key": used})
    assert made.status_code == 201, made.text
    written = api.position()
    remade = api.call("POST", "/me/projects", auth, project, {"Idempotency-Key": used})
    assert (remade.status_code, remade.json(), remade.headers["Location"]) == (
        201, made.json(), made.headers["Location"])
    assert api.position() == written
