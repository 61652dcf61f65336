"""`ledger verify`, `ledger heads` and `ledger proof` as an operator and an auditor use them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from api.cli.main import main
from ledger.application import Ledger
from ledger.settings import Settings


def _out(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_verify_sign_prove_and_check_offline(var_dir: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    ledger = Ledger(Settings.from_env())
    people = [ledger.register_student(f"S{i}", "12") for i in range(4)]
    ledger.erase_subject(people[0], "user_request")
    key = ledger.signer.public_key.to_text()
    ledger.close()
    assert main(["verify"]) == 0
    assert _out(capsys)[0]["unsealed"] == 5
    assert main(["heads", "sign"]) == 0
    (head,) = _out(capsys)
    assert main(["verify"]) == 0 and _out(capsys)[0]["status"] == "intact"
    assert main(["proof", "inclusion", "2"]) == 0
    (proof_file := var_dir / "proof.json").write_text(capsys.readouterr().out)
    assert main(["proof", "check", str(proof_file), "--public-key", key]) == 0
    assert _out(capsys) == [{"status": "valid", "kind": "inclusion"}]
    (head_file := var_dir / "head.json").write_text(json.dumps(head))
    # the owner changes an event in place, past the guard: verify fails and says where
    owner = sqlite3.connect(var_dir / "ledger.sqlite3", isolation_level=None)
    owner.execute("DROP TRIGGER stored_events_no_update")
    owner.execute("UPDATE stored_events SET state = state || x'00' WHERE rowid = 3")
    owner.close()
    assert main(["verify", "--head", str(head_file)]) == 1
    (report,) = _out(capsys)
    assert (report["status"], report["position"], report["how"]) == ("failed", 2, "changed")
    # a proof with one hash changed no longer checks; nonsense is refused plainly
    document = json.loads(proof_file.read_text())
    document["path"][0] = "00" * 32
    proof_file.write_text(json.dumps(document))
    assert main(["proof", "check", str(proof_file), "--public-key", key]) == 1
    proof_file.write_text("not json")
    assert main(["proof", "check", str(proof_file), "--public-key", key]) == 2
    assert main(["proof", "check", str(head_file), "--public-key", "nonsense"]) == 2
    assert main(["proof", "inclusion", "999"]) == 1
