"""Issue 18, clear operator errors: whatever a command meets (a store down, a missing key file),
it ends with one line on stderr naming what is wrong and what to do, exit code 1 or 2, and no
traceback; `ledger --debug` shows the traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from api.cli.main import main
from ledger.application import Ledger
from ledger.settings import Settings

COMMANDS = [["receipts"], ["verify"], ["token", "list"]]


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("ledger: ")
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("url", ["postgresql://root@127.0.0.1:1/x",
                                 "postgresql://root@127.0.0.1:5432/no_such_ledger_database"])
def test_an_unreachable_database_is_one_line_and_exit_1(
        var_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        command: list[str], url: str) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", url)
    assert main(command) == 1
    line = _one_line(capsys.readouterr().err)
    assert "cannot be reached" in line and "try again" in line
    assert url not in line  # a URL may hold a password


# The commands that need the file (`token list` reads no key; `verify` only the signing key).
@pytest.mark.parametrize(("command", "which", "setting"), [
    (["receipts"], "signing-key.json", "LEDGER_SIGNING_KEY_FILE"),
    (["verify"], "signing-key.json", "LEDGER_SIGNING_KEY_FILE"),
    (["receipts"], "kek.json", "LEDGER_KEK_FILE")])
def test_a_missing_key_file_is_one_line_and_exit_1(
        var_dir: Path, capsys: pytest.CaptureFixture[str], command: list[str], which: str,
        setting: str) -> None:
    Ledger(Settings.build(var_dir=str(var_dir))).close()
    os.unlink(var_dir / which)
    assert main(command) == 1
    line = _one_line(capsys.readouterr().err)
    assert setting in line and str(var_dir / which) in line and "backup" in line
    assert not (var_dir / which).exists()


def test_debug_shows_the_traceback(var_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", "postgresql://root@127.0.0.1:1/x")
    with pytest.raises(Exception, match=r"unreachable|OperationalError"):
        main(["--debug", "receipts"])


def test_a_bad_setting_is_still_exit_2(var_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEDGER_KEY_SYNC_SECONDS", "soon")
    assert main(["token", "list"]) == 2
    assert _one_line(capsys.readouterr().err).startswith("ledger: LEDGER_KEY_SYNC_SECONDS")
