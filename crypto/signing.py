"""The ledger's Ed25519 signing key: what makes its statements checkable by outsiders.

Erasure destroys a person's key, so nothing inside the ledger can later prove that a purge
happened or what it removed. The ledger therefore signs what it says about itself (erasure
receipts, later Merkle tree heads) with one long-lived key, and publishes the public half: anyone
holding `LedgerPublicKey.to_text()` can check a statement without trusting the database.

`sign` signs the bytes it is given and nothing more: every kind of message must begin with its
own domain-separation tag, so a signature over one kind can never pass for another.

Sources, as for the KEK (crypto/kek.py): a key file (JSON, mode 0600, created atomically on first
use, so processes racing on a fresh path all end up with the same key) or the environment
(`base64` of the 32-byte raw private key, read-only). The private key never appears in a repr.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from crypto.secret_files import write_secret_json

KEY_BYTES = 32
SIGNATURE_BYTES = 64
KEY_ID_HEX_CHARS = 16
_FILE_FIELD = "ed25519_private_key"


def _strict_b64(text: str) -> bytes:
    """Decode canonical standard base64 only (ValueError, with no input in it)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise ValueError("not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:  # one text per key, no spare bits set
        raise ValueError("not canonical base64")
    return raw


@dataclass(frozen=True)
class LedgerPublicKey:
    """The public half of the ledger's key: safe to publish, enough to check any signature."""

    raw: bytes
    key_id: str = field(init=False)
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != KEY_BYTES:
            raise ValueError("an Ed25519 public key is 32 raw bytes")
        try:
            key = Ed25519PublicKey.from_public_bytes(self.raw)
        except ValueError:
            raise ValueError("not a valid Ed25519 public key") from None
        key_id = hashlib.sha256(self.raw).hexdigest()[:KEY_ID_HEX_CHARS]
        object.__setattr__(self, "key_id", key_id)
        object.__setattr__(self, "_key", key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True only for a valid signature by this key; False for anything else, never raises."""
        if not isinstance(message, bytes) or not isinstance(signature, bytes):
            return False
        if len(signature) != SIGNATURE_BYTES:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def to_text(self) -> str:
        return base64.b64encode(self.raw).decode("ascii")

    @classmethod
    def from_text(cls, text: str) -> LedgerPublicKey:
        """Read `to_text()` output; ValueError if it is not base64 of a 32-byte key."""
        if not isinstance(text, str):
            raise ValueError("a ledger public key is given as base64 text")
        try:
            return cls(_strict_b64(text.strip()))
        except ValueError:
            raise ValueError("not a ledger public key: expected base64 of 32 bytes") from None


class LedgerSigner:
    """Holds the ledger's private key. Only `sign` and `public_key` are offered."""

    __slots__ = ("_private", "_public")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        raw_public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._public = LedgerPublicKey(raw_public)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str, *, create: bool = True) -> LedgerSigner:
        """Load the key file, creating it with a fresh key if it does not exist and `create`
        allows (FileNotFoundError if not)."""
        if not os.path.exists(path):
            if not create:
                raise FileNotFoundError(path)
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            fresh = Ed25519PrivateKey.generate()
            if _create_key_file(path, fresh):
                return cls(fresh)
            # Another process created the file first: everyone must use that one.
        with open(path, encoding="utf-8") as f:
            try:
                body = json.load(f)
                raw = _strict_b64(body[_FILE_FIELD])
            except (ValueError, TypeError, KeyError):
                raise ValueError("the ledger signing key file is malformed") from None
        return cls._from_raw(raw)

    @classmethod
    def from_environment(cls, value: str) -> LedgerSigner:
        """A signer from base64 of the 32-byte raw private key (read-only: nothing is written)."""
        try:
            raw = _strict_b64(value.strip())
        except (ValueError, AttributeError):
            raw = b""
        return cls._from_raw(raw)

    @classmethod
    def _from_raw(cls, raw: bytes) -> LedgerSigner:
        if len(raw) != KEY_BYTES:
            raise ValueError("the ledger signing key must be base64 of a 32-byte Ed25519 key")
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    # -- use ------------------------------------------------------------------------------
    @property
    def public_key(self) -> LedgerPublicKey:
        return self._public

    def sign(self, message: bytes) -> bytes:
        """A 64-byte signature. The message must carry its own domain-separation tag."""
        return self._private.sign(message)

    def __repr__(self) -> str:  # never show key material
        return f"LedgerSigner(key_id={self._public.key_id!r}, <private key hidden>)"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a LedgerSigner cannot be pickled: it holds the private key")


def _create_key_file(path: str, key: Ed25519PrivateKey) -> bool:
    """Write a new key file atomically; False (and nothing written) if one already exists."""
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return write_secret_json(path, {_FILE_FIELD: base64.b64encode(raw).decode("ascii")},
                             replace=False)
