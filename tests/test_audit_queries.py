"""The audit trail's queries (AUD-3) on both backends: by student (access and disclosure records
together, in time order, in a time window), by actor, by recipient party; who may run each (a
parent only for their linked students, a custodian only for their school's); each query itself
recorded; `ledger audit` with JSON and CSV output; and, as a property, complete and ordered
answers under concurrent writers.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from api.cli.main import main
from api.services import Services
from api.tokens import COMMAND_LINE_OPERATOR
from ledger.audit import RecordsAccess
from ledger.disclosures import Discloser, Disclosure
from ledger.settings import Settings
from projections.audit import AuditEntry
from tests.conftest import BACKENDS, drop_schemas, make_settings, point_the_command_line_at
from tests.test_api_accounts import Client, problem, serving
from tests.test_disclosures import build_world, disclose

COURT = "Hill County Court"


@pytest.fixture(scope="module", params=BACKENDS)
def backend_settings(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[Settings]:
    settings = make_settings(str(request.param), str(tmp_path_factory.mktemp("queries")))
    yield settings
    if settings.backend == "postgres":
        drop_schemas(settings.schema, settings.keystore_schema)


@pytest.fixture(scope="module")
def api(backend_settings: Settings) -> Iterator[Client]:
    """One ledger per backend: each test makes its own schools, people and principals."""
    with serving(Services.open(backend_settings)) as client:
        yield client


def session(api: Client, person: UUID) -> tuple[UUID, dict[str, str]]:
    """A session of the person, with its principal (the actor its reads are recorded under)."""
    kind = api.svc.ledger.live(person).kind
    issued = api.tokens.issue(kind, "session", timedelta(hours=1), subject_id=person)
    return issued.principal_id, {"Authorization": f"Bearer {issued.token}"}


def get(api: Client, url: str, auth: dict[str, str]) -> Any:
    response = api.call("GET", url, auth)
    assert response.status_code == 200, response.text
    return response.json()


def every_page(api: Client, url: str, auth: dict[str, str], limit: int) -> list[Any]:
    items, after = [], None
    while True:
        cursor = f"&after={after.replace('+', '%2B')}" if after else ""
        page = get(api, f"{url}{'&' if '?' in url else '?'}limit={limit}{cursor}", auth)
        items += page["items"]
        after = page["next_after"]
        if after is None:
            return items


# -- by student ----------------------------------------------------------------------------------
def test_AUD_3_a_students_trail_holds_reads_and_disclosures_in_time_order(api: Client) -> None:
    w = build_world(api)
    for _ in range(2):
        assert api.call("GET", f"/students/{w.S}", w.teacher).status_code == 200
    assert disclose(api, w.S, w.custodian_in).status_code == 201
    assert api.call("GET", f"/students/{w.S}", w.teacher).status_code == 200

    items = get(api, f"/students/{w.S}/audit-trail", w.auditor)["items"]
    assert [(i["kind"], i["actor_role"]) for i in items] == [
        ("access", "teacher"), ("access", "teacher"),
        ("disclosure", "records_custodian"), ("access", "teacher")]
    assert [i["at"] for i in items] == sorted(i["at"] for i in items)
    assert items[0]["resource"] == "/students/{person_id}" and items[0]["fields"]
    # the window: from the second read (inclusive) to the last (exclusive)
    since, until = (items[1]["at"].replace("+", "%2B"), items[3]["at"].replace("+", "%2B"))
    window = get(api, f"/students/{w.S}/audit-trail?since={since}&until={until}", w.auditor)
    assert [i["record_id"] for i in window["items"]] == [i["record_id"] for i in items[1:3]]
    # the old route keeps its shape and shows reads only; both queries were recorded
    reads = get(api, f"/students/{w.S}/access-records", w.operator)["items"]
    assert [r["actor_role"] for r in reads] == ["teacher"] * 3 + ["auditor"] * 2
    assert {r["resource"] for r in reads if r["actor_role"] == "auditor"} == {
        "/students/{person_id}/audit-trail"}


def test_AUD_3_who_may_ask_for_a_students_trail(api: Client) -> None:
    w = build_world(api)
    url = "/students/{}/audit-trail"
    for allowed, student in ((w.parent, w.S), (w.custodian_in, w.S), (w.custodian_out, w.O),
                             (w.auditor, w.S), (w.auditor, w.O), (w.operator, w.O),
                             (api.session(w.S), w.S)):
        assert api.call("GET", url.format(student), allowed).status_code == 200
    before = api.position()
    # a parent sees only their linked student; a custodian only their school's; a student only
    # themself: for anyone else, as if no such student (ACC-5), and nothing is recorded
    for refused, student in ((w.parent, w.O), (w.custodian_in, w.O), (w.custodian_out, w.S),
                             (api.session(w.O), w.S)):
        problem(api.call("GET", url.format(student), refused), 404, "not-found")
    for role in ("teacher", "support", "registrar", "school_admin"):
        auth = w.teacher if role == "teacher" else api.staff(role)
        problem(api.call("GET", url.format(w.S), auth), 403, "forbidden")
    problem(api.call("GET", url.format(w.S) + "?since=2026-01-01T00:00:00", w.auditor), 422,
            "validation")
    assert api.position() == before


# -- by actor -------------------------------------------------------------------------------------
def test_AUD_3_what_an_actor_read_for_auditors_and_the_operator_only(api: Client) -> None:
    w = build_world(api)
    actor, auth = session(api, w.T)
    other = api.pupil(w.T, api.section(w.T), "Second", "15")
    for student in (w.S, other, w.S):
        assert api.call("GET", f"/students/{student}", auth).status_code == 200

    items = every_page(api, f"/audit/actors/{actor}", w.auditor, limit=1)
    assert [i["student_id"] for i in items] == [str(w.S), str(other), str(w.S)]
    assert {i["actor_id"] for i in items} == {str(actor)}
    assert [i["at"] for i in items] == sorted(i["at"] for i in items)
    # each student returned has the auditor's query in their own trail
    for student in (w.S, other):
        reads = get(api, f"/students/{student}/access-records?limit=500", w.operator)["items"]
        assert "/audit/actors/{actor_id}" in {r["resource"] for r in reads
                                              if r["actor_role"] == "auditor"}
    assert get(api, f"/audit/actors/{uuid4()}", w.operator)["items"] == []
    before = api.position()
    for refused in (w.parent, w.custodian_in, api.session(w.S), w.teacher):
        problem(api.call("GET", f"/audit/actors/{actor}", refused), 403, "forbidden")
    assert api.position() == before


def test_AUD_3_an_actors_trail_includes_the_disclosures_they_recorded(api: Client) -> None:
    w = build_world(api)
    custodian = api.tokens.issue("records_custodian", "custodian", timedelta(hours=1),
                                 scope=f"school:{w.A}")
    auth = {"Authorization": f"Bearer {custodian.token}"}
    assert disclose(api, w.S, auth).status_code == 201
    (item,) = get(api, f"/audit/actors/{custodian.principal_id}", w.operator)["items"]
    assert item["kind"] == "disclosure" and item["recipient"] == "Hill County Juvenile Court"


# -- by party -------------------------------------------------------------------------------------
def test_AUD_3_every_disclosure_to_a_party(api: Client) -> None:
    w = build_world(api)
    court = f"{COURT} {uuid4().hex[:6]}"
    assert disclose(api, w.S, w.custodian_in, recipient=court).status_code == 201
    assert disclose(api, w.O, w.custodian_out, recipient=f"  {court.upper()} ").status_code \
        == 201
    assert disclose(api, w.O, w.custodian_out, recipient="Another Court").status_code == 201
    query = f"/audit/disclosures?party={court.lower().replace(' ', '%20%20')}"

    everyone = get(api, query, w.auditor)["items"]
    assert [i["student_id"] for i in everyone] == [str(w.S), str(w.O)]
    assert get(api, query, w.operator)["items"] == everyone
    # a custodian sees their own school's students only
    assert [i["student_id"] for i in get(api, query, w.custodian_in)["items"]] == [str(w.S)]
    assert [i["student_id"] for i in get(api, query, w.custodian_out)["items"]] == [str(w.O)]
    # the query is recorded for the students it returned, and only for them
    def asked_by_custodian(student: UUID) -> bool:
        reads = get(api, f"/students/{student}/access-records?limit=500", w.operator)["items"]
        return any(r["resource"] == "/audit/disclosures" and r["actor_role"] ==
                   "records_custodian" for r in reads)
    assert asked_by_custodian(w.S) and asked_by_custodian(w.O)
    lone = build_world(api)
    assert get(api, query, lone.custodian_in)["items"] == []
    assert not asked_by_custodian(lone.S)

    before = api.position()
    for refused in (w.parent, w.teacher, api.session(w.S), api.staff("support")):
        problem(api.call("GET", query, refused), 403, "forbidden")
    problem(api.call("GET", "/audit/disclosures", w.auditor), 422, "validation")
    problem(api.call("GET", "/audit/disclosures?party=%20%20", w.auditor), 422, "validation")
    assert api.position() == before


# -- the command line -----------------------------------------------------------------------------
@pytest.fixture
def cli_env(backend_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line's environment, naming the test's stores (both backends)."""
    point_the_command_line_at(backend_settings, monkeypatch)


