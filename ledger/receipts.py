"""Erasure receipts (DEL-8): the signed, PII-free trace that a purge leaves behind.

Crypto-shredding destroys a person's key, and with it every way to read what they were. What
remains is this receipt: who was erased (an opaque subject id), why, on whose request, when, and
what was destroyed (the data key's id and KEK version, each store with its row count). It holds no
personal data, so it can be kept for good, and it is signed with the ledger's Ed25519 key, so
anyone with the ledger's public key can check it (`verify_receipt_json`) without trusting the
database it came from.

The signature covers `canonical()`: sorted-key JSON with UTC times and lowercase UUIDs, behind a
domain-separation tag, so the same key's signatures over other kinds of message (Merkle tree
heads) can never be replayed as receipts, nor receipts as them. Every field is checked on
construction and on parsing, and the parser refuses unknown fields: an auditor never sees a value
that the signature does not cover. Errors name the field, never its value.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

from crypto.signing import LedgerPublicKey, LedgerSigner

RECEIPT_REASONS = (
    "user_request",
    "school_request",
    "support_request",
    "parent_request",
    "teacher_request",
    "expired_window",
    "inactivity",
    "missing_parental_consent",
)

RECEIPT_TAG = b"ledger-erasure-receipt/v1\n"

# A role, then optionally ":" and an opaque UUID: "operator:<uuid>", "purge-job". Never a name.
_UUID_TEXT = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_REQUESTER = re.compile(rf"[a-z][a-z0-9_-]{{0,39}}(:{_UUID_TEXT})?")
_STORE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_LEDGER_KEY_ID = re.compile(r"[0-9a-f]{16}")
_MAX_INT = 2**63 - 1  # what every JSON reader keeps exact
_FIELDS = frozenset({
    "subject_id", "reason", "requester", "requested_at", "erased_at",
    "key_id", "kek_version", "destroyed", "ledger_key_id",
})


class ReceiptMalformed(ValueError):
    """A receipt or signed receipt could not be read. The message never repeats the input."""


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_INT


def _utc(value: object, name: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{name} is out of range") from None


@dataclass(frozen=True, kw_only=True)
class ErasureReceipt:
    """What one purge destroyed, and why. Keyword-only: nine fields are easy to misplace."""

    subject_id: UUID
    reason: str
    requester: str
    requested_at: datetime | None
    erased_at: datetime
    key_id: UUID | None
    kek_version: int | None
    destroyed: dict[str, int] = field(hash=False)  # store or read model -> rows deleted
    ledger_key_id: str

    def __post_init__(self) -> None:
        if not isinstance(self.subject_id, UUID):
            raise ValueError("subject_id must be a UUID")
        if self.reason not in RECEIPT_REASONS:
            raise ValueError("reason must be one of RECEIPT_REASONS")
        if not isinstance(self.requester, str) or not _REQUESTER.fullmatch(self.requester):
            raise ValueError("requester must be a role, optionally ':' and a lowercase UUID")
        if self.requested_at is not None:
            object.__setattr__(self, "requested_at", _utc(self.requested_at, "requested_at"))
        object.__setattr__(self, "erased_at", _utc(self.erased_at, "erased_at"))
        if self.key_id is not None and not isinstance(self.key_id, UUID):
            raise ValueError("key_id must be a UUID or None")
        if self.kek_version is not None and not (_is_count(self.kek_version) and self.kek_version):
            raise ValueError("kek_version must be a positive integer or None")
        if not isinstance(self.destroyed, dict):
            raise ValueError("destroyed must map store names to row counts")
        for name, count in self.destroyed.items():
            if not isinstance(name, str) or not _STORE_NAME.fullmatch(name):
                raise ValueError("destroyed names must match ^[a-z][a-z0-9_]{0,39}$")
            if not _is_count(count):
                raise ValueError("destroyed row counts must be integers >= 0")
        # A copy sorted by name: the caller's dict can change later, the receipt cannot.
        object.__setattr__(self, "destroyed", dict(sorted(self.destroyed.items())))
        if not isinstance(self.ledger_key_id, str) or not _LEDGER_KEY_ID.fullmatch(
            self.ledger_key_id
        ):
            raise ValueError("ledger_key_id must be the signing key's 16-hex-digit key id")

    def canonical(self) -> bytes:
        """The exact bytes that are signed: the tag, then sorted-key compact JSON."""
        return RECEIPT_TAG + orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject_id": str(self.subject_id),
            "reason": self.reason,
            "requester": self.requester,
            "requested_at": _optional_time_text(self.requested_at),
            "erased_at": _time_text(self.erased_at),
            "key_id": str(self.key_id) if self.key_id is not None else None,
            "kek_version": self.kek_version,
            "destroyed": dict(self.destroyed),
            "ledger_key_id": self.ledger_key_id,
        }

    @classmethod
    def from_dict(cls, d: object) -> ErasureReceipt:
        """Parse `to_dict()` output, strictly; ReceiptMalformed on anything else."""
        if not isinstance(d, dict) or set(d) != _FIELDS:
            raise ReceiptMalformed("a receipt is an object with exactly the receipt's fields")
        destroyed = d["destroyed"]
        if not isinstance(destroyed, dict):
            raise ReceiptMalformed("destroyed must be an object")
        try:
            return cls(
                subject_id=_parse_uuid(d["subject_id"], "subject_id"),
                reason=_parse_str(d["reason"], "reason"),
                requester=_parse_str(d["requester"], "requester"),
                requested_at=_parse_optional_time(d["requested_at"], "requested_at"),
                erased_at=_parse_time(d["erased_at"], "erased_at"),
                key_id=None if d["key_id"] is None else _parse_uuid(d["key_id"], "key_id"),
                kek_version=d["kek_version"],
                destroyed=dict(destroyed),
                ledger_key_id=_parse_str(d["ledger_key_id"], "ledger_key_id"),
            )
        except ReceiptMalformed:
            raise
        except ValueError as error:  # our own messages, which name fields and never values
            raise ReceiptMalformed(str(error)) from None


@dataclass(frozen=True)
class SignedReceipt:
    """A receipt and the ledger's Ed25519 signature over its `canonical()` bytes."""

    receipt: ErasureReceipt
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.receipt, ErasureReceipt) or not isinstance(self.signature, bytes):
            raise ValueError("a signed receipt is an ErasureReceipt and signature bytes")

    @classmethod
    def sign(cls, receipt: ErasureReceipt, signer: LedgerSigner) -> SignedReceipt:
        """Sign a receipt whose ledger_key_id names the signer's key (ValueError otherwise)."""
        if receipt.ledger_key_id != signer.public_key.key_id:
            raise ValueError("the receipt's ledger_key_id is not the signer's key id")
        return cls(receipt, signer.sign(receipt.canonical()))

    def verify(self, public_key: LedgerPublicKey) -> bool:
        """True only if the receipt names this key and the signature over it is valid."""
        return self.receipt.ledger_key_id == public_key.key_id and public_key.verify(
            self.receipt.canonical(), self.signature
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "receipt": self.receipt.to_dict(),
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, d: object) -> SignedReceipt:
        if not isinstance(d, dict) or set(d) != {"receipt", "signature"}:
            raise ReceiptMalformed("a signed receipt is an object with 'receipt' and 'signature'")
        signature = d["signature"]
        if not isinstance(signature, str):
            raise ReceiptMalformed("signature must be base64 text")
        try:
            raw = base64.b64decode(signature.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error):
            raise ReceiptMalformed("signature must be base64 text") from None
        return cls(ErasureReceipt.from_dict(d["receipt"]), raw)


