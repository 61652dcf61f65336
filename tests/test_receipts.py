"""Erasure receipts (DEL-8), checked the way an auditor would, with only JSON and a public key.

- A signed receipt verifies under the ledger's public key; with any field changed, any signature
  bit flipped, or under another key, it does not.
- JSON round trips (to_dict/from_dict, text) keep it verifiable; the signed bytes are stable
  (same receipt, same bytes, whatever the dict order or time zone) and domain-separated.
- Construction refuses what would make a receipt wrong or carry personal data; parsing refuses
  garbage with ReceiptMalformed only, and its messages never repeat the input.
"""

from __future__ import annotations

import base64
import json
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import LedgerSigner
from ledger.receipts import (
    RECEIPT_REASONS,
    RECEIPT_TAG,
    ErasureReceipt,
    ReceiptMalformed,
    SignedReceipt,
    verify_receipt_json,
)

PROPERTY = settings(max_examples=100, deadline=None)
SIGNER = LedgerSigner.from_environment(base64.b64encode(bytes(range(32))).decode())
OTHER = LedgerSigner.from_environment(base64.b64encode(bytes(range(1, 33))).decode())
PUBLIC_TEXT = SIGNER.public_key.to_text()

zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
)
times = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=zones
)
requesters = st.one_of(
    st.sampled_from(["purge-job", "retention_job"]),
    st.builds(lambda role, id_: f"{role}:{id_}",
              st.sampled_from(["operator", "student", "school", "parent", "teacher"]), st.uuids()),
)
store_names = st.from_regex(r"\A[a-z][a-z0-9_]{0,39}\Z")
counts = st.integers(min_value=0, max_value=2**63 - 1)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "subject_id": st.uuids(),
    "reason": st.sampled_from(RECEIPT_REASONS),
    "requester": requesters,
    "requested_at": st.none() | times,
    "erased_at": times,
    "key_id": st.none() | st.uuids(),
    "kek_version": st.none() | st.integers(min_value=1, max_value=2**63 - 1),
    "destroyed": st.dictionaries(store_names, counts, max_size=6),
    "ledger_key_id": st.from_regex(r"\A[0-9a-f]{16}\Z"),
}
receipts = st.builds(
    ErasureReceipt, **{**FIELD_VALUES, "ledger_key_id": st.just(SIGNER.public_key.key_id)}
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=12,
)


def example(**changes: Any) -> ErasureReceipt:
    base: dict[str, Any] = {
        "subject_id": UUID("6f1c1b8e-58a4-4d6e-9f39-0c3b1d5e2a10"),
        "reason": "expired_window",
        "requester": "purge-job",
        "requested_at": None,
        "erased_at": datetime(2026, 11, 29, 5, 30, tzinfo=UTC),
        "key_id": UUID("0b0d6a1c-7c77-4b8a-8f4e-2f7e8a1d9c33"),
        "kek_version": 2,
        "destroyed": {"attempts": 12, "directory": 1},
        "ledger_key_id": SIGNER.public_key.key_id,
    }
    return ErasureReceipt(**{**base, **changes})


def auditor_json(signed: SignedReceipt) -> bytes:
    return orjson.dumps(signed.to_dict())


# -- what an auditor checks ---------------------------------------------------------------
@PROPERTY
@given(receipts)
def test_a_signed_receipt_verifies_from_its_json_and_the_public_key_alone(
    receipt: ErasureReceipt,
) -> None:
    signed = SignedReceipt.sign(receipt, SIGNER)
    assert signed.verify(SIGNER.public_key)
    assert verify_receipt_json(auditor_json(signed), PUBLIC_TEXT)
    assert verify_receipt_json(json.dumps(signed.to_dict(), indent=2), PUBLIC_TEXT)
    again = SignedReceipt.from_dict(json.loads(auditor_json(signed)))
    assert again == signed
    assert again.verify(SIGNER.public_key)