def test_AUD_3_ledger_audit_as_json_and_csv(api: Client, cli_env: None,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    w = build_world(api)
    actor, auth = session(api, w.T)
    assert api.call("GET", f"/students/{w.S}", auth).status_code == 200
    court = f"{COURT} {uuid4().hex[:6]}"
    assert disclose(api, w.S, w.custodian_in, recipient=court).status_code == 201

    assert main(["audit", "student", str(w.S)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["kind"], r["actor_role"]) for r in lines] == [
        ("access", "teacher"), ("disclosure", "records_custodian")]
    assert lines[1]["recipient"] == court and lines[1]["legal_basis"] == "99.31(a)(9)"

    assert main(["audit", "party", court.upper(), "--format", "csv"]) == 0
    (row,) = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert row["student_id"] == str(w.S) and row["recipient"] == court
    assert row["disclosed"] == "display_name;progress"

    assert main(["audit", "actor", str(actor), "--format", "csv",
                 "--since", date.today().isoformat() + "T00:00:00+00:00"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["resource"] for r in rows] == ["/students/{person_id}"]

    # each query was recorded, as the command-line operator
    api.svc.audit_view.catch_up()
    by_cli = api.svc.audit_reader.of_actor(COMMAND_LINE_OPERATOR.id, limit=10_000)
    assert {e.student_id for e in by_cli} >= {w.S}
    assert {api.svc.audit.record(e.record_id).resource  # type: ignore[union-attr]
            for e in by_cli if e.student_id == w.S} >= {"/cli/audit/student",
                                                        "/cli/audit/party",
                                                        "/cli/audit/actor"}

    erased = api.svc.ledger.register_student("Gone", "15")
    api.svc.lifecycle.erase_now(erased, "operator", "school_request")
    before = api.position()
    assert main(["audit", "student", str(erased)]) == 1  # went with the student (AUD-4)
    assert main(["audit", "student", str(uuid4())]) == 1  # no such student: nothing recorded
    assert main(["audit", "student", str(w.T)]) == 1
    assert api.position() == before
    assert main(["audit", "student", "not-an-id"]) == 2
    assert main(["audit", "party", "   "]) == 2
    assert "not-an-id" not in capsys.readouterr().err


# -- complete and ordered under concurrent writers (property) ------------------------------------
def _ordered(entries: list[AuditEntry]) -> bool:
    keys = [(e.at, str(e.record_id)) for e in entries]
    return keys == sorted(keys) and len(set(keys)) == len(keys)


def _all(page: Any, size: int) -> list[AuditEntry]:
    """Every entry of a paged reader query, `page(limit, after)`, `size` at a time."""
    found: list[AuditEntry] = []
    while True:
        batch = page(size, (found[-1].at, found[-1].record_id) if found else None)
        found += batch
        if len(batch) < size:
            return found


_WRITES = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), st.booleans()),
                   min_size=1, max_size=20)  # (student, actor, a disclosure?)