def verify_receipt_json(text: str | bytes, public_key_text: str) -> bool:
    """An auditor's check: is this JSON a receipt signed by the ledger with this public key?

    False if the signature or key id does not match; ReceiptMalformed if the JSON (or the public
    key text) cannot be read at all. Never any other exception, whatever the input.
    """
    try:
        public_key = LedgerPublicKey.from_text(public_key_text)
    except ValueError:
        raise ReceiptMalformed("the public key is not base64 of a 32-byte Ed25519 key") from None
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ReceiptMalformed("the receipt is not JSON") from None
    return SignedReceipt.from_dict(parsed).verify(public_key)


def _time_text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _optional_time_text(value: datetime | None) -> str | None:
    return None if value is None else _time_text(value)


def _parse_str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ReceiptMalformed(f"{name} must be a string")
    return value


def _parse_uuid(value: object, name: str) -> UUID:
    try:
        parsed = UUID(_parse_str(value, name))
    except ValueError:
        raise ReceiptMalformed(f"{name} must be a lowercase hyphenated UUID") from None
    if str(parsed) != value:
        raise ReceiptMalformed(f"{name} must be a lowercase hyphenated UUID")
    return parsed


def _parse_time(value: object, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(_parse_str(value, name))
    except ValueError:
        raise ReceiptMalformed(f"{name} must be an ISO-8601 time with a UTC offset") from None
    if parsed.utcoffset() is None:
        raise ReceiptMalformed(f"{name} must be an ISO-8601 time with a UTC offset")
    return parsed


def _parse_optional_time(value: object, name: str) -> datetime | None:
    return None if value is None else _parse_time(value, name)
