"""AUD-1 on every read of a student's data, through HTTP on both backends (ACC-4, AUD-5).

One table lists every route of the earlier issues that returns a student's data: for each, a
read leaves one access record per student it returned, with the caller as actor, their role,
the route pattern, the fields returned and the purpose, and the request's id; a read whose
record cannot be saved answers 503 access-not-recorded and carries nothing of the student.
A read of many students saves all their records in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import OperationalError

from api.services import Services
from api.tokens import Principal
from ledger.audit import AccessRecord, AuditTrail
from ledger.progress import Attempt
from tests.conftest import BACKENDS, drop_schemas, make_settings
from tests.test_api_accounts import Client, problem, serving

# Personal values of the world's students: none may come back when a record cannot be saved.
FIRST, SECOND = "Audrey Tarrant", "Basil Quennell"
NEWCOMER = "Cosima Wetherell"
PROJECT = "Audrey's maze runner"
ANSWER = "Loops repeat the moves so I wrote less"
COMMENT = "Lovely use of a loop, Audrey"
SURVEY = "csd/unit-1/survey"
LEVEL = "csd/unit-1/lesson-1/level-1"


@dataclass
class World:
    school: UUID
    teacher: UUID
    section: UUID
    first: UUID
    second: UUID
    teacher_principal: UUID
    teacher_auth: dict[str, str]


@dataclass(frozen=True)
class Read:
    """One read route of the table: how to call it and what its records must say."""

    name: str
    method: str
    url: Callable[[World], str]
    caller: str  # "teacher", "school_admin" or "support"
    students: Callable[[World, Any], list[UUID]]  # whose data the answer holds
    resource: str
    fields: frozenset[str]
    personal: tuple[str, ...]  # values of the students the answer would show
    body: Any = None


def _first(w: World, _: Any) -> list[UUID]:
    return [w.first]


def _both(w: World, _: Any) -> list[UUID]:
    return [w.first, w.second]


def _created(_: World, body: Any) -> list[UUID]:
    return [UUID(body["id"])]


PROGRESS = frozenset({"student_id", "levels"})
PROJECTS = frozenset({"id", "kind", "name", "remixed_from", "shared_at"})
FEEDBACK = frozenset({"level", "comment", "teacher_id", "given_at"})
ANSWERS = frozenset({"prompt", "text", "answered_at"})
ROW = frozenset({"id", "kind", "display_name", "username", "login_type", "secret_kind",
                 "secret"})

READS = [
    Read("student", "GET", lambda w: f"/students/{w.first}", "teacher", _first,
         "/students/{person_id}", ROW, (FIRST,)),
    Read("progress", "GET", lambda w: f"/students/{w.first}/progress", "teacher", _first,
         "/students/{person_id}/progress", PROGRESS, (LEVEL,)),
    Read("grid", "GET", lambda w: f"/sections/{w.section}/progress", "teacher", _both,
         "/sections/{section_id}/progress", frozenset({"id", "display_name", "levels"}),
         (FIRST, SECOND)),
    Read("school progress", "GET", lambda w: f"/schools/{w.school}/progress", "school_admin",
         _both, "/schools/{school_id}/progress",
         frozenset({"id", "display_name", "section_id", "teacher_id", "grade", "counts"}),
         (FIRST, SECOND)),
    Read("projects", "GET", lambda w: f"/students/{w.first}/projects", "teacher", _first,
         "/students/{person_id}/projects", PROJECTS, (PROJECT,)),
    Read("feedback", "GET", lambda w: f"/students/{w.first}/feedback", "teacher", _first,
         "/students/{person_id}/feedback", FEEDBACK, (COMMENT,)),
    Read("answers", "GET", lambda w: f"/students/{w.first}/answers", "teacher", _first,
         "/students/{person_id}/answers", ANSWERS, (ANSWER,)),
    Read("surveys", "GET", lambda w: f"/sections/{w.section}/surveys?survey={SURVEY}",
         "teacher", _both, "/sections/{section_id}/surveys", frozenset({"survey_answers"}),
         ("loved it", "too short")),
    Read("roster", "GET", lambda w: f"/sections/{w.section}/students", "teacher", _both,
         "/sections/{section_id}/students", ROW, (FIRST, SECOND)),
    Read("removal preview", "GET",
         lambda w: f"/sections/{w.section}/students/{w.first}/removal", "teacher", _first,
         "/sections/{section_id}/students/{student_id}/removal",
         frozenset({"deletes_account", "confirmation"}), ()),
    Read("new secret", "POST", lambda w: f"/sections/{w.section}/students/{w.first}/secret",
         "teacher", _first, "/sections/{section_id}/students/{student_id}/secret",
         frozenset({"student_id", "secret_kind", "secret"}), ()),
    Read("new student", "POST", lambda w: f"/sections/{w.section}/students", "teacher",
         _created, "/sections/{section_id}/students", ROW, (NEWCOMER,),
         {"display_name": NEWCOMER, "age": "9"}),
    Read("school roster", "GET", lambda w: f"/schools/{w.school}/roster", "school_admin",
         _both, "/schools/{school_id}/roster", frozenset({"id", "display_name"}),
         (FIRST, SECOND)),
    Read("directory", "GET", lambda w: "/people?kind=student", "registrar", _both, "/people",
         frozenset({"id", "kind", "display_name", "age", "registered_at"}), (FIRST, SECOND)),
]
# ACC-4: support states a purpose on the routes that take one, and it is what is recorded.
SUPPORT_READS = [
    Read(f"support {r.name}", r.method, r.url, "support", r.students, r.resource,
         frozenset(r.fields | ({"email_on_file", "parent_email", "race", "gender", "age",
                                "age_given_on", "consents", "last_sign_in"}
                               if r.name == "student" else set())), r.personal)
    for r in READS if r.name in ("student", "progress", "projects", "feedback", "answers")]


@pytest.fixture(scope="module", params=BACKENDS)
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Client]:
    settings = make_settings(str(request.param), str(tmp_path_factory.mktemp("reads")))
    try:
        with serving(Services.open(settings)) as client:
            yield client
    finally:
        if settings.backend == "postgres":
            drop_schemas(settings.schema, settings.keystore_schema)


def _world(api: Client) -> World:
    """A school; its teacher's young section with two students who have progress, a project,
    an answer, survey answers and a comment from the teacher."""
    svc = api.svc
    school = svc.accounts.register_school(f"Hill {uuid4().hex[:6]}", "North", "public")
    teacher = api.teacher()
    svc.accounts.choose_school(teacher, school)
    section = api.section(teacher)
    first, second = api.pupil(teacher, section, FIRST), api.pupil(teacher, section, SECOND)
    now = datetime.now(UTC)
    for student, liked in ((first, "loved it"), (second, "too short")):
        svc.attempts.record_many(student, [Attempt(level=LEVEL, result="solved",
                                                   attempted_at=now, seconds=40, hints=0,
                                                   code="move()", answers={})])
        svc.coursework.answer_survey(student, SURVEY, {"enjoyed": liked})
    svc.projects.create(first, "app", PROJECT, "move()")
    svc.coursework.answer_prompt(first, "csd/unit-1/reflection", ANSWER)
    svc.coursework.give_feedback(teacher, first, LEVEL, COMMENT)
    svc.catch_up()
    issued = api.tokens.issue("teacher", "session", timedelta(hours=1), subject_id=teacher)
    return World(school, teacher, section, first, second, issued.principal_id,
                 {"Authorization": f"Bearer {issued.token}"})


def _caller(api: Client, w: World, role: str) -> tuple[UUID, dict[str, str]]:
    if role == "teacher":
        return w.teacher_principal, w.teacher_auth
    scope = f"school:{w.school}" if role in ("school_admin", "registrar") else None
    issued = api.tokens.issue(role, f"{role}-t", timedelta(hours=1), scope=scope)
    headers = {"Authorization": f"Bearer {issued.token}"}
    if role == "support":
        headers["X-Purpose"] = "parent_request"
    return issued.principal_id, headers


def _records_of(api: Client, students: list[UUID], request_id: str
                ) -> dict[UUID, list[AccessRecord]]:
    """The access records of this request, per student, opened (the index, then the log)."""
    api.svc.audit_view.catch_up()
    found: dict[UUID, list[AccessRecord]] = {}
    for student in students:
        ids = [e.record_id for e in api.svc.audit_reader.of_student(student, limit=500)]
        found[student] = [r for r in api.svc.audit.records(ids).values()
                          if r.request_id == request_id]
    return found


def _items(body: Any) -> list[dict[str, Any]]:
    """The per-student objects of an answer, to compare their keys with the fields recorded."""
    if isinstance(body, list):
        return body
    if "items" in body:  # a page of the directory
        return list(body["items"])
    for key in ("students", "sections"):
        if key in body:
            rows = body[key]
            return [s for section in rows for s in section["students"]] if key == "sections" \
                else rows
    return [body]


@pytest.mark.parametrize("read", READS + SUPPORT_READS, ids=lambda r: r.name)
def test_AUD_1_every_read_leaves_its_record(api: Client, read: Read) -> None:
    w = _world(api)
    actor, auth = _caller(api, w, read.caller)
    request_id = uuid4().hex
    response = api.call(read.method, read.url(w), auth, read.body,
                        headers={"X-Request-ID": request_id})
    assert response.status_code in (200, 201), response.text
    students = read.students(w, response.json())
    records = _records_of(api, students, request_id)
    for student in students:
        (record,) = records[student]  # exactly one per student the answer holds
        assert record.actor_id == actor and record.actor_role == read.caller
        assert record.on_behalf_of is None
        assert record.resource == read.resource
        assert set(record.fields) == read.fields, read.name
        expected = {"support": "parent_request", "registrar": "records_administration"}.get(
            read.caller, "school_official")
        assert record.purpose == expected
    if read.name not in ("surveys",):  # a tally is not per student: its answers are unnamed
        for item in _items(response.json()):
            assert set(item) - {"kind"} <= set(read.fields) | {"kind"}, read.name


@pytest.mark.parametrize("read", READS, ids=lambda r: r.name)
def test_AUD_1_a_read_whose_record_cannot_be_saved_fails_and_returns_nothing(
        api: Client, read: Read, monkeypatch: pytest.MonkeyPatch) -> None:
    w = _world(api)
    _, auth = _caller(api, w, read.caller)

    def cannot_save(self: AuditTrail, records: list[AccessRecord]) -> None:
        raise OperationalError("the log cannot be written")

    monkeypatch.setattr(AuditTrail, "_save", cannot_save)
    request_id = uuid4().hex
    refused = api.call(read.method, read.url(w), auth, read.body,
                       headers={"X-Request-ID": request_id})
    problem(refused, 503, "access-not-recorded")
    for value in (*read.personal, str(w.first), str(w.second), FIRST, SECOND):
        assert value not in refused.text
    assert refused.headers["Retry-After"]
    monkeypatch.undo()
    assert all(not found for found in _records_of(api, [w.first, w.second], request_id
                                                  ).values())


def test_AUD_1_the_students_own_reads_leave_no_record(api: Client) -> None:
    w = _world(api)
    me = api.session(w.first)
    for url in (f"/students/{w.first}", f"/students/{w.first}/progress",
                f"/students/{w.first}/projects", f"/students/{w.first}/feedback",
                f"/students/{w.first}/answers", "/me/progress", "/me/feedback", "/me/projects"):
        assert api.call("GET", url, me).status_code == 200, url
    api.svc.audit_view.catch_up()
    assert api.svc.audit_reader.of_student(w.first) == []


def test_AUD_1_a_read_of_many_students_saves_their_records_in_one_transaction(
        api: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    w = _world(api)
    saves: list[int] = []
    real = AuditTrail._save

    def counted(self: AuditTrail, records: list[AccessRecord]) -> None:
        saves.append(len(records))
        real(self, records)

    monkeypatch.setattr(AuditTrail, "_save", counted)
    for url in (f"/sections/{w.section}/students", f"/sections/{w.section}/progress"):
        assert api.call("GET", url, w.teacher_auth).status_code == 200
    assert saves == [2, 2]


def test_AUD_5_support_acting_as_a_user_records_both_identities_even_for_their_own_data(
        api: Client) -> None:
    w = _world(api)
    support, session = uuid4(), uuid4()
    acting = Principal(id=session, role="student", label="session", subject_id=w.first,
                       acted_by=support)
    api.svc.record_access(acting, w.first, "/me/progress", ["levels"], None, "req-acting")
    api.svc.record_accesses(acting, [(w.second, ["id"])], "/sections/{section_id}/students",
                            "technical_issue", "req-acting-2")
    alone = Principal(id=session, role="student", label="session", subject_id=w.first)
    api.svc.record_access(alone, w.first, "/me/progress", ["levels"], None, "req-alone")
    own = _records_of(api, [w.first], "req-acting")[w.first]
    (record,) = own
    assert (record.actor_id, record.on_behalf_of) == (support, w.first)
    assert record.purpose == "support_session"
    (other,) = _records_of(api, [w.second], "req-acting-2")[w.second]
    assert (other.actor_id, other.on_behalf_of, other.purpose) == (
        support, w.first, "technical_issue")
    assert _records_of(api, [w.first], "req-alone")[w.first] == []


def test_AUD_5_an_acted_session_reading_through_http_is_recorded(api: Client) -> None:
    """The routes honour `acted_by` from whatever token names it (sessions are built
    elsewhere): a student's own progress, feedback and projects read by support acting as
    them."""
    w = _world(api)
    support = uuid4()
    store = api.tokens
    real = store.authenticate

    def acting(token: str) -> Principal | None:
        found = real(token)
        if found is None:
            return None
        return Principal(found.id, found.role, found.label, found.subject_id, found.scope,
                         acted_by=support)

    store.authenticate = acting  # type: ignore[method-assign]
    project = api.svc.projects_reader.of_owner(w.first)[0].id
    reads = {"/me/progress": {"student_id", "levels"}, "/me/feedback": {"level", "comment"},
             "/me/projects": PROJECTS,
             "/me/projects/{project_id}": {"id", "kind", "name", "source", "remixed_from",
                                           "shared", "media"}}
    try:
        for resource, fields in reads.items():
            request_id = uuid4().hex
            read = api.call("GET", resource.replace("{project_id}", str(project)),
                            api.session(w.first), headers={"X-Request-ID": request_id})
            assert read.status_code == 200, resource
            (record,) = _records_of(api, [w.first], request_id)[w.first]
            assert (record.actor_id, record.on_behalf_of) == (support, w.first)
            assert (record.resource, set(record.fields)) == (resource, fields)
    finally:
        del store.authenticate


def test_AUD_5_a_real_support_session_leaves_both_identities_on_every_own_read(
        api: Client) -> None:
    """Support opens a session as the student (POST /support-sessions) and reads what the
    student would see: every read is recorded with the support principal as actor and the
    student as the one acted for."""
    w = _world(api)
    support = api.tokens.issue("support", "desk-1", timedelta(hours=1))
    opened = api.call("POST", "/support-sessions", {"Authorization": f"Bearer {support.token}"},
                      {"person_id": str(w.first), "purpose": "technical_issue"})
    assert opened.status_code == 201, opened.text
    as_student = {"Authorization": f"Bearer {opened.json()['token']}"}
    for resource in ("/me", "/me/consents", "/me/sections", "/me/progress", "/me/feedback",
                     "/me/projects"):
        request_id = uuid4().hex
        read = api.call("GET", resource, as_student, headers={"X-Request-ID": request_id})
        assert read.status_code == 200, resource
        (record,) = _records_of(api, [w.first], request_id)[w.first]
        assert (record.actor_id, record.on_behalf_of, record.resource) == (
            support.principal_id, w.first, resource)
    # the student's own reads, in their own session, leave none
    request_id = uuid4().hex
    api.call("GET", "/me", api.session(w.first), headers={"X-Request-ID": request_id})
    assert _records_of(api, [w.first], request_id)[w.first] == []