@hypothesis_settings(max_examples=20, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])
@given(writers=st.lists(_WRITES, min_size=2, max_size=4), page_size=st.integers(1, 5))
def test_AUD_3_answers_are_complete_and_ordered_under_concurrent_writers(
        api: Client, writers: list[list[tuple[int, int, bool]]], page_size: int) -> None:
    svc = api.svc
    students = [svc.ledger.register_student(f"Student {i}", "15") for i in range(3)]
    actors = [uuid4() for _ in range(3)]
    written: list[tuple[UUID, UUID, UUID]] = []  # (record, student, actor)
    lock, done = threading.Lock(), threading.Event()
    seen_while_writing: list[list[AuditEntry]] = []

    def write(ops: list[tuple[int, int, bool]]) -> None:
        for student, actor, disclosure in ops:
            if disclosure:
                record = svc.disclosures.record(
                    Disclosure(students[student], COURT, date.today(), "99.31(a)(9)",
                               "a subpoena", ["progress"]),
                    Discloser(actors[actor], "records_custodian", "req"))
            else:
                record = svc.audit.record_access(RecordsAccess(
                    actors[actor], "teacher", students[student], "/students/{person_id}",
                    ["display_name"], "school_official", "req"), svc.lifecycle.clock())
            with lock:
                written.append((record, students[student], actors[actor]))

    def page_while_writing() -> None:
        while True:  # at least one pass, however quick the writers
            finished = done.is_set()
            svc.audit_view.catch_up()
            seen_while_writing.append(_all(lambda limit, after: svc.audit_reader.of_student(
                students[0], limit=limit, after=after, kinds=("access", "disclosure")),
                page_size))
            if finished:
                return

    reader = threading.Thread(target=page_while_writing)
    threads = [threading.Thread(target=write, args=(ops,)) for ops in writers]
    reader.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    reader.join()
    svc.audit_view.catch_up()

    # while writers ran, every pass was still ordered, with nothing twice; the last pass,
    # begun after the writers finished, saw everything of the student
    assert all(_ordered(entries) for entries in seen_while_writing)
    assert sorted(str(e.record_id) for e in seen_while_writing[-1]) == sorted(
        str(r) for r, s, _ in written if s == students[0])
    for index, student in enumerate(students):
        entries = _all(lambda limit, after, s=student: svc.audit_reader.of_student(
            s, limit=limit, after=after, kinds=("access", "disclosure")), page_size)
        assert _ordered(entries)
        assert sorted(str(e.record_id) for e in entries) == sorted(
            str(r) for r, s, _ in written if s == student), index
    for actor in actors:
        entries = _all(lambda limit, after, a=actor: svc.audit_reader.of_actor(
            a, limit=limit, after=after), page_size)
        assert _ordered(entries)
        assert sorted(str(e.record_id) for e in entries) == sorted(
            str(r) for r, _, a in written if a == actor)
