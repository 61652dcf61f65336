"""The rules of issue 3 again, through HTTP, on both backends: what a client can send, what it
gets back, and what rests. Named after the requirement each one shows.

The service-layer tests (test_accounts, test_sections, test_sign_in, test_access) hold the
rules themselves; these show that the HTTP face keeps them, answers with problem+json of a
stable type, and never echoes a personal value. scrypt costs ~50 ms a hash: people are made
through the ledger (no password) unless the test is about passwords, and sessions are issued
with `TokenStore.issue` rather than signed in, except where signing in is the point.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from api.services import Services
from api.tokens import TokenStore
from ledger.people import Person
from ledger.policy import CURRENT_POLICY_VERSION
from ledger.signin import YOUNG
from tests.conftest import BACKENDS, drop_schemas, make_settings
from tests.test_accounts import states
from tests.test_leak_scan import haystack

PROBLEM = "application/problem+json"
P = "https://ledger.invalid/problems/"
PASSWORD = "correct horse battery"
NAME = "Quentin Zanzibar-Oakes"  # personal values that must never come back in a problem
EMAIL = "quentin.z@home.example"
STUDENT_EMAIL = "sam.minimised@home.example"  # MIN-1's own: no other test stores it
LOG_EMAIL = "quentin.logged@school.example"


class Client:
    """An HTTP client over one `Services`, with sessions issued directly (no scrypt)."""

    def __init__(self, services: Services) -> None:
        self.svc = services
        self.app = create_app(services)
        # Entered once: outside `with`, a TestClient starts an event loop for every request.
        self.http = TestClient(self.app).__enter__()
        self.tokens: TokenStore = self.app.state.tokens

    def session(self, person_id: UUID | str, role: str | None = None) -> dict[str, str]:
        kind = role or self.svc.ledger.live(UUID(str(person_id))).kind
        issued = self.tokens.issue(kind, "session", timedelta(hours=1),
                                   subject_id=UUID(str(person_id)))
        return {"Authorization": f"Bearer {issued.token}"}

    def staff(self, role: str, scope: str | None = None) -> dict[str, str]:
        issued = self.tokens.issue(role, f"{role}-t", timedelta(hours=1), scope=scope)
        return {"Authorization": f"Bearer {issued.token}"}

    def call(self, method: str, url: str, auth: dict[str, str] | None = None, body: Any = None,
             headers: dict[str, str] | None = None) -> Any:
        all_headers = {**(auth or {}), **(headers or {})}
        if body is None:
            return self.http.request(method, url, headers=all_headers)
        return self.http.request(method, url, json=body, headers=all_headers)

    def position(self) -> int:
        return self.svc.ledger.recorder.max_notification_id() or 0

    # -- a world, made through the services ----------------------------------------------------
    def teacher(self, name: str = "Ms Rivera", attested: bool = True) -> UUID:
        teacher_id = self.svc.ledger.register_teacher(name)
        if attested:
            self.svc.accounts.attest_parental_consent(teacher_id)
        return teacher_id

    def section(self, teacher_id: UUID, login_type: str = "word") -> UUID:
        section_id = self.svc.sections.create(teacher_id, "Period 1", "csf", "4", login_type)
        self.svc.settle()
        return section_id

    def pupil(self, teacher_id: UUID, section_id: UUID, name: str = "Mia",
              age: str | None = "9") -> UUID:
        student_id = self.svc.sections.create_student(teacher_id, section_id, name, age)
        self.svc.settle()
        return student_id


@contextmanager
def serving(services: Services) -> Iterator[Client]:
    """An HTTP client over `services`; both closed after."""
    client = Client(services)
    try:
        yield client
    finally:
        client.http.__exit__(None, None, None)
        services.close()


@pytest.fixture(scope="module", params=BACKENDS)
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Client]:
    """One ledger per backend for the module: each test makes its own people, sections and
    schools (and its own addresses), so tests do not see each other's records."""
    settings = make_settings(str(request.param), str(tmp_path_factory.mktemp("accounts")))
    try:
        with serving(Services.open(settings)) as client:
            yield client
    finally:
        if settings.backend == "postgres":
            drop_schemas(settings.schema, settings.keystore_schema)


