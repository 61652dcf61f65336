"""One data key per data subject: the interface the rest of the ledger uses.

`sealer(subject)` gives the subject's AEAD, creating the key on first use; `opener(subject)` never
creates one. `erase(subject)` destroys the key for good and leaves a tombstone.

`sealer(subject, owner=person)` makes a key owned by `person` (a project's, say): erasing the
person destroys it too, in the same transaction, each owned key with its own tombstone; erasing
the owned key alone leaves the person and their other keys as they are.

Opened keys are cached in memory. Every process drops an erased subject's key within
`sync_seconds` of the erasure's commit: the first key lookup after that interval reads the
tombstones added since the last one it saw and evicts them (the bound is tested with two
processes). The erasing process drops it at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from crypto.aead import Aead, new_key
from crypto.errors import KeyErased, KeyNotFound, SealBroken
from crypto.kek import KekRetired, Keyring
from crypto.keystore import Erasure, KeyStore, StaleKeyring, Tombstone, WrappedKey

DEFAULT_SYNC_SECONDS = 1.0
# Opened data keys, 32 bytes each (about 150 bytes with the dict's overhead).
DEFAULT_KEY_CACHE = 200_000
# AES-GCM objects cost about 2.6 KB each, and the garbage collector walks them (raw keys are
# bytes, which it skips); they are cheap to rebuild from a cached key (~1 us).
DEFAULT_CIPHER_CACHE = 1_024
# New subjects take ids whose keys were made ahead in one key-store transaction, so that
# registering a person costs no key-store round trip of its own. The batch doubles with each
# refill, from a few (a short-lived command wastes little) to many (a bulk import pays little).
FIRST_RESERVE_BATCH = 16
MAX_RESERVE_BATCH = 1024


@dataclass(frozen=True)
class DestroyedKey:
    """What an erasure destroyed: enough for a receipt, nothing that could restore it."""

    subject_id: UUID
    key_id: UUID | None
    kek_version: int | None
    erased_at: datetime
    # Keys of theirs destroyed with theirs (their projects', DEL-4) by this call: not part of
    # the tombstone, so an erasure asked again compares equal.
    owned_keys: int = field(default=0, compare=False)


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
        key_cache: int = DEFAULT_KEY_CACHE,
        cipher_cache: int = DEFAULT_CIPHER_CACHE,
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.sync_seconds = sync_seconds
        self._reserve_batch = FIRST_RESERVE_BATCH
        self._keys: dict[bytes, bytes] = {}
        self._key_cache = key_cache
        self._ciphers: dict[bytes, Aead] = {}
        self._cipher_cache = cipher_cache
        self._reserved: list[UUID] = []
        self._reserve_lock = threading.Lock()
        self._erased: set[bytes] = set()
        # Lookups of a key answered from memory or sent to the store (/metrics). Unlocked: a
        # lost increment under a race costs a metric a count, and a lock would cost every read.
        self.cache_hits = 0
        self.cache_misses = 0
        self._listeners: list[Callable[[UUID], None]] = []
        store.record_kek_version(keyring.current_version)
        self._last_seq = self._latest_seq()
        self._next_sync = time.monotonic() + sync_seconds
        self._sync_lock = threading.Lock()

    # -- the ways in -----------------------------------------------------------------------
    def new_subject(self) -> UUID:
        """A fresh subject id whose data key already exists (made in batches, ahead of use)."""
        with self._reserve_lock:
            if not self._reserved:
                self._reserved = self._reserve(self._reserve_batch)
                self._reserve_batch = min(self._reserve_batch * 2, MAX_RESERVE_BATCH)
            return self._reserved.pop()

    def sealer(self, subject_id: UUID, owner: UUID | None = None) -> Aead:
        """The subject's AEAD for new data; creates the key on first use. KeyErased if erased.

        A key made here with an `owner` is destroyed with the owner's (KeyErased if the owner
        is erased already). The owner counts only when the key is made: an existing key keeps
        whatever owner it was made with."""
        subject = subject_id.bytes
        aead = self._cipher(subject)
        if aead is not None:
            self.cache_hits += 1
            return aead
        self.cache_misses += 1
        stored = self.store.load(subject_id)
        if stored is None:
            stored = self._create([subject_id], fresh=False, owner=owner)[0]
        return self._remember(stored)

    def owner_of(self, subject_id: UUID) -> UUID | None:
        """Who owns the subject's live key (None: nobody, or no live key)."""
        return self.store.owner_of(subject_id)

    def server_secret(self, subject_id: UUID) -> bytes:
        """The 32 bytes of a key kept for a server-side secret (a blind-index secret), made on
        first use. Only for reserved subjects: a person's key never leaves this object."""
        self.sealer(subject_id)
        data_key = self._keys.get(subject_id.bytes)
        if data_key is None:  # made by another process and already evicted here: load it
            stored = self.store.load(subject_id)
            if stored is None:
                raise KeyErased(subject_id)
            data_key = self._unwrap(stored)
        return data_key

    def opener(self, subject_id: UUID) -> Aead:
        """The subject's AEAD for existing data. KeyErased, KeyNotFound or KeyStoreUnavailable."""
        return self.opener_for_bytes(subject_id.bytes)

    def opener_for_bytes(self, subject: bytes) -> Aead:
        aead = self._cipher(subject)
        if aead is not None:
            self.cache_hits += 1
            return aead
        self.cache_misses += 1
        subject_id = UUID(bytes=subject)
        stored = self.store.load(subject_id)
        if stored is None:
            if self.store.tombstone(subject_id) is not None:
                self._erased.add(subject)
                raise KeyErased(subject_id)
            raise KeyNotFound(subject_id)
        return self._remember(stored)

    def _prefetch(self, subjects: Iterable[bytes]) -> None:
        """Load, in one round trip, the keys of `subjects` not yet in memory (a page of a replay).

        Erased subjects are remembered as erased; unknown ones are left for `opener` to report.
        """
        self.sync_erasures_if_due()
        missing = {s for s in subjects if s not in self._keys and s not in self._erased}
        if not missing:
            return
        found = set()
        for stored in self.store.load_many([UUID(bytes=s) for s in missing]):
            found.add(stored.subject_id.bytes)
            try:
                self._keys_put(stored.subject_id.bytes, self._unwrap(stored))
            except KeyErased:
                self._erased.add(stored.subject_id.bytes)
        absent = [UUID(bytes=s) for s in missing - found]
        for tombstone in self.store.tombstones_for(absent) if absent else []:
            self._erased.add(tombstone.subject_id.bytes)

    def openers(self, subjects: set[bytes]) -> dict[bytes, Aead | None]:
        """The AEADs of `subjects` (a page of a replay), fetched in one round trip; `None` for
        an erased subject; no entry for one with neither key nor tombstone."""
        self._prefetch(subjects)
        found: dict[bytes, Aead | None] = {}
        for subject in subjects:
            try:
                found[subject] = self.opener_for_bytes(subject)
            except KeyErased:
                found[subject] = None
            except KeyNotFound:
                pass
        return found

    def fetch_openers(self, subjects: set[bytes]) -> dict[bytes, Aead | None]:
        """Like `openers`, for a caller that keeps what it gets (a rebuild's own cache): keys
        not in memory come from the store in one round trip (`fetch_wrapped`), and each AEAD is
        built from the key read, so a crowded shared cache never sends a subject back to the
        store."""
        self.sync_erasures_if_due()
        found: dict[bytes, Aead | None] = {}
        ask = set()
        for subject in subjects:
            if subject in self._erased:
                found[subject] = None
            elif (data_key := self._keys.get(subject)) is not None:
                found[subject] = Aead(data_key)
            else:
                ask.add(subject)
        self.cache_hits += len(subjects) - len(ask)
        self.cache_misses += len(ask)
        for subject, stored in (self.fetch_wrapped(ask) if ask else {}).items():
            aead = opener_of_wrapped(self.keyring, stored) if stored is not None else None
            # Erased while it was being read: the key is void.
            found[subject] = None if subject in self._erased else aead
        return found

    def fetch_wrapped(self, subjects: set[bytes]) -> dict[bytes, WrappedKey | None]:
        """The keys of `subjects` as the store keeps them, wrapped under the KEK, in one round
        trip: `None` for an erased subject, no entry for one with neither key nor tombstone.
        For a rebuild's worker processes, which unwrap them with their own keyring
        (`opener_of_wrapped`): a data key itself never crosses to another process."""
        self.sync_erasures_if_due()
        found: dict[bytes, WrappedKey | None] = {s: None for s in subjects if s in self._erased}
        ask = [UUID(bytes=subject) for subject in subjects if subject not in found]
        for stored in self.store.load_many(ask) if ask else []:
            subject = stored.subject_id.bytes
            found[subject] = None if subject in self._erased else stored
        absent = [subject_id for subject_id in ask if subject_id.bytes not in found]
        for tombstone in self.store.tombstones_for(absent) if absent else []:
            self._erased.add(tombstone.subject_id.bytes)
            found[tombstone.subject_id.bytes] = None
        return found

    def forget_cached_keys(self) -> None:
        """Drop every opened key from this process's memory; they are loaded again on use."""
        self._ciphers.clear()
        self._keys.clear()

    def is_cached(self, subject_id: UUID) -> bool:
        return subject_id.bytes in self._keys

    # -- erasure ----------------------------------------------------------------------------
    def erase(self, subject_id: UUID) -> DestroyedKey:
        """Destroy the subject's key and every key it owns (one transaction, one scrub)."""
        return self.erase_many([subject_id])[0]

    def erase_many(self, subject_ids: list[UUID]) -> list[DestroyedKey]:
        """`erase` for several subjects in one key-store transaction and one scrub; what was
        destroyed, in the order given. Idempotent, as `erase` is."""
        erasure: Erasure = self.store.erase_subjects(subject_ids)
        # This process forgets at once; the others within `sync_seconds`, from the tombstones.
        for tombstone in erasure.tombstones + erasure.owned:
            self._forget(tombstone.subject_id)
        return [_destroyed(t, erasure.owned_count.get(t.subject_id, 0))
                for t in erasure.tombstones]

    def erasure_of(self, subject_id: UUID) -> DestroyedKey | None:
        tombstone = self.store.tombstone(subject_id)
        return _destroyed(tombstone) if tombstone else None

    def known_erased(self, subject: bytes) -> bool:
        """Erased as far as this process knows (as of its last sync): no store lookup."""
        return subject in self._erased

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
        # Recorded now, so that a different file put in place before the next start is refused.
        self.store.check_key_file(f"kek:{new_version}", self.keyring.check_value(new_version))
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
        self.forget_cached_keys()
        self.store.db.close()

    # -- making keys ------------------------------------------------------------------------
    def _reserve(self, count: int) -> list[UUID]:
        made = self._create([uuid4() for _ in range(count)], fresh=True)
        return [stored.subject_id for stored in made]

    def _create(self, subject_ids: list[UUID], *, fresh: bool, owner: UUID | None = None
                ) -> list[WrappedKey]:
        """Make and store keys for `subject_ids`, and keep them in memory. `fresh` ids are new
        random ids nobody else knows, stored in one transaction without per-subject checks;
        otherwise one id, recorded as `owner`'s if given."""
        data_keys = {subject_id: (uuid4(), new_key()) for subject_id in subject_ids}
        for _ in range(2):
            wrapped = []
            for subject_id, (key_id, data_key) in data_keys.items():
                version, sealed = self.keyring.wrap(data_key, subject_id, key_id)
                wrapped.append(WrappedKey(subject_id, key_id, version, sealed))
            try:
                stored = (self.store.create_fresh(wrapped) if fresh
                          else [self.store.create(wrapped[0], owner)])
                break
            except StaleKeyring:
                self.keyring.reload()
        else:
            raise StaleKeyring("the KEK keyring file is older than the key store")
        for key in stored:
            made = data_keys[key.subject_id]
            if key.key_id == made[0]:  # ours, not one another process made first
                self._keys_put(key.subject_id.bytes, made[1])
        return stored

    # -- memory -----------------------------------------------------------------------------
    def _cipher(self, subject: bytes) -> Aead | None:
        """The cached AEAD for `subject`, built from a cached key if need be; None if neither."""
        self.sync_erasures_if_due()
        if subject in self._erased:  # first: a key loaded while it was being erased is void
            raise KeyErased(UUID(bytes=subject))
        aead = self._ciphers.get(subject)
        if aead is not None:
            return aead
        data_key = self._keys.get(subject)
        if data_key is None:
            return None
        aead = Aead(data_key)
        _put(self._ciphers, subject, aead, self._cipher_cache)
        return aead

    def _remember(self, stored: WrappedKey) -> Aead:
        subject = stored.subject_id.bytes
        self._keys_put(subject, self._unwrap(stored))
        aead = self._cipher(subject)
        assert aead is not None
        return aead

    def _keys_put(self, subject: bytes, data_key: bytes) -> None:
        if subject in self._erased:  # read from the store just before its erasure committed
            raise KeyErased(UUID(bytes=subject))
        _put(self._keys, subject, data_key, self._key_cache)

    def _unwrap(self, stored: WrappedKey) -> bytes:
        return unwrap_data_key(self.keyring, stored)

    def _forget(self, subject_id: UUID) -> None:
        self._ciphers.pop(subject_id.bytes, None)
        self._keys.pop(subject_id.bytes, None)
        self._erased.add(subject_id.bytes)
        for listener in self._listeners:
            listener(subject_id)

    def _latest_seq(self) -> int:
        tombstones = self.store.tombstones_after(0)
        for t in tombstones:
            self._erased.add(t.subject_id.bytes)
        return tombstones[-1].seq if tombstones else 0


