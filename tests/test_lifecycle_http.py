"""The whole deletion lifecycle through HTTP, on both backends (DEL-1..4, DEL-8): delete, hidden
at once, recovered on day 27 exactly as it was, deleted again, purged on day 29, recovery
refused, the receipt verifies with the ledger's public key, and a scan of every database file
and table (raw bytes of the SQLite files, every PostgreSQL row) finds none of the subject's
values. Time comes from a clock the test moves.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest

from api.services import Services
from ledger.receipts import verify_receipt_json
from ledger.settings import Settings
from tests.conftest import Clock
from tests.test_api_accounts import PASSWORD, Client, problem, serving
from tests.test_leak_scan import _key_material, haystack

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


@pytest.fixture
def api(settings: Settings, clock: Clock, cheap_hashes: None) -> Iterator[Client]:
    with serving(Services.open(settings, clock=clock)) as client:
        yield client


def sign_in(api: Client, login: str) -> dict[str, str]:
    response = api.call("POST", "/sign-in", body={"login": login, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def student_with_a_course_life(api: Client, teacher: UUID, section: UUID
                               ) -> tuple[UUID, str, dict[str, bytes]]:
    """A student who signs up, joins the section, tries levels, makes a project with an
    upload: every kind of record a purge must take. Returns id, username and the markers."""
    name = f"Marker-{uuid4().hex[:12]}"
    email = f"{name.lower()}@home.example"
    code = f"say('{uuid4().hex}')"
    project = f"Project-{uuid4().hex[:12]}"
    upload = PNG + uuid4().hex.encode()
    signed_up = api.call("POST", "/sign-up/student", body={
        "display_name": name, "age": "15", "email": email, "password": PASSWORD})
    assert signed_up.status_code == 201, signed_up.text
    student, username = UUID(signed_up.json()["id"]), signed_up.json()["username"]
    me = sign_in(api, username)
    join_code = api.svc.sections.section(section).join_code
    assert api.call("POST", "/sections/join", me, {"join_code": join_code}).status_code == 200
    for result in ("failed", "solved"):
        assert api.call("POST", "/me/attempts", me, {
            "level": "csf/unit-1/level-1", "result": result, "code": code}).status_code == 201
    made = api.call("POST", "/me/projects", me, {"kind": "app", "name": project})
    assert made.status_code == 201, made.text
    uploaded = api.http.post(f"/me/projects/{made.json()['id']}/media", content=upload,
                             headers={**me, "Content-Type": "image/png"})
    assert uploaded.status_code == 201, uploaded.text
    api.svc.settle()
    markers = {"name": name.encode(), "email": email.encode(), "username": username.encode(),
               "code": code.encode(), "project": project.encode(), "upload": upload}
    return student, username, markers


def roster_ids(api: Client, teacher_auth: dict[str, str], section: UUID) -> set[str]:
    response = api.call("GET", f"/sections/{section}/students", teacher_auth)
    assert response.status_code == 200, response.text
    return {s["id"] for s in response.json()}


def test_delete_recover_delete_purge_and_nothing_left(api: Client, clock: Clock) -> None:
    teacher = api.teacher()
    section = api.svc.sections.create(teacher, "Period 1", "csf", "9", "email")
    api.svc.settle()
    teacher_auth = api.session(teacher)
    student, username, markers = student_with_a_course_life(api, teacher, section)
    me = sign_in(api, username)
    progress_before = api.call("GET", "/me/progress", me).json()
    projects_before = api.call("GET", "/me/projects", me).json()
    assert str(student) in roster_ids(api, teacher_auth, section)

    # DEL-1: deleted, and at once unable to sign in and gone from the teacher's views.
    deleted = api.call("DELETE", "/me", me)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["deleted"] == [str(student)]
    assert datetime.fromisoformat(deleted.json()["recoverable_until"]) == clock.now + timedelta(
        days=28)
    problem(api.call("GET", "/me", me), 401, "unauthenticated")  # the session ended with it
    problem(api.call("POST", "/sign-in", body={"login": username, "password": PASSWORD}),
            401, "sign-in-failed")
    assert str(student) not in roster_ids(api, teacher_auth, section)
    problem(api.call("GET", f"/students/{student}", teacher_auth), 404, "not-found")
    grid = api.call("GET", f"/sections/{section}/progress", teacher_auth).json()
    assert str(student) not in orjson.dumps(grid).decode()

    # DEL-2: day 27, recovered exactly as it was.
    clock.advance(27)
    recovered = api.call("POST", "/recovery", body={"login": username, "password": PASSWORD})
    assert recovered.status_code == 200, recovered.text
    assert recovered.json()["recovered"] == [str(student)]
    me = sign_in(api, username)
    assert api.call("GET", "/me/progress", me).json() == progress_before
    assert api.call("GET", "/me/projects", me).json() == projects_before
    assert str(student) in roster_ids(api, teacher_auth, section)
    problem(api.call("POST", "/recovery", body={"login": username, "password": PASSWORD}),
            409, "not-deleted")

    # Deleted again; on day 29 after that the purge job runs.
    assert api.call("DELETE", "/me", me).status_code == 200
    clock.advance(28.5)
    key = _key_material(api.svc, student)
    dry = api.svc.purge_job.run(dry_run=True)
    assert [(o.subject_id, o.status) for o in dry.outcomes] == [(student, "would_purge")]
    assert api.svc.ledger.keys.erasure_of(student) is None  # the dry run changed nothing
    report = api.svc.purge_job.run()
    assert [(o.subject_id, o.status) for o in report.outcomes] == [(student, "purged")]
    api.svc.catch_up()

    # DEL-2 after the purge: refused, and says which.
    problem(api.call("POST", "/recovery", body={"login": username, "password": PASSWORD}),
            401, "sign-in-failed")  # the username itself is gone
    problem(api.call("POST", f"/people/{student}/recovery", api.staff("support")),
            410, "subject-erased")
    problem(api.call("GET", f"/students/{student}", api.staff("operator")), 410,
            "subject-erased")

    # DEL-8: the receipt, checked with nothing but the public key.
    receipt = api.call("GET", f"/erasure-receipts/{student}", api.staff("operator"))
    assert receipt.status_code == 200, receipt.text
    public = api.call("GET", "/ledger/public-key").json()
    assert verify_receipt_json(receipt.text, public["public_key"])
    body: dict[str, Any] = receipt.json()["receipt"]
    assert body["subject_id"] == str(student) and body["reason"] == "expired_window"
    assert body["requester"] == "purge-job" and body["key_id"] == str(
        api.svc.ledger.keys.erasure_of(student).key_id)  # type: ignore[union-attr]
    destroyed = body["destroyed"]
    assert destroyed["uploads"] == 1 and destroyed["identity_index"] >= 2
    # read models purged with the key, counted: the level row and the stream row of progress,
    # the directory row, the section membership, the project, the lifecycle rows
    assert destroyed["read_model_progress"] == 2 and destroyed["read_model_student_directory"] == 1
    assert destroyed["read_model_roster"] >= 1 and destroyed["read_model_projects"] >= 1
    assert destroyed["owned_keys"] == 1  # the project's own key went with the student's
    tampered = receipt.json()
    tampered["receipt"]["reason"] = "user_request"
    assert not verify_receipt_json(orjson.dumps(tampered), public["public_key"])
    listed = api.call("GET", "/erasure-receipts", api.staff("operator")).json()
    assert [r["receipt"]["subject_id"] for r in listed["items"]] == [str(student)]

    # Nothing of the subject anywhere at rest: events, snapshots, read models, uploads, keys.
    found = haystack(api.svc.settings).find({**markers, **key})
    assert found == []
    # ...and a rebuild of every read model from the whole log brings nothing of them back.
    for runner in api.svc.runners:
        runner.rebuild()
    assert api.svc.directory_reader.entry(student) is None
    assert haystack(api.svc.settings).find(markers) == []


def test_recovery_after_the_window_says_the_window_closed(api: Client, clock: Clock) -> None:
    response = api.call("POST", "/sign-up/student", body={
        "display_name": "Late", "age": "15", "email": f"late-{uuid4().hex[:8]}@home.example",
        "password": PASSWORD})
    assert response.status_code == 201, response.text
    signed_up = response.json()
    me = sign_in(api, signed_up["username"])
    assert api.call("DELETE", "/me", me).status_code == 200
    clock.advance(28)
    body = problem(api.call("POST", "/recovery", body={
        "login": signed_up["username"], "password": PASSWORD}), 409, "recovery-window-closed")
    assert datetime.fromisoformat(body["ended_at"]) == clock.now
    problem(api.call("POST", f"/people/{signed_up['id']}/recovery", api.staff("support")),
            409, "recovery-window-closed")


def test_a_teacher_sees_who_goes_with_them_and_confirms_that_list(api: Client) -> None:
    """DEL-5 through HTTP: the preview, a refused delete without its confirmation (nothing
    written), the delete with it, and recovery bringing the dependants back too."""
    teacher = api.teacher()
    other = api.teacher("Mr Other")
    section = api.section(teacher)
    dependent = api.pupil(teacher, section, "Dee")
    shared = api.pupil(teacher, section, "Sha")
    api.svc.sections.add_student(other, api.section(other), shared)
    api.svc.settle()
    auth = api.session(teacher)
    preview = api.call("GET", "/me/deletion", auth).json()
    assert [p["id"] for p in preview["deletes"]] == [str(dependent)]
    assert [p["id"] for p in preview["unenrols"]] == [str(shared)]
    assert preview["recoverable_for_days"] == 28 and preview["confirmation"]

    before = api.position()
    problem(api.call("DELETE", "/me", auth), 409, "confirmation-required")
    problem(api.call("DELETE", "/me?confirmation=0000", auth), 409, "confirmation-required")
    assert api.position() == before
    done = api.call("DELETE", f"/me?confirmation={preview['confirmation']}", auth)
    assert done.status_code == 200, done.text
    assert set(done.json()["deleted"]) == {str(teacher), str(dependent)}
    assert api.svc.ledger.person(shared).deleted is False  # type: ignore[union-attr]

    recovered = api.call("POST", f"/people/{teacher}/recovery", api.staff("support"))
    assert set(recovered.json()["recovered"]) == {str(teacher), str(dependent)}
    assert api.svc.ledger.person(dependent).deleted is False  # type: ignore[union-attr]


def test_erasure_at_once_by_a_parent_and_refused_under_a_legal_hold(api: Client) -> None:
    """DEL-4 and DEL-7 through HTTP."""
    teacher = api.teacher()
    student = api.pupil(teacher, api.section(teacher))
    api.svc.accounts.link_parent_email(student, "a.parent@home.example")
    operator = api.staff("operator")
    parent = api.staff("parent", scope="parent:" + api.svc.ledger.identity.token(
        "parent_email", "a.parent@home.example").hex())
    hold = api.call("POST", f"/people/{student}/holds", operator,
                    {"reason": "open inspection request, 34 CFR 99.10(e)"})
    assert hold.status_code == 201, hold.text
    before = api.position()
    problem(api.call("DELETE", f"/people/{student}", parent), 409, "legal-hold")
    assert api.position() == before and not api.svc.ledger.keys.is_erased(student)
    problem(api.call("DELETE", f"/people/{student}?reason=school_request", parent), 422,
            "validation")  # a parent's reason is theirs, not chosen
    lifted = api.call("POST", f"/people/{student}/holds/{hold.json()['id']}/lift", operator,
                      {"reason": "inspection closed"})
    assert lifted.status_code == 204
    erased = api.call("DELETE", f"/people/{student}", parent)
    assert erased.status_code == 200, erased.text
    assert erased.json()["receipt"]["reason"] == "parent_request"
    assert erased.json()["receipt"]["requester"].startswith("parent:")
    problem(api.call("DELETE", f"/people/{student}", parent), 404, "not-found")


def test_DEL_4_a_person_erases_their_own_account_at_once(api: Client) -> None:
    """No window: the key goes now, the receipt says who asked, and a teacher's dependent
    students go too once the teacher has confirmed the preview's list."""
    teacher = api.teacher()
    dependent = api.pupil(teacher, api.section(teacher), "Dep")
    student = api.svc.ledger.register_student("Self Eraser", "15")
    me = api.session(student)
    erased = api.call("POST", "/me/erasure", me)
    assert erased.status_code == 200, erased.text
    (receipt,) = erased.json()["items"]
    assert receipt["receipt"]["subject_id"] == str(student)
    assert receipt["receipt"]["reason"] == "user_request"
    assert receipt["receipt"]["requester"].startswith("student:")
    assert api.svc.ledger.keys.is_erased(student)
    problem(api.call("GET", "/me", me), 401, "unauthenticated")

    auth = api.session(teacher)
    before = api.position()
    problem(api.call("POST", "/me/erasure", auth), 409, "confirmation-required")
    assert api.position() == before and not api.svc.ledger.keys.is_erased(dependent)
    confirmation = api.call("GET", "/me/deletion", auth).json()["confirmation"]
    both = api.call("POST", f"/me/erasure?confirmation={confirmation}", auth)
    assert both.status_code == 200, both.text
    assert {r["receipt"]["subject_id"] for r in both.json()["items"]} == {
        str(teacher), str(dependent)}
    assert api.svc.ledger.keys.is_erased(teacher) and api.svc.ledger.keys.is_erased(dependent)
