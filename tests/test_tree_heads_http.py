"""The tamper-evident log over HTTP and in the running service (LED-2): heads on demand and on
a schedule, proofs an auditor checks with the published key alone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from api.services import Services
from crypto.signing import LedgerPublicKey
from ledger.proofs import proof_from_dict
from ledger.settings import Settings
from tests.test_api_accounts import Client, problem, serving


@pytest.fixture
def api(settings: Settings) -> Iterator[Client]:
    with serving(Services.open(replace(settings, seal_every_seconds=0.05,
                                       tree_head_every_minutes=0.002))) as client:
        yield client


def test_an_auditor_proves_an_event_with_the_published_key(api: Client) -> None:
    student = api.svc.ledger.register_student("Proven Student", "12")
    assert problem(api.call("GET", "/ledger/tree-heads/latest"), 404, "not-found")
    operator, auditor = api.staff("operator"), api.staff("auditor")
    signed = api.call("POST", "/ledger/tree-heads", operator)
    assert signed.status_code == 201
    head = signed.json()
    assert api.call("GET", "/ledger/tree-heads/latest").json() == head
    key = LedgerPublicKey.from_text(api.call("GET", "/ledger/public-key").json()["public_key"])
    answer = api.call("GET", f"/ledger/proofs/inclusion/{head['tree_size']}", auditor)
    proof = proof_from_dict(answer.json())
    assert proof.check(key) and proof.head.tree_size == head["tree_size"]
    assert "Proven Student" not in answer.text  # the event as it rests: sealed
    api.svc.ledger.rename(student, "Renamed Student")
    later = api.call("POST", "/ledger/tree-heads", operator).json()
    consistency = api.call("GET", f"/ledger/proofs/consistency?first={head['tree_size']}")
    assert proof_from_dict(consistency.json()).check(key)
    assert consistency.json()["second"] == later
    chain = api.call("GET", "/ledger/tree-heads").json()
    assert [h["tree_size"] for h in chain["items"]] == [head["tree_size"], later["tree_size"]]


def test_what_cannot_be_proved_is_a_plain_404_or_422(api: Client) -> None:
    api.svc.ledger.register_student("Someone", "12")
    auditor = api.staff("auditor")
    assert problem(api.call("GET", "/ledger/proofs/inclusion/1", auditor), 404, "not-found")
    size = api.svc.merkle_log.sign_head().tree_size
    for url in (f"/ledger/proofs/inclusion/{size + 1}", "/ledger/proofs/consistency?first=999"):
        problem(api.call("GET", url, auditor), 404, "not-found")
    for url in ("/ledger/proofs/inclusion/0", "/ledger/proofs/inclusion/99999999999999999999",
                "/ledger/proofs/consistency?first=-1", "/ledger/tree-heads?after=x"):
        problem(api.call("GET", url, auditor), 422, "validation")
    problem(api.call("GET", f"/ledger/proofs/inclusion/{size}", api.staff("teacher")), 403,
            "forbidden")
    problem(api.call("POST", "/ledger/tree-heads", auditor), 403, "forbidden")


def test_the_service_seals_and_signs_on_its_schedule(api: Client) -> None:
    api.svc.start_tree_keeping()
    api.svc.ledger.register_student("Scheduled", "12")
    stored = api.svc.ledger.recorder.max_notification_id()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        head = api.svc.merkle_log.head()
        if head is not None and head.tree_size >= stored:
            break
        time.sleep(0.05)
    assert head is not None and head.tree_size >= stored
    assert api.svc.merkle_log.verify(api.svc.ledger.signer.public_key).ok
