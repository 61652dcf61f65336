"""Keys with an owner (DEL-4: a project's key, owned by its owner), and erasing several subjects
at once (the purge job): both backends.

Erasing an owner destroys every key they own in the same transaction, each with a tombstone of
its own (so every process forgets it, and no key is ever made again for it); erasing an owned
key alone leaves the owner and their other keys. A key store from before owners is upgraded in
place when opened.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest

from crypto import Aead, KeyErased, SubjectKeys
from crypto.aead import new_key
from crypto.kek import Keyring
from crypto.keystore import KeyStore, WrappedKey
from crypto.sql import Cursor
from ledger.application import Ledger
from ledger.persistence import open_database, open_subject_keys
from ledger.settings import Settings
from tests.test_leak_scan import haystack


@pytest.fixture
def keys(settings: Settings) -> Iterator[SubjectKeys]:
    opened = open_subject_keys(settings)
    yield opened
    opened.close()


def _sealed(keys: SubjectKeys, subject: UUID, owner: UUID | None = None) -> bytes:
    return keys.sealer(subject, owner=owner).seal(subject.bytes, b"aad")


def _opens(keys: SubjectKeys, subject: UUID, sealed: bytes) -> bool:
    try:
        return keys.opener(subject).open(sealed, b"aad") == subject.bytes
    except KeyErased:
        return False


def test_erasing_an_owner_destroys_every_key_they_own_and_no_one_elses(
        keys: SubjectKeys, settings: Settings) -> None:
    ana, ben = uuid4(), uuid4()
    anas = [uuid4(), uuid4()]
    bens = uuid4()
    sealed = {s: _sealed(keys, s) for s in (ana, ben)}
    sealed |= {p: _sealed(keys, p, owner=ana) for p in anas}
    sealed[bens] = _sealed(keys, bens, owner=ben)
    assert [keys.owner_of(s) for s in (ana, *anas, bens)] == [None, ana, ana, ben]
    other_process = open_subject_keys(settings)
    assert all(_opens(other_process, s, b) for s, b in sealed.items())  # cached there now

    destroyed = keys.erase(ana)

    assert destroyed.subject_id == ana
    tombstones = {t.subject_id: t for t in keys.store.tombstones_after(0)}
    assert set(tombstones) == {ana, *anas}  # a tombstone of its own for each owned key
    assert all(tombstones[p].key_id is not None for p in anas)
    for place in (keys, open_subject_keys(settings)):
        assert [_opens(place, s, sealed[s]) for s in (ana, *anas, ben, bens)] == [
            False, False, False, True, True]
        for subject in (ana, *anas):  # and never a key again, for any of them
            with pytest.raises(KeyErased):
                place.sealer(subject, owner=ana)
    assert sorted(other_process.sync_erasures()) == sorted([ana, *anas])
    assert not any(_opens(other_process, s, sealed[s]) for s in (ana, *anas))
    with pytest.raises(KeyErased):  # a new key for an erased owner is never made
        keys.sealer(uuid4(), owner=ana)
    other_process.close()


def test_erasing_one_owned_key_leaves_its_owner_and_their_other_keys(
        keys: SubjectKeys) -> None:
    owner, gone, kept = uuid4(), uuid4(), uuid4()
    sealed = {owner: _sealed(keys, owner), gone: _sealed(keys, gone, owner=owner),
              kept: _sealed(keys, kept, owner=owner)}

    assert keys.erase(gone).subject_id == gone

    assert [_opens(keys, s, sealed[s]) for s in (owner, gone, kept)] == [True, False, True]
    assert keys.owner_of(kept) == owner
    # Erasing the owner later still takes the rest, and the erased one stays as it was.
    first = keys.erasure_of(gone)
    keys.erase(owner)
    assert not _opens(keys, kept, sealed[kept])
    assert keys.erasure_of(gone) == first


def test_an_owners_erasure_is_one_transaction_with_their_keys(
        keys: SubjectKeys, monkeypatch: pytest.MonkeyPatch) -> None:
    """If destroying an owned key fails, nothing of the erasure happened: the owner's key is
    still there, and no tombstone was written."""
    owner, owned = uuid4(), uuid4()
    sealed = {owner: _sealed(keys, owner), owned: _sealed(keys, owned, owner=owner)}
    real = KeyStore._erase_set

    def failing(store: KeyStore, cur: Cursor, subject_ids: list[UUID],
                owners: dict[UUID, UUID] | None = None) -> Any:
        if owned in subject_ids:
            raise RuntimeError("crash while destroying an owned key")
        return real(store, cur, subject_ids, owners)

    monkeypatch.setattr(KeyStore, "_erase_set", failing)
    with pytest.raises(RuntimeError):
        keys.store.erase(owner)
    assert keys.store.load(owner) is not None and keys.store.load(owned) is not None
    assert keys.store.tombstones_after(0) == []
    monkeypatch.undo()
    keys.erase(owner)
    assert not any(_opens(keys, s, b) for s, b in sealed.items())


def test_the_store_refuses_an_owned_key_for_an_erased_owner(keys: SubjectKeys) -> None:
    owner = uuid4()
    keys.erase(owner)
    subject, key_id = uuid4(), uuid4()
    version, wrapped = keys.keyring.wrap(new_key(), subject, key_id)
    with pytest.raises(KeyErased):
        keys.store.create(WrappedKey(subject, key_id, version, wrapped), owner)
    assert keys.store.load(subject) is None


def test_erase_many_is_one_transaction_one_scrub_in_order_and_idempotent(
        keys: SubjectKeys, monkeypatch: pytest.MonkeyPatch) -> None:
    subjects = [uuid4() for _ in range(4)]
    owned = uuid4()
    sealed = {s: _sealed(keys, s) for s in subjects}
    sealed[owned] = _sealed(keys, owned, owner=subjects[2])
    never_keyed = uuid4()
    scrubs: list[str] = []
    real_scrub = KeyStore._scrub
    monkeypatch.setattr(KeyStore, "_scrub",
                        lambda store, table: scrubs.append(table) or real_scrub(store, table))

    asked = [subjects[3], never_keyed, subjects[0], subjects[2]]
    destroyed = keys.erase_many(asked)

    assert [d.subject_id for d in destroyed] == asked
    assert destroyed[1].key_id is None  # erasure may come before any key
    assert scrubs == ["data_keys"]
    assert [_opens(keys, s, sealed[s]) for s in (*subjects, owned)] == [
        False, True, False, False, False]
    again = keys.erase_many(asked)  # idempotent: the same tombstones
    assert again == destroyed
    seqs = [t.seq for t in keys.store.tombstones_after(0)]
    assert len(seqs) == 5  # four asked for, one owned
    assert keys.erase_many([]) == []


def test_erase_many_forgets_cached_keys_in_every_process(keys: SubjectKeys,
                                                         settings: Settings) -> None:
    subjects = [uuid4(), uuid4()]
    owned = uuid4()
    sealed = {s: _sealed(keys, s) for s in subjects}
    sealed[owned] = _sealed(keys, owned, owner=subjects[1])
    other_process = open_subject_keys(settings)
    assert all(_opens(other_process, s, b) for s, b in sealed.items())
    keys.erase_many(subjects)
    assert not any(_opens(keys, s, b) for s, b in sealed.items())  # at once, here
    other_process.sync_erasures()
    assert not any(_opens(other_process, s, b) for s, b in sealed.items())
    other_process.close()


_OLD_DDL = [  # the key store's tables before keys had owners
    "CREATE TABLE data_keys (subject_id TEXT PRIMARY KEY, key_id TEXT NOT NULL,"
    " kek_version INTEGER NOT NULL, wrapped {blob} NOT NULL, created_at TEXT NOT NULL)",
    "CREATE INDEX data_keys_by_kek ON data_keys (kek_version)",
    "CREATE TABLE erased_subjects (seq {serial}, subject_id TEXT NOT NULL UNIQUE,"
    " key_id TEXT, kek_version INTEGER, erased_at TEXT NOT NULL)",
    "CREATE TABLE kek_versions (version INTEGER PRIMARY KEY)",
]


def _old_key_store(settings: Settings) -> tuple[UUID, bytes]:
    """A key store as the code before owners made it, holding one key it wrote; returns the
    subject and the data key."""
    db = open_database(settings.keystore_url, settings.keystore_schema)
    blob, serial = (("BYTEA", "BIGSERIAL PRIMARY KEY") if db.backend == "postgres"
                    else ("BLOB", "INTEGER PRIMARY KEY AUTOINCREMENT"))
    subject, key_id, data_key = uuid4(), uuid4(), new_key()
    # The old code's first start made the KEK file (open_keyring alone only reads one).
    version, wrapped = Keyring.from_file(settings.kek_file).wrap(data_key, subject, key_id)
    with db.transaction() as cur:
        for statement in _OLD_DDL:
            cur.execute(statement.format(blob=blob, serial=serial))
        cur.execute("INSERT INTO kek_versions (version) VALUES (?)", (version,))
        cur.execute("INSERT INTO data_keys (subject_id, key_id, kek_version, wrapped,"
                    " created_at) VALUES (?, ?, ?, ?, ?)",
                    (str(subject), str(key_id), version, wrapped, "2026-01-01T00:00:00+00:00"))
    db.close()
    return subject, data_key


def test_a_key_store_from_before_owners_is_upgraded_in_place(settings: Settings) -> None:
    old_subject, data_key = _old_key_store(settings)
    sealed = Aead(data_key).seal(b"old", b"aad")

    keys = open_subject_keys(settings)  # opening upgrades
    assert keys.opener(old_subject).open(sealed, b"aad") == b"old"
    assert keys.owner_of(old_subject) is None
    owned = uuid4()
    owned_sealed = _sealed(keys, owned, owner=old_subject)
    keys.close()

    reopened = open_subject_keys(settings)  # opening again changes nothing
    assert reopened.opener(old_subject).open(sealed, b"aad") == b"old"
    assert reopened.owner_of(owned) == old_subject
    reopened.erase(old_subject)  # and the owner's erasure takes the owned key
    assert not _opens(reopened, owned, owned_sealed)
    with pytest.raises(KeyErased):
        reopened.opener(old_subject)
    reopened.close()


def test_the_scrub_covers_owned_keys(ledger: Ledger, settings: Settings) -> None:
    """No byte of an owned key's wrapped or raw form is left in the key store's files (SQLite)
    or table rows (PostgreSQL, vacuumed) after its owner's erasure."""
    keys = ledger.keys
    owner, owned = uuid4(), uuid4()
    keys.sealer(owner)
    keys.sealer(owned, owner=owner)
    stored = keys.store.load(owned)
    assert stored is not None
    raw = keys.keyring.unwrap(stored.wrapped, owned, stored.key_id, stored.kek_version)
    keys.erase(owner)
    found = haystack(settings).find({"wrapped": stored.wrapped, "raw": raw})
    assert found == []
