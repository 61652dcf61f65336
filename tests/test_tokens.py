"""API bearer tokens: only hashes rest; expiry, revocation, deny by default; the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from api.cli.main import main
from api.tokens import (
    PERMISSIONS,
    ROLES,
    AmbiguousToken,
    Permission,
    Role,
    TokenStore,
    allows,
)
from ledger.application import Ledger
from ledger.identity import PARENT_EMAIL
from ledger.persistence import open_database
from ledger.settings import Settings
from tests.conftest import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2030, 1, 1, tzinfo=UTC))


@pytest.fixture
def store(settings: Settings, clock: Clock) -> Iterator[TokenStore]:
    db = open_database(settings.read_models_url, settings.schema)
    yield TokenStore(db, clock=clock)
    db.close()


def test_issue_then_authenticate(store: TokenStore, clock: Clock) -> None:
    issued = store.issue(Role.REGISTRAR, "registrar-1", timedelta(days=1))
    assert issued.token.startswith("lgr_") and len(issued.token) > 40
    assert issued.expires_at == clock.now + timedelta(days=1)
    assert issued.token not in repr(issued)
    principal = store.authenticate(issued.token)
    assert principal is not None
    assert (principal.id, principal.role, principal.label) == (
        issued.principal_id, "registrar", "registrar-1")
    assert principal.may(Permission.PEOPLE_CREATE)
    assert not principal.may(Permission.PEOPLE_ERASE)


@pytest.mark.parametrize("token", ["", "lgr_", "lgr_unknown", "not-a-token", "lgr_" + "a" * 500])
def test_unknown_tokens_are_refused(store: TokenStore, token: str) -> None:
    store.issue(Role.OPERATOR, "op", timedelta(days=1))
    assert store.authenticate(token) is None


def test_a_token_stops_working_when_it_expires(store: TokenStore, clock: Clock) -> None:
    issued = store.issue(Role.SUPPORT, "support-1", timedelta(hours=1))
    clock.now += timedelta(minutes=59)
    assert store.authenticate(issued.token) is not None
    clock.now += timedelta(minutes=1)
    assert store.authenticate(issued.token) is None
    assert store.list()[0].status(clock.now) == "expired"


def test_revoke_by_principal_id_or_hash_prefix(store: TokenStore, clock: Clock) -> None:
    first = store.issue(Role.OPERATOR, "op-1", timedelta(days=1))
    second = store.issue(Role.OPERATOR, "op-2", timedelta(days=1))
    assert store.revoke(str(first.principal_id)) == 1
    assert store.revoke(str(first.principal_id)) == 0  # already revoked
    assert store.authenticate(first.token) is None
    assert store.authenticate(second.token) is not None
    prefix = hashlib.sha256(second.token.encode()).hexdigest()[:10]
    assert store.revoke(prefix) == 1
    assert store.authenticate(second.token) is None
    assert store.revoke(str(uuid4())) == 0
    with pytest.raises(ValueError):
        store.revoke("abc")  # too short to be a hash prefix, not a UUID
    statuses = {t.label: t.status(clock.now) for t in store.list()}
    assert statuses == {"op-1": "revoked", "op-2": "revoked"}


def test_an_ambiguous_hash_prefix_revokes_nothing(store: TokenStore) -> None:
    with store.db.transaction() as cur:  # two tokens whose hashes share 8 digits
        for digit in "01":
            cur.execute(
                "INSERT INTO api_tokens (token_hash, principal_id, role, label, created_at,"
                " expires_at) VALUES (?, ?, 'service', 'svc', ?, ?)",
                ("deadbeef" + digit * 56, str(uuid4()), "2030-01-01T00:00:00+00:00",
                 "2031-01-01T00:00:00+00:00"),
            )
    with pytest.raises(AmbiguousToken):
        store.revoke("deadbeef")
    assert [t.revoked_at for t in store.list()] == [None, None]
    assert store.revoke("deadbeef1") == 1


def test_only_the_hash_is_stored(store: TokenStore) -> None:
    issued = store.issue(Role.OPERATOR, "op", timedelta(days=1))
    secret = issued.token.removeprefix("lgr_")
    with store.db.transaction(write=False) as cur:
        cur.execute("SELECT * FROM api_tokens")
        rows = cur.fetchall()
    assert len(rows) == 1
    cells = [str(cell) for cell in rows[0]]
    assert not any(secret in cell or secret[:16] in cell for cell in cells)
    assert hashlib.sha256(issued.token.encode()).hexdigest() in cells
    listed = store.list()
    assert secret not in repr(listed)
    assert listed[0].principal_id == issued.principal_id


@pytest.mark.parametrize(("role", "label", "ttl"), [
    ("superuser", "x", timedelta(days=1)),
    ("operator", "Jane Doe", timedelta(days=1)),
    ("operator", "", timedelta(days=1)),
    ("operator", "op", timedelta(0)),
])
def test_issue_refuses_bad_arguments(store: TokenStore, role: str, label: str,
                                     ttl: timedelta) -> None:
    with pytest.raises(ValueError):
        store.issue(role, label, ttl)
    assert store.list() == []


def test_permissions_deny_by_default() -> None:
    assert set(PERMISSIONS) == set(ROLES)
    assert PERMISSIONS[Role.OPERATOR] == frozenset(Permission)
    assert not allows("superuser", Permission.PEOPLE_READ)
    assert not allows(Role.OPERATOR, "people:anything")
    assert not allows(Role.SERVICE, Permission.PEOPLE_READ)
    assert allows(Role.SUPPORT, Permission.PEOPLE_READ)
    assert not allows(Role.SUPPORT, Permission.DIRECTORY_READ)
    assert not allows(Role.REGISTRAR, Permission.PEOPLE_ERASE)
    # The people's roles get only what their routes need; Access narrows reads to relations.
    assert not allows(Role.RESEARCHER, Permission.PEOPLE_READ)  # aggregates only (ACC-3)
    assert not allows(Role.STUDENT, Permission.SECTIONS_MANAGE)
    assert not allows(Role.TEACHER, Permission.ME_STUDENT)
    assert not allows(Role.STUDENT, Permission.ME_TEACHER)
    assert not allows(Role.PARENT, Permission.ME_READ)
    assert not allows(Role.SCHOOL_ADMIN, Permission.DIRECTORY_READ)
    # DEL-4: erasure at once is for staff and, through a relation, the people around a
    # student; never a registrar, researcher, service, or a student's own token (they ask
    # through DELETE /me, which has its own permission).
    assert {role for role in ROLES if allows(role, Permission.PEOPLE_ERASE)} == {
        Role.OPERATOR, Role.SUPPORT, Role.TEACHER, Role.SCHOOL_ADMIN, Role.DISTRICT_ADMIN,
        Role.PARENT}
    assert {role for role in ROLES if allows(role, Permission.HOLDS_MANAGE)} == {Role.OPERATOR}


# -- the command line --------------------------------------------------------------------------
def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


def test_cli_issue_list_revoke(var_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A registrar is school staff: the token names the school (else it is refused, exit 2).
    assert main(["token", "issue", "--role", "registrar", "--label", "registrar-1"]) == 2
    capsys.readouterr()
    assert main(["token", "issue", "--role", "registrar", "--label", "registrar-1",
                 "--ttl-days", "7", "--school", str(uuid4())]) == 0
    [issued] = _lines(capsys)
    token = str(issued["token"])
    assert token.startswith("lgr_") and issued["role"] == "registrar"
    assert issued["scope"] == "school"
    assert (var_dir / "read_models.sqlite3").exists()

    db = open_database(Settings.from_env().read_models_url, "ledger")
    try:
        principal = TokenStore(db).authenticate(token)
    finally:
        db.close()
    assert principal is not None and str(principal.id) == issued["principal_id"]

    assert main(["token", "list"]) == 0
    [listed] = _lines(capsys)
    assert listed["principal_id"] == issued["principal_id"] and listed["status"] == "active"
    assert token not in json.dumps(listed) and token[4:20] not in json.dumps(listed)

    assert main(["token", "revoke", str(issued["principal_id"])]) == 0
    assert _lines(capsys) == [{"revoked": 1}]
    assert main(["token", "revoke", str(issued["principal_id"])]) == 1
    assert main(["token", "list"]) == 0
    assert _lines(capsys)[0]["status"] == "revoked"


def test_cli_refuses_an_unknown_role_and_a_personal_label(
        var_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["token", "issue", "--role", "superuser"])
    assert exit_.value.code == 2
    assert main(["token", "issue", "--role", "operator", "--label", "Jane Doe"]) == 2
    assert main(["token", "issue", "--role", "operator", "--ttl-days", "0"]) == 2
    capsys.readouterr()
    assert main(["token", "list"]) == 0
    assert _lines(capsys) == []


def _stored_scope(principal_id: object) -> str | None:
    db = open_database(Settings.from_env().read_models_url, "ledger")
    try:
        with db.transaction(write=False) as cur:
            cur.execute("SELECT scope FROM api_tokens WHERE principal_id = ?",
                        (str(principal_id),))
            row = cur.fetchone()
    finally:
        db.close()
    return None if row[0] is None else str(row[0])


def test_cli_scopes_administrators_to_a_school_or_district(
        var_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    school, district = uuid4(), uuid4()
    assert main(["tokens", "issue", "--role", "school_admin", "--school", str(school)]) == 0
    [issued] = _lines(capsys)
    assert issued["scope"] == "school"
    assert _stored_scope(issued["principal_id"]) == f"school:{school}"
    assert main(["token", "issue", "--role", "district_admin", "--district", str(district)]) == 0
    [issued] = _lines(capsys)
    assert _stored_scope(issued["principal_id"]) == f"district:{district}"
    # A scoped role without its scope, a scope on the wrong role, a malformed id: refused.
    for argv in (["--role", "school_admin"], ["--role", "school_admin", "--district",
                                              str(district)],
                 ["--role", "operator", "--school", str(school)],
                 ["--role", "school_admin", "--school", "not-a-uuid"]):
        assert main(["token", "issue", *argv]) == 2
    capsys.readouterr()
    assert main(["token", "list"]) == 0
    assert len(_lines(capsys)) == 2


def test_cli_parent_token_is_scoped_by_the_blind_index_of_the_address(
        var_dir: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    address = "Parent.Person@Example.org"
    monkeypatch.setattr("sys.stdin", io.StringIO(address + "\n"))
    with caplog.at_level(logging.DEBUG):
        assert main(["tokens", "issue", "--role", "parent", "--parent-email", "-"]) == 0
    out = capsys.readouterr()
    [issued] = [json.loads(line) for line in out.out.splitlines() if line]
    assert issued["scope"] == "parent"
    for text in (out.out, out.err, caplog.text):
        assert "parent.person" not in text.lower()
    ledger = Ledger(Settings.from_env())  # the same index the API's Access uses
    try:
        expected = ledger.identity.token(PARENT_EMAIL, "parent.person@example.org").hex()
    finally:
        ledger.close()
    assert _stored_scope(issued["principal_id"]) == f"parent:{expected}"
    db = open_database(Settings.from_env().read_models_url, "ledger")
    try:
        with db.transaction(write=False) as cur:
            cur.execute("SELECT * FROM api_tokens")
            assert "parent.person" not in repr(cur.fetchall()).lower()
    finally:
        db.close()
    assert main(["token", "issue", "--role", "parent", "--parent-email", "no-at-sign"]) == 2
    assert "no-at-sign" not in capsys.readouterr().err
