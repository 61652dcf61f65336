"""Signing in (MIN-5, MIN-6), throttling, and one answer for every failure, through `SignIn`, on
both backends. Each password sign-in costs a scrypt hash (~0.1 s): a handful of accounts only."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from api.services import Services
from crypto import passwords
from ledger import sign_in_secrets
from ledger.accounts import Accounts
from ledger.application import Ledger
from ledger.enrolment import SectionNotFound, Sections
from ledger.identity import USERNAME
from ledger.people import InvalidRecord, Person, Student
from ledger.sign_in_secrets import PICTURES, WORDS
from ledger.signin import SignIn, SignInFailed
from ledger.throttle import ACCOUNT, SignInThrottled, Throttle
from tests.test_accounts import states, stored_events
from tests.test_leak_scan import haystack

PASSWORD = "correct horse battery"


def sign_ins(ledger: Ledger, person_id: UUID) -> list[Person.SignedIn]:
    return [e for e in stored_events(ledger, person_id) if isinstance(e, Person.SignedIn)]


def failure(call: Callable[[], Any]) -> str:
    with pytest.raises(SignInFailed) as raised:
        call()
    assert type(raised.value) is SignInFailed
    return repr(raised.value.args)


# -- MIN-5 ------------------------------------------------------------------------------------
def test_MIN_5_a_sign_in_keeps_its_method_and_a_coarse_region_only(services: Services) -> None:
    ledger, sign_in = services.ledger, services.sign_in
    address = f"rae.{uuid4().hex[:8]}@example.org"
    student_id = services.accounts.sign_up_student("Rae", "16", address, PASSWORD)
    username = ledger.live(student_id, Student).username

    sign_in.with_password(username, PASSWORD, region="US-WA")
    sign_in.with_password(address, PASSWORD, region="GB")
    sign_in.with_password(username.upper(), PASSWORD)
    for finer in ("US-WA-SEA", "us-wa", "US-Seattle", "47.6062,-122.3321", "98101",
                  "US WA", "203.0.113.7", ""):
        with pytest.raises(InvalidRecord) as raised:
            sign_in.with_password(username, PASSWORD, region=finer)
        assert raised.value.field == "region" and (not finer or finer not in str(raised.value))

    events = sign_ins(ledger, student_id)
    assert [(e.method, e.region) for e in events] == [
        ("password", "US-WA"), ("email", "GB"), ("password", None)]
    for e in events:  # the time is the event's; nothing else
        assert set(vars(e)) == {"originator_id", "originator_version", "timestamp", "method",
                                "region"}
        assert isinstance(e.timestamp, datetime)
    assert ledger.live(student_id, Student).last_signed_in == ("password", None)


# -- MIN-6 ------------------------------------------------------------------------------------
def test_MIN_6_a_password_is_kept_only_as_a_salted_scrypt_hash(services: Services) -> None:
    ledger, accounts, sign_in = services.ledger, services.accounts, services.sign_in
    password = f"Pw-{uuid4().hex}"
    teacher = accounts.sign_up_teacher("Ms P", f"p.{uuid4().hex[:8]}@example.org", password)
    hashes = [e.password_hash for e in stored_events(ledger, teacher)
              if isinstance(e, Person.PasswordSet)]
    assert len(hashes) == 1 and hashes[0].startswith("scrypt$15$8$1$")
    assert passwords.verify_password(password, hashes[0])
    assert not any(password in s for s in states(ledger))
    assert haystack(services.settings).find({"password": password.encode()}) == []
    with pytest.raises(InvalidRecord):
        accounts.set_password(teacher, "short")
    with pytest.raises(InvalidRecord):
        accounts.set_password(teacher, "x" * (passwords.MAX_PASSWORD_BYTES + 1))

    username = ledger.live(teacher).username
    new_password = f"Pw-{uuid4().hex}"
    accounts.set_password(teacher, new_password)
    second = ledger.live(teacher).password_hash
    assert second.split("$")[4] != hashes[0].split("$")[4]  # a fresh salt
    failure(lambda: sign_in.with_password(username, password))
    assert sign_in.with_password(username, new_password).id == teacher


def test_MIN_6_secret_words_and_pictures_are_generated_and_reset_by_the_teacher_only(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    accounts, sections, sign_in = Accounts(ledger), Sections(ledger), SignIn(ledger)
    teacher, other = ledger.register_teacher("Ms S"), ledger.register_teacher("Mr T")
    accounts.attest_parental_consent(teacher)
    accounts.attest_parental_consent(other)
    words = sections.create(teacher, "Words", "csf", "1", "word")
    pictures = sections.create(teacher, "Pictures", "csf", "K", "picture")
    others = sections.create(other, "Theirs", "csf", "K", "picture")
    ann = sections.create_student(teacher, words, "Ann", "6")
    bo = sections.create_student(teacher, pictures, "Bo", "5")
    cat = sections.create_student(other, others, "Cat", "5")
    ann_s: Student = ledger.live(ann, Student)
    bo_s: Student = ledger.live(bo, Student)
    assert ann_s.secret_kind == "word" and ann_s.password_hash is None
    first, second, third = str(ann_s.secret).split(" ")
    assert {first, second, third} <= set(WORDS)
    assert bo_s.secret_kind == "picture"
    assert len(str(bo_s.secret).split(" ")) == 3 and set(str(bo_s.secret).split()) <= set(
        PICTURES)
    words_code = sections.section(words).join_code
    pictures_code = sections.section(pictures).join_code

    # Case and spacing are forgiven, and the comparison is constant-time.
    compared: list[tuple[bytes, bytes]] = []
    real = sign_in_secrets.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(sign_in_secrets.hmac, "compare_digest", spy)
    typed = f"  {first.upper()}   {second.capitalize()} {third} "
    signed = sign_in.with_secret(f" {words_code.lower()}", f" {ann_s.username.upper()} ", typed)
    assert signed.id == ann and compared
    assert {len(a) for pair in compared for a in pair} == {32}  # digests: one length for all
    assert sign_in.with_secret(pictures_code, bo_s.username, str(bo_s.secret).upper()).id == bo
    assert [(e.method, e.region) for e in sign_ins(ledger, ann)] == [("secret_word", None)]
    assert [e.method for e in sign_ins(ledger, bo)] == ["secret_picture"]
    # The secret works only with the code of a section of the student's, of its own kind.
    failure(lambda: sign_in.with_secret(pictures_code, ann_s.username, str(ann_s.secret)))
    failure(lambda: sign_in.with_secret(words_code, ann_s.username, f"{first}"))
    failure(lambda: sign_in.with_secret(words_code, ann_s.username, f"{first} {second}"))
    failure(lambda: sign_in.with_secret(words_code, ann_s.username, f"{first}{second}{third}"))
    failure(lambda: sign_in.with_password(ann_s.username, str(ann_s.secret)))  # no password

    # Only the teacher of the section resets a secret, and only of a student in it.
    for call in (lambda: sections.reset_secret(other, words, ann),
                 lambda: sections.reset_secret(other, others, ann),
                 lambda: sections.reset_secret(teacher, words, bo),
                 lambda: sections.reset_secret(teacher, pictures, cat)):
        with pytest.raises(SectionNotFound):
            call()
    assert ledger.live(ann, Student).secret == ann_s.secret
    old = str(bo_s.secret)
    new = sections.reset_secret(teacher, pictures, bo)
    assert new != old and set(new.split()) <= set(PICTURES)
    assert ledger.live(bo, Student).secret == new
    failure(lambda: sign_in.with_secret(pictures_code, bo_s.username, old))
    assert sign_in.with_secret(pictures_code, bo_s.username, new).id == bo
    # A student who leaves the section can no longer sign in with its code.
    sections.leave(bo, pictures)
    failure(lambda: sign_in.with_secret(pictures_code, bo_s.username, new))


# -- throttling -------------------------------------------------------------------------------
def test_sign_in_is_throttled_after_5_failures_with_delays_that_grow(
        services: Services) -> None:
    ledger = services.ledger
    now = [datetime(2026, 1, 5, 9, 0, tzinfo=UTC)]
    throttle = Throttle(ledger.read_models, clock=lambda: now[0])
    sign_in = SignIn(ledger, throttle)
    student_id = services.accounts.sign_up_student("Sol", "15", "sol@example.org", PASSWORD)
    username = ledger.live(student_id, Student).username

    for _ in range(ACCOUNT.free - 1):
        failure(lambda: sign_in.with_password(username, "wrong password"))
    assert sign_in.with_password(username, PASSWORD).id == student_id  # a success forgets
    for _ in range(ACCOUNT.free):
        failure(lambda: sign_in.with_password(username, "wrong password"))
    with pytest.raises(SignInThrottled) as raised:
        sign_in.with_password(f" {username.upper()}", PASSWORD)  # right, and refused
    assert raised.value.retry_after_seconds == 61
    now[0] += timedelta(seconds=61)
    failure(lambda: sign_in.with_password(username, "wrong password"))
    with pytest.raises(SignInThrottled) as raised:
        sign_in.with_password(username, PASSWORD)
    assert raised.value.retry_after_seconds == 121  # doubled
    now[0] += timedelta(seconds=121)
    assert sign_in.with_password(username, PASSWORD).id == student_id

    # Unknown accounts are throttled alike: the answer does not say whether one exists.
    for _ in range(ACCOUNT.free):
        failure(lambda: sign_in.with_password("nobody-here", PASSWORD))
    with pytest.raises(SignInThrottled):
        sign_in.with_password("nobody-here", PASSWORD)
    # The table holds tokens, never the identifier, and no row past its time.
    assert haystack(services.settings).find({"username": b"nobody-here"}) == []
    now[0] += ACCOUNT.forget_after + timedelta(seconds=1)
    failure(lambda: sign_in.with_password("someone-else", PASSWORD))
    with ledger.read_models.transaction(write=False) as cur:
        cur.execute("SELECT COUNT(*) FROM throttle_buckets WHERE expires > ?",
                    (now[0].isoformat(),))
        assert cur.fetchone()[0] == 2  # someone-else's, and this minute's overall count
        cur.execute("SELECT COUNT(*) FROM throttle_buckets")
        assert cur.fetchone()[0] == 2


# -- one answer for every failure -------------------------------------------------------------
def test_sign_in_fails_alike_for_unknown_wrong_and_erased_accounts(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger, sign_in = services.ledger, services.sign_in
    gone_email = f"gone.{uuid4().hex[:8]}@example.org"
    kept = services.accounts.sign_up_student("Kept", "15", f"k.{uuid4().hex[:8]}@example.org",
                                             PASSWORD)
    gone = services.accounts.sign_up_student("Gone", "15", gone_email, PASSWORD)
    managed = ledger.register_student("Managed", "10", login_type="teacher_managed")
    kept_name = ledger.live(kept, Student).username
    gone_name = ledger.live(gone, Student).username
    ledger.erase_subject(gone, "user_request")

    verified: list[str] = []
    real = passwords.verify_password

    def counting(password: str, encoded: str) -> bool:
        verified.append(encoded)
        return real(password, encoded)

    monkeypatch.setattr(passwords, "verify_password", counting)
    answers = {
        "unknown user": failure(lambda: sign_in.with_password("no-such-user", PASSWORD)),
        "unknown email": failure(lambda: sign_in.with_password("no@example.org", PASSWORD)),
        "wrong password": failure(lambda: sign_in.with_password(kept_name, "not the one")),
        "erased by username": failure(lambda: sign_in.with_password(gone_name, PASSWORD)),
        "erased by email": failure(lambda: sign_in.with_password(gone_email, PASSWORD)),
        "no password": failure(lambda: sign_in.with_password(
            ledger.live(managed, Student).username, PASSWORD)),
    }
    assert len(set(answers.values())) == 1, answers
    assert len(verified) == len(answers)  # every failure pays one slow hash, known or not
    assert sign_in.with_password(kept_name, PASSWORD).id == kept


def test_sign_in_of_a_person_whose_key_is_gone_but_whose_rows_remain_fails_alike(
        ledger: Ledger) -> None:
    """A crash between destroying the key and forgetting the index rows, or a claim left by a
    crash before its events were saved: the lookup finds an id, and sign-in still just fails."""
    accounts, sign_in = Accounts(ledger), SignIn(ledger)
    student_id = accounts.sign_up_student("Half", "15", "half@example.org", PASSWORD)
    username = ledger.live(student_id, Student).username
    ledger.keys.erase(student_id)  # the key only
    assert ledger.identity.find(USERNAME, username) == student_id
    failure(lambda: sign_in.with_password(username, PASSWORD))
    failure(lambda: sign_in.with_password("half@example.org", PASSWORD))

    ghost = uuid4()
    ledger.identity.claim(USERNAME, "ghost", ghost)  # a claim with no person behind it
    failure(lambda: sign_in.with_password("ghost", PASSWORD))
    failure(lambda: sign_in.with_secret("BCDFGH", "ghost", "apple banjo"))


def test_concurrent_failures_are_throttled_after_5_too(services: Services) -> None:
    """Every attempt is counted before its password is checked: twenty at once, all wrong, get
    no more than five slow checks (a picture secret is one of 40: a burst must not try them
    all)."""
    ledger, sign_in = services.ledger, services.sign_in
    services.accounts.sign_up_student("Vic", "15", "vic@example.org", PASSWORD)
    answers: list[str] = []

    def attempt(_: int) -> None:
        try:
            sign_in.with_password("vic", "wrong password")
        except SignInFailed:
            answers.append("failed")
        except SignInThrottled:
            answers.append("throttled")

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(attempt, range(20)))
    assert len(answers) == 20
    assert answers.count("failed") <= ACCOUNT.free
    with pytest.raises(SignInThrottled):
        sign_in.with_password("vic", PASSWORD)
    assert ledger.identity.find(USERNAME, "vic") is not None
