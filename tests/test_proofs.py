"""Inclusion and consistency proofs (ledger/proofs.py): made from the store, checked from their
JSON with the public key alone, and refused when anything in them is changed."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.signing import LedgerSigner
from ledger.application import Ledger
from ledger.merkle_log import MerkleLog
from ledger.persistence import open_database
from ledger.proofs import (
    NotProvable,
    ProofMalformed,
    proof_from_dict,
    prove_consistency,
    prove_inclusion,
)
from ledger.settings import Settings

AT = datetime(2026, 11, 2, 9, tzinfo=UTC)


def _log(ledger: Ledger, settings: Settings) -> MerkleLog:
    return MerkleLog(open_database(settings.database_url, settings.schema),
                     ledger.recorder.events_table_name, signer=ledger.signer)


def _as_auditor_gets_it(proof: Any) -> Any:
    """Through JSON, as a file handed to an auditor."""
    return proof_from_dict(orjson.loads(orjson.dumps(proof.to_dict())))


def test_every_event_is_provably_in_the_log(ledger: Ledger, settings: Settings) -> None:
    log = _log(ledger, settings)
    people = [ledger.register_student(f"S{i}", "12") for i in range(5)]
    ledger.erase_subject(people[0], "user_request")  # still provable: the row is unchanged
    head = log.sign_head(AT)
    key = ledger.signer.public_key
    for notification_id in range(1, head.tree_size + 1):
        proof = _as_auditor_gets_it(prove_inclusion(log, notification_id))
        assert proof.check(key)
        assert proof.leaf_index == notification_id - 1 and proof.head == head
    proof = prove_inclusion(log, 2)
    document = proof.to_dict()
    # a changed byte of the sealed state, another position, another key: refused
    state = bytearray(base64.b64decode(document["event"]["state"]))
    state[-1] ^= 1
    changed = {**document, "event": {**document["event"],
                                     "state": base64.b64encode(bytes(state)).decode()}}
    assert not proof_from_dict(changed).check(key)
    assert not proof_from_dict({**document, "leaf_index": 3}).check(key)
    assert not proof.check(LedgerSigner(Ed25519PrivateKey.generate()).public_key)


def test_an_event_after_the_latest_head_is_not_yet_provable(ledger: Ledger,
                                                            settings: Settings) -> None:
    log = _log(ledger, settings)
    ledger.register_student("Early", "12")
    with pytest.raises(NotProvable):
        prove_inclusion(log, 1)  # no head at all yet
    head = log.sign_head(AT)
    ledger.register_student("Late", "12")
    log.seal()
    with pytest.raises(NotProvable):
        prove_inclusion(log, head.tree_size + 1)
    with pytest.raises(NotProvable):
        prove_inclusion(log, 10_000)


def test_heads_are_provably_consistent(ledger: Ledger, settings: Settings) -> None:
    log = _log(ledger, settings)
    key = ledger.signer.public_key
    sizes = []
    for round_ in range(3):
        ledger.register_student(f"R{round_}", "12")
        sizes.append(log.sign_head(AT).tree_size)
    for first in sizes:
        for second in sizes[sizes.index(first):]:
            assert _as_auditor_gets_it(prove_consistency(log, first, second)).check(key)
    with pytest.raises(NotProvable):
        prove_consistency(log, sizes[2], sizes[0])
    with pytest.raises(NotProvable):
        prove_consistency(log, 4242)
    document = prove_consistency(log, sizes[0]).to_dict()
    bent = {**document, "path": [("00" * 32), *document["path"][1:]]}
    assert not proof_from_dict(bent).check(key)
    # the heads swapped: the newer is no prefix of the older
    swapped = {**document, "first": document["second"], "second": document["first"]}
    assert not proof_from_dict(swapped).check(key)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4), max_leaves=10)


@settings(max_examples=200, deadline=None)
@given(st.one_of(json_values, st.fixed_dictionaries(
    {"log": st.just("student-records-ledger"),
     "kind": st.sampled_from(["inclusion", "consistency", "other"]),
     "path": st.lists(st.text(max_size=64), max_size=2),
     "head": json_values, "first": json_values, "second": json_values, "event": json_values,
     "leaf_index": json_values})))
def test_anything_that_is_not_a_proof_is_refused_plainly(document: Any) -> None:
    with pytest.raises(ProofMalformed):
        proof_from_dict(document)
