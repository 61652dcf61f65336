"""Versioned key-encryption keys (KEKs) that wrap every data key at rest.

A keyring holds numbered KEK versions; the highest live one wraps new data keys. Rotating adds
a version, and retiring destroys an old version's key material for good: a copy of the key store
taken earlier then holds only keys that nobody can unwrap (CRY-3).

Sources: a key file (JSON, mode 0600, created on first use) or the environment
(`LEDGER_KEK="1:<base64>,2:<base64>"`, read-only: rotate it where it is kept).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import threading
from uuid import UUID

from crypto.aead import Aead, new_key
from crypto.errors import SealBroken
from crypto.secret_files import write_secret_json


class KekRetired(Exception):
    """The KEK version that wrapped a key has been destroyed."""


class KeyringReadOnly(Exception):
    """The keyring came from the environment and cannot be rotated from here."""


def _wrap_aad(subject_id: UUID, key_id: UUID, version: int) -> bytes:
    return b"dek|" + subject_id.bytes + key_id.bytes + version.to_bytes(4, "big")


class Keyring:
    def __init__(self, versions: dict[int, bytes | None], path: str | None) -> None:
        if not any(versions.values()):
            raise ValueError("a keyring needs at least one live KEK version")
        self._versions = dict(versions)
        self._aeads = {v: Aead(k) for v, k in versions.items() if k is not None}
        self._path = path
        self._lock = threading.Lock()

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str, *, create: bool = True) -> Keyring:
        """Load the keyring file, creating it with one fresh KEK if it does not exist and
        `create` allows (FileNotFoundError if not). ValueError if it cannot be read."""
        if not os.path.exists(path):
            if not create:
                raise FileNotFoundError(path)
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            ring = cls({1: new_key()}, path)
            if ring._save(create=True):
                return ring
            # Another process created the file first: everyone must use that one.
        try:
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
            versions = {int(v): (base64.b64decode(k, validate=True) if k is not None else None)
                        for v, k in raw["kek"].items()}
        except (ValueError, TypeError, KeyError, AttributeError, binascii.Error):
            # The parser's message may quote the file, and the file is key material.
            raise ValueError("the KEK file is malformed") from None
        return cls(versions, path)

    @classmethod
    def from_environment(cls, value: str) -> Keyring:
        versions: dict[int, bytes | None] = {}
        try:
            for item in value.split(","):
                version, _, key = item.strip().partition(":")
                versions[int(version)] = base64.b64decode(key)
        except ValueError:  # binascii.Error too; its message would quote the key
            raise ValueError("LEDGER_KEK is malformed: expected VERSION:BASE64[,...]") from None
        return cls(versions, None)

    # -- use ------------------------------------------------------------------------------
    @property
    def current_version(self) -> int:
        return max(v for v, k in self._versions.items() if k is not None)

    @property
    def live_versions(self) -> list[int]:
        return sorted(v for v, k in self._versions.items() if k is not None)

    @property
    def versions(self) -> list[int]:
        """Every version the keyring knows, retired ones included."""
        return sorted(self._versions)

    def check_value(self, version: int) -> str:
        """A value that tells this version's key apart from any other and reveals nothing of
        it (an HMAC under the key of a fixed label), for recording beside the wrapped keys."""
        key = self._versions[version]
        if key is None:
            raise KekRetired(f"KEK version {version} is retired or unknown")
        return hmac.new(key, b"ledger kek check value", hashlib.sha256).hexdigest()[:32]

    def wrap(self, data_key: bytes, subject_id: UUID, key_id: UUID) -> tuple[int, bytes]:
        version = self.current_version
        aad = _wrap_aad(subject_id, key_id, version)
        return version, self._aeads[version].seal(data_key, aad)

    def unwrap(self, wrapped: bytes, subject_id: UUID, key_id: UUID, version: int) -> bytes:
        if version not in self._versions:
            self.reload()  # another process has rotated: its new version is in the file
        aead = self._aeads.get(version)
        if aead is None:
            raise KekRetired(f"KEK version {version} is retired or unknown")
        try:
            return aead.open(wrapped, _wrap_aad(subject_id, key_id, version))
        except SealBroken:
            raise SealBroken(f"wrapped data key {key_id} failed to unwrap") from None

    # -- rotation -------------------------------------------------------------------------
    def reload(self) -> None:
        """Pick up versions that another process added to or retired from the key file."""
        if self._path is None:
            return
        fresh = Keyring.from_file(self._path, create=False)
        with self._lock:
            self._versions, self._aeads = fresh._versions, fresh._aeads

    def add_version(self) -> int:
        self._require_writable()
        with self._lock:
            version = max(self._versions) + 1
            key = new_key()
            self._versions[version] = key
            self._aeads[version] = Aead(key)
            self._save()
            return version

    def retire(self, version: int) -> None:
        """Destroy a version's key material. The version number stays, marked retired."""
        self._require_writable()
        with self._lock:
            if version == self.current_version:
                raise ValueError("the current KEK version cannot be retired")
            self._versions[version] = None
            self._aeads.pop(version, None)
            self._save()

    def _require_writable(self) -> None:
        if self._path is None:
            raise KeyringReadOnly(
                "the KEK is given by the environment (LEDGER_KEK): rotate it where it is kept"
            )

    def _save(self, *, create: bool = False) -> bool:
        """Write the keyring; with `create`, only if no file exists yet (False if one did)."""
        assert self._path is not None
        body = {
            "kek": {
                str(v): (base64.b64encode(k).decode() if k is not None else None)
                for v, k in sorted(self._versions.items())
            }
        }
        return write_secret_json(self._path, body, replace=not create)

    def __repr__(self) -> str:
        return f"Keyring(versions={self.live_versions}, <keys hidden>)"