def _put(cache: dict[bytes, Any], key: bytes, value: Any, limit: int) -> None:
    """Insert, dropping the oldest entry when full (first in, first out: cheap, and fair)."""
    if len(cache) >= limit and key not in cache:
        cache.pop(next(iter(cache)))
    cache[key] = value


def _destroyed(t: Tombstone, owned_keys: int = 0) -> DestroyedKey:
    return DestroyedKey(t.subject_id, t.key_id, t.kek_version, t.erased_at, owned_keys)


def unwrap_data_key(keyring: Keyring, stored: WrappedKey) -> bytes:
    """The data key the store keeps wrapped as `stored`; `KeyErased` if it is void."""
    try:
        return keyring.unwrap(stored.wrapped, stored.subject_id, stored.key_id,
                              stored.kek_version)
    except KekRetired:
        # Rotation re-wraps every live key; one left under a destroyed KEK was erased before
        # the rotation and has come back from an old copy of the key store.
        raise KeyErased(stored.subject_id) from None
    except SealBroken:
        raise SealBroken(f"data key of subject {stored.subject_id} failed to unwrap") from None


def opener_of_wrapped(keyring: Keyring, stored: WrappedKey) -> Aead | None:
    """The AEAD of a key as `SubjectKeys.fetch_wrapped` gave it, with the keyring alone: a
    rebuild's worker process holds the keyring and no key store. `None` if the key is void
    (left under a retired KEK: erased before a rotation)."""
    try:
        return Aead(unwrap_data_key(keyring, stored))
    except KeyErased:
        return None