def _unique_email() -> str:
    return f"rivera-{uuid4().hex[:8]}@school.example"


def problem(response: Any, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == P + type_ and body["status"] == status and body["detail"]
    return body


# -- MIN-1 ------------------------------------------------------------------------------------
def test_MIN_1_a_students_email_is_never_returned_nor_stored_in_the_clear(
        api: Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        created = api.call("POST", "/sign-up/student", body={
            "display_name": "Sam", "age": "15", "email": STUDENT_EMAIL, "password": PASSWORD})
        assert created.status_code == 201, created.text
        assert created.headers["Location"] == "/me"
        student = created.json()
        assert set(student) == {"id", "kind", "username"}
        signed_in = api.call("POST", "/sign-in", body={"login": STUDENT_EMAIL.upper(),
                                                       "password": PASSWORD})
        assert signed_in.status_code == 200, signed_in.text
        session = signed_in.json()
        assert session["person_id"] == student["id"] and session["kind"] == "student"
        me = api.call("GET", "/me", {"Authorization": f"Bearer {session['token']}"})
        changed = api.call("PUT", "/me/email", {"Authorization": f"Bearer {session['token']}"},
                           {"email": "sam.renewed@home.example",
                            "current_password": PASSWORD})
        assert changed.status_code == 204
        operator = api.call("GET", f"/students/{student['id']}", api.staff("operator"))
    assert me.status_code == 200 and me.json()["email_on_file"] is True
    addresses = ("sam.minimised", "sam.renewed")
    for response in (created, signed_in, me, operator):
        assert not any(a in response.text for a in addresses)
        assert "email_hash" not in response.text
    assert operator.json()["email_on_file"] is True
    assert not any(a in caplog.text for a in addresses)
    assert not any(a in state for state in states(api.svc.ledger) for a in addresses)
    assert haystack(api.svc.settings).find({"email": STUDENT_EMAIL.encode(),
                                            "new email": b"sam.renewed@home.example"}) == []


def test_a_taken_email_is_409_naming_the_field_only(api: Client) -> None:
    body = {"display_name": "Ms Rivera", "email": _unique_email(), "password": PASSWORD}
    assert api.call("POST", "/sign-up/teacher", body=body).status_code == 201
    before = api.position()
    again = api.call("POST", "/sign-up/teacher", body={**body, "display_name": NAME,
                                                       "email": body["email"].upper()})
    found = problem(again, 409, "already-in-use")
    assert found["errors"] == [{"field": "email", "rule": "is already in use"}]
    assert "rivera" not in again.text.lower() and NAME not in again.text
    assert api.position() == before


# -- MIN-3, MIN-4 -------------------------------------------------------------------------------
def _routes_taking_people(api: Client) -> list[tuple[str, str, dict[str, str], dict[str, Any]]]:
    teacher = api.teacher()
    section = api.section(teacher)
    student = api.pupil(teacher, section)
    return [
        ("POST", "/sign-up/student", {}, {"display_name": NAME, "age": "15", "email": EMAIL,
                                          "password": PASSWORD}),
        ("POST", "/sign-up/teacher", {}, {"display_name": NAME, "email": EMAIL,
                                          "password": PASSWORD}),
        ("POST", f"/sections/{section}/students", api.session(teacher),
         {"display_name": NAME, "age": "9"}),
        ("PATCH", "/me", api.session(student), {"display_name": NAME}),
        ("POST", "/students", api.staff("registrar"), {"display_name": NAME, "age": "12"}),
    ]


BIRTH_DATE_KEYS = ("birth_date", "dateOfBirth", "dob", "birthday")
CONTACT_KEYS = (("address", "address"), ("street", "street"), ("homeAddress", "address"),
                ("phone", "phone"), ("phone_number", "phone"), ("mobile", "phone"),
                ("telephone", "phone"), ("zip_code", "postal_code"))


def test_MIN_3_a_birth_date_is_refused_on_every_route_that_takes_a_person(api: Client) -> None:
    for method, url, auth, body in _routes_taking_people(api):
        for key in BIRTH_DATE_KEYS:
            before = api.position()
            response = api.call(method, url, auth, {**body, key: "2014-04-05"})
            found = problem(response, 422, "validation")
            assert "MIN-3" in found["detail"] and "never" in found["detail"]
            assert found["errors"][0]["rule"] == "a birth date is never accepted (MIN-3)"
            assert "2014-04-05" not in response.text and NAME not in response.text
            assert api.position() == before, (url, key)


def test_MIN_4_an_address_or_phone_number_is_refused(api: Client) -> None:
    for method, url, auth, body in _routes_taking_people(api):
        for key, field in CONTACT_KEYS:
            before = api.position()
            response = api.call(method, url, auth, {**body, key: "221B Baker Street 555-0100"})
            found = problem(response, 422, "validation")
            assert "MIN-4" in found["detail"]
            assert {"field": field, "rule": "a street address or phone number is never"
                                            " accepted (MIN-4)"} in found["errors"]
            assert key not in response.text or key == field
            assert "Baker" not in response.text and "555" not in response.text
            assert api.position() == before, (url, key)


# -- MIN-5, MIN-6 -------------------------------------------------------------------------------
def test_MIN_5_a_sign_in_keeps_its_time_and_a_coarse_region_only(api: Client) -> None:
    created = api.call("POST", "/sign-up/teacher", body={
        "display_name": "Ms Rivera", "email": _unique_email(), "password": PASSWORD})
    teacher, username = created.json()["id"], created.json()["username"]
    before = api.position()
    for bad in ("US-WA-Seattle", "47.6062,-122.3321", "us-wa", "10.1.2.3"):
        refused = api.call("POST", "/sign-in", body={"login": username, "password": PASSWORD},
                           headers={"X-Region": bad})
        found = problem(refused, 422, "validation")
        assert found["errors"] == [{"field": "region", "rule": found["errors"][0]["rule"]}]
        assert bad not in refused.text
    assert api.position() == before
    signed_in = api.call("POST", "/sign-in", body={"login": username, "password": PASSWORD},
                         headers={"X-Region": "US-WA", "X-Forwarded-For": "203.0.113.7"})
    assert signed_in.status_code == 200, signed_in.text
    me = api.call("GET", "/me", {"Authorization": f"Bearer {signed_in.json()['token']}"}).json()
    assert me["last_sign_in"] == {"method": "password", "region": "US-WA"}
    [event] = [e for e in api.svc.ledger.history(UUID(teacher))
               if isinstance(e, Person.SignedIn)]
    assert {k for k in vars(event) if not k.startswith("_")} <= {
        "originator_id", "originator_version", "timestamp", "method", "region"}
    assert not any("203.0.113.7" in state for state in states(api.svc.ledger))
    assert haystack(api.svc.settings).find({"ip": b"203.0.113.7"}) == []


def test_MIN_6_secret_sign_in_and_throttling(api: Client) -> None:
    teacher = api.teacher()
    section = api.section(teacher, "word")
    young = api.call("POST", f"/sections/{section}/students", api.session(teacher),
                     {"display_name": "Mia", "age": "8"})
    assert young.status_code == 201, young.text
    row = young.json()
    assert row["secret_kind"] == "word" and row["secret"] and row["username"]
    code = api.call("GET", f"/sections/{section}", api.session(teacher)).json()["join_code"]

    def attempt(secret: str) -> Any:
        return api.call("POST", "/sign-in/section", body={
            "join_code": code.lower(), "username": row["username"], "secret": secret})

    ok = attempt(row["secret"].upper())
    assert ok.status_code == 200 and ok.json()["person_id"] == row["id"], ok.text
    reset = api.call("POST", f"/sections/{section}/students/{row['id']}/secret",
                     api.session(teacher))
    assert reset.status_code == 200 and reset.json()["secret"] != row["secret"]
    # The old secret no longer works; a young account has ten free failures (ledger.signin).
    failures = [attempt(row["secret"]) for _ in range(YOUNG.free)]
    unknown = api.call("POST", "/sign-in/section", body={
        "join_code": code, "username": "nobody-here", "secret": "apple apple"})
    bodies = {f.content for f in [*failures, unknown]}
    assert len(bodies) == 1 and all(f.status_code == 401 for f in failures)
    problem(failures[0], 401, "sign-in-failed")
    throttled = attempt(reset.json()["secret"])  # right secret, but too many failures
    problem(throttled, 429, "too-many-attempts")
    assert int(throttled.headers["Retry-After"]) > 0
    assert row["secret"] not in throttled.text and row["username"] not in throttled.text


def test_password_sign_in_failures_answer_alike_then_429(api: Client) -> None:
    created = api.call("POST", "/sign-up/teacher", body={
        "display_name": "Ms Rivera", "email": _unique_email(), "password": PASSWORD})
    username = created.json()["username"]
    wrong = api.call("POST", "/sign-in", body={"login": username, "password": "wrong pass"})
    unknown = api.call("POST", "/sign-in", body={"login": "no-such-user", "password": PASSWORD})
    by_email = api.call("POST", "/sign-in", body={"login": "nobody@school.example",
                                                  "password": PASSWORD})
    assert wrong.content == unknown.content == by_email.content
    problem(wrong, 401, "sign-in-failed")
    for _ in range(4):
        api.call("POST", "/sign-in", body={"login": username, "password": "wrong pass"})
    throttled = api.call("POST", "/sign-in", body={"login": username, "password": PASSWORD})
    problem(throttled, 429, "too-many-attempts")
    assert throttled.headers["Retry-After"]
    huge = api.call("POST", "/sign-in", body={"login": username, "password": "x" * 5000})
    problem(huge, 422, "validation")


def test_sign_out_revokes_only_the_token_that_asked(api: Client) -> None:
    teacher = api.teacher()
    first, second = api.session(teacher), api.session(teacher)
    assert api.call("POST", "/sign-out", first).status_code == 204
    problem(api.call("GET", "/me", first), 401, "unauthenticated")
    assert api.call("GET", "/me", second).status_code == 200
    problem(api.call("POST", "/sign-out"), 401, "unauthenticated")


# -- AGE-1, AGE-2 -------------------------------------------------------------------------------
def test_AGE_1_a_teacher_creates_under_13s_only_after_attesting(api: Client) -> None:
    teacher = api.teacher(attested=False)
    section = api.section(teacher)
    me = api.session(teacher)
    for age in ("9", None):
        before = api.position()
        body = {"display_name": NAME, **({"age": age} if age else {})}
        refused = api.call("POST", f"/sections/{section}/students", me, body)
        found = problem(refused, 403, "consent-required")
        assert "POST /me/attestations" in found["detail"] and "AGE-1" in found["detail"]
        assert NAME not in refused.text
        assert api.position() == before
    assert api.call("POST", f"/sections/{section}/students", me,
                    {"display_name": "Kai", "age": "14"}).status_code == 201
    problem(api.call("POST", "/me/attestations", me, {"policy_version": "1999-01-01"}),
            422, "validation")
    attested = api.call("POST", "/me/attestations", me, {"policy_version": CURRENT_POLICY_VERSION})
    assert attested.status_code == 201
    assert attested.json()["after"] is True and attested.json()["before"] is None
    assert api.call("POST", f"/sections/{section}/students", me,
                    {"display_name": "Mia", "age": "9"}).status_code == 201
    consents = api.call("GET", "/me/consents", me).json()
    assert [c["consent"] for c in consents] == [f"parental_consent:{CURRENT_POLICY_VERSION}"]


def test_AGE_2_race_only_13_or_older_never_teachers_and_a_class_estimate(api: Client) -> None:
    teacher = api.teacher()
    young_class = api.section(teacher)
    child = api.pupil(teacher, young_class, age="12")
    problem(api.call("PATCH", "/me", api.session(child), {"race": "asian"}), 422, "validation")
    problem(api.call("PATCH", "/me", api.session(teacher), {"race": "asian"}), 422, "validation")
    problem(api.call("PATCH", "/me", api.session(child), {"race": "martian"}), 422, "validation")
    assert not any("asian" in s for s in states(api.svc.ledger, child))
    # A refused field refuses the whole change: the name sent with it is not kept either.
    both = api.call("PATCH", "/me", api.session(child), {"display_name": "Renamed",
                                                         "race": "asian"})
    problem(both, 422, "validation")
    assert api.svc.ledger.live(child).display_name != "Renamed"

    older = api.call("PATCH", "/me", api.session(child), {"age": "13", "race": "asian",
                                                          "gender": "female"})
    assert older.status_code == 200 and older.json()["race"] == "asian", older.text
    seen_by_teacher = api.call("GET", f"/students/{child}", api.session(teacher)).json()
    assert not {"race", "gender", "email_on_file", "parent_email", "age"} & set(seen_by_teacher)
    roster = api.call("GET", f"/sections/{young_class}/students", api.session(teacher)).json()
    assert not {"race", "gender", "email_on_file", "parent_email"} & set(roster[0])

    estimate = {"distribution": {"asian": 40, "white": 30, "hispanic": 30}}
    problem(api.call("PUT", f"/sections/{young_class}/race-estimate", api.session(teacher),
                     estimate), 422, "validation")  # a 13-year-old is in the class now
    other = api.section(teacher)
    api.pupil(teacher, other, "Lea", "8")
    assert api.call("PUT", f"/sections/{other}/race-estimate", api.session(teacher),
                    estimate).status_code == 204
    problem(api.call("PUT", f"/sections/{other}/race-estimate", api.session(teacher),
                     {"distribution": {"asian": 80, "white": 30}}), 422, "validation")


# -- AGE-5, AGE-6 -------------------------------------------------------------------------------
def test_AGE_6_the_study_contact_is_for_18_or_older_and_nothing_younger_is_kept(
        api: Client) -> None:
    teacher = api.teacher()
    section = api.section(teacher)
    minor = api.pupil(teacher, section, "Ray", "17")
    before = api.position()
    refused = api.call("PUT", "/me/study-contact", api.session(minor),
                       {"contact": "ray@home.example"})
    found = problem(refused, 422, "validation")
    assert "AGE-6" in found["errors"][0]["rule"] and "home.example" not in refused.text
    assert api.position() == before
    assert "study_contact" not in api.call("GET", "/me", api.session(minor)).json()["consents"]

    adult = api.pupil(teacher, section, "Ada", "18")
    me = api.session(adult)
    assert api.call("PUT", "/me/study-contact", me, {"contact": "ada@home.example"}
                    ).status_code == 204
    assert api.call("GET", "/me", me).json()["consents"]["study_contact"] == "ada@home.example"
    assert api.call("DELETE", "/me/study-contact", me).status_code == 204
    assert "study_contact" not in api.call("GET", "/me", me).json()["consents"]
    problem(api.call("PUT", "/me/study-contact", api.session(teacher),
                     {"contact": "t@school.example"}), 403, "forbidden")


def test_AGE_5_consents_are_a_history_with_before_and_after(api: Client) -> None:
    teacher = api.teacher(attested=False)
    section = api.section(teacher)
    student = api.pupil(teacher, section, "Ada", "15")
    me = api.session(student)
    steps = [("PUT", "/me/parent-email", {"parent_email": "mum@home.example"}),
             ("PUT", "/me/parent-email", {"parent_email": "dad@home.example"}),
             ("PUT", "/me/providers/google", {"provider_subject": "g-123"}),
             ("PUT", "/me/partners/code-club", {"opted_in": True}),
             ("PUT", "/me/partners/code-club", {"opted_in": False}),
             ("DELETE", "/me/providers/google", None),
             ("DELETE", "/me/parent-email", None)]
    for method, url, body in steps:
        assert api.call(method, url, me, body).status_code == 204, url
    history = api.call("GET", "/me/consents", me).json()
    assert [(c["consent"], c["before"], c["after"]) for c in history] == [
        ("parent_email", None, "mum@home.example"),
        ("parent_email", "mum@home.example", "dad@home.example"),
        ("sign_in:google", None, "g-123"),
        ("partner_sharing:code-club", None, True),
        ("partner_sharing:code-club", True, False),
        ("sign_in:google", "g-123", None),
        ("parent_email", "dad@home.example", None)]
    assert all(c["at"] for c in history)
    problem(api.call("PUT", "/me/providers/myspace", me, {"provider_subject": "x"}), 422,
            "validation")
    t = api.session(teacher)
    assert api.call("PUT", "/me/email-opt-in", t, {"opted_in": True}).status_code == 204
    assert [c["consent"] for c in api.call("GET", "/me/consents", t).json()] == ["email_opt_in"]


# -- ACC-5 ------------------------------------------------------------------------------------
def _same_answer(*responses: Any) -> None:
    """Status, content type and body byte for byte; only the request id header differs."""
    assert len({(r.status_code, r.headers["content-type"], r.content) for r in responses}) == 1
    assert len({r.headers["X-Request-ID"] for r in responses}) == len(responses)


def test_ACC_5_a_record_not_visible_answers_exactly_like_one_that_does_not_exist(
        api: Client) -> None:
    teacher, other = api.teacher("Ms Rivera"), api.teacher("Mr Okafor")
    section = api.section(teacher)
    student = api.pupil(teacher, section, NAME, "9")
    school = api.svc.accounts.register_school("Hill School", "North", "public")
    elsewhere = api.svc.accounts.register_school("Dale School", "South", "public")
    api.svc.accounts.choose_school(teacher, school)
    api.svc.settle()
    them = api.session(other)
    _same_answer(api.call("GET", f"/students/{student}", them),
                 api.call("GET", f"/students/{uuid4()}", them),
                 api.call("GET", "/students/not-an-id", them),
                 api.call("GET", f"/students/{teacher}", them),
                 api.call("GET", f"/students/{student}", api.staff("parent", "parent:00ff")),
                 api.call("GET", f"/students/{student}",
                          api.staff("school_admin", f"school:{elsewhere}")))
    _same_answer(api.call("GET", f"/teachers/{teacher}", them),
                 api.call("GET", f"/teachers/{uuid4()}", them))
    for method, suffix, body in (("GET", "", None), ("GET", "/students", None),
                                 ("PATCH", "", {"name": NAME}),
                                 ("POST", "/students", {"display_name": NAME, "age": "9"}),
                                 ("DELETE", f"/students/{student}", None),
                                 ("POST", f"/students/{student}/secret", None)):
        _same_answer(api.call(method, f"/sections/{section}{suffix}", them, body),
                     api.call(method, f"/sections/{uuid4()}{suffix}", them, body),
                     api.call(method, f"/sections/x{suffix}", them, body))
    outsider = api.staff("school_admin", f"school:{elsewhere}")
    _same_answer(api.call("GET", f"/schools/{school}/roster", outsider),
                 api.call("GET", f"/schools/{uuid4()}/roster", outsider))
    response = api.call("GET", f"/students/{student}", them)
    problem(response, 404, "not-found")
    assert NAME not in response.text
    assert api.call("GET", f"/students/{student}", api.session(teacher)).json()[
        "display_name"] == NAME


def test_support_reads_a_record_only_with_a_stated_purpose(api: Client) -> None:
    teacher = api.teacher()
    student = api.pupil(teacher, api.section(teacher), NAME)
    support = api.staff("support")
    for purpose in (None, "", "curiosity", NAME):
        headers = {"X-Purpose": purpose} if purpose is not None else {}
        refused = api.call("GET", f"/students/{student}", support, headers=headers)
        problem(refused, 403, "purpose-required")
        assert NAME not in refused.text
    read = api.call("GET", f"/students/{student}", support,
                    headers={"X-Purpose": "account_recovery"})
    assert read.status_code == 200 and read.json()["display_name"] == NAME


# -- sections and schools ---------------------------------------------------------------------
def test_PRG_5_a_section_through_http(api: Client) -> None:
    teacher = api.teacher()
    me = api.session(teacher)
    created = api.call("POST", "/sections", me, {"name": "Period 2", "course": "csd",
                                                 "grade": "7", "login_type": "email"})
    assert created.status_code == 201, created.text
    section = created.json()
    assert created.headers["Location"] == f"/sections/{section['id']}"
    assert section["student_count"] == 0 and len(section["join_code"]) == 6
    changed = api.call("PATCH", f"/sections/{section['id']}", me, {"grade": "8"}).json()
    assert (changed["course"], changed["grade"]) == ("csd", "8")

    student = api.pupil(teacher, api.section(teacher), "Kai", "14")
    kai = api.session(student)
    joined = api.call("POST", "/sections/join", kai, {"join_code": section["join_code"].lower()})
    assert joined.json() == {"section_id": section["id"]}
    mine = api.call("GET", "/me/sections", kai).json()
    assert section["id"] in {s["id"] for s in mine}
    assert all("join_code" not in s for s in mine)
    assert [r["id"] for r in api.call("GET", f"/sections/{section['id']}/students", me).json()
            ] == [str(student)]
    assert api.call("DELETE", f"/me/sections/{section['id']}", kai).status_code == 204
    problem(api.call("DELETE", f"/me/sections/{section['id']}", kai), 404, "not-found")
    assert api.call("PUT", f"/sections/{section['id']}/students/{student}", me
                    ).status_code == 204
    assert api.call("GET", f"/sections/{section['id']}", me).json()["student_count"] == 1
    problem(api.call("POST", "/sections/join", kai, {"join_code": "ZZZZZZ"}), 404, "not-found")
    # Kai was made by this teacher and is in no other teacher's section: removing him deletes
    # his account (DEL-5), so the teacher reads the preview and confirms it.
    removal = f"/sections/{section['id']}/students/{student}"
    problem(api.call("DELETE", removal, me), 409, "confirmation-required")
    preview = api.call("GET", f"{removal}/removal", me).json()
    assert preview["deletes_account"] is True
    assert api.call("DELETE", f"{removal}?confirmation={preview['confirmation']}", me
                    ).status_code == 204
    assert api.call("GET", f"/sections/{section['id']}/students", me).json() == []
    problem(api.call("GET", "/me", kai), 401, "unauthenticated")  # his sessions ended with it
    problem(api.call("POST", f"/sections/{section['id']}/students", me,
                     {"display_name": "Lea", "age": "15"}), 422, "validation")  # email section
    teacher_sections = api.call("GET", "/me/sections", me).json()
    assert {s["id"] for s in teacher_sections} >= {section["id"]}


def test_ACC_2_school_roster_for_administrators_in_scope(api: Client) -> None:
    operator = api.staff("operator")
    created = api.call("POST", "/schools", operator, {"name": "Hill School",
                                                      "district": "North", "school_type": "public"})
    assert created.status_code == 201, created.text
    school = created.json()
    assert api.call("GET", f"/schools/{school['id']}", api.staff("researcher")).json() == school
    problem(api.call("POST", "/schools", operator, {"name": "X", "district": "Y",
                                                    "school_type": "castle"}), 422, "validation")
    teacher = api.teacher()
    me = api.session(teacher)
    assert api.call("PUT", "/me/school", me, {"school_id": school["id"]}).status_code == 204
    problem(api.call("PUT", "/me/school", me, {"school_id": str(uuid4())}), 422, "validation")
    section = api.section(teacher)
    api.pupil(teacher, section, NAME, "9")
    for auth in (api.staff("school_admin", f"school:{school['id']}"),
                 api.staff("district_admin", f"district:{school['district_id']}"), operator):
        roster = api.call("GET", f"/schools/{school['id']}/roster", auth)
        assert roster.status_code == 200, roster.text
        [listed] = roster.json()["sections"]
        assert listed["id"] == str(section) and [s["display_name"] for s in listed["students"]
                                                 ] == [NAME]
        assert set(listed["students"][0]) == {"id", "display_name"}
    problem(api.call("GET", f"/schools/{school['id']}/roster",
                     api.staff("district_admin", f"district:{uuid4()}")), 404, "not-found")
    problem(api.call("GET", f"/schools/{school['id']}/roster", me), 403, "forbidden")


# -- nothing a client sends gives a 500, nor comes back --------------------------------------
_GARBAGE: list[Any] = [None, [], "x", {"a": 1}, {"display_name": ["x"], "age": {}},
                       {"password": 1, "login": None, "distribution": {"asian": "lots"}},
                       {"school_id": "nope", "opted_in": "maybe"}, {NAME: NAME},
                       {"name": "\x00", "course": "\ud800", "grade": 7, "login_type": None}]


def test_no_body_any_route_gives_a_500_or_echoes_a_value(api: Client) -> None:
    teacher = api.teacher()
    section = api.section(teacher)
    student = api.pupil(teacher, section)
    spec = api.call("GET", "/openapi.json").json()
    auth = {"teacher": api.session(teacher), "student": api.session(student),
            "operator": api.staff("operator")}
    ids = {"section_id": str(section), "student_id": str(student), "person_id": str(student),
           "school_id": str(uuid4()), "provider": "google", "partner": "code-club",
           "project_id": str(uuid4()), "media_id": str(uuid4()), "hold_id": str(uuid4()),
           "subject_id": str(student), "table": "profile", "notification_id": "1",
           "measure": "students", "name": "student_directory",
           "actor_id": str(uuid4()),
           "request_id": str(api.svc.rights.file(student, "rectify", "operator", "test",
                                                 "display_name", "Mia Other"))}
    checked = 0
    for path, operations in spec["paths"].items():
        url = path.format(**ids)
        for method, operation in operations.items():
            if "requestBody" not in operation:
                continue
            callers = ([auth["teacher"], auth["student"]]
                       if path.startswith(("/me", "/sections")) else [auth["operator"]])
            for who in callers:
                for body in _GARBAGE:
                    raw = b"{not json" if body == "x" else json.dumps(body).encode()
                    response = api.http.request(method.upper(), url, content=raw, headers={
                        **who, "Content-Type": "application/json"})
                    assert response.status_code < 500, (method, path, body, response.text)
                    assert NAME not in response.text
                    checked += 1
    assert checked > 150


def test_logs_carry_ids_never_personal_values(api: Client,
                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        teacher = api.call("POST", "/sign-up/teacher", body={
            "display_name": NAME, "email": LOG_EMAIL, "password": PASSWORD}).json()
        session = api.call("POST", "/sign-in", body={"login": LOG_EMAIL, "password": PASSWORD},
                           headers={"X-Region": "US-WA"}).json()
        me = {"Authorization": f"Bearer {session['token']}"}
        api.call("POST", "/me/attestations", me, {"policy_version": CURRENT_POLICY_VERSION})
        section = api.call("POST", "/sections", me, {"name": "Zanzibar Hour", "course": "csf",
                                                     "grade": "3", "login_type": "picture"})
        section_id = section.json()["id"]
        pupil = api.call("POST", f"/sections/{section_id}/students", me,
                         {"display_name": "Wilhelmina Quark", "age": "7"}).json()
        secret = api.call("POST", f"/sections/{section_id}/students/{pupil['id']}/secret",
                          me).json()["secret"]
        api.call("GET", f"/sections/{section_id}/students", me)
        api.call("PATCH", "/me", me, {"display_name": NAME + " II", "gender": "female"})
        api.call("PUT", "/me/email", me, {"email": "q2@home.example",
                                          "current_password": PASSWORD})
        api.call("POST", "/sign-in/section", body={
            "join_code": section.json()["join_code"], "username": pupil["username"],
            "secret": "wrong " + secret})
        api.call("POST", "/sign-out", me)
    assert teacher["id"] in caplog.text and pupil["id"] in caplog.text
    for value in (NAME, "Zanzibar", LOG_EMAIL, "q2@home.example", "Wilhelmina", pupil["username"],
                  teacher["username"], "US-WA", section.json()["join_code"], session["token"]):
        assert value not in caplog.text, value


def test_erasing_a_person_ends_their_sessions(api: Client) -> None:
    teacher = api.teacher()
    pupil = api.pupil(teacher, api.section(teacher))
    session = api.session(pupil)
    assert api.call("GET", "/me", session).status_code == 200

    erased = api.call("DELETE", f"/people/{pupil}?reason=school_request", api.staff("operator"))
    assert erased.status_code == 200, erased.text
    problem(api.call("GET", "/me", session), 401, "unauthenticated")
    assert api.call("GET", "/me", api.session(teacher)).status_code == 200  # others keep theirs
