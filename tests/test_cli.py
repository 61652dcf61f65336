"""The `ledger` command line, as an operator would use it, on the embedded default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api.cli.main import main
from api.services import Services
from ledger.application import ErasedPerson
from ledger.settings import Settings


@pytest.fixture
def var_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LEDGER_VAR_DIR", str(tmp_path))
    for name in ("LEDGER_DATABASE_URL", "LEDGER_KEK", "LEDGER_KEK_FILE", "LEDGER_KEYSTORE_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_demo_narrates_an_erasure(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "Does any display name appear in the stored bytes? False" in out
    assert "ErasedPerson(" in out and "ErasedEvent(" in out
    assert "Ada is readable" in out and "Alan is readable" in out
    assert "has 2 rows" in out


def test_rotate_kek_keeps_live_people_and_retires_the_old_version(
        var_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    services = Services.open(Settings.from_env())
    ana = services.ledger.register_student("Ana", "12")
    ben = services.ledger.register_student("Ben", "12")
    services.ledger.erase_subject(ben, "user_request")
    live_keys = services.ledger.keys.store.count_live()  # Ana's, the ledger's, ids made ahead
    services.close()

    assert main(["keys", "rotate-kek"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {"new_kek_version": 2, "retired_kek_versions": [1],
                      "rewrapped_data_keys": live_keys}  # every one but Ben's
    keyring = json.loads((var_dir / "kek.json").read_text())
    assert keyring["kek"]["1"] is None and keyring["kek"]["2"]

    services = Services.open(Settings.from_env())
    try:
        assert services.ledger.person(ana).display_name == "Ana"  # type: ignore[union-attr]
        assert isinstance(services.ledger.person(ben), ErasedPerson)
    finally:
        services.close()


def test_rotate_kek_refuses_a_keyring_given_by_environment(
        var_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEDGER_KEK", "1:" + "A" * 43 + "=")
    assert main(["keys", "rotate-kek"]) == 2
    assert "LEDGER_KEK" in capsys.readouterr().out


def test_project_and_rebuild(var_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    services = Services.open(Settings.from_env())
    services.ledger.register_student("Ana", "12")
    services.close()
    assert main(["project"]) == 0
    assert json.loads(capsys.readouterr().out)["position"] == 1
    assert main(["rebuild", "student_directory"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "read_model": "student_directory", "generation": 2, "position": 1}
    assert main(["rebuild", "no_such_model"]) == 2
