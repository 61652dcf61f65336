"""The access records of the FERPA audit trail (AUD-1, AUD-3, AUD-4, ACC-4), through HTTP on
both backends: a read of a student's record leaves a record with the right actor, student,
fields and purpose before the data leaves; a read whose record cannot be saved fails and returns
nothing; the student, a linked parent and the privacy officer can ask who read what, in time
order and paged; the records go with the student's erasure.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import OperationalError

from ledger.audit import AuditTrail
from tests.test_api_accounts import Client, problem

LINKED = "audited.parent@home.example"


def _world(api: Client) -> tuple[UUID, dict[str, str]]:
    """A student in a teacher's section with a linked parent, and the teacher's session."""
    teacher = api.teacher()
    student = api.pupil(teacher, api.section(teacher), "Audrey")
    api.svc.accounts.link_parent_email(student, LINKED)
    return student, api.session(teacher)


def _parent(api: Client) -> dict[str, str]:
    token = api.svc.ledger.identity.token("parent_email", LINKED).hex()
    return api.staff("parent", scope=f"parent:{token}")


def _records(api: Client, student: UUID, auth: dict[str, str], **query: Any) -> Any:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    response = api.call("GET", f"/students/{student}/access-records?{params}", auth)
    assert response.status_code == 200, response.text
    return response.json()


def test_AUD_1_a_teachers_read_leaves_a_record_and_the_students_own_does_not(
        api: Client) -> None:
    student, teacher_auth = _world(api)
    read = api.call("GET", f"/students/{student}", teacher_auth)
    assert read.status_code == 200
    request_id = read.headers["X-Request-ID"]
    assert api.call("GET", f"/students/{student}", api.session(student)).status_code == 200
    support = api.call("GET", f"/students/{student}", api.staff("support"),
                       headers={"X-Purpose": "technical_issue"})
    assert support.status_code == 200

    (by_teacher, by_support) = _records(api, student, api.session(student))["items"]
    assert by_teacher["actor_role"] == "teacher" and by_teacher["purpose"] == "school_official"
    assert by_teacher["resource"] == "/students/{person_id}"
    # every field the teacher was shown is named in the record (and no private one exists)
    assert set(read.json()) - {"kind"} <= set(by_teacher["fields"])
    assert not {"race", "gender", "parent_email"} & set(by_teacher["fields"])
    assert by_support["actor_role"] == "support" and by_support["purpose"] == "technical_issue"
    record = api.svc.audit.record(UUID(by_teacher["record_id"]))
    assert record is not None and record.request_id == request_id
    assert by_teacher["read_at"] <= by_support["read_at"]


def test_AUD_1_no_read_without_its_record(api: Client, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    student, teacher_auth = _world(api)

    def cannot_save(*_: object, **__: object) -> Any:
        raise OperationalError("the log cannot be written")

    monkeypatch.setattr(AuditTrail, "record_access", cannot_save)
    refused = api.call("GET", f"/students/{student}", teacher_auth)
    assert refused.status_code == 503
    assert "Audrey" not in refused.text and refused.json()["type"].endswith(
        "service-unavailable")


def test_AUD_3_who_may_ask_and_what_they_get(api: Client) -> None:
    student, teacher_auth = _world(api)
    for _ in range(5):
        assert api.call("GET", f"/students/{student}", teacher_auth).status_code == 200
    parent = _parent(api)
    first = _records(api, student, parent, limit=2)
    second = _records(api, student, parent, limit=2, after=first["next_after"].replace(
        "+", "%2B"))
    everything = _records(api, student, api.staff("operator"), limit=500)["items"]
    # Paged in time order, with nothing lost or repeated; the parent's own queries are
    # recorded too, after the teacher's reads.
    ids = [r["record_id"] for r in first["items"] + second["items"]]
    assert ids == [r["record_id"] for r in everything[:4]]
    assert [r["read_at"] for r in everything] == sorted(r["read_at"] for r in everything)
    assert [r["actor_role"] for r in everything] == ["teacher"] * 5 + ["parent"] * 2
    assert {r["purpose"] for r in everything if r["actor_role"] == "parent"} == {
        "parent_access"}
    # A teacher may not ask at all; another parent: as if no such student (ACC-5).
    problem(api.call("GET", f"/students/{student}/access-records", teacher_auth), 403,
            "forbidden")
    problem(api.call("GET", f"/students/{student}/access-records", api.staff(
        "parent", scope="parent:" + "0" * 64)), 404, "not-found")
    problem(api.call("GET", f"/students/{student}/access-records?after=yesterday",
                     api.staff("operator")), 422, "validation")


def test_AUD_4_the_records_go_with_the_students_erasure(api: Client) -> None:
    student, teacher_auth = _world(api)
    assert api.call("GET", f"/students/{student}", teacher_auth).status_code == 200
    (entry,) = _records(api, student, api.session(student))["items"]
    api.svc.lifecycle.erase_now(student, "operator", "school_request")
    api.svc.catch_up()
    assert api.svc.audit.record(UUID(entry["record_id"])) is None
    assert api.svc.audit_reader.of_student(student) == []
    receipt = api.svc.ledger.receipt_of(student)
    assert receipt is not None and receipt.receipt.destroyed["read_model_audit_index"] == 1
