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
