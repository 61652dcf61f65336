"""The HTTP API on both backends: routes, tokens and roles, problems that never echo input."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import RecordConflictError
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from api.http.app import create_app
from api.services import Services
from api.tokens import ROLES, TokenStore, token_hash
from crypto.sql import DatabaseUnavailable
from ledger.people import AGES

PROBLEM = "application/problem+json"
P = "https://ledger.invalid/problems/"
SECRET_NAME = "Zelda Quixotic-Marsh"  # a personal value that must never come back in an error
SECRET_DATE = "2011-04-05"


class Api:
    """A client with a token per role, and the ledger's position for "nothing was written"."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.app: FastAPI = create_app(services)
        self.client = TestClient(self.app)
        self.tokens: TokenStore = self.app.state.tokens
        # A registrar is school staff: theirs is a school with one teacher's section.
        self.school = services.accounts.register_school("Hill School", "North", "public")
        self.teacher_at_school = services.ledger.register_teacher("Tess", school_id=self.school)
        services.accounts.attest_parental_consent(self.teacher_at_school)
        self.section = services.sections.create(self.teacher_at_school, "Period 1", "csf", "4",
                                                "word")
        services.settle()
        self.auth = {str(role): self.bearer(self.tokens.issue(
            role, f"{role}-1", timedelta(hours=1),
            scope=f"school:{self.school}" if role == "registrar" else None).token)
            for role in ROLES}

    @staticmethod
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def call(self, method: str, url: str, role: str | None = "operator", body: Any = None,
             raw: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
        all_headers = {**(self.auth[role] if role else {}), **(headers or {})}
        if raw is not None:
            all_headers.setdefault("Content-Type", "application/json")
            return self.client.request(method, url, content=raw, headers=all_headers)
        if body is not None:
            return self.client.request(method, url, json=body, headers=all_headers)
        return self.client.request(method, url, headers=all_headers)

    def position(self) -> int:
        return self.services.ledger.recorder.max_notification_id() or 0

    def student(self, name: str = "Ana", age: str = "12") -> str:
        return str(self.services.ledger.register_student(name, age))

    def teacher(self, name: str = "Ben") -> str:
        return str(self.services.ledger.register_teacher(name))

    def student_at_school(self) -> str:
        """A student in the section of the registrar's school."""
        made = self.services.sections.create_student(self.teacher_at_school, self.section,
                                                     "Ana", "12")
        self.services.settle()
        return str(made)

    def teacher_at_school_(self) -> str:
        made = self.services.ledger.register_teacher("Ben", school_id=self.school)
        self.services.settle()
        return str(made)


@pytest.fixture
def api(services: Services) -> Iterator[Api]:
    client = Api(services)
    yield client
    client.client.close()


def assert_problem(response: Any, status: int, type_: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert body["type"].startswith(P) or body["type"] == "about:blank"
    if type_ is not None:
        assert body["type"] == P + type_
    assert "input" not in response.text
    return body


# -- happy paths -------------------------------------------------------------------------------
def test_healthz_needs_no_token(api: Api) -> None:
    response = api.call("GET", "/healthz", role=None)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "backend": api.services.settings.backend}


def test_register_read_rename_list_erase(api: Api) -> None:
    created = api.call("POST", "/students", "registrar",
                       {"display_name": " Ana ", "age": "12", "age_given_on": "2024-09-01",
                        "section_id": str(api.section)})
    assert created.status_code == 201
    ana = created.json()
    assert ana["display_name"] == "Ana" and ana["kind"] == "student"
    assert created.headers["Location"] == f"/students/{ana['id']}"
    read = api.call("GET", created.headers["Location"], "support",
                    headers={"X-Purpose": "technical_issue"}).json()
    assert {k: read[k] for k in ("id", "kind", "display_name", "age", "age_given_on")} == {
        "id": ana["id"], "kind": "student", "display_name": "Ana", "age": "12",
        "age_given_on": "2024-09-01"}
    assert "email_hash" not in read and "password_hash" not in read

    teacher = api.call("POST", "/teachers", "registrar", {"display_name": "Ben"})
    assert teacher.status_code == 201 and teacher.json()["age"] == "21+"
    ben = teacher.json()["id"]
    assert teacher.headers["Location"] == f"/teachers/{ben}"
    assert api.call("GET", f"/teachers/{ben}", "registrar").json()["display_name"] == "Ben"
    assert api.call("POST", "/students", body={"display_name": "Cy", "age": 9}).status_code == 201

    renamed = api.call("PATCH", f"/people/{ana['id']}", "registrar", {"display_name": "Ana B"})
    assert renamed.status_code == 200 and renamed.json()["display_name"] == "Ana B"
    assert api.call("GET", f"/students/{ana['id']}").json()["display_name"] == "Ana B"

    api.services.catch_up()
    listing = api.call("GET", "/people?kind=student", "operator").json()
    assert {i["display_name"] for i in listing["items"]} == {"Ana B", "Cy"}
    assert {i["kind"] for i in listing["items"]} == {"student"}
    # The registrar's directory is their school's: Cy is in no section of it.
    theirs = api.call("GET", "/people", "registrar").json()
    assert {i["display_name"] for i in theirs["items"]} == {"Ana B", "Ben", "Tess"}

    erased = api.call("DELETE", f"/people/{ana['id']}?reason=school_request")
    assert erased.status_code == 200
    facts = erased.json()["receipt"]
    assert facts["subject_id"] == ana["id"] and UUID(facts["key_id"])
    assert facts["reason"] == "school_request" and facts["requester"].startswith("operator:")
    assert_problem(api.call("GET", f"/students/{ana['id']}"), 410, "subject-erased")
    again = api.call("DELETE", f"/people/{ana['id']}?reason=school_request")
    assert again.status_code == 200 and again.json() == erased.json()  # the first receipt


def test_directory_pages_by_id(api: Api) -> None:
    ids = sorted(api.student(f"S{i}") for i in range(5))
    api.teacher()
    api.services.catch_up()
    seen: list[str] = []
    after = ""
    while True:
        page = api.call("GET", f"/people?kind=student&limit=2{after}", "operator").json()
        if not page["items"]:
            assert page["next_after"] is None
            break
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        after = f"&after={page['next_after']}"
    assert seen == ids
    assert len(api.call("GET", "/people", "operator").json()["items"]) == 7  # and Tess


def test_openapi_docs_and_request_ids(api: Api) -> None:
    spec = api.call("GET", "/openapi.json", role=None).json()
    assert {"/students", "/teachers", "/people", "/people/{person_id}",
            "/students/{person_id}", "/teachers/{person_id}", "/healthz"} <= set(spec["paths"])
    assert api.call("GET", "/docs", role=None).status_code == 200
    given_id = api.call("GET", "/healthz", role=None, headers={"X-Request-ID": "req-42"})
    assert given_id.headers["X-Request-ID"] == "req-42"
    for bad in ("has space", "x" * 200):
        fresh = api.call("GET", "/healthz", role=None, headers={"X-Request-ID": bad})
        assert fresh.headers["X-Request-ID"] != bad and len(fresh.headers["X-Request-ID"]) == 32


# -- who may do what (staff routes; tests/test_authorization_matrix.py has every route) ---------
ALLOWED = {
    # (method, route): the roles that may call it; every other role gets 403 (deny by default)
    ("POST", "/students"): {"operator", "registrar"},
    ("POST", "/teachers"): {"operator", "registrar"},
    ("GET", "/students/{person_id}"): {"operator", "registrar", "support"},
    ("GET", "/teachers/{person_id}"): {"operator", "registrar", "support"},
    ("PATCH", "/people/{person_id}"): {"operator", "registrar"},
    ("DELETE", "/people/{person_id}"): {"operator", "support"},
    ("GET", "/people"): {"operator", "registrar"},
}
# Roles that may read people, but only those they stand in a relation to (api/access.py): these
# tokens name no one and no scope, so every person answers 404 to them, as if absent (ACC-5).
SEES_NO_ONE = {"student", "teacher", "school_admin", "district_admin", "parent"}
# DEL-4: roles that may erase a student at once only through a relation to them: 404 here.
ERASE_BY_RELATION = {"teacher", "school_admin", "district_admin", "parent"}
PUBLIC = {("GET", "/healthz")}


def _request(api: Api, method: str, route: str) -> tuple[str, Any]:
    """A valid request to each route (a fresh subject where one is changed), at the school of
    the registrar's scope."""
    person = api.teacher_at_school_() if route.startswith("/teachers/") else \
        api.student_at_school()
    url = route.format(person_id=person)
    body = {
        "/students": {"display_name": "Ana", "age": "12", "section_id": str(api.section)},
        "/teachers": {"display_name": "Ben"},
        "/people/{person_id}": {"display_name": "Ana B"} if method == "PATCH" else None,
    }.get(route)
    return url + ("?reason=user_request" if method == "DELETE" else ""), body


def test_role_by_route_table(api: Api) -> None:
    spec = api.call("GET", "/openapi.json", role=None).json()
    routes = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    assert set(ALLOWED) | PUBLIC <= routes
    unknown_role = "lgr_" + uuid4().hex
    with api.tokens.db.transaction() as cur:  # a role from a future version: denied everything
        cur.execute("INSERT INTO api_tokens (token_hash, principal_id, role, label, created_at,"
                    " expires_at) VALUES (?, ?, 'superuser', 'x', '2000-01-01T00:00:00+00:00',"
                    " '2999-01-01T00:00:00+00:00')", (token_hash(unknown_role), str(uuid4())))
    api.auth["superuser"] = api.bearer(unknown_role)
    failures = []
    for (method, route), allowed in ALLOWED.items():
        for role in [*map(str, ROLES), "superuser", None]:
            url, body = _request(api, method, route)
            before = api.position()
            reads_person = method == "GET" and route.endswith("{person_id}")
            erases = method == "DELETE" and role in ERASE_BY_RELATION
            response = api.call(method, url, role, body,
                                headers={"X-Purpose": "account_recovery"})
            expected = (401 if role is None else
                        (201 if method == "POST" else 200) if role in allowed else
                        404 if (reads_person and role in SEES_NO_ONE) or erases else 403)
            if response.status_code != expected:
                failures.append((method, route, role, response.status_code, expected))
            elif expected >= 400:
                assert_problem(response, expected, {401: "unauthenticated", 403: "forbidden",
                                                    404: "not-found"}[expected])
                assert api.position() == before
    assert failures == []
    for role in ROLES:
        assert api.call("GET", "/healthz", str(role)).status_code == 200


def test_missing_invalid_expired_or_revoked_tokens_get_401(api: Api) -> None:
    expiring = api.tokens.issue("operator", "short", timedelta(seconds=30)).token
    revoked = api.tokens.issue("operator", "gone", timedelta(days=1))
    api.tokens.revoke(str(revoked.principal_id))
    clock = api.tokens.clock
    api.tokens.clock = lambda: clock() + timedelta(minutes=1)
    student = api.student()
    cases = [{}, {"Authorization": "Basic b3A6b3A="}, {"Authorization": "Bearer"},
             api.bearer("lgr_" + "x" * 43), api.bearer(expiring), api.bearer(revoked.token)]
    for headers in cases:
        for method, url in (("GET", f"/students/{student}"), ("POST", "/students"),
                            ("GET", "/people"), ("DELETE", f"/people/{student}?reason=x")):
            response = api.call(method, url, role=None, headers=headers,
                                body={"display_name": SECRET_NAME} if method == "POST" else None)
            assert_problem(response, 401, "unauthenticated")
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert SECRET_NAME not in response.text


# -- bad input: a 4xx problem, nothing written, nothing echoed ---------------------------------
def _bad_requests(api: Api) -> list[tuple[str, str, Any, bytes | None, int]]:
    student, teacher = api.student(), api.teacher()
    erased = api.student()
    api.services.ledger.erase_subject(UUID(erased), "user_request")
    unknown = uuid4()
    n = SECRET_NAME
    return [
        ("POST", "/students", {"age": "12"}, None, 422),
        ("POST", "/students", {"display_name": n}, None, 422),
        ("POST", "/students", {"display_name": n, "age": "3"}, None, 422),
        ("POST", "/students", {"display_name": n, "age": "twelve"}, None, 422),
        ("POST", "/students", {"display_name": n, "age": 12.5}, None, 422),
        ("POST", "/students", {"display_name": n, "age": True}, None, 422),
        ("POST", "/students", {"display_name": n, "age": ["12"]}, None, 422),
        ("POST", "/students", {"display_name": "   ", "age": "12"}, None, 422),
        ("POST", "/students", {"display_name": n * 10, "age": "12"}, None, 422),
        ("POST", "/students", {"display_name": n + "\x00", "age": "12"}, None, 422),
        ("POST", "/students", {"display_name": 42, "age": "12"}, None, 422),
        ("POST", "/students", {"display_name": n, "age": "12", "birth_date": SECRET_DATE},
         None, 422),
        ("POST", "/students", {"display_name": n, "age": "12", n: SECRET_DATE}, None, 422),
        ("POST", "/students", {"display_name": n, "age": "12", "age_given_on": n}, None, 422),
        ("POST", "/students", [n, "12"], None, 422),
        ("POST", "/students", None, b"null", 422),
        ("POST", "/students", None, b"", 422),
        ("POST", "/students", None, ('{"display_name": "' + n + '", ').encode(), 400),
        ("POST", "/students", None, b'{"display_name": "\\ud800", "age": "12"}', 422),
        ("POST", "/students", None, b'{"display_name": "\xff", "age": "12"}', 400),
        ("POST", "/teachers", {"display_name": n, "age": "20"}, None, 422),
        ("POST", "/teachers", {"display_name": n, "date_of_birth": SECRET_DATE}, None, 422),
        ("POST", "/teachers", {}, None, 422),
        ("PATCH", f"/people/{student}", {"display_name": ""}, None, 422),
        ("PATCH", f"/people/{student}", {"display_name": n, "age": "13"}, None, 422),
        ("PATCH", f"/people/{student}", None, b"{", 400),
        ("PATCH", f"/people/{unknown}", {"display_name": n}, None, 404),
        ("PATCH", "/people/not-a-uuid", {"display_name": n}, None, 404),
        ("PATCH", f"/people/{erased}", {"display_name": n}, None, 410),
        ("DELETE", f"/people/{student}?reason=because", None, None, 422),
        ("DELETE", f"/people/{student}", None, None, 422),
        ("DELETE", f"/people/{unknown}?reason=user_request", None, None, 404),
        ("DELETE", "/people/123?reason=user_request", None, None, 404),
        ("GET", f"/students/{unknown}", None, None, 404),
        ("GET", f"/students/{teacher}", None, None, 404),
        ("GET", f"/teachers/{student}", None, None, 404),
        ("GET", f"/students/{n}", None, None, 404),
        ("GET", f"/teachers/{erased}", None, None, 410),
        ("GET", "/people?limit=0", None, None, 422),
        ("GET", "/people?limit=100000", None, None, 422),
        ("GET", "/people?kind=parent", None, None, 422),
        ("GET", f"/people?after={n}", None, None, 422),
        ("PUT", "/students", {"display_name": n}, None, 405),
        ("GET", f"/nowhere/{n}", None, None, 404),
    ]


def test_bad_input_is_a_problem_writes_nothing_and_echoes_nothing(api: Api) -> None:
    for method, url, body, raw, status in _bad_requests(api):
        before = api.position()
        response = api.call(method, url, body=body, raw=raw)
        assert response.status_code == status, (method, url, body, raw, response.text)
        problem = assert_problem(response, status)
        assert api.position() == before, (method, url)
        for value in (SECRET_NAME, SECRET_DATE, "Zelda", "twelve", "because", "not-a-uuid"):
            assert value not in response.text, (method, url, response.text)
        if status == 422:
            assert problem["type"] == P + "validation"
            assert problem["errors"] and all(set(e) == {"field", "rule"}
                                             for e in problem["errors"])


@pytest.mark.parametrize("field", ["birth_date", "date_of_birth", "dateOfBirth", "dob"])
def test_a_birth_date_is_never_accepted(api: Api, field: str) -> None:
    before = api.position()
    response = api.call("POST", "/students", "registrar",
                        {"display_name": "Ana", "age": "12", field: SECRET_DATE})
    problem = assert_problem(response, 422, "validation")
    assert "never accepted" in problem["detail"].lower()
    assert "birth" in problem["errors"][0]["field"] or problem["errors"][0]["field"] == "dob"
    assert SECRET_DATE not in response.text
    assert api.position() == before


def test_unknown_other_kind_and_malformed_ids_answer_alike(api: Api) -> None:
    student, teacher = api.student(), api.teacher()
    urls = [f"/students/{uuid4()}", f"/teachers/{uuid4()}", f"/students/{teacher}",
            f"/teachers/{student}", "/students/abc", f"/students/{student}x"]
    bodies = {json.dumps(assert_problem(api.call("GET", url), 404, "not-found"))
              for url in urls}
    bodies |= {json.dumps(assert_problem(api.call("PATCH", f"/people/{uuid4()}",
                                                  body={"display_name": "X"}), 404))}
    assert len(bodies) == 1


def test_erased_people_answer_410(api: Api) -> None:
    student, teacher = api.student(), api.teacher()
    for person, url in ((student, f"/students/{student}"), (teacher, f"/teachers/{teacher}")):
        assert api.call("DELETE", f"/people/{person}?reason=user_request").status_code == 200
        assert_problem(api.call("GET", url, "support",
                                    headers={"X-Purpose": "legal_request"}), 410, "subject-erased")
        assert_problem(api.call("PATCH", f"/people/{person}", body={"display_name": "X"}), 410)
    api.services.catch_up()
    listed = {item["id"] for item in api.call("GET", "/people").json()["items"]}
    assert listed == {str(api.teacher_at_school)}  # the school's teacher, made by the fixture


# -- failures of the machinery -----------------------------------------------------------------
def _broken(*args: Any, **kwargs: Any) -> Any:
    raise DatabaseUnavailable("down")


def test_key_store_unreachable_is_503_never_erased(api: Api,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    student = api.student()
    api.services.ledger.keys.forget_cached_keys()  # the next read must reach the store
    monkeypatch.setattr(api.services.ledger.keys.store.db, "transaction", _broken)
    before = api.position()
    for method, url, body in (("GET", f"/students/{student}", None),
                              ("POST", "/students", {"display_name": "Ana", "age": "12"}),
                              ("GET", "/healthz", None)):
        response = api.call(method, url, body=body)
        assert_problem(response, 503, "key-store-unavailable")
        assert response.headers["Retry-After"]
    assert api.position() == before


def test_database_unreachable_and_conflicts(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api.services.directory_reader, "entries", _broken)
    response = api.call("GET", "/people")
    assert_problem(response, 503, "service-unavailable")
    assert response.headers["Retry-After"]
    monkeypatch.setattr(api.tokens.db, "transaction", _broken)  # tokens too: fail closed
    assert_problem(api.call("GET", f"/students/{uuid4()}"), 503, "service-unavailable")
    monkeypatch.undo()

    def conflict(*args: Any) -> None:
        raise RecordConflictError("version taken")

    monkeypatch.setattr(api.services.ledger, "rename", conflict)
    assert_problem(api.call("PATCH", f"/people/{api.student()}", body={"display_name": "B"}),
                   409, "conflict")


def test_unexpected_errors_are_500_problems_without_values(
        api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def boom(*args: Any) -> None:
        raise RuntimeError(f"could not handle {SECRET_NAME}")

    monkeypatch.setattr(api.services.ledger, "person", boom)
    with caplog.at_level(logging.INFO, logger="api.http"):
        response = api.call("GET", f"/students/{uuid4()}", headers={"X-Request-ID": "r-500"})
    problem = assert_problem(response, 500, "internal")
    assert problem["request_id"] == "r-500" == response.headers["X-Request-ID"]
    assert SECRET_NAME not in response.text and SECRET_NAME not in caplog.text
    assert "RuntimeError" in caplog.text and "r-500" in caplog.text


def test_logs_carry_ids_never_names(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        created = api.call("POST", "/students", body={"display_name": SECRET_NAME, "age": "12"})
        person = created.json()["id"]
        api.call("PATCH", f"/people/{person}", body={"display_name": SECRET_NAME + " B"})
        api.call("GET", f"/students/{person}")
        api.call("POST", "/students", body={"display_name": SECRET_NAME, "age": "99"})
        api.services.catch_up()
        api.call("GET", "/people")
        api.call("DELETE", f"/people/{person}?reason=user_request")
    assert person in caplog.text and "route=/students/{person_id}" in caplog.text
    assert "Zelda" not in caplog.text


# -- any JSON at all ---------------------------------------------------------------------------
_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
            allow_infinity=False) | st.text(max_size=30) | st.sampled_from(["12", "21+", "4"]))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=12), inner, max_size=3), max_leaves=6)