@PROPERTY
@given(receipts, st.data())
def test_any_change_to_any_field_fails_verification(receipt: ErasureReceipt, data: st.DataObject
                                                    ) -> None:
    signed = SignedReceipt.sign(receipt, SIGNER)
    name = data.draw(st.sampled_from([f.name for f in fields(ErasureReceipt)]))
    value = data.draw(FIELD_VALUES[name].filter(lambda v: v != getattr(receipt, name)))
    tampered = SignedReceipt(replace(receipt, **{name: value}), signed.signature)
    assert tampered.receipt != receipt
    assert not tampered.verify(SIGNER.public_key)
    assert not verify_receipt_json(auditor_json(tampered), PUBLIC_TEXT)


@PROPERTY
@given(receipts, st.integers(min_value=0, max_value=511))
def test_any_flipped_signature_bit_fails_verification(receipt: ErasureReceipt, bit: int) -> None:
    signature = bytearray(SignedReceipt.sign(receipt, SIGNER).signature)
    signature[bit // 8] ^= 1 << (bit % 8)
    flipped = SignedReceipt(receipt, bytes(signature))
    assert not flipped.verify(SIGNER.public_key)
    assert not verify_receipt_json(auditor_json(flipped), PUBLIC_TEXT)


@PROPERTY
@given(receipts)
def test_a_receipt_signed_by_one_key_fails_under_another(receipt: ErasureReceipt) -> None:
    own = replace(receipt, ledger_key_id=OTHER.public_key.key_id)
    by_other = SignedReceipt.sign(own, OTHER)
    assert by_other.verify(OTHER.public_key)
    assert not by_other.verify(SIGNER.public_key)
    assert not verify_receipt_json(auditor_json(by_other), PUBLIC_TEXT)
    # Another key's signature over a receipt that claims to be ours fails too.
    forged = SignedReceipt(receipt, OTHER.sign(receipt.canonical()))
    assert not forged.verify(SIGNER.public_key)


def test_signing_refuses_a_receipt_that_names_another_key() -> None:
    with pytest.raises(ValueError):
        SignedReceipt.sign(example(ledger_key_id=OTHER.public_key.key_id), SIGNER)


# -- the signed bytes -----------------------------------------------------------------------
@PROPERTY
@given(receipts, zones)
def test_canonical_bytes_are_stable_across_dict_order_and_time_zones(
    receipt: ErasureReceipt, zone: timezone
) -> None:
    same = replace(
        receipt,
        destroyed=dict(reversed(list(receipt.destroyed.items()))),
        erased_at=receipt.erased_at.astimezone(zone),
    )
    assert same.canonical() == receipt.canonical()
    assert ErasureReceipt.from_dict(receipt.to_dict()).canonical() == receipt.canonical()


def test_canonical_form_is_tagged_sorted_utc_with_microseconds_and_lowercase_uuids() -> None:
    receipt = example(erased_at=datetime(2026, 11, 29, 6, 30, tzinfo=timezone(timedelta(hours=1))),
                      destroyed={"progress": 3, "attempts": 0})
    canonical = receipt.canonical()
    assert canonical.startswith(b"ledger-erasure-receipt/v1\n") and RECEIPT_TAG in canonical
    body = canonical[len(RECEIPT_TAG):]
    assert body == orjson.dumps(json.loads(body), option=orjson.OPT_SORT_KEYS)
    parsed = json.loads(body)
    assert list(parsed) == sorted(parsed)
    assert list(parsed["destroyed"]) == ["attempts", "progress"]
    assert parsed["erased_at"] == "2026-11-29T05:30:00.000000+00:00"
    assert parsed["subject_id"] == "6f1c1b8e-58a4-4d6e-9f39-0c3b1d5e2a10"


def test_a_receipt_signature_is_bound_to_the_receipt_tag() -> None:
    receipt = example()
    signed = SignedReceipt.sign(receipt, SIGNER)
    untagged = receipt.canonical()[len(RECEIPT_TAG):]
    assert not SIGNER.public_key.verify(untagged, signed.signature)
    assert not SIGNER.public_key.verify(b"ledger-tree-head/v1\n" + untagged, signed.signature)


# -- what a receipt may hold ----------------------------------------------------------------
@pytest.mark.parametrize("changes", [
    {"reason": "because"},
    {"requester": "Alice Smith"},
    {"requester": "operator:alice@example.org"},
    {"requester": "operator:6F1C1B8E-58A4-4D6E-9F39-0C3B1D5E2A10"},
    {"erased_at": datetime(2026, 11, 29)},
    {"requested_at": datetime(2026, 11, 1)},
    {"destroyed": {"Attempts": 1}},
    {"destroyed": {"attempts": -1}},
    {"destroyed": {"attempts": True}},
    {"destroyed": {"a" * 41: 1}},
    {"kek_version": 0},
    {"kek_version": "2"},
    {"ledger_key_id": "not-a-key-id"},
    {"subject_id": "6f1c1b8e-58a4-4d6e-9f39-0c3b1d5e2a10"},
])
def test_construction_refuses_a_wrong_or_personal_receipt(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        example(**changes)


def test_changing_the_callers_dict_later_does_not_change_the_receipt() -> None:
    destroyed = {"attempts": 12}
    receipt = example(destroyed=destroyed)
    destroyed["attempts"] = 0
    assert receipt.destroyed == {"attempts": 12}
    assert hash(receipt) == hash(example(destroyed={"attempts": 12}))


@pytest.mark.parametrize("name", [f.name for f in fields(ErasureReceipt)])
def test_malformed_messages_never_repeat_the_input(name: str) -> None:
    marker = "Alice-Smith-0123456789abcdef"
    bad = {**example().to_dict(), name: marker}
    if name == "destroyed":
        bad[name] = {marker: 1}
    with pytest.raises(ReceiptMalformed) as raised:
        ErasureReceipt.from_dict(bad)
    assert marker not in str(raised.value)
    assert raised.value.__cause__ is None


def test_parsing_refuses_fields_the_signature_does_not_cover() -> None:
    signed = SignedReceipt.sign(example(), SIGNER).to_dict()
    signed["receipt"]["student_name"] = "Alice"
    with pytest.raises(ReceiptMalformed):
        verify_receipt_json(json.dumps(signed), PUBLIC_TEXT)
    with pytest.raises(ReceiptMalformed):
        verify_receipt_json(json.dumps({**signed, "note": "x"}), PUBLIC_TEXT)


def test_a_bad_public_key_text_is_reported_as_malformed() -> None:
    text = auditor_json(SignedReceipt.sign(example(), SIGNER))
    with pytest.raises(ReceiptMalformed):
        verify_receipt_json(text, "not a key")


# -- garbage in, ReceiptMalformed or False out ----------------------------------------------
def check_garbage(text: str | bytes, key_text: str = PUBLIC_TEXT) -> None:
    try:
        result = verify_receipt_json(text, key_text)
    except ReceiptMalformed:
        return
    assert result is False


@PROPERTY
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200), json_values.map(orjson.dumps)))
def test_garbage_json_never_raises_anything_but_receipt_malformed(text: str | bytes) -> None:
    check_garbage(text)


@PROPERTY
@given(st.data())
def test_a_valid_receipt_with_any_part_replaced_by_garbage_never_verifies_or_crashes(
    data: st.DataObject,
) -> None:
    signed = SignedReceipt.sign(example(requested_at=datetime(2026, 11, 1, tzinfo=UTC)), SIGNER)
    document = signed.to_dict()
    if data.draw(st.booleans()):
        where = document["receipt"]
        name = data.draw(st.sampled_from(sorted(where)))
    else:
        where = document
        name = data.draw(st.sampled_from(["receipt", "signature"]))
    value = data.draw(json_values.filter(lambda v: v != where[name]))
    where[name] = value
    check_garbage(orjson.dumps(document))


@PROPERTY
@given(st.text(max_size=60))
def test_a_garbage_public_key_never_raises_anything_but_receipt_malformed(key: str) -> None:
    check_garbage(auditor_json(SignedReceipt.sign(example(), SIGNER)), key)
