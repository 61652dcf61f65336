"""Issue 18, finding 7: once a ledger exists, a missing or different key file stops the process
with a message naming the setting, the file and what to do; it is never replaced by a new key.
A brand-new ledger still creates both files at its first start."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from crypto.errors import KeyFileRefused
from ledger.application import Ledger
from ledger.settings import Settings


def _start(settings: Settings) -> Ledger:
    return Ledger(settings)


def test_a_brand_new_ledger_creates_both_key_files(settings: Settings) -> None:
    assert not os.path.exists(settings.kek_file)
    assert not os.path.exists(settings.signing_key_file)
    _start(settings).close()
    assert os.path.exists(settings.kek_file) and os.path.exists(settings.signing_key_file)
    _start(settings).close()  # and opens with them again


@pytest.mark.parametrize(("which", "setting"), [
    ("signing_key_file", "LEDGER_SIGNING_KEY_FILE"), ("kek_file", "LEDGER_KEK_FILE")])
def test_a_missing_key_file_of_an_existing_ledger_stops_the_start(
        settings: Settings, which: str, setting: str) -> None:
    ledger = _start(settings)
    student = ledger.register_student("Ada", "13")
    ledger.close()
    path: str = getattr(settings, which)
    os.unlink(path)
    with pytest.raises(KeyFileRefused) as refused:
        _start(settings)
    message = str(refused.value)
    assert setting in message and path in message and "backup" in message
    assert "\n" not in message
    assert not os.path.exists(path)  # nothing was made in its place
    assert str(student) not in message


@pytest.mark.parametrize(("which", "setting"), [
    ("signing_key_file", "LEDGER_SIGNING_KEY_FILE"), ("kek_file", "LEDGER_KEK_FILE")])
def test_a_different_key_file_put_in_place_is_refused(
        settings: Settings, tmp_path: Path, which: str, setting: str) -> None:
    _start(settings).close()
    # Another ledger's key file (a mix-up of backups) in place of this one's.
    other = Settings.build(var_dir=str(tmp_path / "other"))
    _start(other).close()
    shutil.copy2(getattr(other, which), getattr(settings, which))
    with pytest.raises(KeyFileRefused) as refused:
        _start(settings)
    assert setting in str(refused.value)


def test_the_original_signing_key_restored_verifies_old_receipts(settings: Settings,
                                                                 tmp_path: Path) -> None:
    ledger = _start(settings)
    student = ledger.register_student("Ada", "13")
    receipt = ledger.erase_subject(student, "user_request")
    public = ledger.signer.public_key
    ledger.close()
    backup = tmp_path / "signing-key.backup"
    shutil.copy2(settings.signing_key_file, backup)
    os.unlink(settings.signing_key_file)
    with pytest.raises(KeyFileRefused):
        _start(settings)
    shutil.copy2(backup, settings.signing_key_file)  # restored from the backup, as told
    ledger = _start(settings)
    assert ledger.signer.public_key == public
    assert receipt.verify(ledger.signer.public_key)
    ledger.close()


def test_a_key_store_that_holds_keys_but_no_marker_refuses_a_missing_kek(
        settings: Settings) -> None:
    """A ledger from before the marker: its wrapped keys are enough to know it exists."""
    ledger = _start(settings)
    ledger.register_student("Ada", "13")
    with ledger.keys.store.db.transaction() as cur:
        cur.execute("DELETE FROM key_file_checks")
    ledger.close()
    os.unlink(settings.kek_file)
    with pytest.raises(KeyFileRefused):
        _start(settings)
