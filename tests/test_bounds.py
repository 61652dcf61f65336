"""Issue 17, "trust at every door", on both backends: security headers on every response, the
body limit before parsing, bounds on every text and time (in the models and in the domain),
identifiers normalised with invisible characters refused, and CSV cells that a spreadsheet would
run as formulas guarded. Each refusal is a 422 problem naming the field and writes nothing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.services import Services
from api.spreadsheet import guard
from ledger import bounds
from ledger.bounds import InvalidRecord
from ledger.people import display_name, email
from ledger.progress import Attempt, valid_attempt
from ledger.transcoder import OrjsonTranscoder
from tests.conftest import BACKENDS, drop_schemas, make_settings
from tests.test_api_accounts import PASSWORD, Client, problem, serving

SECURITY = {"x-content-type-options": "nosniff", "x-frame-options": "DENY",
            "referrer-policy": "no-referrer"}


@pytest.fixture(scope="module", params=BACKENDS)
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Client]:
    settings_ = make_settings(str(request.param), str(tmp_path_factory.mktemp("bounds")))
    try:
        with serving(Services.open(settings_)) as client:
            yield client
    finally:
        if settings_.backend == "postgres":
            drop_schemas(settings_.schema, settings_.keystore_schema)


def _student(api: Client) -> tuple[Any, dict[str, str]]:
    teacher = api.teacher()
    section = api.section(teacher)
    student = api.pupil(teacher, section, "Mia", age="15")
    return student, api.session(student)


def _refused(response: Any, field: str) -> dict[str, Any]:
    body = problem(response, 422, "validation")
    assert field in {e["field"] for e in body["errors"]}, body
    return body


def _secure(response: Any, cache: str = "no-store") -> None:
    for name, value in SECURITY.items():
        assert response.headers[name] == value, name
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == cache


# -- finding 1: headers -------------------------------------------------------------------------
def test_every_answer_carries_the_security_headers_and_no_store(api: Client) -> None:
    student, me = _student(api)
    ok = api.call("GET", "/me", me)
    assert ok.status_code == 200
    _secure(ok)
    assert ok.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    _secure(api.call("GET", f"/students/{student}", me))
    _secure(api.call("GET", f"/students/{student}/export/profile.csv", me))
    _secure(api.call("GET", "/me/progress", me))
    _secure(api.call("GET", "/no/such/route"))  # Starlette's 404
    _secure(api.call("DELETE", "/sign-in"))  # Starlette's 405
    _secure(api.call("POST", "/sign-in", body={"login": "x"}))  # 422
    _secure(api.call("GET", "/me"))  # 401
    _secure(api.call("GET", "/ledger/public-key"), "public, max-age=300")


def test_the_sign_in_token_is_never_cached(api: Client) -> None:
    made = api.call("POST", "/sign-up/teacher", body={
        "display_name": "Ms Cache", "email": f"cache-{uuid4().hex[:8]}@school.example",
        "password": PASSWORD})
    assert made.status_code == 201, made.text
    _secure(made)


def test_the_500_answer_carries_the_headers(api: Client) -> None:
    def boom() -> None:
        raise RuntimeError("unexpected")

    api.app.add_api_route("/test-only/boom", boom)
    try:
        response = api.call("GET", "/test-only/boom")
        problem(response, 500, "internal")
        _secure(response)
    finally:
        api.app.router.routes.pop()


def test_the_docs_pages_may_load_their_scripts_and_stay_unframed(api: Client) -> None:
    for page in ("/docs", "/redoc"):
        response = api.call("GET", page)
        assert response.status_code == 200
        policy = response.headers["content-security-policy"]
        assert "https://cdn.jsdelivr.net" in policy and "frame-ancestors 'none'" in policy
        assert response.headers["cache-control"] == "no-store"


# -- finding 2: the body limit ------------------------------------------------------------------
def test_a_declared_body_over_the_limit_is_refused_unread(api: Client) -> None:
    before = api.position()
    huge = b'{"login": "' + b"a" * (16 * 1024 * 1024) + b'", "password": "x"}'
    response = api.http.post("/sign-in", content=huge,
                             headers={"content-type": "application/json"})
    body = problem(response, 413, "body-too-large")
    assert str(api.svc.settings.max_body_bytes) in body["detail"]
    _secure(response)
    assert api.position() == before


def test_a_streamed_body_is_cut_off_at_the_limit(api: Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"login": "'
        for _ in range(10_000):  # 40 MiB if it were all read
            yield b"a" * 4096
        yield b'", "password": "x"}'

    response = api.http.post("/sign-in", content=chunks(),
                             headers={"content-type": "application/json"})
    problem(response, 413, "body-too-large")
    assert response.request.headers.get("transfer-encoding") == "chunked"  # no length given
    assert response.headers["x-frame-options"] == "DENY"


def test_a_project_source_and_an_upload_keep_their_larger_limits(api: Client) -> None:
    _, me = _student(api)
    source = "x" * (200 * 1024)  # more than the small limit, within a project's
    made = api.call("POST", "/me/projects", me, {"kind": "app", "name": "Big", "source": source})
    assert made.status_code == 201, made.text
    project = made.json()["id"]
    image = b"\x89PNG\r\n\x1a\n" + b"\x00" * (300 * 1024)
    uploaded = api.http.post(f"/me/projects/{project}/media", content=image,
                             headers={**me, "content-type": "image/png"})
    assert uploaded.status_code == 201, uploaded.text
    too_big = b"\x00" * (api.svc.settings.max_upload_bytes + 1)
    problem(api.http.post(f"/me/projects/{project}/media", content=too_big,
                          headers={**me, "content-type": "image/png"}), 413,
            "upload-too-large")
    problem(api.call("PATCH", "/me", me, {"display_name": "x" * (70 * 1024)}), 413,
            "body-too-large")


def test_413_is_documented_on_routes_with_a_body(api: Client) -> None:
    document = api.call("GET", "/openapi.json").json()
    assert "413" in document["paths"]["/sign-in"]["post"]["responses"]
    assert "413" in document["paths"]["/me"]["patch"]["responses"]


# -- finding 2: lengths, dates, identifiers -----------------------------------------------------
def test_a_long_display_name_is_refused_and_nothing_written(api: Client) -> None:
    _, me = _student(api)
    before = api.position()
    body = _refused(api.call("PATCH", "/me", me, {"display_name": "N" * 50_000}), "display_name")
    assert "NNNN" not in str(body)
    assert api.position() == before
    with pytest.raises(InvalidRecord):
        api.svc.accounts.rename(api.teacher(), "N" * 50_000)


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00Z",
                                  "0001-01-01T00:00:00+01:00", "2012-12-31T23:59:59Z",
                                  "2026-03-01T10:00:00", "3000-01-01T00:00:00Z"])
def test_an_attempt_at_a_time_the_ledger_cannot_use_is_refused(api: Client, when: str) -> None:
    _, me = _student(api)
    before = api.position()
    _refused(api.call("POST", "/me/attempts", me, {
        "level": "csf/unit-1/level-1", "result": "solved", "attempted_at": when}),
        "attempted_at")
    assert api.position() == before
    api.svc.settle()
    assert api.call("GET", "/me/progress", me).status_code == 200


def test_the_domain_refuses_the_same_times_whatever_the_door(api: Client) -> None:
    student, _ = _student(api)
    for when in (datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-12))),
                 datetime(1, 1, 1, tzinfo=UTC), datetime(2020, 1, 1)):
        with pytest.raises(InvalidRecord) as refused:
            api.svc.attempts.record(student, Attempt("csf/l-1", "solved", when))
        assert refused.value.field == "attempted_at"


def test_the_transcoder_refuses_a_time_it_could_not_read_back() -> None:
    transcoder = OrjsonTranscoder()
    for when in (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
                 datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-12)))):
        with pytest.raises(InvalidRecord):
            transcoder.encode({"at": when})
    fine = datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=5)))
    assert transcoder.decode(transcoder.encode({"at": fine}))["at"] == fine


def test_an_email_with_a_zero_width_space_never_makes_a_second_account(api: Client) -> None:
    address = f"zw{uuid4().hex[:8]}@b.example"
    first = api.call("POST", "/sign-up/student", body={
        "display_name": "Sam", "age": "15", "email": address, "password": PASSWORD})
    assert first.status_code == 201, first.text
    before = api.position()
    local, domain = address.split("@")
    for spelling in (f"{local}\u200b@{domain}", f"\ufeff{address}", f"{local}\u202e@{domain}"):
        _refused(api.call("POST", "/sign-up/student", body={
            "display_name": "Sam", "age": "15", "email": spelling, "password": PASSWORD}),
            "email")
    full_width = "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in local)
    problem(api.call("POST", "/sign-up/student", body={
        "display_name": "Sam", "age": "15", "email": f"{full_width}@{domain}",
        "password": PASSWORD}), 409, "already-in-use")
    assert api.position() == before
    with pytest.raises(InvalidRecord):
        api.svc.accounts.sign_up_student("Sam", "15", f"{local}\u200b@{domain}", PASSWORD)
    _refused(api.call("POST", "/sign-in", body={"login": f"{local}\u200d@{domain}",
                                                "password": PASSWORD}), "login")
    _refused(api.call("POST", "/password-reset/request", body={"email": f"\u2066{address}"}),
             "email")


def test_identifiers_and_free_text_in_the_domain() -> None:
    assert email("email", "  \uff41@b.example ") == "a@b.example"
    for bad in ("a\u200b@b.example", "a\u00ad@b.example", "a\u3164@b.example", "a\n@b.example"):
        with pytest.raises(InvalidRecord):
            email("email", bad)
    with pytest.raises(InvalidRecord):
        display_name("Sam\u202eevil")
    assert bounds.free_text("text", "line one\nline two\tend", 100, multiline=True)
    with pytest.raises(InvalidRecord):
        bounds.free_text("text", "a\u202eb", 100, multiline=True)
    with pytest.raises(InvalidRecord):
        bounds.free_text("text", "a\x07b", 100, multiline=True)


# -- finding 3: CSV cells -----------------------------------------------------------------------
def test_the_csv_guard() -> None:
    for cell in ("=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"):
        assert guard(cell) == "'" + cell
    assert guard("Mia") == "Mia" and guard("") == ""


def test_an_export_never_hands_a_spreadsheet_a_formula(api: Client) -> None:
    teacher = api.teacher()
    section = api.section(teacher)
    student = api.pupil(teacher, section, '=HYPERLINK("http://x.invalid","a")', age="15")
    me = api.session(student)
    response = api.call("GET", f"/students/{student}/export/profile.csv", me)
    assert response.status_code == 200
    by_field = {row[0]: row[1] for row in csv.reader(io.StringIO(response.text))}
    assert by_field["display_name"] == '\'=HYPERLINK("http://x.invalid","a")'


# -- property: whatever is sent, 2xx or 422, and what is kept reads back -------------------------
_TEXT = st.one_of(st.text(max_size=300),
                  st.text(st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Mn"]),
                           max_size=20),
                  st.builds(lambda n: "x" * n, st.integers(0, 5_000)))
_WHEN = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31),
                 timezones=st.builds(timezone, st.timedeltas(
                     min_value=timedelta(hours=-23, minutes=-59),
                     max_value=timedelta(hours=23, minutes=59)))),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))


_PROPERTY_STUDENTS: dict[str, Any] = {}


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=_TEXT, level=_TEXT, code=_TEXT, answer=_TEXT, when=_WHEN)
def test_property_any_text_or_time_is_kept_exactly_or_refused(
        api: Client, name: str, level: str, code: str, answer: str, when: datetime) -> None:
    if api.svc.settings.var_dir not in _PROPERTY_STUDENTS:  # one student per backend
        _PROPERTY_STUDENTS[api.svc.settings.var_dir] = _student(api)[0]
    me = api.session(_PROPERTY_STUDENTS[api.svc.settings.var_dir])
    before = api.position()
    renamed = api.call("PATCH", "/me", me, {"display_name": name})
    assert renamed.status_code in (204, 200, 422), renamed.text
    if renamed.status_code == 422:
        assert renamed.headers["content-type"] == "application/problem+json"
    else:
        kept = api.call("GET", "/me", me).json()["display_name"]
        assert kept == display_name(name)
    attempt = {"level": "csf/unit-1/level-1", "result": "solved", "code": code,
               "answers": {"q1": answer}, "attempted_at": when.isoformat()}
    for body in (attempt, {**attempt, "level": level}):
        recorded = api.call("POST", "/me/attempts", me, body)
        assert recorded.status_code in (201, 422), recorded.text
        if recorded.status_code == 422:
            assert recorded.headers["content-type"] == "application/problem+json"
    if renamed.status_code == 422 and recorded.status_code == 422:
        assert api.position() == before
    api.svc.settle()
    assert api.call("GET", "/me/progress", me).status_code == 200


@settings(max_examples=200, deadline=None)
@given(when=_WHEN, text=_TEXT)
def test_property_the_domain_refuses_or_keeps_what_reads_back(when: datetime, text: str) -> None:
    try:
        valid_attempt(Attempt("csf/l-1", "solved", when, code=text, answers={"q": text}))
    except InvalidRecord:
        return
    transcoder = OrjsonTranscoder()
    assert transcoder.decode(transcoder.encode({"at": when}))["at"] == when
    assert bounds.EARLIEST <= when <= datetime.now(UTC) + bounds.AHEAD
