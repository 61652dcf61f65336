"""Typed failures of the key layer. Messages carry ids only, never key material."""


class KeyStoreError(Exception):
    """Base class for key-store failures."""


class KeyErased(KeyStoreError):
    """The subject's data key was destroyed. Final: the data can never be opened again."""

    def __init__(self, subject_id: object) -> None:
        super().__init__(f"data key of subject {subject_id} was erased")
        self.subject_id = subject_id


class KeyStoreUnavailable(KeyStoreError):
    """The key store cannot be reached now. Retryable: never a sign of erasure."""


class KeyNotFound(KeyStoreError):
    """No key and no tombstone: the key store does not match the data (wrong store?)."""

    def __init__(self, subject_id: object) -> None:
        super().__init__(f"no data key and no erasure recorded for subject {subject_id}")
        self.subject_id = subject_id


class SealBroken(ValueError):
    """A sealed value failed authentication: altered, truncated, or moved elsewhere."""


class KeyFileRefused(ValueError):
    """A key file (the KEK keyring, the signing key) that cannot be used as it is: missing
    once the ledger exists, malformed, or not the one this ledger was started with. The
    message names the setting, the file and what to do; never any key material."""
