"""Issue 18, finding 8: a receipt is evidence, so its counts are true whatever the point at
which an erasure crashed and was completed by running it again (the purge's retry:
`erase_subject`); and every check is made before anything is destroyed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from api.services import Services
from ledger.application import Ledger
from ledger.bounds import InvalidRecord
from tests.test_project_erasure import a_class, png


class Crash(Exception):
    pass


def _a_student_with_everything(svc: Services) -> Any:
    c = a_class(svc)
    project = svc.projects.create(c.student, "app", "P", "src")
    svc.projects.upload(c.student, project, png(b"x"), "image/png")
    svc.catch_up()
    return c.student


def _after(obj: object, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `obj.name` do its work and then crash, once."""
    real: Callable[..., Any] = getattr(obj, name)

    def crashing(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        monkeypatch.setattr(obj, name, real)
        raise Crash(name)

    monkeypatch.setattr(obj, name, crashing)


def _destroyed(svc: Services, crash_at: str | None, monkeypatch: pytest.MonkeyPatch
               ) -> dict[str, int]:
    student = _a_student_with_everything(svc)
    ledger: Ledger = svc.ledger
    if crash_at == "uploads":  # the upload store's own delete went; its count not yet kept
        hooks = ledger._erasure_hooks
        real = hooks["uploads"]

        def deleted_then_crashed(subject_ids: Any) -> Any:
            real(subject_ids)
            hooks["uploads"] = real
            raise Crash("uploads")

        monkeypatch.setitem(hooks, "uploads", deleted_then_crashed)
    elif crash_at is not None:
        target: object = ledger.keys if crash_at == "erase_many" else ledger
        _after(target, crash_at, monkeypatch)
    if crash_at is not None:
        with pytest.raises(Crash):
            ledger.erase_subject(student, "user_request")
    receipt = ledger.erase_subject(student, "user_request")  # the retry completes it
    assert receipt.verify(ledger.signer.public_key)
    return dict(receipt.receipt.destroyed)


@pytest.mark.parametrize("crash_at", [
    "erase_many",            # after the key (and the project key) went
    "_forget_read_models",   # after the rows in the read models went
    "uploads",               # after the uploads went, before their count was kept
    "_forget_everywhere",    # after every store's rows went, before the receipt
])
def test_a_crashed_erasure_completed_later_reports_what_a_clean_one_does(
        settings: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, crash_at: str) -> None:
    clean_svc = Services.open(settings)
    try:
        clean = _destroyed(clean_svc, None, monkeypatch)
        crashed = _destroyed(clean_svc, crash_at, monkeypatch)
    finally:
        clean_svc.close()
    assert clean["owned_keys"] == 1 and clean["uploads"] == 1
    assert crashed == clean


def test_an_invalid_requester_destroys_nothing(services: Services) -> None:
    student = _a_student_with_everything(services)
    ledger = services.ledger
    with pytest.raises(InvalidRecord):
        ledger.erase_subject(student, "user_request", requester="Not A Requester!")
    assert not ledger.keys.is_erased(student)
    assert ledger.keys.opener(student) is not None
    assert ledger.receipt_of(student) is None
