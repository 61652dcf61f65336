"""Throttles that hold (issue 17): per account whatever identifier names it, per client address,
overall; growing delays, not a lock anyone can set; young sections' secrets out of reach
within a school year, and their teacher told; join codes not found by trying; re-
authentication for password and email changes. On both backends, with an injected clock (no
timing assertions). Passwords are hashed cheaply here: the throttle is the point, not scrypt.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from api.http.deps import client_address
from api.services import Services
from crypto import passwords
from ledger import signin
from ledger.enrolment import Sections
from ledger.identity import USERNAME
from ledger.people import Student
from ledger.settings import Settings, SettingsError
from ledger.sign_in_secrets import PICTURES
from ledger.signin import UNDER_ATTACK, YOUNG, SignIn, SignInFailed
from ledger.throttle import ACCOUNT, ADDRESS, Delays, SignInThrottled, Throttle
from tests.test_api_accounts import Client, problem, serving
from tests.test_leak_scan import haystack

PASSWORD = "correct horse battery"
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ADDRESS_A, ADDRESS_B = "198.51.100.7", "203.0.113.44"


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def cheap(monkeypatch: pytest.MonkeyPatch) -> None:
    real, cost = passwords.hash_password, passwords.ScryptCost(log2_n=4)
    monkeypatch.setattr(passwords, "hash_password", lambda pw, c=cost: real(pw, c))
    monkeypatch.setattr(signin, "_DECOY_HASH", real("decoy", cost))


def _clocked(services: Services, overall: int = 600) -> tuple[SignIn, Sections, Clock]:
    clock = Clock()
    throttle = Throttle(services.read_models, clock=clock, overall_per_minute=overall)
    return SignIn(services.ledger, throttle), Sections(services.ledger, throttle), clock


def _refused(call: Any) -> int:
    with pytest.raises(SignInThrottled) as raised:
        call()
    return raised.value.retry_after_seconds


def _failed(call: Any) -> None:
    with pytest.raises(SignInFailed):
        call()


# -- finding 1: per account, per address, overall, no hard lock --------------------------------
def test_an_account_is_throttled_whatever_identifier_names_it(services: Services,
                                                              cheap: None) -> None:
    sign_in, _, clock = _clocked(services)
    student = services.accounts.sign_up_student("Nell", "15", "nell@example.org", PASSWORD)
    username = services.ledger.live(student, Student).username
    for login in (username, f" {username.upper()} ", "NELL@example.org", username, username):
        _failed(lambda login=login: sign_in.with_password(login, "wrong password"))
    # Before: the email had a count of its own, so the account was open to five more.
    for login in ("nell@example.org", username, f"{username.capitalize()}  "):
        assert _refused(lambda login=login: sign_in.with_password(login, PASSWORD)) == 61
    clock.advance(61)
    assert sign_in.with_password("nell@example.org", PASSWORD).id == student


def test_spraying_many_logins_from_one_address_is_throttled(services: Services,
                                                            cheap: None) -> None:
    sign_in, _, clock = _clocked(services)
    for i in range(ADDRESS.free):
        _failed(lambda i=i: sign_in.with_password(f"guess-{i}", PASSWORD, client=ADDRESS_A))
    # Before: every login had its own five, and the 31st of a spray went through.
    refused = _refused(lambda: sign_in.with_password("guess-new", PASSWORD, client=ADDRESS_A))
    assert refused == 2  # a second, doubling from there: a school's typos cost little
    _failed(lambda: sign_in.with_password("guess-new", PASSWORD, client=ADDRESS_B))
    clock.advance(2)
    _failed(lambda: sign_in.with_password("guess-more", PASSWORD, client=ADDRESS_A))
    assert _refused(lambda: sign_in.with_password("guess-x", PASSWORD, client=ADDRESS_A)) == 3
    # The address rests nowhere: only a keyed token of it, in the throttle's table.
    assert haystack(services.settings).find({"address": ADDRESS_A.encode(),
                                             "other": ADDRESS_B.encode()}) == []


def test_the_overall_budget_of_failures_per_minute(services: Services, cheap: None) -> None:
    sign_in, _, clock = _clocked(services, overall=8)
    clock.advance(15)
    for i in range(8):
        _failed(lambda i=i: sign_in.with_password(f"someone-{i}", PASSWORD, client=f"10.0.0.{i}"))
    assert _refused(lambda: sign_in.with_password("fresh", PASSWORD, client="10.9.9.9")) == 46
    clock.advance(45)  # the next minute
    _failed(lambda: sign_in.with_password("fresh", PASSWORD, client="10.9.9.9"))


def test_no_hard_lock_the_owner_signs_in_after_the_delay_their_attacker_earned(
        services: Services, cheap: None) -> None:
    sign_in, _, clock = _clocked(services)
    teacher = services.accounts.sign_up_teacher("Ms Ito", "ito@school.example", PASSWORD)
    for _ in range(ACCOUNT.free):
        _failed(lambda: sign_in.with_password("ito@school.example", "guess"))
    for _ in range(20):  # hammering while refused earns nothing, and extends nothing
        clock.advance(2)
        _refused(lambda: sign_in.with_password("ito@school.example", "guess"))
    clock.advance(61 - 40)
    # Before: 15 minutes' lock, renewable by anyone who knew the username.
    assert sign_in.with_password("ito@school.example", PASSWORD).id == teacher


def _most_failures(delays: Delays, span: timedelta) -> int:
    """The most failures a guesser who tries the moment each wait ends gets within `span`
    (from nothing counted): the budget no interleaving may beat."""
    at, failures = timedelta(0), 0
    while at <= span:
        failures += 1
        at += delays.wait_after(failures)
    return failures


_STEP = st.tuples(st.integers(0, 6), st.sampled_from([None, ADDRESS_A, ADDRESS_B, "10.1.2.3"]),
                  st.integers(0, 900))


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(_STEP, max_size=40))
def test_no_interleaving_gets_more_guesses_than_the_budget(
        services: Services, cheap: None, steps: list[tuple[int, str | None, int]]) -> None:
    ledger = services.ledger
    key = "target"
    target = ledger.identity.find(USERNAME, key)
    if target is None:
        target = services.accounts.sign_up_student("Target", "15", f"{key}@example.org",
                                                   PASSWORD)
        services.accounts.sign_up_student("Other", "15", f"o-{key}@example.org", PASSWORD)
    username = ledger.live(target, Student).username
    logins = [username, username.upper(), f"  {username} ", f"{key}@example.org",
              f"{key.upper()}@EXAMPLE.ORG", f"o-{key}@example.org", "nobody-at-all"]
    with ledger.read_models.transaction() as cur:
        cur.execute("DELETE FROM throttle_buckets")
    sign_in, _, clock = _clocked(services)
    guesses = 0
    for which, client, wait in steps:
        clock.advance(wait)
        try:
            sign_in.with_password(logins[which], "not the password", client=client)
        except SignInFailed:
            guesses += which < 5  # the first five name the target
        except SignInThrottled:
            pass
    assert guesses <= _most_failures(ACCOUNT, clock.now - START)
    # No hard lock: after the wait the attacker earned, the owner is in.
    try:
        sign_in.with_password(username, PASSWORD)
    except SignInThrottled as throttled:
        clock.advance(throttled.retry_after_seconds)
        assert sign_in.with_password(username, PASSWORD).id == target


# -- finding 2: young sections -----------------------------------------------------------------
def test_young_budget_is_well_under_one_percent_a_year() -> None:
    guesses = _most_failures(YOUNG, timedelta(days=365))
    # Going quiet until the count is forgotten, again and again, earns less.
    burst = _most_failures(YOUNG, timedelta(days=3))
    assert burst * (365 / (3 + YOUNG.forget_after.days) + 1) < guesses <= 205
    assert guesses / len(PICTURES) ** 3 < 0.0033


def test_a_young_account_is_throttled_its_teacher_told_and_a_new_secret_clears_it(
        services: Services) -> None:
    sign_in, sections, clock = _clocked(services)
    teacher = services.ledger.register_teacher("Ms Young")
    services.accounts.attest_parental_consent(teacher)
    section = sections.create(teacher, "Pictures", "csf", "K", "picture")
    kid = sections.create_student(teacher, section, "Ada", "5")
    other = sections.create_student(teacher, section, "Bea", "5")
    code = sections.section(section).join_code
    ada: Student = services.ledger.live(kid, Student)
    assert len(str(ada.secret).split()) == 3  # three pictures: 64,000, not 40

    def guess(username: str = ada.username) -> Any:
        return sign_in.with_secret(code, username, "cat dog cow", client=ADDRESS_A)

    for _ in range(YOUNG.free):
        _failed(guess)
    assert _refused(guess) == 61
    clock.advance(61)
    # The child signs in; that gives the guesser no fresh allowance.
    assert sign_in.with_secret(code, ada.username, str(ada.secret)).id == kid
    _failed(guess)
    assert _refused(guess) == 121
    assert sign_in.secrets_under_attack([kid, other]) == {}
    waited = 0
    for _ in range(UNDER_ATTACK - YOUNG.free - 1):
        waited = _refused(guess)
        clock.advance(waited)
        _failed(guess)
    # Before: no one was told, and 40 pictures fell to five guesses a quarter hour.
    assert sign_in.secrets_under_attack([kid, other]) == {kid: UNDER_ATTACK}
    assert _refused(guess) == 32 * 60 + 1  # and doubling, to two days
    # Nor is any other child of the section in a hurry: unknown names are throttled alike.
    for _ in range(YOUNG.free):
        _failed(lambda: guess("nobody"))
    _refused(lambda: guess("nobody"))

    new = sections.reset_secret(teacher, section, kid)
    assert sign_in.secrets_under_attack([kid]) == {}
    assert sign_in.with_secret(code, ada.username, new).id == kid


# -- finding 3: join codes; finding 4: re-authentication; the address rule; over HTTP ----------
@pytest.fixture
def http(settings: Settings, cheap: None) -> Iterator[Client]:
    with serving(Services.open(settings)) as client:
        yield client


def test_join_codes_cannot_be_enumerated(http: Client) -> None:
    student = http.svc.ledger.register_student("Joiner", "14")
    me = http.session(student)
    answers = [http.call("POST", "/sections/join", me, {"join_code": f"BCDFG{c}"})
               for c in "BCDFGH"]
    # Before: 404 after 404, as fast as the server would answer.
    assert [a.status_code for a in answers[:ACCOUNT.free]] == [404] * ACCOUNT.free
    problem(answers[-1], 429, "too-many-attempts")
    assert int(answers[-1].headers["Retry-After"]) > 0
    # Another student from the same address: the address's count, shared.
    others = [http.session(http.svc.ledger.register_student(f"J{i}", "14")) for i in range(6)]
    codes = iter(f"{a}{b}BBBB" for a in "BCDFGHJKLM" for b in "BCDFGHJKLM")
    statuses = [http.call("POST", "/sections/join", who, {"join_code": next(codes)}).status_code
                for who in others for _ in range(ACCOUNT.free)]
    assert statuses.count(404) <= ADDRESS.free and 429 in statuses


def test_section_sign_in_wrong_codes_count_per_address(http: Client) -> None:
    for i in range(ADDRESS.free):
        answer = http.call("POST", "/sign-in/section", body={
            "join_code": f"BBBB{i:02d}".replace("0", "C"), "username": f"kid{i}",
            "secret": "apple banjo"})
        assert answer.status_code == 401
    throttled = http.call("POST", "/sign-in/section", body={
        "join_code": "ZZZZZZ", "username": "kid", "secret": "apple banjo"})
    problem(throttled, 429, "too-many-attempts")
    assert int(throttled.headers["Retry-After"]) > 0


def test_an_untrusted_peers_forwarded_for_is_ignored(http: Client) -> None:
    """The test client's peer is no trusted proxy: a different X-Forwarded-For on every request
    is still one address."""
    for i in range(ADDRESS.free):
        http.call("POST", "/sign-in", body={"login": f"spray-{i}", "password": PASSWORD},
                  headers={"X-Forwarded-For": f"192.0.2.{i}"})
    throttled = http.call("POST", "/sign-in", body={"login": "spray-x", "password": PASSWORD},
                          headers={"X-Forwarded-For": "192.0.2.200"})
    problem(throttled, 429, "too-many-attempts")


def _request(settings: Settings, peer: str, forwarded: str | None) -> Request:
    class App:
        class state:  # named as the attribute of a FastAPI app
            services = type("Svc", (), {"settings": settings})()

    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return Request({"type": "http", "client": (peer, 5000), "headers": headers, "app": App})


def test_the_client_address_rule() -> None:
    trusting = Settings.from_env({"LEDGER_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1",
                                  "LEDGER_VAR_DIR": "/nonexistent"})
    nobody = Settings.from_env({"LEDGER_VAR_DIR": "/nonexistent"})
    spoofed = "6.6.6.6, 203.0.113.9, 10.1.1.1"
    assert client_address(_request(nobody, "10.0.0.5", spoofed)) == "10.0.0.5"
    assert client_address(_request(trusting, "203.0.113.50", spoofed)) == "203.0.113.50"
    assert client_address(_request(trusting, "10.0.0.5", spoofed)) == "203.0.113.9"
    assert client_address(_request(trusting, "192.168.1.1", "198.51.100.1")) == "198.51.100.1"
    assert client_address(_request(trusting, "10.0.0.5", None)) == "10.0.0.5"
    assert client_address(_request(trusting, "10.0.0.5", "10.2.2.2")) == "10.0.0.5"
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"LEDGER_TRUSTED_PROXIES": "proxy.example", "LEDGER_VAR_DIR": "/x"})
    assert "proxy.example" not in str(raised.value)


def test_changing_password_or_email_asks_for_the_current_password(http: Client) -> None:
    created = http.call("POST", "/sign-up/student", body={
        "display_name": "Rex", "age": "15", "email": "rex@home.example", "password": PASSWORD})
    rex = UUID(created.json()["id"])
    me = http.session(rex)
    new = "a brand new passphrase"
    # Before: a stolen session alone set a new password, or moved the email elsewhere.
    problem(http.call("PUT", "/me/password", me, {"password": new}), 403,
            "reauthentication-failed")
    wrong = http.call("PUT", "/me/password", me, {"password": new, "current_password": "nope"})
    body = problem(wrong, 403, "reauthentication-failed")
    assert "nope" not in wrong.text and body["errors"] == [
        {"field": "current_password", "rule": "must match"}]
    problem(http.call("PUT", "/me/email", me, {"email": "thief@evil.example"}), 403,
            "reauthentication-failed")
    assert http.svc.sign_in.with_password("rex@home.example", PASSWORD).id == rex  # unchanged
    assert http.call("PUT", "/me/email", me, {"email": "rex2@home.example",
                                              "current_password": PASSWORD}).status_code == 204
    assert http.call("PUT", "/me/password", me, {"password": new,
                                                 "current_password": PASSWORD}).status_code == 204
    assert http.svc.sign_in.with_password("rex2@home.example", new).id == rex
    # Wrong current passwords count against the account, as failed sign-ins do.
    for _ in range(ACCOUNT.free):
        http.call("PUT", "/me/password", me, {"password": PASSWORD, "current_password": "x"})
    throttled = http.call("PUT", "/me/password", me, {"password": PASSWORD,
                                                      "current_password": new})
    problem(throttled, 429, "too-many-attempts")
    assert int(throttled.headers["Retry-After"]) > 0
    _refused(lambda: http.svc.sign_in.with_password("rex2@home.example", new))
    # An account with no password yet (a teacher made it) sets its first without one.
    managed = http.svc.ledger.register_student("Kit", "15")
    assert http.call("PUT", "/me/password", http.session(managed),
                     {"password": PASSWORD}).status_code == 204


def test_the_teacher_sees_whose_secret_is_under_attack_and_a_reset_clears_it(
        http: Client) -> None:
    clock = Clock()
    http.svc.sign_in.throttle.clock = clock
    teacher = http.teacher()
    section = http.section(teacher, "word")
    kid = http.pupil(teacher, section, "Mia", "8")
    http.pupil(teacher, section, "Noa", "8")
    username = http.svc.ledger.live(kid, Student).username
    code = http.svc.sections.section(section).join_code
    url = f"/sections/{section}/secrets-under-attack"

    def guess() -> Any:
        return http.call("POST", "/sign-in/section", body={
            "join_code": code, "username": username, "secret": "apple banjo comet"})

    assert http.call("GET", url, http.session(teacher)).json() == []
    for _ in range(UNDER_ATTACK):
        answer = guess()
        if answer.status_code == 429:
            clock.advance(int(answer.headers["Retry-After"]))
            answer = guess()
        assert answer.status_code == 401
    listed = http.call("GET", url, http.session(teacher))
    assert listed.json() == [{"student_id": str(kid), "failed_sign_ins": UNDER_ATTACK}]
    assert username not in listed.text and "testclient" not in listed.text
    other = http.teacher("Mr Other")
    problem(http.call("GET", url, http.session(other)), 404, "not-found")
    reset = http.call("POST", f"/sections/{section}/students/{kid}/secret",
                      http.session(teacher))
    assert http.call("GET", url, http.session(teacher)).json() == []
    signed = http.call("POST", "/sign-in/section", body={
        "join_code": code, "username": username, "secret": reset.json()["secret"]})
    assert signed.status_code == 200, signed.text
