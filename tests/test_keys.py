"""The key layer (CRY-1 to CRY-4): sealing with associated data, erasure for good, an unreachable
key store never taken for erasure, KEK rotation and restored copies, and no key bytes at rest in
plaintext, in files readable by others, in reprs or in errors."""

from __future__ import annotations

import base64
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from api.services import Services
from crypto import Aead, KeyErased, KeyStoreUnavailable, SealBroken, SubjectKeys
from crypto.aead import new_key
from crypto.kek import KekRetired, Keyring
from crypto.keystore import WrappedKey
from crypto.sql import Database, PostgresDatabase, SQLiteDatabase
from ledger.application import ErasedPerson, Ledger
from ledger.people import Person
from ledger.persistence import open_subject_keys
from ledger.settings import Settings
from tests.conftest import make_settings

UNREACHABLE_POSTGRES = "postgresql://root@127.0.0.1:1/test"


@pytest.fixture
def keys(settings: Settings) -> Iterator[SubjectKeys]:
    opened = open_subject_keys(settings)
    yield opened
    opened.close()


def unreachable_database(settings: Settings, tmp: Path) -> Database:
    """A key store database that cannot be reached: a SQLite path whose directory is a file
    (tests run as root, so permissions would not stop them), or PostgreSQL on port 1."""
    if settings.backend == "postgres":
        return PostgresDatabase(UNREACHABLE_POSTGRES, settings.keystore_schema, timeout=1.0)
    blocker = tmp / "not-a-directory"
    blocker.touch()
    return SQLiteDatabase(str(blocker / "keys.sqlite3"))


@contextmanager
def outage(keys: SubjectKeys, settings: Settings, tmp: Path) -> Iterator[None]:
    """The key store goes away under a running `SubjectKeys`, then comes back."""
    reachable = keys.store.db
    keys.store.db = unreachable_database(settings, tmp)
    try:
        yield
    finally:
        keys.store.db.close()
        keys.store.db = reachable


def _wrapped_row(keys: SubjectKeys, subject: UUID) -> WrappedKey:
    stored = keys.store.load(subject)
    assert stored is not None
    return stored


def _data_key(keys: SubjectKeys, subject: UUID) -> bytes:
    stored = _wrapped_row(keys, subject)
    return keys.keyring.unwrap(stored.wrapped, subject, stored.key_id, stored.kek_version)


# -- AEAD -------------------------------------------------------------------------------------


def test_seal_and_open_with_associated_data() -> None:
    aead = Aead(new_key())
    sealed = aead.seal(b"Ana", b"stream|1|topic")
    assert b"Ana" not in sealed
    assert aead.open(sealed, b"stream|1|topic") == b"Ana"
    assert aead.seal(b"Ana", b"stream|1|topic") != sealed  # a fresh nonce every time


@pytest.mark.parametrize("change", ["aad", "other key", "flip", "cut", "short"])
def test_any_change_fails_to_open(change: str) -> None:
    aead = Aead(new_key())
    sealed = aead.seal(b"Ana", b"stream|1|topic")
    aad = b"stream|1|topic"
    opener = aead
    if change == "aad":
        aad = b"stream|2|topic"
    elif change == "other key":
        opener = Aead(new_key())
    elif change == "flip":
        sealed = sealed[:-1] + bytes([sealed[-1] ^ 1])
    elif change == "cut":
        sealed = sealed[:-1]
    else:
        sealed = sealed[:27]
    with pytest.raises(SealBroken):
        opener.open(sealed, aad)


def test_a_key_is_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Aead(b"\x00" * 16)


# -- erasure ----------------------------------------------------------------------------------


def test_an_erased_key_never_opens_again_here_or_elsewhere(
    keys: SubjectKeys, settings: Settings
) -> None:
    subject = uuid4()
    sealed = keys.sealer(subject).seal(b"Ana", b"aad")
    assert keys.opener(subject).open(sealed, b"aad") == b"Ana"
    other_process = open_subject_keys(settings)
    assert other_process.opener(subject).open(sealed, b"aad") == b"Ana"

    destroyed = keys.erase(subject)
    assert destroyed.subject_id == subject and destroyed.key_id is not None
    for erased_in in (keys, open_subject_keys(settings)):
        with pytest.raises(KeyErased):
            erased_in.opener(subject)
        with pytest.raises(KeyErased):
            erased_in.sealer(subject)
        assert erased_in.is_erased(subject)
    other_process.sync_erasures()
    with pytest.raises(KeyErased):
        other_process.opener(subject)
    assert keys.store.load(subject) is None
    assert keys.erase(subject) == destroyed  # idempotent: the same tombstone
    other_process.close()


