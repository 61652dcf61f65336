"""Support sessions acting as a user, and permission grants (AUD-5), on both backends: a support
principal with a stated purpose gets a one-hour token that acts as the user and names the
support principal behind it; starting it is recorded with both identities, sealed for the user;
`ledger token issue` records its grant first; no grant ever holds the token or its hash; the
token table gains its `acted_by` column in place.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import OperationalError
from eventsourcing.utils import get_topic

from api.cli.main import main
from api.services import Services
from api.tokens import COMMAND_LINE_OPERATOR, TokenStore, token_hash
from crypto.sql import Database
from ledger.grants import SUPPORT_SESSION_STARTED, TOKEN_ISSUED, PermissionGrant
from ledger.persistence import open_database
from ledger.settings import Settings
from tests.conftest import point_the_command_line_at
from tests.test_api_accounts import Client, problem


def grants(svc: Services) -> list[PermissionGrant]:
    """Every grant in the log that can still be opened, in log order."""
    topic = get_topic(PermissionGrant.Granted)
    found = []
    for notification in svc.ledger.recorder.select_notifications(1, 1_000_000):
        if notification.topic == topic:
            grant = svc.grants.grant(UUID(str(notification.originator_id)))
            if grant is not None:
                found.append(grant)
    return found


def start(api: Client, person: UUID, auth: dict[str, str], purpose: str | None = None
          ) -> Any:
    body: dict[str, object] = {"person_id": str(person)}
    if purpose is not None:
        body["purpose"] = purpose
    return api.call("POST", "/support-sessions", auth, body=body)


def test_AUD_5_a_support_session_acts_as_the_user_and_names_both(api: Client) -> None:
    teacher = api.teacher()
    student = api.pupil(teacher, api.section(teacher), "Sunny", "15")
    support = api.tokens.issue("support", "support-1", timedelta(hours=1))
    support_auth = {"Authorization": f"Bearer {support.token}"}

    response = start(api, student, support_auth, "account_recovery")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["role"] == "student" and body["person_id"] == str(student)
    assert body["acted_by"] == str(support.principal_id)
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)

    principal = api.tokens.authenticate(body["token"])
    assert principal is not None
    assert (principal.role, principal.subject_id, principal.acted_by) == (
        "student", student, support.principal_id)
    assert principal.id == UUID(body["principal_id"]) != support.principal_id
    me = api.call("GET", "/me", {"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200 and me.json()["id"] == str(student)

    (grant,) = [g for g in grants(api.svc) if g.kind == SUPPORT_SESSION_STARTED]
    assert (grant.grantor_id, grant.grantor_role, grant.grantee_id, grant.subject_id,
            grant.role, grant.purpose) == (support.principal_id, "support", principal.id,
                                            student, "student", "account_recovery")
    assert grant.owner_id == student  # the student's data: sealed for them
    stored = b"".join(n.state for n in api.svc.ledger.recorder.select_notifications(1, 10**6))
    for secret in (body["token"], token_hash(body["token"])):
        assert secret.encode() not in stored
        assert secret not in repr(vars(grant))

    # the session and its grant go with the student's erasure
    api.svc.lifecycle.erase_now(student, "operator", "school_request")
    assert api.tokens.authenticate(body["token"]) is None
    assert [g for g in grants(api.svc) if g.kind == SUPPORT_SESSION_STARTED] == []


def test_AUD_5_who_may_start_one_and_what_is_refused(api: Client) -> None:
    teacher = api.teacher()
    student = api.pupil(teacher, api.section(teacher), "Sunny", "15")
    support = api.staff("support")
    before = api.position()
    problem(start(api, student, support), 422, "validation")  # no purpose (ACC-4)
    problem(start(api, student, support, "curiosity"), 422, "validation")
    problem(start(api, uuid4(), support, "technical_issue"), 404, "not-found")
    for refused in (api.session(teacher), api.session(student), api.staff("registrar"),
                    api.staff("auditor"), api.staff("records_custodian",
                                                    scope=f"school:{uuid4()}")):
        problem(start(api, student, refused, "technical_issue"), 403, "forbidden")
    problem(start(api, student, {}, "technical_issue"), 401, "unauthenticated")
    assert api.position() == before
    assert grants(api.svc) == []
    # a teacher can be helped too; the operator may start one as well
    response = start(api, teacher, api.staff("operator"), "technical_issue")
    assert response.status_code == 201
    assert response.json()["role"] == "teacher"


def test_AUD_5_no_token_without_its_grant(api: Client, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    teacher = api.teacher()
    before = len(api.tokens.list())

    def cannot_save(*_: object) -> UUID:
        raise OperationalError("the log cannot be written")

    monkeypatch.setattr(api.svc.grants, "record", cannot_save)
    support = api.staff("support")
    problem(start(api, teacher, support, "technical_issue"), 503, "service-unavailable")
    assert len(api.tokens.list()) == before + 1  # the support token only


# -- ledger token issue ---------------------------------------------------------------------------
@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line's environment, naming the test's stores (both backends)."""
    point_the_command_line_at(settings, monkeypatch)


def test_AUD_5_ledger_token_issue_records_the_grant(cli_env: None,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    school = uuid4()
    assert main(["token", "issue", "--role", "records_custodian", "--school", str(school),
                 "--ttl-days", "2"]) == 0
    issued = json.loads(capsys.readouterr().out)
    services = Services.open(Settings.from_env())
    try:
        (grant,) = grants(services)
        stored = b"".join(n.state for n in services.ledger.recorder.select_notifications(
            1, 10**6))
    finally:
        services.close()
    assert (grant.kind, grant.grantor_id, grant.grantor_role) == (
        TOKEN_ISSUED, COMMAND_LINE_OPERATOR.id, "operator")
    assert (str(grant.grantee_id), grant.role, grant.scope, grant.subject_id) == (
        issued["principal_id"], "records_custodian", f"school:{school}", None)
    assert grant.expires_at.isoformat() == issued["expires_at"]
    assert issued["token"].encode() not in stored
    assert token_hash(issued["token"]).encode() not in stored


# -- the token table, upgraded in place -----------------------------------------------------------
def test_a_token_table_made_before_support_sessions_gains_acted_by(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE api_tokens (token_hash TEXT PRIMARY KEY, principal_id TEXT"
                    " NOT NULL, role TEXT NOT NULL, label TEXT NOT NULL, created_at TEXT NOT"
                    " NULL, expires_at TEXT NOT NULL, revoked_at TEXT, subject_id TEXT,"
                    " scope TEXT)")
        token, principal = "lgr_" + "a" * 43, uuid4()
        now = datetime.now(UTC)
        old.execute("INSERT INTO api_tokens VALUES (?, ?, 'operator', 'op', ?, ?, NULL, NULL,"
                    " NULL)", (token_hash(token), str(principal), now.isoformat(),
                               (now + timedelta(days=1)).isoformat()))
    db: Database = open_database(f"sqlite:///{path}", "ledger")
    try:
        store = TokenStore(db)
        found = store.authenticate(token)
        assert found is not None and found.id == principal and found.acted_by is None
        helper = uuid4()
        issued = store.issue("student", "support-session", timedelta(hours=1),
                             subject_id=uuid4(), acted_by=helper)
        again = store.authenticate(issued.token)
        assert again is not None and again.acted_by == helper
        assert {info.principal_id: info.acted_by for info in store.list()} == {
            principal: None, issued.principal_id: helper}
    finally:
        db.close()