_printable = st.text(st.characters(exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp")),
                     min_size=1, max_size=40)
_plausible = st.fixed_dictionaries(
    {"display_name": st.one_of(_printable, _printable, st.text(max_size=40), _json),
     "age": st.one_of(st.sampled_from(AGES), st.sampled_from(AGES), st.integers(0, 30),
                      st.sampled_from(["3", "21", "0", "", " 12", "12.0"]), _json)},
    optional={"age_given_on": st.dates().map(str) | _json},
)
_valid = st.fixed_dictionaries({"display_name": _printable, "age": st.sampled_from(AGES)})
_with_extras = st.builds(lambda body, extra: {**extra, **body}, _plausible,
                         st.dictionaries(st.sampled_from(["birth_date", "extra", "id", "kind"])
                                         | st.text(max_size=8), _json, min_size=1, max_size=2))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(_valid, _plausible, _json, _with_extras))
def test_any_json_body_is_201_or_a_4xx_problem_that_wrote_nothing(api: Api, body: Any) -> None:
    before = api.position()
    response = api.call("POST", "/students", "registrar", raw=json.dumps(body).encode())
    assert response.status_code < 500, response.text
    event(f"status {response.status_code}")
    if response.status_code == 201:
        assert api.position() > before
        assert api.call("GET", response.headers["Location"]).status_code == 200
    else:
        assert_problem(response, response.status_code)
        assert 400 <= response.status_code < 500
        assert api.position() == before