def test_no_key_is_ever_created_for_an_erased_subject(keys: SubjectKeys) -> None:
    never_keyed, keyed = uuid4(), uuid4()
    keys.sealer(keyed)
    assert keys.erase(never_keyed).key_id is None  # erasure may come before any key
    keys.erase(keyed)
    live_before = keys.store.count_live()
    for subject in (never_keyed, keyed):
        with pytest.raises(KeyErased):
            keys.sealer(subject)
        # And the store itself refuses, whatever a caller's cache believes.
        key_id = uuid4()
        version, wrapped = keys.keyring.wrap(new_key(), subject, key_id)
        with pytest.raises(KeyErased):
            keys.store.create(WrappedKey(subject, key_id, version, wrapped))
        assert keys.store.load(subject) is None
    assert keys.store.count_live() == live_before


# -- an unreachable key store (CRY-4) ---------------------------------------------------------


def test_an_unreachable_key_store_is_reported_as_such_at_open(tmp_path: Path,
                                                              backend: str) -> None:
    if backend == "postgres":
        settings = make_settings("postgres", str(tmp_path))
        settings = Settings.build(database_url=settings.database_url, schema=settings.schema,
                                  keystore_url=UNREACHABLE_POSTGRES, var_dir=str(tmp_path))
    else:
        (tmp_path / "not-a-directory").touch()
        settings = Settings.build(
            var_dir=str(tmp_path),
            keystore_url=f"sqlite:///{tmp_path}/not-a-directory/keys/keys.sqlite3",
        )
    with pytest.raises(KeyStoreUnavailable):
        open_subject_keys(settings)


def test_an_outage_is_never_erasure_and_creates_nothing(
    keys: SubjectKeys, settings: Settings, tmp_path: Path
) -> None:
    live, erased, new = uuid4(), uuid4(), uuid4()
    keys.sealer(live)
    keys.sealer(erased)
    keys.erase(erased)
    fresh = open_subject_keys(settings)  # nothing cached
    with outage(fresh, settings, tmp_path):
        for call in (fresh.opener, fresh.sealer, fresh.is_erased, fresh.erasure_of, fresh.erase):
            with pytest.raises(KeyStoreUnavailable):
                call(live)
        with pytest.raises(KeyStoreUnavailable):
            fresh.sealer(new)
        with pytest.raises(KeyStoreUnavailable):
            fresh.erasure_of(erased)
    assert fresh.store.load(new) is None and not fresh.is_erased(new)
    assert not fresh.is_erased(live)
    assert fresh.opener(live) is not None
    fresh.close()


def test_an_outage_stops_cached_keys_once_erasures_cannot_be_learnt(
    keys: SubjectKeys, settings: Settings, tmp_path: Path
) -> None:
    """The bound on how long a process may use a key erased elsewhere holds through an outage
    of that process's key store: once a sync is due and fails, no cached key is served until a
    sync succeeds."""
    subject = uuid4()
    keys.sealer(subject)
    eraser = open_subject_keys(settings)
    with outage(keys, settings, tmp_path):
        eraser.erase(subject)
        time.sleep(settings.key_sync_seconds + 0.05)
        for _ in range(3):
            with pytest.raises(KeyStoreUnavailable):
                keys.opener(subject)
    with pytest.raises(KeyErased):
        keys.opener(subject)
    eraser.close()


def test_ledger_reads_fail_retryably_while_the_key_store_is_unreachable(
    settings: Settings, tmp_path: Path
) -> None:
    writer = Ledger(settings)
    ana = writer.register_student("Ana", "12")
    ben = writer.register_student("Ben", "12")
    writer.erase_subject(ben, "user_request")
    writer.close()

    ledger = Ledger(settings)  # a process with nothing cached
    position = ledger.recorder.max_notification_id()
    live_keys = ledger.keys.store.count_live()
    with outage(ledger.keys, settings, tmp_path):
        for read in (ana, ben):
            with pytest.raises(KeyStoreUnavailable):
                ledger.person(read)
        with pytest.raises(KeyStoreUnavailable):
            ledger.register_student("Cy", "12")
        with pytest.raises(KeyStoreUnavailable):
            ledger.erase_subject(ana, "user_request")
        with pytest.raises(KeyStoreUnavailable):
            ledger.keys.is_erased(ana)
        time.sleep(settings.key_sync_seconds + 0.05)
        with pytest.raises(KeyStoreUnavailable):
            ledger.person(ana)
    assert ledger.recorder.max_notification_id() == position  # nothing written
    assert ledger.keys.store.count_live() == live_keys  # no key made, none destroyed
    person = ledger.person(ana)
    assert isinstance(person, Person) and person.display_name == "Ana"
    assert isinstance(ledger.person(ben), ErasedPerson)
    ledger.close()


