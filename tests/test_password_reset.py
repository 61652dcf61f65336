"""Password reset by email (MIN-1: the address is found through its keyed hash and never
stored): the same answer whether or not an account has it, one-time tokens that expire, are
superseded and go with their person, and sessions that end when the password changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from api.services import Services
from ledger.password_reset import Outbox, PasswordResets, ResetTokenInvalid
from ledger.signin import SignInFailed
from ledger.throttle import SignInThrottled
from tests.test_leak_scan import haystack

OLD, NEW = "old password 1", "new password 2"


def outbox(services: Services) -> Outbox:
    mailer = services.password_resets.mailer
    assert isinstance(mailer, Outbox)
    return mailer


def test_MIN_1_a_student_resets_a_password_by_the_address_only_its_hash_keeps(
        services: Services) -> None:
    student = services.accounts.sign_up_student("Sam", "15", "Sam@Home.example", OLD)

    services.password_resets.request("  sam@home.EXAMPLE ")  # as typed, in any case
    address, token = outbox(services).sent[-1]
    assert address == "sam@home.EXAMPLE"  # mailed to what was given; nothing stored
    assert services.password_resets.complete(token, NEW) == student

    assert services.sign_in.with_password("sam@home.example", NEW).id == student
    with pytest.raises(SignInFailed):
        services.sign_in.with_password("sam@home.example", OLD)
    with pytest.raises(ResetTokenInvalid):  # spent
        services.password_resets.complete(token, "another one 3")
    assert haystack(services.settings).find({
        "address": b"sam@home.example", "as given": b"Sam@Home.example",
        "as typed": b"sam@home.EXAMPLE", "token": token.encode()}) == []


def test_an_unknown_address_gets_the_same_answer_and_no_mail(services: Services) -> None:
    services.accounts.sign_up_teacher("Ms Frizzle", "friz@school.example", OLD)
    sent = len(outbox(services).sent)
    assert services.password_resets.request("nobody@school.example") is None
    assert len(outbox(services).sent) == sent
    with pytest.raises(ResetTokenInvalid):
        services.password_resets.complete("made-up-token", NEW)


def test_a_newer_token_supersedes_an_older_and_tokens_expire(services: Services) -> None:
    services.accounts.sign_up_teacher("Ms Frizzle", "friz@school.example", OLD)
    now = [datetime.now(UTC)]
    resets = PasswordResets(services.ledger, Outbox(), clock=lambda: now[0])
    resets.request("friz@school.example")
    first = resets.mailer.sent[-1][1]  # type: ignore[attr-defined]
    resets.request("friz@school.example")
    second = resets.mailer.sent[-1][1]  # type: ignore[attr-defined]
    with pytest.raises(ResetTokenInvalid):
        resets.complete(first, NEW)

    now[0] += timedelta(hours=1, seconds=1)
    with pytest.raises(ResetTokenInvalid):
        resets.complete(second, NEW)


def test_a_token_goes_with_its_person_at_erasure(services: Services) -> None:
    teacher = services.accounts.sign_up_teacher("Ms Frizzle", "friz@school.example", OLD)
    services.password_resets.request("friz@school.example")
    token = outbox(services).sent[-1][1]
    services.ledger.erase_subject(teacher, "user_request")
    with services.ledger.read_models.transaction(write=False) as cur:
        cur.execute("SELECT count(*) FROM password_resets WHERE subject_id = ?", (str(teacher),))
        assert cur.fetchone()[0] == 0
    with pytest.raises(ResetTokenInvalid):
        services.password_resets.complete(token, NEW)


def test_reset_requests_are_throttled_per_address(services: Services) -> None:
    for _ in range(5):
        services.password_resets.request("someone@home.example")
    with pytest.raises(SignInThrottled):
        services.password_resets.request("someone@home.example")
    services.password_resets.request("someone.else@home.example")  # another address is free


def test_http_reset_answers_alike_and_ends_every_session(services: Services) -> None:
    services.accounts.sign_up_teacher("Ms Frizzle", "friz@school.example", OLD)
    with TestClient(create_app(services)) as http:
        session = http.post("/sign-in", json={"login": "friz@school.example", "password": OLD})
        me = {"Authorization": f"Bearer {session.json()['token']}"}
        known = http.post("/password-reset/request", json={"email": "friz@school.example"})
        unknown = http.post("/password-reset/request", json={"email": "no@school.example"})
        assert (known.status_code, known.content) == (unknown.status_code, unknown.content)
        assert known.status_code == 202

        token = outbox(services).sent[-1][1]
        bad: Any = http.post("/password-reset", json={"token": "nope", "password": NEW})
        assert bad.status_code == 400
        assert bad.json()["type"].endswith("/reset-token-invalid")
        assert http.post("/password-reset", json={"token": token, "password": NEW}
                         ).status_code == 204
        assert http.get("/me", headers=me).status_code == 401  # the old session ended
        assert http.post("/sign-in", json={"login": "friz@school.example", "password": NEW}
                         ).status_code == 200
