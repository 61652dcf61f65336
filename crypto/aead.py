"""Authenticated encryption with associated data, in the shape of Tink's AEAD.

`seal(plaintext, associated_data)` gives nonce || ciphertext || tag; `open` reverses it and
fails with `SealBroken` if a single bit or the associated data differs. The AESGCM object is
built once per key and reused: building it costs more than sealing a small event.
"""

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.errors import SealBroken

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
OVERHEAD = NONCE_BYTES + TAG_BYTES


def new_key() -> bytes:
    """A fresh random AES-256 key."""
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


class Aead:
    """AES-256-GCM under one key. Random 96-bit nonces: fine for < 2^32 seals per key."""

    __slots__ = ("_aesgcm",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("an AES-256 key is 32 bytes")
        self._aesgcm = AESGCM(key)

    def seal(self, plaintext: bytes, associated_data: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aesgcm.encrypt(nonce, plaintext, associated_data)

    def open(self, sealed: bytes, associated_data: bytes) -> bytes:
        if len(sealed) < OVERHEAD:
            raise SealBroken("sealed value is too short")
        try:
            return self._aesgcm.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated_data)
        except InvalidTag:
            raise SealBroken("sealed value failed authentication") from None

    def __repr__(self) -> str:  # never show key material
        return "Aead(<key hidden>)"