def test_the_projection_waits_out_an_outage_and_deletes_nothing(
    services: Services, settings: Settings, tmp_path: Path
) -> None:
    ana = services.ledger.register_student("Ana", "12")
    services.catch_up()
    position = services.directory.position()
    services.ledger.register_student("Ben", "12")
    with outage(services.ledger.keys, settings, tmp_path):
        time.sleep(settings.key_sync_seconds + 0.05)
        with pytest.raises(KeyStoreUnavailable):
            services.directory.run_once()
        with pytest.raises(KeyStoreUnavailable):
            services.directory_reader.entry(ana)
        assert services.directory.position() == position
    services.catch_up()
    assert {e.display_name for e in services.directory_reader.entries()} == {"Ana", "Ben"}


# -- KEK rotation -----------------------------------------------------------------------------


def test_rotation_rewraps_every_live_key_and_retires_the_old_kek(
    keys: SubjectKeys, settings: Settings
) -> None:
    live = [uuid4() for _ in range(3)]
    erased = uuid4()
    sealed = {s: keys.sealer(s).seal(s.bytes, b"aad") for s in [*live, erased]}
    keys.erase(erased)
    stale_process = open_subject_keys(settings)  # loaded the keyring before the rotation
    old_wrapped = {s: _wrapped_row(keys, s).wrapped for s in live}

    rotation = keys.rotate_kek()

    assert rotation.retired_versions == [1] and rotation.new_version == 2
    assert rotation.rewrapped == len(live)
    assert Keyring.from_file(settings.kek_file).live_versions == [2]
    for opened_by in (keys, open_subject_keys(settings), stale_process):
        for subject in live:
            assert opened_by.opener(subject).open(sealed[subject], b"aad") == subject.bytes
            row = _wrapped_row(opened_by, subject)
            assert row.kek_version == 2 and row.wrapped != old_wrapped[subject]
        with pytest.raises(KeyErased):
            opened_by.opener(erased)
    # A process still holding the old keyring wraps a new key under the new KEK only.
    newcomer = uuid4()
    stale_process.sealer(newcomer)
    assert _wrapped_row(keys, newcomer).kek_version == 2
    stale_process.close()


