"""Progress over HTTP, both backends: a student records attempts (one or a batch, all or
nothing) and reads them back at once (read-your-writes, PRG-1); bad input is a 422 problem and
writes nothing; a teacher sees the grid of their own sections only (ACC-1); an administrator the
report of a school in scope only (ACC-2); a student's progress only for those who may see them.
Who may call which route at all is the authorisation matrix's (test_authorization_matrix)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from api.services import Services
from ledger.progress import Progress, progress_id_for
from tests.test_leak_scan import haystack

L1, L2, L3 = "csf/unit-1/level-1", "csf/unit-1/level-2", "csf/unit-2/level-1"


@dataclass
class School:
    svc: Services
    http: TestClient
    ids: dict[str, UUID] = field(default_factory=dict)
    auth: dict[str, dict[str, str]] = field(default_factory=dict)

    def as_(self, who: str) -> dict[str, str]:
        return self.auth[who]

    def written(self) -> int:
        return int(self.svc.ledger.recorder.max_notification_id() or 0)


@pytest.fixture
def school(services: Services) -> Iterator[School]:
    """Teacher T (school A) has section X with students S and R; teacher U (school B) has
    section Z with student O."""
    svc, accounts, sections = services, services.accounts, services.sections
    app = create_app(svc)
    with TestClient(app) as http:
        w = School(svc, http)
        a = accounts.register_school("Hill School", "North", "public")
        b = accounts.register_school("Dale School", "South", "public")
        t, u = svc.ledger.register_teacher("Tamsin"), svc.ledger.register_teacher("Ulrich")
        accounts.choose_school(t, a)
        accounts.choose_school(u, b)
        x = sections.create(t, "Period 1", "csf", "4", "email")
        z = sections.create(u, "Period 9", "csf", "5", "email")
        s, r, o = (svc.ledger.register_student(name, "14") for name in ("Sunny", "Rita", "Otto"))
        sections.add_student(t, x, s)
        sections.add_student(t, x, r)
        sections.add_student(u, z, o)
        svc.settle()
        w.ids.update(A=a, B=b, T=t, U=u, X=x, Z=z, S=s, R=r, O=o)
        district_a = accounts.school(a).district_id
        tokens = app.state.tokens
        for name, role, subject, scope in (
                ("S", "student", s, None), ("R", "student", r, None),
                ("O", "student", o, None), ("T", "teacher", t, None),
                ("U", "teacher", u, None), ("admin_A", "school_admin", None, f"school:{a}"),
                ("admin_B", "school_admin", None, f"school:{b}"),
                ("district_A", "district_admin", None, f"district:{district_a}"),
                ("researcher", "researcher", None, None),
                ("registrar", "registrar", None, None)):
            issued = tokens.issue(role, name.lower().replace("_", "-"), timedelta(hours=1),
                                  subject_id=subject, scope=scope)
            w.auth[name] = {"Authorization": f"Bearer {issued.token}"}
        yield w


def post(w: School, who: str, body: Any) -> Any:
    if isinstance(body, str):  # raw JSON text, for what a client library would not encode
        return w.http.post("/me/attempts", content=body.encode(), headers={
            **w.as_(who), "Content-Type": "application/json"})
    return w.http.post("/me/attempts", json=body, headers=w.as_(who))


def test_PRG_1_read_your_writes_one_attempt_then_a_batch(school: School) -> None:
    w = school
    one = post(w, "S", {"level": L1, "result": "failed", "seconds": 40, "hints": 1,
                        "code": "move()", "answers": {"q1": "a loop"}})
    assert one.status_code == 201, one.text
    assert one.json()["levels"][L1]["tries"] == 1
    assert one.json()["levels"][L1]["best"] == "failed"

    batch = post(w, "S", {"attempts": [
        {"level": L1, "result": "optimal", "attempted_at": "2026-09-01T10:00:00+02:00"},
        {"level": L2, "result": "solved"}]})
    assert batch.status_code == 201, batch.text
    assert set(batch.json()["levels"]) == {L1, L2}  # the levels touched
    assert batch.json()["levels"][L1]["tries"] == 2
    assert batch.json()["levels"][L1]["best"] == "optimal"

    mine = w.http.get("/me/progress", headers=w.as_("S")).json()["levels"]
    assert {level: (p["tries"], p["best"]) for level, p in mine.items()} == {
        L1: (2, "optimal"), L2: (1, "solved")}


def test_PRG_1_every_field_sent_is_kept_sealed_in_the_students_stream(school: School) -> None:
    w = school
    code, answer = f"repeat(4) {{ move() }} // {uuid4().hex}", f"four sides {uuid4().hex}"
    sent = post(w, "S", {"level": L2, "result": "solved", "attempted_at":
                         "2026-09-01T10:00:00-05:00", "seconds": 75, "hints": 2, "code": code,
                         "answers": {"why": answer}})
    assert sent.status_code == 201, sent.text
    [recorded] = [e for e in w.svc.ledger.history(progress_id_for(w.ids["S"]))
                  if isinstance(e, Progress.AttemptRecorded)]
    assert (recorded.level, recorded.result, recorded.attempted_at, recorded.seconds,
            recorded.hints, recorded.code, recorded.answers) == (
        L2, "solved", datetime(2026, 9, 1, 15, tzinfo=UTC), 75, 2, code, {"why": answer})
    assert haystack(w.svc.settings).find({"code": code.encode(),
                                          "answer": answer.encode()}) == []


@pytest.mark.parametrize("body", [
    {"level": "Not A Level", "result": "solved"},
    {"level": L1, "result": "perfect"},
    {"level": L1, "result": "solved", "attempted_at": "2026-09-01T10:00:00"},  # no zone
    {"level": L1, "result": "solved", "seconds": -1},
    {"level": L1, "result": "solved", "hints": 10_000},
    '{"level": "csf/unit-1/level-1", "result": "solved", "code": "\\ud800"}',
    {"level": L1, "result": "solved", "birth_date": "2014-01-01"},
    {"attempts": []},
    {"attempts": [{"level": L1, "result": "solved"}] * 501},
    {"attempts": [{"level": L1, "result": "solved"}, {"level": L2, "result": "nope"}]},
    {"attempts": [{"level": L1, "result": "solved"}, {"level": "BAD", "result": "solved"}]},
], ids=["level", "result", "naive-time", "seconds", "hints", "surrogate", "unknown-field",
        "empty-batch", "batch-501", "batch-bad-result", "batch-bad-level"])
def test_PRG_1_bad_input_is_422_and_writes_nothing(school: School, body: Any) -> None:
    w = school
    before = w.written()
    answer = post(w, "S", body)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert w.written() == before
    assert w.http.get("/me/progress", headers=w.as_("S")).json()["levels"] == {}


def test_ACC_1_a_teacher_sees_the_grid_of_their_own_sections_only(school: School) -> None:
    w = school
    post(w, "S", {"attempts": [{"level": L1, "result": "solved"},
                               {"level": L3, "result": "optimal"}]})
    post(w, "O", {"level": L1, "result": "optimal"})

    grid = w.http.get(f"/sections/{w.ids['X']}/progress", headers=w.as_("T"))
    assert grid.status_code == 200, grid.text
    students = {row["display_name"]: row["levels"] for row in grid.json()["students"]}
    assert set(students) == {"Sunny", "Rita"}  # never Otto, U's student
    assert set(students["Sunny"]) == {L1, L3} and students["Rita"] == {}
    filtered = w.http.get(f"/sections/{w.ids['X']}/progress", params={"levels": f"{L3},x"},
                          headers=w.as_("T")).json()
    assert {row["display_name"]: set(row["levels"]) for row in filtered["students"]} == {
        "Sunny": {L3}, "Rita": set()}

    others = w.http.get(f"/sections/{w.ids['Z']}/progress", headers=w.as_("T"))
    missing = w.http.get(f"/sections/{w.ids['O']}/progress", headers=w.as_("T"))
    assert others.status_code == missing.status_code == 404
    assert others.content == missing.content  # ACC-5: as if it did not exist
    assert "Otto" not in others.text

    assert w.http.get(f"/students/{w.ids['S']}/progress",
                      headers=w.as_("T")).json()["levels"][L3]["best"] == "optimal"
    assert w.http.get(f"/students/{w.ids['O']}/progress", headers=w.as_("T")).status_code == 404


def test_ACC_2_the_school_report_in_scope_only(school: School) -> None:
    w = school
    post(w, "S", {"attempts": [{"level": L1, "result": "failed"},
                               {"level": L1, "result": "solved"},
                               {"level": L2, "result": "optimal"}]})
    post(w, "O", {"level": L1, "result": "optimal"})

    for admin in ("admin_A", "district_A"):
        report = w.http.get(f"/schools/{w.ids['A']}/progress", headers=w.as_(admin))
        assert report.status_code == 200, report.text
        body = report.json()
        by_name = {row["display_name"]: row for row in body["students"]}
        assert set(by_name) == {"Sunny", "Rita"}
        assert by_name["Sunny"]["counts"] == {"levels": 2, "solved": 2, "optimal": 1,
                                              "attempts": 3}
        assert by_name["Sunny"]["section_id"] == str(w.ids["X"])
        assert by_name["Sunny"]["teacher_id"] == str(w.ids["T"])
        assert by_name["Rita"]["counts"]["attempts"] == 0
        assert body["by_grade"] == [{"key": "4", "students": 2, "counts": body["school"]}]
        assert [g["key"] for g in body["by_teacher"]] == [str(w.ids["T"])]
        assert [g["key"] for g in body["by_section"]] == [str(w.ids["X"])]
        assert body["school"] == {"levels": 2, "solved": 2, "optimal": 1, "attempts": 3}

    out = w.http.get(f"/schools/{w.ids['B']}/progress", headers=w.as_("admin_A"))
    nowhere = w.http.get(f"/schools/{w.ids['S']}/progress", headers=w.as_("admin_A"))
    assert out.status_code == nowhere.status_code == 404
    assert out.content == nowhere.content
    assert w.http.get(f"/students/{w.ids['O']}/progress",
                      headers=w.as_("admin_A")).status_code == 404
    assert w.http.get(f"/students/{w.ids['S']}/progress",
                      headers=w.as_("admin_A")).status_code == 200


def test_a_students_progress_never_for_a_researcher_registrar_or_another_student(
        school: School) -> None:
    w = school
    post(w, "S", {"level": L1, "result": "solved"})
    url = f"/students/{w.ids['S']}/progress"
    assert w.http.get(url, headers=w.as_("S")).status_code == 200
    assert w.http.get(url, headers=w.as_("researcher")).status_code == 403
    assert w.http.get(url, headers=w.as_("registrar")).status_code == 403
    other = w.http.get(url, headers=w.as_("R"))
    assert other.status_code == 404 and "Sunny" not in other.text
    assert w.http.post("/me/attempts", json={"level": L1, "result": "solved"},
                       headers=w.as_("T")).status_code == 403  # teachers record none


def test_PRG_1_an_erased_student_leaves_the_grid(school: School) -> None:
    w = school
    post(w, "S", {"level": L1, "result": "solved"})
    w.svc.ledger.erase_subject(w.ids["S"], "user_request")
    w.svc.settle()
    grid = w.http.get(f"/sections/{w.ids['X']}/progress", headers=w.as_("T")).json()
    assert [row["display_name"] for row in grid["students"]] == ["Rita"]
    assert w.svc.progress_reader.of_student(w.ids["S"]) == {}
