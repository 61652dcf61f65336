"""Data keys, the key store, sealing and opening. Knows nothing of students or events."""

from crypto.aead import Aead
from crypto.errors import (
    KeyErased,
    KeyNotFound,
    KeyStoreError,
    KeyStoreUnavailable,
    SealBroken,
)
from crypto.keys import DestroyedKey, SubjectKeys, opener_of_wrapped
from crypto.keystore import WrappedKey

__all__ = [
    "Aead",
    "DestroyedKey",
    "KeyErased",
    "KeyNotFound",
    "KeyStoreError",
    "KeyStoreUnavailable",
    "SealBroken",
    "SubjectKeys",
    "WrappedKey",
    "opener_of_wrapped",
]

from crypto.signing import LedgerPublicKey, LedgerSigner

__all__ += ["LedgerPublicKey", "LedgerSigner"]