def test_a_key_store_copy_from_before_an_erasure_cannot_bring_the_key_back(
    tmp_path: Path,
) -> None:
    """CRY-3: copy keys.sqlite3 (and its -wal) before erasing, erase, rotate, put the old copy
    back: the erased subject's key is in the copy, wrapped under a KEK that no longer exists.

    The live subjects' keys in that copy are wrapped under the same destroyed KEK, so they are
    lost with it: a key-store backup is good only until the next rotation, and a restore must
    come from one taken after it (the current keys, re-wrapped, are in no older copy)."""
    settings = Settings.build(var_dir=str(tmp_path), key_sync_seconds=0.2)
    keys = open_subject_keys(settings)
    live, victim = uuid4(), uuid4()
    keys.sealer(live)
    keys.sealer(victim)
    store = Path(settings.keystore_url.removeprefix("sqlite:///"))
    backup = tmp_path / "backup"
    backup.mkdir()
    copied = [p for p in (store, Path(f"{store}-wal")) if p.exists()]
    for path in copied:
        shutil.copy2(path, backup / path.name)

    keys.erase(victim)
    keys.rotate_kek()
    assert keys.opener(live) is not None
    keys.close()

    for suffix in ("", "-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    for path in copied:
        shutil.copy2(backup / path.name, path)

    restored = open_subject_keys(settings)
    assert restored.store.load(victim) is not None  # the row is back ...
    with pytest.raises(KeyErased):
        restored.opener(victim)  # ... and opens nothing
    with pytest.raises(KeyErased):
        restored.sealer(victim)
    with pytest.raises(KeyErased):
        restored.opener(live)  # lost with the retired KEK, as the docstring says
    restored.close()


@pytest.mark.xfail(strict=True, reason=(
    "CRY-3 holds only once the KEK has been rotated after the erasure: until then a restored "
    "older key-store copy still holds the erased key wrapped under the live KEK. Erasure "
    "does not rotate by itself."))
def test_a_copy_restored_before_any_rotation_cannot_bring_the_key_back(tmp_path: Path) -> None:
    settings = Settings.build(var_dir=str(tmp_path), key_sync_seconds=0.2)
    keys = open_subject_keys(settings)
    victim = uuid4()
    keys.sealer(victim)
    store = Path(settings.keystore_url.removeprefix("sqlite:///"))
    copied = {p: p.read_bytes() for p in (store, Path(f"{store}-wal")) if p.exists()}
    keys.erase(victim)
    keys.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    for path, content in copied.items():
        path.write_bytes(content)
    restored = open_subject_keys(settings)
    try:
        with pytest.raises(KeyErased):
            restored.opener(victim)
    finally:
        restored.close()


# -- at rest, in reprs and in errors ----------------------------------------------------------


def test_sqlite_key_store_overwrites_what_it_deletes(tmp_path: Path) -> None:
    settings = Settings.build(var_dir=str(tmp_path))
    keys = open_subject_keys(settings)
    with keys.store.db.transaction(write=False) as cur:
        cur.execute("PRAGMA secure_delete")
        assert cur.fetchone()[0] == 1
    subject = uuid4()
    keys.sealer(subject)
    wrapped = _wrapped_row(keys, subject).wrapped
    data_key = _data_key(keys, subject)
    keys.erase(subject)
    for path in tmp_path.iterdir():
        raw = path.read_bytes()
        assert wrapped not in raw and data_key not in raw, path.name
    keys.close()


def test_key_files_and_their_neighbours_are_private(tmp_path: Path) -> None:
    """kek.json, the key store and every other SQLite file of the ledger (with its -wal and
    -shm) are 0600, also after a KEK rotation."""
    services = Services.open(Settings.build(var_dir=str(tmp_path)))
    services.ledger.register_student("Ana", "12")
    services.catch_up()
    services.ledger.keys.rotate_kek()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert {"kek.json", "keys.sqlite3", "ledger.sqlite3", "read_models.sqlite3"} <= set(files)
    modes = {name: oct((tmp_path / name).stat().st_mode & 0o777) for name in files}
    assert modes == dict.fromkeys(files, "0o600")
    services.close()


def test_no_key_bytes_in_reprs_or_errors(keys: SubjectKeys) -> None:
    subject = uuid4()
    aead = keys.sealer(subject)
    row = _wrapped_row(keys, subject)
    secrets = [_data_key(keys, subject), row.wrapped]
    secrets += [k for k in keys.keyring._versions.values() if k is not None]
    texts = [repr(keys.keyring), repr(aead), repr(keys), repr(row), str(row)]
    errors: list[BaseException] = [KeyErased(subject)]
    try:
        keys.keyring.unwrap(row.wrapped, uuid4(), row.key_id, row.kek_version)
    except SealBroken as error:
        errors.append(error)
    try:
        keys.keyring.unwrap(row.wrapped, subject, row.key_id, 99)
    except KekRetired as error:
        errors.append(error)
    short = base64.b64encode(b"\x07" * 16).decode()
    for malformed in (f"1:{short}", short):  # too short; no version (int() quotes its input)
        try:
            Keyring.from_environment(malformed)
        except ValueError as error:
            errors.append(error)
    assert len(errors) == 5
    texts += [f"{e!r} {e}" for e in errors]
    texts.append(repr(Settings.build(kek_inline=f"1:{short}")))
    for secret in [*secrets, b"\x07" * 16]:
        forms = [repr(secret), secret.hex(), base64.b64encode(secret).decode()]
        for text in texts:
            assert not any(form in text for form in forms), text



def test_a_key_read_just_before_its_erasure_is_never_cached_again(keys: SubjectKeys) -> None:
    """A reader that loaded the wrapped key before the erasure committed, and caches it after,
    must not bring it back into this process's memory."""
    subject = keys.new_subject()
    stale = _wrapped_row(keys, subject)  # what a concurrent reader fetched
    keys.forget_cached_keys()
    keys.erase(subject)
    with pytest.raises(KeyErased):
        keys._remember(stale)  # the reader now tries to cache what it read
    assert not keys.is_cached(subject)
    with pytest.raises(KeyErased):
        keys.opener(subject)
