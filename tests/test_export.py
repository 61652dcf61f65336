"""RGT-1, the export, through HTTP on both backends: everything the student's own views show is
in it (and what they gave beyond: every attempt, answer and comment, consents, access records,
requests and statements), nothing of the classmate in the same section is, the CSV tables say
the same, and who may export (ACC-5 for the rest) with an access record for anyone but the
student, saved before the stream.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from api.exports import Exporter
from api.services import Services
from ledger.progress import Attempt
from tests.test_api_accounts import Client, problem

PARENT = "export.parent@home.example"


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def _life(api: Client, student: UUID, teacher_auth: dict[str, str], tag: str) -> None:
    """What a student does and receives, every value carrying `tag`."""
    me = api.session(student)
    _ok(api.call("PATCH", "/me", me, {"gender": "female" if tag == "sun" else "male"}))
    _ok(api.call("POST", "/me/attempts", me, {
        "level": f"csf/unit-1/level-{tag}", "result": "solved", "code": f"move_{tag}()",
        "answers": {"q1": f"answer-{tag}"}}), 201)
    _ok(api.call("POST", "/me/answers", me, {"prompt": f"csf/reflection-{tag}",
                                              "text": f"Loops are {tag}ny"}), 204)
    _ok(api.call("POST", "/me/surveys", me, {"survey": "csf/unit-1/survey",
                                              "answers": {"enjoyed": f"very-{tag}"}}), 204)
    project = _ok(api.call("POST", "/me/projects", me, {
        "kind": "app", "name": f"App of {tag}", "source": f"draw_{tag}()"}), 201)
    _ok(api.call("PUT", f"/me/partners/club-{tag}", me, {"opted_in": True}), 204)
    _ok(api.call("POST", f"/students/{student}/feedback", teacher_auth, {
        "level": f"csf/unit-1/level-{tag}", "comment": f"Well done, {tag}!"}), 201)
    assert project["name"] == f"App of {tag}"


def _world(api: Client) -> tuple[UUID, UUID, dict[str, str]]:
    teacher = api.teacher()
    section = api.section(teacher)
    student = api.pupil(teacher, section, "Sunniva Exportwright", age="15")
    classmate = api.pupil(teacher, section, "Ottoline Classmate", age="14")
    api.svc.accounts.link_parent_email(student, PARENT)
    api.svc.accounts.link_parent_email(classmate, "classmate.parent@home.example")
    teacher_auth = api.session(teacher)
    _life(api, student, teacher_auth, "sun")
    _life(api, classmate, teacher_auth, "moon")
    _ok(api.call("GET", f"/students/{student}", teacher_auth))  # an access record
    _ok(api.call("GET", f"/students/{classmate}", teacher_auth))
    return student, classmate, teacher_auth


def _parent(api: Client, address: str = PARENT) -> dict[str, str]:
    token = api.svc.ledger.identity.token("parent_email", address).hex()
    return api.staff("parent", scope=f"parent:{token}")


def _export(api: Client, student: UUID, auth: dict[str, str]) -> tuple[dict[str, Any], str]:
    response = api.call("GET", f"/students/{student}/export", auth)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return json.loads(response.content), response.text


def _rows(document: dict[str, Any], section: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = document["sections"][section]
    return rows


def test_RGT_1_the_export_holds_what_the_students_own_views_show(api: Client) -> None:
    student, _, _ = _world(api)
    me = api.session(student)
    document, _ = _export(api, student, me)
    assert document["format"] == "ledger-export/1" and document["subject_id"] == str(student)
    assert list(document["sections"]) == Exporter(api.svc).names
    assert "disclosures" in document["sections"]  # AUD-2's place, wired by the lead

    profile = {row["field"]: row["value"] for row in _rows(document, "profile")}
    own = _ok(api.call("GET", "/me", me))
    assert {field: profile.get(field) for field in own} == own
    assert profile["parent_email"] == PARENT

    progress = _ok(api.call("GET", "/me/progress", me))["levels"]
    exported = {row["level"]: row for row in _rows(document, "progress")}
    assert set(exported) == set(progress)
    for level, shown in progress.items():
        assert exported[level]["tries"] == shown["tries"]
        assert exported[level]["best"] == shown["best"]
    (attempt,) = _rows(document, "attempts")
    assert attempt["code"] == "move_sun()" and attempt["answers"] == {"q1": "answer-sun"}

    projects = {row["project_id"]: row for row in _rows(document, "projects")}
    for item in _ok(api.call("GET", "/me/projects", me)):
        assert projects[item["id"]]["name"] == item["name"]
        source = _ok(api.call("GET", f"/me/projects/{item['id']}", me))["source"]
        assert projects[item["id"]]["source"] == source == "draw_sun()"

    comments = {(row["level"], row["comment"]) for row in _rows(document, "feedback")}
    for shown in _ok(api.call("GET", "/me/feedback", me)):
        assert (shown["level"], shown["comment"]) in comments
    assert [row["text"] for row in _rows(document, "answers")] == ["Loops are sunny"]
    assert [row["answer"] for row in _rows(document, "survey_answers")] == ["very-sun"]

    consents = [(row["consent"], row["after"]) for row in _rows(document, "consents")]
    shown_consents = _ok(api.call("GET", "/me/consents", me))
    assert consents == [(c["consent"], c["after"]) for c in shown_consents]
    sections = _ok(api.call("GET", "/me/sections", me))
    assert [row["section_id"] for row in _rows(document, "sections")] == [
        s["id"] for s in sections]

    access = _rows(document, "access_records")
    assert [r["actor_role"] for r in access] == ["teacher"]
    assert access[0]["resource"] == "/students/{person_id}" and access[0]["fields"]


def test_RGT_1_the_export_holds_nothing_of_a_classmate(api: Client) -> None:
    student, classmate, _ = _world(api)
    person = api.svc.ledger.live(classmate)
    theirs = [str(classmate), person.display_name, person.username, "moon",
              "classmate.parent@home.example"]
    for auth in (api.session(student), _parent(api), api.staff("operator")):
        _, text = _export(api, student, auth)
        assert [value for value in theirs if value.lower() in text.lower()] == []
        for table in Exporter(api.svc).names:
            response = api.call("GET", f"/students/{student}/export/{table}.csv", auth)
            assert response.status_code == 200, (table, response.text)
            assert [value for value in theirs if value.lower() in response.text.lower()] == []
    # and the classmate's own export has theirs, not the student's
    _, text = _export(api, classmate, api.session(classmate))
    assert "moon" in text and "Sunniva" not in text and "sun()" not in text


def test_RGT_1_csv_tables_say_what_the_json_says(api: Client) -> None:
    student, _, _ = _world(api)
    me = api.session(student)
    document, _ = _export(api, student, me)
    for table in ("profile", "progress", "attempts", "projects", "feedback", "consents",
                  "access_records", "disclosures"):
        response = api.call("GET", f"/students/{student}/export/{table}.csv", me)
        assert response.status_code == 200 and response.headers["content-type"].startswith(
            "text/csv")
        rows = list(csv.reader(io.StringIO(response.text)))
        section = Exporter(api.svc).section(table)
        assert section is not None and rows[0] == list(section.columns)
        assert len(rows) - 1 == len(_rows(document, table)), table
    response = api.call("GET", f"/students/{student}/export/profile.csv", me)
    by_field = {row[0]: row[1] for row in csv.reader(io.StringIO(response.text))}
    assert by_field["display_name"] == "Sunniva Exportwright"
    problem(api.call("GET", f"/students/{student}/export/keys.csv", me), 404, "not-found")


def test_RGT_1_who_may_export_and_the_access_record_first(api: Client) -> None:
    student, _, teacher_auth = _world(api)
    svc = api.svc

    def reads() -> list[str]:
        svc.audit_view.catch_up()
        return [e.actor_role for e in svc.audit_reader.of_student(student)]

    before = reads()
    _export(api, student, api.session(student))
    assert reads() == before  # the student's own export leaves none
    _export(api, student, _parent(api))
    assert reads() == [*before, "parent"]
    # the record is in the export it belongs to: saved before the first byte
    document, _ = _export(api, student, api.staff("operator"))
    assert [r["actor_role"] for r in _rows(document, "access_records")][-1] == "operator"
    records = [svc.audit.record(e.record_id) for e in svc.audit_reader.of_student(student)]
    exported = [r for r in records if r is not None and r.resource.endswith("/export")]
    assert exported[0].fields == sorted(Exporter(svc).names)

    position = svc.ledger.recorder.max_notification_id()
    problem(api.call("GET", f"/students/{student}/export", teacher_auth), 403, "forbidden")
    problem(api.call("GET", f"/students/{student}/export", _parent(api, "no@home.example")),
            404, "not-found")
    problem(api.call("GET", f"/students/{student}/export", api.staff(
        "records_custodian", scope=f"school:{UUID(int=1)}")), 404, "not-found")
    problem(api.call("GET", f"/students/{UUID(int=7)}/export", api.staff("operator")),
            404, "not-found")
    problem(api.call("GET", f"/students/{student}/export", api.staff("auditor")), 403,
            "forbidden")
    assert svc.ledger.recorder.max_notification_id() == position  # refusals write nothing


def test_RGT_1_an_export_by_the_custodian_of_the_students_school(api: Client) -> None:
    school = api.svc.accounts.register_school("Export School", "West", "public")
    teacher = api.teacher()
    api.svc.accounts.choose_school(teacher, school)
    student = api.pupil(teacher, api.section(teacher), "Cass")
    api.svc.settle()
    document, _ = _export(api, student, api.staff("records_custodian",
                                                   scope=f"school:{school}"))
    profile = {row["field"]: row["value"] for row in _rows(document, "profile")}
    assert profile["display_name"] == "Cass"


def test_RGT_1_an_erased_student_has_no_export(api: Client) -> None:
    student, _, _ = _world(api)
    api.svc.lifecycle.erase_now(student, "operator", "user_request")
    problem(api.call("GET", f"/students/{student}/export", api.staff("operator")), 410,
            "subject-erased")


def test_RGT_1_the_export_is_written_a_row_at_a_time(api: Client) -> None:
    """Never the whole document in memory: one chunk per row, each a small piece of JSON."""
    student, _, _ = _world(api)
    exporter = Exporter(api.svc)
    person = api.svc.ledger.live(student)
    chunks = list(exporter.json(person))
    rows = sum(len(list(section.rows(student))) for section in exporter.sections)
    assert len(chunks) == 2 + 2 * len(exporter.sections) + rows
    assert json.loads(b"".join(chunks))["subject_id"] == str(student)


def test_RGT_1_uploads_are_in_the_export_byte_for_byte(api: Client) -> None:
    student, _, _ = _world(api)
    png = b"\x89PNG\r\n\x1a\n" + b"sun" * 10
    project = api.svc.projects.create(student, "app", "With a picture")
    media_id = api.svc.projects.upload(student, project, png, "image/png").media_id
    api.svc.projects_view.catch_up()
    document, _ = _export(api, student, api.session(student))
    (upload,) = _rows(document, "uploads")
    assert upload["media_id"] == str(media_id) and upload["project_id"] == str(project)
    assert base64.b64decode(upload["data_base64"]) == png
    assert upload["content_type"] == "image/png" and upload["size"] == len(png)


_TOKEN = st.text(alphabet="bcdfghjklmnpqrstvwxz", min_size=12, max_size=20)


@given(mine=st.lists(_TOKEN, min_size=6, max_size=6),
       theirs=st.lists(_TOKEN, min_size=6, max_size=6))
@hsettings(max_examples=15, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_RGT_1_property_an_export_has_all_of_its_students_values_and_none_of_anothers(
        services: Services, mine: list[str], theirs: list[str]) -> None:
    assume(not any(a in b or b in a for a in mine for b in theirs))
    svc = services
    teacher = svc.ledger.register_teacher("Teacher")
    svc.accounts.attest_parental_consent(teacher)
    section = svc.sections.create(teacher, "Period 1", "csf", "9", "word")
    svc.settle()

    def student_with(values: list[str]) -> UUID:
        name, answer, survey, comment, project, code = values
        student = svc.sections.create_student(teacher, section, name, "15")
        svc.settle()
        svc.attempts.record_many(student, [Attempt("csf/l-1", "solved", datetime.now(UTC),
                                                   code=code)])
        svc.coursework.answer_prompt(student, "csf/prompt", answer)
        svc.coursework.answer_survey(student, "csf/survey", {"q": survey})
        svc.coursework.give_feedback(teacher, student, "csf/l-1", comment)
        svc.projects.create(student, "app", project, code)
        svc.catch_up()
        return student

    student, other = student_with(mine), student_with(theirs)
    text = b"".join(Exporter(svc).json(svc.ledger.live(student))).decode()
    assert [v for v in mine if v not in text] == []
    assert [v for v in theirs if v in text] == []
    assert str(other) not in text
