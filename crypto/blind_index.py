"""Keyed one-way tokens for finding a record by an identifying value without storing the value.

MIN-1 keeps a student's email only as HMAC-SHA256 under a server-held, versioned secret, over
the trimmed, lower-cased address; usernames are looked up the same way. A token names its
secret's version, so the secret can be rotated: a lookup tries the token of every live version.
`purpose` separates uses (an email token never equals a username token of the same text).
Where the secrets rest is the caller's choice; this module only computes and compares.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from collections.abc import Mapping

VERSION_BYTES = 2


def normalise_email(address: str) -> str:
    """NFKC first, so that a full-width or compatibility spelling of an address gets the same
    token as the plain one (the ledger refuses invisible characters before this is asked)."""
    return unicodedata.normalize("NFKC", address).strip().lower()


class BlindIndex:
    def __init__(self, secrets: Mapping[int, bytes]) -> None:
        if not secrets:
            raise ValueError("a blind index needs at least one secret")
        if any(len(secret) < 32 for secret in secrets.values()):
            raise ValueError("a blind-index secret is at least 32 bytes")
        if any(not 0 < version < 2 ** (8 * VERSION_BYTES) for version in secrets):
            raise ValueError("secret versions are 1 to 65535")
        self._secrets = dict(secrets)
        self.current_version = max(secrets)

    def token(self, purpose: str, value: str, version: int | None = None) -> bytes:
        """The token of `value` for `purpose` under the current (or the given) secret."""
        version = self.current_version if version is None else version
        mac = hmac.new(self._secrets[version], digestmod=hashlib.sha256)
        mac.update(purpose.encode())
        mac.update(b"\x00")
        mac.update(value.encode())
        return version.to_bytes(VERSION_BYTES, "big") + mac.digest()

    def lookup_tokens(self, purpose: str, value: str) -> list[bytes]:
        """One token per live secret, newest first: what to search for during a rotation."""
        return [self.token(purpose, value, v) for v in sorted(self._secrets, reverse=True)]

    def matches(self, token: bytes, purpose: str, value: str) -> bool:
        """Constant-time check that `token` is the token of `value` (any live version)."""
        version = int.from_bytes(token[:VERSION_BYTES], "big")
        if version not in self._secrets:
            return False
        return hmac.compare_digest(token, self.token(purpose, value, version))

    def __repr__(self) -> str:
        return f"BlindIndex(versions={sorted(self._secrets)}, <secrets hidden>)"
