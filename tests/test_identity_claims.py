"""Claims in the blind-index table that outlive what they were for: a teacher's join codes
after the teacher's erasure, and claims whose save never happened (a crash in between)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from api.cli.main import main
from api.services import Services
from ledger.application import Ledger
from ledger.identity import JOIN_CODE, USERNAME
from ledger.settings import Settings


def test_a_teachers_join_codes_go_with_the_teacher(services: Services) -> None:
    accounts, sections = services.accounts, services.sections
    teacher = accounts.sign_up_teacher("Ms Frizzle", "friz@school.example", "correct horse")
    other = accounts.sign_up_teacher("Mr Ratburn", "rat@school.example", "battery staple")
    mine = sections.create(teacher, "Period 1", "csf", "3", "word")
    theirs = sections.create(other, "Period 2", "csf", "4", "word")
    my_code = sections.section(mine).join_code
    their_code = sections.section(theirs).join_code

    services.ledger.erase_subject(teacher, "user_request")

    assert services.ledger.identity.find(JOIN_CODE, my_code) is None
    assert services.ledger.identity.find(JOIN_CODE, their_code) == theirs


def test_a_claim_whose_save_never_happened_is_released_once_old(ledger: Ledger) -> None:
    ghost = uuid4()  # claimed, then the process died before saving: no event has this id
    assert ledger.identity.claim(USERNAME, "ghostly", ghost) == "claimed"
    saved = ledger.register_student("Ghostly", "12")

    assert ledger.release_orphan_claims() == 0  # too recent: its save may still be running
    assert ledger.identity.find(USERNAME, "ghostly") == ghost

    assert ledger.release_orphan_claims(min_age=timedelta(0)) == 1
    assert ledger.identity.find(USERNAME, "ghostly") is None
    assert ledger.identity.find(USERNAME, ledger.live(saved).username) == saved  # kept


def test_release_orphan_claims_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEDGER_VAR_DIR", str(tmp_path))
    for name in ("LEDGER_DATABASE_URL", "LEDGER_KEK", "LEDGER_KEK_FILE", "LEDGER_KEYSTORE_URL",
                 "LEDGER_READ_MODELS_URL"):
        monkeypatch.delenv(name, raising=False)
    services = Services.open(Settings.from_env())
    services.ledger.identity.claim(USERNAME, "ghostly", uuid4())
    services.close()

    assert main(["release-orphan-claims"]) == 0
    assert json.loads(capsys.readouterr().out) == {"released_claims": 0}
    assert main(["release-orphan-claims", "--min-age-minutes", "0"]) == 0
    assert json.loads(capsys.readouterr().out) == {"released_claims": 1}
    assert main(["release-orphan-claims", "--min-age-minutes", "-1"]) == 2
