"""One data key per data subject: the interface the rest of the ledger uses.

`sealer(subject)` gives the subject's AEAD, creating the key on first use; `opener(subject)` never
creates one. `erase(subject)` destroys the key for good and leaves a tombstone.

Opened keys are cached in memory. Every process drops an erased subject's key within
`sync_seconds` of the erasure's commit: the first key lookup after that interval reads the
tombstones added since the last one it saw and evicts them (the bound is tested with two
processes). The erasing process drops it at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

from crypto.aead import Aead, new_key
from crypto.errors import KeyErased, KeyNotFound, SealBroken
from crypto.kek import KekRetired, Keyring
from crypto.keystore import KeyStore, StaleKeyring, Tombstone, WrappedKey

DEFAULT_SYNC_SECONDS = 1.0
DEFAULT_CACHE_SIZE = 100_000


@dataclass(frozen=True)
class DestroyedKey:
    """What an erasure destroyed: enough for a receipt, nothing that could restore it."""

    subject_id: UUID
    key_id: UUID | None
    kek_version: int | None
    erased_at: datetime


@dataclass(frozen=True)
class KekRotation:
    retired_versions: list[int]
    new_version: int
    rewrapped: int


class SubjectKeys:
    def __init__(
        self,
        store: KeyStore,
        keyring: Keyring,
        *,
        sync_seconds: float = DEFAULT_SYNC_SECONDS,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.sync_seconds = sync_seconds
        self._cache_size = cache_size
        self._cache: dict[bytes, Aead] = {}
        self._erased: set[bytes] = set()
        self._listeners: list[Callable[[UUID], None]] = []
        store.record_kek_version(keyring.current_version)
        self._last_seq = self._latest_seq()
        self._next_sync = time.monotonic() + sync_seconds
        self._sync_lock = threading.Lock()

    # -- the two ways in --------------------------------------------------------------------
    def sealer(self, subject_id: UUID) -> Aead:
        """The subject's AEAD for new data; creates the key on first use. KeyErased if erased."""
        aead = self._cached(subject_id.bytes)
        if aead is not None:
            return aead
        stored = self.store.load(subject_id)
        if stored is None:
            stored = self._create(subject_id)
        return self._remember(subject_id, stored)

    def _create(self, subject_id: UUID) -> WrappedKey:
        key_id, data_key = uuid4(), new_key()
        for _ in range(2):
            version, wrapped = self.keyring.wrap(data_key, subject_id, key_id)
            try:
                return self.store.create(WrappedKey(subject_id, key_id, version, wrapped))
            except StaleKeyring:
                self.keyring.reload()
        raise StaleKeyring("the KEK keyring file is older than the key store")

    def opener(self, subject_id: UUID) -> Aead:
        """The subject's AEAD for existing data. KeyErased, KeyNotFound or KeyStoreUnavailable."""
        return self.opener_for_bytes(subject_id.bytes)

    def opener_for_bytes(self, subject: bytes) -> Aead:
        aead = self._cached(subject)
        if aead is not None:
            return aead
        subject_id = UUID(bytes=subject)
        stored = self.store.load(subject_id)
        if stored is None:
            if self.store.tombstone(subject_id) is not None:
                self._erased.add(subject)
                raise KeyErased(subject_id)
            raise KeyNotFound(subject_id)
        return self._remember(subject_id, stored)

    # -- erasure ----------------------------------------------------------------------------
    def erase(self, subject_id: UUID) -> DestroyedKey:
        tombstone = self.store.erase(subject_id)
        self._forget(subject_id)
        return _destroyed(tombstone)

    def erasure_of(self, subject_id: UUID) -> DestroyedKey | None:
        tombstone = self.store.tombstone(subject_id)
        return _destroyed(tombstone) if tombstone else None

    def is_erased(self, subject_id: UUID) -> bool:
        return subject_id.bytes in self._erased or self.store.tombstone(subject_id) is not None

    def on_erasure(self, listener: Callable[[UUID], None]) -> None:
        """Call `listener(subject_id)` whenever this process learns of an erasure."""
        self._listeners.append(listener)

    def sync_erasures_if_due(self) -> None:
        if time.monotonic() >= self._next_sync:
            self.sync_erasures()

    def sync_erasures(self) -> list[UUID]:
        """Learn of erasures made by any process since the last sync; returns their subjects."""
        with self._sync_lock:
            started = time.monotonic()
            tombstones = self.store.tombstones_after(self._last_seq)
            # Only a sync that succeeded defers the next one: while the store is unreachable,
            # every lookup retries and fails, so no cached key outlives the bound unchecked.
            self._next_sync = started + self.sync_seconds
            if tombstones:
                self._last_seq = tombstones[-1].seq
        for tombstone in tombstones:
            self._forget(tombstone.subject_id)
        return [t.subject_id for t in tombstones]

    # -- KEK rotation -----------------------------------------------------------------------
    def rotate_kek(self) -> KekRotation:
        """Re-wrap every live key under a new KEK version, then destroy the older versions."""
        old_versions = self.keyring.live_versions
        new_version = self.keyring.add_version()
        self.store.record_kek_version(new_version)
        rewrapped = []
        for key in self.store.keys_wrapped_under(old_versions):
            data_key = self.keyring.unwrap(key.wrapped, key.subject_id, key.key_id,
                                           key.kek_version)
            version, wrapped = self.keyring.wrap(data_key, key.subject_id, key.key_id)
            rewrapped.append(WrappedKey(key.subject_id, key.key_id, version, wrapped))
        count = self.store.rewrap(rewrapped)
        leftovers = self.store.keys_wrapped_under(old_versions)
        if leftovers:  # a key was created under an old version meanwhile: stop, retire nothing
            raise RuntimeError("keys were added during rotation; run the rotation again")
        for version in old_versions:
            self.keyring.retire(version)
        return KekRotation(old_versions, new_version, count)

    def close(self) -> None:
        self._cache.clear()
        self.store.db.close()

    # -- cache ------------------------------------------------------------------------------
    def _cached(self, subject: bytes) -> Aead | None:
        self.sync_erasures_if_due()
        if subject in self._erased:
            raise KeyErased(UUID(bytes=subject))
        return self._cache.get(subject)

    def _remember(self, subject_id: UUID, stored: WrappedKey) -> Aead:
        try:
            data_key = self.keyring.unwrap(stored.wrapped, subject_id, stored.key_id,
                                           stored.kek_version)
        except KekRetired:
            # Rotation re-wraps every live key; one left under a destroyed KEK was erased
            # before the rotation and has come back from an old copy of the key store.
            raise KeyErased(subject_id) from None
        except SealBroken:
            raise SealBroken(f"data key of subject {subject_id} failed to unwrap") from None
        aead = Aead(data_key)
        if len(self._cache) >= self._cache_size:
            self._cache.pop(next(iter(self._cache)))
        self._cache[subject_id.bytes] = aead
        return aead

    def _forget(self, subject_id: UUID) -> None:
        self._cache.pop(subject_id.bytes, None)
        self._erased.add(subject_id.bytes)
        for listener in self._listeners:
            listener(subject_id)

    def _latest_seq(self) -> int:
        tombstones = self.store.tombstones_after(0)
        for t in tombstones:
            self._erased.add(t.subject_id.bytes)
        return tombstones[-1].seq if tombstones else 0


def _destroyed(t: Tombstone) -> DestroyedKey:
    return DestroyedKey(t.subject_id, t.key_id, t.kek_version, t.erased_at)
