"""Rights requests over HTTP (RGT-2, RGT-3, RGT-4) on both backends, with an injected clock:
who may file, follow and manage (a parent only their linked child's, a custodian only their
school's), the overdue report by role, a refused rectification's statement travelling into
every later export, and a restriction honoured by the non-essential processing that exists
(partner sharing, study contact, a teacher's marketing mail) until it is lifted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from api.services import Services
from ledger.settings import Settings
from tests.conftest import Clock
from tests.test_api_accounts import Client, problem, serving

PARENT = "rights.http.parent@home.example"


@pytest.fixture
def api(settings: Settings, clock: Clock) -> Iterator[Client]:
    with serving(Services.open(settings, clock=clock)) as client:
        yield client


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


class World:
    def __init__(self, api: Client) -> None:
        svc = api.svc
        self.school = svc.accounts.register_school("Rights School", "East", "public")
        self.other_school = svc.accounts.register_school("Other School", "East", "public")
        teacher = api.teacher()
        svc.accounts.choose_school(teacher, self.school)
        other_teacher = api.teacher("Mr Other")
        svc.accounts.choose_school(other_teacher, self.other_school)
        self.student = api.pupil(teacher, api.section(teacher), "Rowan Wrongly", age="18")
        self.elsewhere = api.pupil(other_teacher, api.section(other_teacher), "Elsa", age="15")
        svc.accounts.link_parent_email(self.student, PARENT)
        svc.settle()
        token = svc.ledger.identity.token("parent_email", PARENT).hex()
        self.me = api.session(self.student)
        self.parent = api.staff("parent", scope=f"parent:{token}")
        self.other_parent = api.staff("parent", scope="parent:" + "0" * 64)
        self.custodian = api.staff("records_custodian", scope=f"school:{self.school}")
        self.other_custodian = api.staff("records_custodian",
                                         scope=f"school:{self.other_school}")
        self.operator = api.staff("operator")
        self.teacher = api.session(teacher)


@pytest.fixture
def world(api: Client) -> World:
    return World(api)


def _file(api: Client, student: UUID, auth: dict[str, str], **body: Any) -> Any:
    return api.call("POST", f"/students/{student}/rights-requests", auth, body)


def _raw(api: Client, path: str, auth: dict[str, str], body: Any) -> Any:
    """JSON as a client may send it, lone surrogates escaped and all."""
    return api.http.request("POST", path, content=json.dumps(body).encode(),
                            headers={**auth, "Content-Type": "application/json"})


def test_RGT_4_who_files_and_follows_requests(api: Client, world: World, clock: Clock) -> None:
    s = world.student
    by_student = _ok(_file(api, s, world.me, kind="access"), 201)
    assert by_student["filed_by"] == "subject" and by_student["status"] == "open"
    assert by_student["received_at"] == clock.now.isoformat().replace("+00:00", "Z")
    assert by_student["due_at"] == (clock.now + timedelta(days=30)).isoformat().replace(
        "+00:00", "Z")
    assert _ok(_file(api, s, world.parent, kind="export"), 201)["filed_by"] == "parent"
    assert _ok(_file(api, s, world.custodian, kind="erase"), 201)["filed_by"] == "custodian"
    assert _ok(_file(api, s, world.operator, kind="object"), 201)["filed_by"] == "operator"

    position = api.svc.ledger.recorder.max_notification_id()
    for outsider in (world.other_parent, world.other_custodian):
        problem(_file(api, s, outsider, kind="access"), 404, "not-found")
        problem(api.call("GET", f"/students/{s}/rights-requests", outsider), 404, "not-found")
    problem(_file(api, s, api.session(world.elsewhere), kind="access"), 404, "not-found")
    problem(_file(api, s, world.teacher, kind="access"), 403, "forbidden")
    problem(_file(api, s, api.staff("auditor"), kind="access"), 403, "forbidden")
    problem(_file(api, s, world.me, kind="complain"), 422, "validation")
    problem(_file(api, s, world.me, kind="rectify", field="username", proposed_value="x"),
            422, "validation")
    problem(_file(api, s, world.me, kind="access", birthdate="2010-01-01"), 422, "validation")
    assert api.svc.ledger.recorder.max_notification_id() == position  # nothing written

    for auth in (world.me, world.parent, world.custodian, world.operator):
        listed = _ok(api.call("GET", f"/students/{s}/rights-requests", auth))
        assert [r["kind"] for r in listed["requests"]] == ["access", "export", "erase",
                                                           "object"]
    # what the parent, the custodian and the operator were shown (the request they filed, the
    # list) was recorded; nothing the student was shown of their own
    api.svc.audit_view.catch_up()
    entries = api.svc.audit_reader.of_student(s)
    roles = [e.actor_role for e in entries]
    assert sorted(roles) == ["operator", "operator", "parent", "parent", "records_custodian",
                             "records_custodian"]
    records = [api.svc.audit.record(e.record_id) for e in entries]
    assert {r.resource for r in records if r} == {"/students/{person_id}/rights-requests"}


def test_RGT_4_managing_requests_by_role(api: Client, world: World, clock: Clock) -> None:
    s = world.student
    request = _ok(_file(api, s, world.parent, kind="export"), 201)["id"]
    base = f"/students/{s}/rights-requests/{request}"
    due = (clock.now + timedelta(days=40)).isoformat()
    extension = {"due_at": due, "reason": "the archive is being moved"}
    for outsider in (world.other_custodian,):
        problem(api.call("POST", f"{base}/extension", outsider, extension), 404, "not-found")
    for not_a_manager in (world.me, world.parent):
        problem(api.call("POST", f"{base}/fulfilment", not_a_manager), 403, "forbidden")
    problem(api.call("POST", f"{base}/extension", world.custodian, {
        "due_at": (clock.now + timedelta(days=46)).isoformat(), "reason": "too long"}), 422,
        "validation")
    extended = _ok(api.call("POST", f"{base}/extension", world.custodian, extension))
    assert extended["due_at"].startswith(due[:19]) and extended["extensions"][0]["notice"] in (
        "recorded", "mailed")
    problem(api.call("POST", f"/students/{s}/rights-requests/{UUID(int=3)}/fulfilment",
                     world.custodian), 404, "not-found")
    done = _ok(api.call("POST", f"{base}/fulfilment", world.custodian))
    assert done["status"] == "fulfilled"
    problem(api.call("POST", f"{base}/refusal", world.operator, {"reason": "late"}), 409,
            "request-state")
    withdrawn = _ok(_file(api, s, world.me, kind="access"), 201)["id"]
    assert _ok(api.call("POST", f"/students/{s}/rights-requests/{withdrawn}/withdrawal",
                        world.me))["status"] == "withdrawn"


def test_RGT_4_the_overdue_report_by_role(api: Client, world: World, clock: Clock) -> None:
    mine = _ok(_file(api, world.student, world.me, kind="access"), 201)["id"]
    clock.advance(1)
    theirs = _ok(_file(api, world.elsewhere, api.session(world.elsewhere), kind="export"),
                 201)["id"]
    clock.advance(1)
    answered = _ok(_file(api, world.student, world.parent, kind="access"), 201)["id"]
    _ok(api.call("POST", f"/students/{world.student}/rights-requests/{answered}/fulfilment",
                 world.operator))
    assert _ok(api.call("GET", "/rights-requests/overdue", world.operator)) == []
    clock.advance(30)  # now: the first two are late, the answered one is not in the report
    everyone = _ok(api.call("GET", "/rights-requests/overdue", world.operator))
    assert [e["request_id"] for e in everyone] == [mine, theirs]
    assert set(everyone[0]) == {"request_id", "subject_id", "kind", "received_at", "due_at",
                                "status"}  # pseudonymous facts only
    assert [e["request_id"] for e in _ok(api.call("GET", "/rights-requests/overdue",
                                                  world.custodian))] == [mine]
    assert [e["request_id"] for e in _ok(api.call("GET", "/rights-requests/overdue",
                                                  world.other_custodian))] == [theirs]
    earlier = (clock.now - timedelta(days=30)).isoformat().replace("+", "%2B")
    assert _ok(api.call("GET", f"/rights-requests/overdue?at={earlier}", world.operator)) == []
    problem(api.call("GET", "/rights-requests/overdue", world.parent), 403, "forbidden")
    problem(api.call("GET", "/rights-requests/overdue?at=2026-09-01T00:00:00", world.operator),
            422, "validation")
    problem(api.call("GET", "/rights-requests?status=late", world.operator), 422, "validation")
    assert len(_ok(api.call("GET", "/rights-requests/overdue?limit=1", world.operator))) == 1
    opened = _ok(api.call("GET", "/rights-requests?status=open", world.custodian))
    assert [e["request_id"] for e in opened] == [mine]


def test_RGT_2_a_refused_rectification_and_its_statement_travel_into_every_export(
        api: Client, world: World) -> None:
    s = world.student
    granted = _ok(_file(api, s, world.me, kind="rectify", field="display_name",
                        proposed_value="Rowan Rightly"), 201)
    assert granted["proposed_value"] == "Rowan Rightly"
    _ok(api.call("POST", f"/students/{s}/rights-requests/{granted['id']}/fulfilment",
                 world.custodian))
    assert _ok(api.call("GET", "/me", world.me))["display_name"] == "Rowan Rightly"

    contested = _ok(_file(api, s, world.parent, kind="rectify", field="gender",
                          proposed_value="nonbinary"), 201)["id"]
    base = f"/students/{s}/rights-requests/{contested}"
    problem(api.call("POST", f"{base}/statements", world.parent, {"text": "Too early."}), 409,
            "request-state")
    _ok(api.call("POST", f"{base}/refusal", world.custodian, {
        "reason": "the school's records say otherwise"}))
    problem(api.call("POST", f"{base}/statements", world.custodian, {"text": "No."}), 403,
            "forbidden")
    problem(api.call("POST", f"{base}/statements", world.other_parent, {"text": "No."}), 404,
            "not-found")
    problem(api.call("POST", f"{base}/statements", world.parent, {"text": "x" * 2_001}), 422,
            "validation")
    statement = _ok(api.call("POST", f"{base}/statements", world.parent, {
        "text": "Rowan is nonbinary; the record is wrong."}), 201)
    assert statement["field"] == "gender" and statement["by"] == "parent"

    for auth in (world.me, world.parent, world.custodian, world.operator):
        exported = json.loads(api.call("GET", f"/students/{s}/export", auth).content)
        profile = {row["field"]: row for row in exported["sections"]["profile"]}
        assert [x["text"] for x in profile["gender"]["statements"]] == [
            "Rowan is nonbinary; the record is wrong."]
        assert profile["display_name"]["statements"] == []
        assert [r["status"] for r in exported["sections"]["rights_requests"]] == [
            "fulfilled", "refused"]
    listed = _ok(api.call("GET", f"/students/{s}/rights-requests", world.me))
    assert [x["id"] for x in listed["statements"]] == [statement["id"]]
    assert api.svc.rights.statements_of(s)[0].text == statement["text"]


def test_RGT_2_the_statement_goes_with_every_later_disclosure_of_the_field(
        api: Client, world: World) -> None:
    s = world.student
    contested = _ok(_file(api, s, world.parent, kind="rectify", field="gender",
                          proposed_value="nonbinary"), 201)["id"]
    base = f"/students/{s}/rights-requests/{contested}"
    _ok(api.call("POST", f"{base}/refusal", world.custodian, {"reason": "the record stands"}))
    _ok(api.call("POST", f"{base}/statements", world.parent, {
        "text": "The parent disputes this field."}), 201)
    body = {"recipient": "Hill County Juvenile Court", "disclosed_on": "2026-09-01",
            "legal_basis": "99.31(a)(9)", "legitimate_interest": "a subpoena",
            "disclosed": ["gender", "progress"]}
    with_field = _ok(api.call("POST", f"/students/{s}/disclosures", world.custodian, body), 201)
    without = _ok(api.call("POST", f"/students/{s}/disclosures", world.custodian,
                           {**body, "disclosed": ["progress"]}), 201)
    exported = json.loads(api.call("GET", f"/students/{s}/export", world.parent).content)
    rows = {row["disclosure_id"]: row for row in exported["sections"]["disclosures"]}
    assert rows[with_field["record_id"]]["statements"] == [
        "gender: The parent disputes this field."]
    assert rows[without["record_id"]]["statements"] == []


def test_RGT_3_a_restriction_is_honoured_until_lifted(api: Client, world: World) -> None:
    s, me = world.student, world.me
    request = _ok(_file(api, s, me, kind="restrict"), 201)["id"]
    _ok(api.call("PUT", "/me/partners/code-club", me, {"opted_in": True}), 204)  # not yet
    _ok(api.call("POST", f"/students/{s}/rights-requests/{request}/fulfilment",
                 world.custodian))
    assert api.svc.rights_reader.restricted_subjects() == {s}
    listed = _ok(api.call("GET", f"/students/{s}/rights-requests", me))
    assert listed["restriction"]["requests"] == [request]

    consents_before = _ok(api.call("GET", "/me/consents", me))
    problem(api.call("PUT", "/me/partners/robot-club", me, {"opted_in": True}), 409,
            "restricted")
    problem(api.call("PUT", "/me/study-contact", me, {"contact": "rowan@home.example"}), 409,
            "restricted")
    assert _ok(api.call("GET", "/me/consents", me)) == consents_before  # nothing kept
    # opting out and withdrawing stay open: they only reduce processing
    _ok(api.call("PUT", "/me/partners/code-club", me, {"opted_in": False}), 204)
    _ok(api.call("DELETE", "/me/study-contact", me), 204)

    lifted = _ok(api.call("POST", f"/students/{s}/restriction/lift", world.custodian, {
        "reason": "the objection was resolved"}))
    assert lifted == {"lifted": True}
    assert _ok(api.call("POST", f"/students/{s}/restriction/lift", world.custodian, {
        "reason": "again"})) == {"lifted": False}
    assert api.svc.rights_reader.restricted_subjects() == set()
    _ok(api.call("PUT", "/me/partners/robot-club", me, {"opted_in": True}), 204)
    _ok(api.call("PUT", "/me/study-contact", me, {"contact": "rowan@home.example"}), 204)


def test_RGT_3_a_restricted_teacher_gets_no_marketing_mail(api: Client) -> None:
    teacher = api.teacher("Ms Objecting")
    auth = api.session(teacher)
    svc = api.svc
    svc.rights.fulfil(teacher, svc.rights.file(teacher, "object", "subject", "t"), "operator")
    problem(api.call("PUT", "/me/email-opt-in", auth, {"opted_in": True}), 409, "restricted")
    assert svc.ledger.live(teacher).consent("email_opt_in") is None
    _ok(api.call("PUT", "/me/email-opt-in", auth, {"opted_in": False}), 204)
    svc.rights.lift_restriction(teacher, "withdrawn", "operator")
    _ok(api.call("PUT", "/me/email-opt-in", auth, {"opted_in": True}), 204)
    assert svc.ledger.live(teacher).consent("email_opt_in") is True


@pytest.mark.parametrize("body", [
    {"kind": "rectify", "field": "parent_email", "proposed_value": "\ud800@home.example"},
    {"kind": "rectify", "field": "display_name", "proposed_value": "Ro\x00wan"},
    {"kind": "rectify", "field": "display_name", "proposed_value": "x" * 321},
    {"kind": "rectify", "field": "age", "proposed_value": "2010-01-01"},
    {"kind": "access", "field": "\ud800"},
    {"kind": "restrict", "proposed_value": "anything"},
])
def test_RGT_bad_input_is_a_422_that_changes_and_echoes_nothing(
        api: Client, world: World, body: dict[str, Any]) -> None:
    position = api.svc.ledger.recorder.max_notification_id()
    response = _raw(api, f"/students/{world.student}/rights-requests", world.me, body)
    problem(response, 422, "validation")
    assert "Rowan" not in response.text and "home.example" not in response.text
    base = f"/students/{world.student}/rights-requests/{UUID(int=5)}"
    for path, sent in ((f"{base}/extension", {"due_at": "2026-10-01T00:00:00",
                                             "reason": "\ud800"}),
                       (f"{base}/refusal", {"reason": "x" * 501}),
                       (f"{base}/statements", {"text": "\ud800"})):
        auth = world.parent if path.endswith("statements") else world.custodian
        problem(_raw(api, path, auth, sent), 422, "validation")
    assert api.svc.ledger.recorder.max_notification_id() == position


def test_RGT_4_a_naive_due_date_is_refused(api: Client, world: World) -> None:
    request = _ok(_file(api, world.student, world.me, kind="access"), 201)["id"]
    problem(api.call("POST", f"/students/{world.student}/rights-requests/{request}/extension",
                     world.custodian, {"due_at": "2026-09-20T00:00:00", "reason": "why"}),
            422, "validation")
