"""The purge job at the service level, on both backends (issue 5: DEL-3, DEL-6, DEL-7, DEL-9,
DEL-10, CRY-3, CRY-4).

What an operator or auditor checks after a run: who was purged, held, recovered or failed; the
review queue; the key store (no key made, none destroyed but the purged ones); one signed
receipt per purged subject; no row of them beside the log; one de-identified residue each; and
that a run stopped at any point (an outage, a crash between two steps, a cap, a limit) is
finished by the next one without doing anything twice. Time comes from a clock the test moves.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.utils import get_topic

from api.services import Services
from api.tokens import TokenStore
from crypto import Aead, KeyErased, KeyStoreUnavailable, SealBroken
from crypto.kek import KekRetired, _wrap_aad
from crypto.keystore import WrappedKey
from crypto.sql import Database
from ledger.application import ErasedPerson, Ledger
from ledger.erasure import ErasureRecord
from ledger.people import Person
from ledger.progress import Attempt
from ledger.purge import PurgeCapExceeded, PurgeReport
from ledger.receipts import SignedReceipt
from ledger.residue import Residue, ResiduePool
from ledger.settings import Settings
from tests.conftest import Clock
from tests.test_keys import outage

PASSWORD = "correct horse battery staple"
HOOKS = ["identity_index", "uploads", "api_tokens", "password_resets",
         "read_model_student_directory",
         "read_model_roster", "read_model_progress", "read_model_projects",
         "read_model_audit_index", "read_model_rights", "read_model_analytics"]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


@pytest.fixture
def clock() -> Clock:
    """The lifecycle's clock. It starts at the real time, since activity (DEL-6) is read
    from the events' own timestamps."""
    return Clock(datetime.now(UTC))


def open_services(settings: Settings, clock: Clock) -> Services:
    return Services.open(settings, clock=clock)


@pytest.fixture
def svc(settings: Settings, clock: Clock, cheap_hashes: None) -> Iterator[Services]:
    services = open_services(settings, clock)
    try:
        yield services
    finally:
        services.close()


# -- making people ----------------------------------------------------------------------------


def student_with_a_life(svc: Services, tag: str = "") -> UUID:
    """A student with a row in every place a purge must clear: identity index (username,
    email), a section (roster), attempts (progress), a project with an upload (projects view,
    uploads), an API session token, a pending password reset, a sign-in with a region
    (lifecycle activity)."""
    tag = tag or uuid4().hex[:8]
    teacher = svc.ledger.register_teacher(f"Teacher {tag}")
    section = svc.sections.create(teacher, "Period 1", "csf", "9", "email")
    email = f"s.{tag}@home.example"
    student = svc.accounts.sign_up_student(f"Student {tag}", "15", email, PASSWORD,
                                           gender="female")
    svc.sections.join(student, svc.sections.section(section).join_code)
    at = datetime.now(UTC)
    svc.attempts.record_many(student, [
        Attempt("csf/unit-1/level-1", "failed", at), Attempt("csf/unit-1/level-1", "solved", at),
        Attempt("csf/unit-1/level-2", "optimal", at), Attempt("csd/unit-2/level-1", "solved", at),
        Attempt("csd/unit-2/level-2", "failed", at)])
    project = svc.projects.create(student, "app", f"Project {tag}")
    svc.projects.upload(student, project, PNG + tag.encode(), "image/png")
    TokenStore(svc.read_models).issue("student", "session", timedelta(hours=1),
                                      subject_id=student)
    svc.sign_in.with_password(email, PASSWORD, region="US-WA")
    svc.password_resets.request(email)
    svc.rights.file(student, "access", "subject", "self")
    svc.catch_up()
    return student


def deleted_students(svc: Services, clock: Clock, count: int) -> list[UUID]:
    """`count` students, each soft-deleted a minute after the one before (the job's order)."""
    made = []
    for n in range(count):
        student = svc.ledger.register_student(f"Student {n} {uuid4().hex[:6]}", "15")
        svc.lifecycle.request_deletion(student, "self")
        clock.advance(1 / 1440)
        made.append(student)
    svc.catch_up()
    return made


def statuses(report: PurgeReport) -> list[tuple[UUID, str]]:
    return [(o.subject_id, o.status) for o in report.outcomes]


# -- what an auditor looks at -----------------------------------------------------------------


def receipts_in_log(ledger: Ledger, subject: UUID) -> list[Any]:
    topic = get_topic(ErasureRecord.SubjectErased)
    found = ledger.recorder.select_notifications(start=None, limit=100_000, topics=[topic])
    events: list[Any] = [ledger.mapper.to_domain_event(n) for n in found]
    return [e for e in events if e.subject_id == subject]


def count_rows(db: Database, sql: str, *params: object) -> int:
    with db.transaction(write=False) as cur:
        cur.execute(sql, params)
        return int(cur.fetchone()[0])


def assert_fully_erased(svc: Services, subject: UUID, reason: str) -> SignedReceipt:
    """One receipt in the log that verifies, no key, and no row of the subject beside the log."""
    ledger = svc.ledger
    assert len(receipts_in_log(ledger, subject)) == 1
    receipt = ledger.receipt_of(subject)
    assert receipt is not None and receipt.verify(ledger.signer.public_key)
    assert receipt.receipt.subject_id == subject and receipt.receipt.reason == reason
    assert ledger.keys.store.load(subject) is None
    destroyed = ledger.keys.erasure_of(subject)
    assert destroyed is not None and destroyed.key_id == receipt.receipt.key_id
    assert isinstance(ledger.person(subject), ErasedPerson)
    svc.catch_up()
    with svc.read_models.transaction() as cur:  # each projection's own "a row of the subject"
        for runner in svc.runners:
            assert runner.forget_subjects(cur, [subject])[subject] == 0, runner.projection.name
    assert svc.directory_reader.entry(subject) is None
    assert svc.roster_reader.sections_of_student(subject) == []
    assert svc.progress_reader.of_student(subject) == {}
    assert svc.projects_reader.of_owner(subject) == []
    assert svc.rights_reader.of_subject(subject) == []
    assert subject not in svc.rights_reader.restricted_subjects()
    db = svc.read_models
    assert count_rows(db, "SELECT count(*) FROM identity_index WHERE subject_id = ?"
                      " OR owner_id = ?", str(subject), str(subject)) == 0
    assert count_rows(db, "SELECT count(*) FROM parent_links WHERE student_id = ?",
                      str(subject)) == 0
    for table in ("api_tokens", "password_resets"):
        assert count_rows(db, f"SELECT count(*) FROM {table} WHERE subject_id = ?",
                          str(subject)) == 0
    assert count_rows(svc.media.db, "SELECT count(*) FROM media_objects WHERE owner_id = ?",
                      str(subject)) == 0
    return receipt


def assert_has_rows(svc: Services, subject: UUID) -> None:
    """The places `assert_fully_erased` checks do hold rows of a living `subject`."""
    db = svc.read_models
    assert count_rows(db, "SELECT count(*) FROM identity_index WHERE subject_id = ?",
                      str(subject)) >= 2  # username and email
    for table in ("api_tokens", "password_resets"):
        assert count_rows(db, f"SELECT count(*) FROM {table} WHERE subject_id = ?",
                          str(subject)) == 1
    assert count_rows(svc.media.db, "SELECT count(*) FROM media_objects WHERE owner_id = ?",
                      str(subject)) == 1
    assert svc.directory_reader.entry(subject) is not None
    assert len(svc.roster_reader.sections_of_student(subject)) == 1
    assert len(svc.progress_reader.of_student(subject)) == 4
    assert len(svc.projects_reader.of_owner(subject)) == 1
    assert len(svc.rights_reader.of_subject(subject)) == 1
    assert svc.lifecycle_reader.inactive(svc.lifecycle.clock() + timedelta(days=1)).count(
        subject) == 1


def tables_of(db: Database) -> list[str]:
    with db.transaction(write=False) as cur:
        if db.backend == "postgres":
            cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema ="
                        " current_schema() AND table_type = 'BASE TABLE'")
        else:
            cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return sorted(str(r[0]) for r in cur.fetchall())


def dump(db: Database, tables: list[str]) -> dict[str, list[str]]:
    out = {}
    with db.transaction(write=False) as cur:
        for table in tables:
            cur.execute(f'SELECT * FROM "{table}"')
            out[table] = sorted(repr(tuple(bytes(v) if isinstance(v, memoryview) else v
                                           for v in row)) for row in cur.fetchall())
    return out


def at_rest(svc: Services) -> dict[str, Any]:
    """Everything a run could change: the log's end, the key store, the review queue, every
    read-model table (with the residue pool) and the uploads."""
    keystore = svc.ledger.keys.store.db
    return {
        "log": svc.ledger.recorder.max_notification_id(),
        "keys": dump(keystore, ["data_keys", "erased_subjects", "kek_versions"]),
        "review": svc.purge_job.review.items(),
        "read_models": dump(svc.read_models, tables_of(svc.read_models)),
        "media": dump(svc.media.db, tables_of(svc.media.db)),
    }


# -- 1. the key store unreachable (CRY-4, DEL-9) ----------------------------------------------


def test_a_run_during_a_key_store_outage_stops_at_once_and_the_next_run_purges_them(
        svc: Services, clock: Clock, tmp_path: Path) -> None:
    """Issue 18, finding 6: the first failure on an unreachable key store ends the run; the
    rest are not tried (each would wait out the same outage), all stay due."""
    first, second = deleted_students(svc, clock, 2)
    clock.advance(29)
    keys = svc.ledger.keys
    live, position = keys.store.count_live(), svc.ledger.recorder.max_notification_id()

    with outage(keys, svc.settings, tmp_path):
        keys.forget_cached_keys()  # a fresh process: every read needs the store
        report = svc.purge_job.run()

    assert report.outcomes == []
    assert report.stopped is not None and report.stopped.store == "key store"
    assert str(report.stopped) == "key store unreachable: KeyStoreUnavailable"
    assert svc.purge_job.review.items() == []  # an outage is no subject's fault
    # An outage is never an erasure, and makes no key.
    assert keys.store.count_live() == live
    assert svc.ledger.recorder.max_notification_id() == position
    for subject in (first, second):
        assert keys.erasure_of(subject) is None and svc.ledger.receipt_of(subject) is None
        person = svc.ledger.person(subject)
        assert isinstance(person, Person) and person.deleted

    again = svc.purge_job.run()
    assert again.stopped is None
    assert statuses(again) == [(first, "purged"), (second, "purged")]
    assert svc.purge_job.review.items() == []
    for subject in (first, second):
        assert_fully_erased(svc, subject, "expired_window")


def key_store_down(svc: Services, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call to the key store raises `KeyStoreUnavailable`; the names of the calls made."""
    calls: list[str] = []
    store = svc.ledger.keys.store
    svc.ledger.keys.forget_cached_keys()

    def down(name: str) -> Callable[..., Any]:
        def call(*_: object, **__: object) -> Any:
            calls.append(name)
            raise KeyStoreUnavailable("key store unreachable")
        return call

    for name in ("load", "load_many", "create", "create_fresh", "tombstone", "tombstones_for",
                 "tombstones_after", "erase", "erase_many", "erase_subjects", "owner_of",
                 "count_live"):
        monkeypatch.setattr(store, name, down(name))
    return calls


def test_the_purge_stops_after_the_first_key_store_failure_and_makes_no_receipt(
        svc: Services, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18, finding 6: before, each of the due subjects was tried in turn (seconds each
    on a real outage); now one failure stops the run and the rest stay due."""
    due = deleted_students(svc, clock, 5)
    clock.advance(29)
    svc.purge_job.batch = 2  # the outage must stop the batches after the first as well
    position = svc.ledger.recorder.max_notification_id()

    with monkeypatch.context() as patch:
        calls = key_store_down(svc, patch)
        report = svc.purge_job.run()

    assert len(calls) == 1
    assert report.stopped is not None and report.stopped.store == "key store"
    assert report.count("purged") == 0
    assert svc.ledger.recorder.max_notification_id() == position  # no receipt, no event
    for subject in due:
        assert svc.ledger.receipt_of(subject) is None
    again = svc.purge_job.run()
    assert again.stopped is None and sorted(s for s, _ in statuses(again)) == sorted(due)


class SubjectFault(Exception):
    """A failure of one subject's rows, not of a store."""


@pytest.mark.parametrize("fails_at", ["read", "key_destruction"])
def test_one_subject_failing_in_the_key_store_never_stops_the_batch(
        svc: Services, clock: Clock, monkeypatch: pytest.MonkeyPatch, fails_at: str) -> None:
    """The first due subject's key store calls fail (reading their key, or destroying it) with
    a fault of theirs, not an outage; the second is purged in the same run; the next run, with
    the fault gone, purges the first."""
    first, second = deleted_students(svc, clock, 2)
    clock.advance(29)
    keys = svc.ledger.keys
    first_key = keys.store.load(first)
    live = keys.store.count_live()
    store = keys.store

    def unavailable_for_first(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(subject_id: UUID, *args: Any) -> Any:
            if subject_id == first:
                raise SubjectFault("one row")
            return real(subject_id, *args)
        return call

    with monkeypatch.context() as patch:
        if fails_at == "read":
            keys.forget_cached_keys()
            patch.setattr(store, "load", unavailable_for_first(store.load))
            patch.setattr(store, "tombstone", unavailable_for_first(store.tombstone))
        else:
            real_erase = store.erase_subjects

            def erase_unless_first(subject_ids: list[UUID]) -> Any:
                if first in subject_ids:
                    raise SubjectFault("one row")
                return real_erase(subject_ids)

            patch.setattr(store, "erase_subjects", erase_unless_first)
        report = svc.purge_job.run()

    assert [(o.subject_id, o.status, o.error) for o in report.outcomes] == [
        (first, "failed", "SubjectFault"), (second, "purged", None)]
    assert [(s, e) for s, _, e, _ in svc.purge_job.review.items()] == [
        (first, "SubjectFault")]
    assert keys.erasure_of(first) is None and svc.ledger.receipt_of(first) is None
    assert keys.store.load(first) == first_key  # the same key: none made, none destroyed
    assert keys.store.count_live() == live - 1  # only the second's key went
    person = svc.ledger.person(first)
    assert isinstance(person, Person) and person.deleted
    assert_fully_erased(svc, second, "expired_window")

    again = svc.purge_job.run()
    assert statuses(again) == [(first, "purged")]
    assert svc.purge_job.review.items() == []
    assert_fully_erased(svc, first, "expired_window")
    assert len(svc.lifecycle.residues.all()) == 2  # type: ignore[union-attr]


# -- 2. a crash between any two steps (DEL-3, DEL-9) ------------------------------------------

STEPS = ["key_destruction", *(f"hook:{h}" for h in HOOKS), "receipt_save", "residue_add"]


def crash_at(step: str, svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `step` fail as if the process died there: it does not happen, everything before
    it did."""

    def crash(*_: object, **__: object) -> Any:
        raise RuntimeError(f"power cut at {step}")

    if step == "key_destruction":
        monkeypatch.setattr(svc.ledger.keys, "erase_many", crash)
    elif step.startswith("hook:"):
        name = step.removeprefix("hook:")
        assert name in svc.ledger._erasure_hooks
        monkeypatch.setitem(svc.ledger._erasure_hooks, name, crash)
    elif step == "receipt_save":
        save = Ledger.save

        def save_but_the_receipt(self: Ledger, *objs: Any, **kwargs: Any) -> Any:
            if any(isinstance(o, ErasureRecord) for o in objs):
                crash()
            return save(self, *objs, **kwargs)

        monkeypatch.setattr(Ledger, "save", save_but_the_receipt)
    else:
        assert step == "residue_add"
        monkeypatch.setattr(ResiduePool, "add_many", crash)


def test_the_erasure_steps_are_the_ones_the_crash_test_covers(svc: Services) -> None:
    assert list(svc.ledger._erasure_hooks) == HOOKS


@pytest.mark.parametrize("step", STEPS)
def test_a_crash_at_any_step_is_finished_by_the_next_run(
        svc: Services, clock: Clock, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    subject = student_with_a_life(svc)
    bystander = student_with_a_life(svc)
    assert_has_rows(svc, subject)
    svc.lifecycle.request_deletion(subject, "self")
    clock.advance(29)
    residues = svc.lifecycle.residues
    assert residues is not None

    with monkeypatch.context() as patch:
        crash_at(step, svc, patch)
        crashed = svc.purge_job.run()
    if step == "residue_add":
        # The erasure was complete when the residue failed: purged, the residue lost.
        assert statuses(crashed) == [(subject, "purged")]
        assert residues.all() == [] and svc.purge_job.review.items() == []
    else:
        assert [(o.subject_id, o.status, o.error) for o in crashed.outcomes] == [
            (subject, "failed", "RuntimeError")]

    finished = svc.purge_job.run()
    assert svc.ledger.keys.is_erased(subject)
    assert_fully_erased(svc, subject, "expired_window")
    # A residue computed before the key went is lost by a crash after it (never doubled).
    assert len(residues.all()) <= 1
    if step == "key_destruction":
        assert len(residues.all()) == 1
    assert statuses(finished) in ([(subject, "purged")], [])
    # The bystander is untouched.
    person = svc.ledger.person(bystander)
    assert isinstance(person, Person) and not person.deleted
    assert svc.directory_reader.entry(bystander) is not None
    assert_has_rows(svc, bystander)
    # The operator's queue no longer shows a failure: the erasure is done.
    assert svc.purge_job.review.items() == []


def test_a_purge_without_a_crash_keeps_exactly_one_residue(svc: Services, clock: Clock) -> None:
    subject = student_with_a_life(svc)
    svc.lifecycle.request_deletion(subject, "self")
    clock.advance(29)
    assert statuses(svc.purge_job.run()) == [(subject, "purged")]
    assert_fully_erased(svc, subject, "expired_window")
    assert len(svc.lifecycle.residues.all()) == 1  # type: ignore[union-attr]
    assert statuses(svc.purge_job.run()) == []  # nothing left to do, nothing done twice
    assert len(receipts_in_log(svc.ledger, subject)) == 1


# -- 3. CRY-3: an older copy of the key store after the KEK rotation --------------------------


def copy_key_store(svc: Services, backup: Path) -> Callable[[UUID], WrappedKey]:
    """Copy the key store as a backup would (the SQLite files with their -wal; on PostgreSQL
    the data_keys rows); returns a way to read a subject's wrapped key from the copy."""
    settings = svc.settings
    if settings.backend == "sqlite":
        store = Path(settings.keystore_url.removeprefix("sqlite:///"))
        backup.mkdir()
        for path in (store, Path(f"{store}-wal")):
            if path.exists():
                shutil.copy2(path, backup / path.name)
        copied = backup / store.name

        def from_file(subject: UUID) -> WrappedKey:
            with sqlite3.connect(copied) as conn:
                row = conn.execute("SELECT key_id, kek_version, wrapped FROM data_keys"
                                   " WHERE subject_id = ?", (str(subject),)).fetchone()
            return WrappedKey(subject, UUID(row[0]), int(row[1]), bytes(row[2]))

        return from_file
    with svc.ledger.keys.store.db.transaction(write=False) as cur:
        cur.execute("SELECT subject_id, key_id, kek_version, wrapped FROM data_keys")
        rows = {UUID(r[0]): WrappedKey(UUID(r[0]), UUID(r[1]), int(r[2]), bytes(r[3]))
                for r in cur.fetchall()}
    return rows.__getitem__


def test_a_key_store_copy_from_before_the_purge_opens_nothing_after_the_rotation(
        svc: Services, clock: Clock, tmp_path: Path) -> None:
    (subject,) = deleted_students(svc, clock, 1)
    keys = svc.ledger.keys
    copy = copy_key_store(svc, tmp_path / "backup")
    copied = copy(subject)
    assert copied == keys.store.load(subject)  # the copy holds the subject's key ...
    assert keys.keyring.unwrap(copied.wrapped, subject, copied.key_id, copied.kek_version)

    clock.advance(29)
    assert statuses(svc.purge_job.run()) == [(subject, "purged")]
    rotation = keys.rotate_kek()
    assert copied.kek_version in rotation.retired_versions

    # ... which nothing can open now: not the keyring in use ...
    with pytest.raises(KekRetired):
        keys.keyring.unwrap(copied.wrapped, subject, copied.key_id, copied.kek_version)
    with pytest.raises(KeyErased):
        keys._unwrap(copied)
    # ... nor any KEK left in the keyring file.
    with open(svc.settings.kek_file, encoding="utf-8") as f:
        kek_file = json.load(f)["kek"]
    assert kek_file[str(copied.kek_version)] is None
    live = [base64.b64decode(k) for k in kek_file.values() if k is not None]
    assert live
    for kek in live:
        for version in (copied.kek_version, *map(int, kek_file)):
            with pytest.raises(SealBroken):
                Aead(kek).open(copied.wrapped, _wrap_aad(subject, copied.key_id, version))


# -- 4. holds, the dry run, the cap, the limit, a lagging view (DEL-7, DEL-9) -----------------


def test_a_held_subject_waits_for_the_hold_to_be_lifted(svc: Services, clock: Clock) -> None:
    held, other = deleted_students(svc, clock, 2)
    hold = svc.holds.place(held, "open inspection request, 34 CFR 99.10(e)", "operator:1")
    clock.advance(29)

    dry = svc.purge_job.run(dry_run=True)
    assert statuses(dry) == [(held, "held"), (other, "would_purge")]
    report = svc.purge_job.run()
    assert statuses(report) == [(held, "held"), (other, "purged")]
    assert svc.ledger.keys.erasure_of(held) is None and svc.ledger.receipt_of(held) is None
    person = svc.ledger.person(held)
    assert isinstance(person, Person) and person.deleted
    assert svc.purge_job.review.items() == []  # a hold is not a failure
    assert statuses(svc.purge_job.run()) == [(held, "held")]  # still held, still waiting

    svc.holds.lift(held, hold, "inspection closed", "operator:1")
    assert statuses(svc.purge_job.run()) == [(held, "purged")]
    assert_fully_erased(svc, held, "expired_window")
    assert_fully_erased(svc, other, "expired_window")


def refused(*_: object) -> Any:
    """A key destruction that fails for the subjects, not an outage (which stops the run)."""
    raise SubjectFault("refused")


def test_the_dry_run_changes_nothing_at_all(svc: Services, clock: Clock,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    lived = student_with_a_life(svc)
    svc.lifecycle.request_deletion(lived, "self")
    held, plain = deleted_students(svc, clock, 2)
    svc.holds.place(held, "litigation", "operator:1")
    clock.advance(43 * 31)  # every window is over, and every account's activity is old
    # A real run whose key destructions all fail: the review queue has work in it.
    with monkeypatch.context() as patch:
        patch.setattr(svc.ledger.keys.store, "erase_subjects", refused)
        failed = svc.purge_job.run()
    assert sorted(statuses(failed)) == sorted([(lived, "failed"), (held, "held"),
                                               (plain, "failed")])
    assert {s for s, *_ in svc.purge_job.review.items()} == {lived, plain}
    inactive = svc.ledger.register_student("Long gone", "15")  # DEL-6: due at the next run
    svc.catch_up()
    before = at_rest(svc)

    dry = svc.purge_job.run(dry_run=True)

    assert dry.dry_run and dry.soft_deleted_for_inactivity == []
    assert sorted(statuses(dry)) == sorted([(lived, "would_purge"), (held, "held"),
                                            (plain, "would_purge")])
    assert at_rest(svc) == before  # log, keys, review queue, read models, uploads
    person = svc.ledger.person(inactive)
    assert isinstance(person, Person) and not person.deleted
    # The real run does what the dry run said.
    real = svc.purge_job.run()
    assert sorted(statuses(real)) == sorted([(lived, "purged"), (held, "held"),
                                             (plain, "purged")])
    assert inactive in real.soft_deleted_for_inactivity
    assert svc.purge_job.review.items() == []


def test_the_cap_refuses_a_big_run_and_the_limit_stops_and_resumes(
        svc: Services, clock: Clock) -> None:
    subjects = deleted_students(svc, clock, 5)
    clock.advance(29)
    svc.purge_job.cap = 2
    before = at_rest(svc)

    with pytest.raises(PurgeCapExceeded) as refused:
        svc.purge_job.run()
    assert (refused.value.due, refused.value.cap) == (5, 2)
    with pytest.raises(PurgeCapExceeded):
        svc.purge_job.run(limit=3)  # a limit above the cap is no way round it
    assert at_rest(svc) == before

    first = svc.purge_job.run(limit=2)  # stop after two ...
    assert statuses(first) == [(s, "purged") for s in subjects[:2]]
    for subject in subjects[2:]:
        assert svc.ledger.keys.erasure_of(subject) is None
    with pytest.raises(PurgeCapExceeded):
        svc.purge_job.run()  # three left: still more than the cap
    rest = svc.purge_job.run(over_cap=True)  # ... resume, confirmed by the operator
    assert statuses(rest) == [(s, "purged") for s in subjects[2:]]
    for subject in subjects:
        assert_fully_erased(svc, subject, "expired_window")
    assert statuses(svc.purge_job.run()) == []


def test_a_recovery_the_view_has_not_seen_yet_is_not_purged(
        svc: Services, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    (subject,) = deleted_students(svc, clock, 1)
    clock.advance(20)
    svc.lifecycle.recover(subject, "support:1")  # the lifecycle view has not seen this yet
    clock.advance(9)
    monkeypatch.setattr(svc.purge_job, "catch_up", lambda: None)  # the view lags
    assert [p.subject_id for p in svc.lifecycle_reader.pending()] == [subject]

    report = svc.purge_job.run()

    assert statuses(report) == [(subject, "recovered")]
    assert svc.ledger.keys.erasure_of(subject) is None and svc.ledger.receipt_of(subject) is None
    person = svc.ledger.person(subject)
    assert isinstance(person, Person) and not person.deleted
    assert svc.purge_job.review.items() == []


# -- 5. DEL-6: inactive accounts ---------------------------------------------------------------


def test_an_inactive_account_is_soft_deleted_recoverable_then_purged(
        svc: Services, clock: Clock) -> None:
    recovered = svc.ledger.register_student("Comes back", "15")
    purged = svc.ledger.register_student("Never back", "15")
    svc.catch_up()
    clock.advance(41 * 31)
    early = svc.purge_job.run()
    assert early.soft_deleted_for_inactivity == [] and early.outcomes == []

    clock.advance(2 * 31)  # last active more than 42 months ago
    run = svc.purge_job.run()
    assert sorted(run.soft_deleted_for_inactivity) == sorted([recovered, purged])
    assert run.outcomes == []  # a window of its own starts now
    for subject in (recovered, purged):
        person = svc.ledger.person(subject)
        assert isinstance(person, Person) and person.deletion is not None
        assert person.deletion.reason == "inactivity"
        assert person.deletion.requested_at == clock.now

    clock.advance(10)
    assert svc.lifecycle.recover(recovered, "support:1") == [recovered]
    comes_back = svc.ledger.person(recovered)
    assert isinstance(comes_back, Person) and not comes_back.deleted

    clock.advance(18.5)  # 28.5 days after the inactivity deletion
    later = svc.purge_job.run()
    assert (purged, "purged") in statuses(later)
    assert recovered not in [s for s, status in statuses(later) if status == "purged"]
    receipt = assert_fully_erased(svc, purged, "inactivity")
    assert receipt.receipt.requester == "purge-job"
    assert svc.ledger.keys.erasure_of(recovered) is None


# -- 6. DEL-10: the residue ------------------------------------------------------------------


def test_a_purge_leaves_one_residue_that_names_no_one(svc: Services, clock: Clock) -> None:
    subject = student_with_a_life(svc)
    svc.lifecycle.request_deletion(subject, "self")
    clock.advance(29)
    assert statuses(svc.purge_job.run()) == [(subject, "purged")]
    receipt = assert_fully_erased(svc, subject, "expired_window")

    residues = svc.lifecycle.residues
    assert residues is not None
    assert residues.all() == [Residue("student", "13_17", "female", "US-WA",
                                      {"csf": 2, "csd": 1})]
    with svc.read_models.transaction(write=False) as cur:
        cur.execute("SELECT * FROM residues")
        columns = [str(d[0]) for d in cur.description or ()]
        rows = cur.fetchall()
    assert len(rows) == 1
    assert not any(word in c for c in columns for word in ("subject", "person", "owner",
                                                          "student_id", "erased", "_at"))
    text = repr(rows).lower()
    erased_at = receipt.receipt.erased_at
    needles = [str(subject), subject.hex, base64.b64encode(subject.bytes).decode().lower(),
               repr(subject.bytes).lower(), str(receipt.receipt.key_id), erased_at.isoformat()]
    assert not [n for n in needles if n.lower() in text]
    assert UUID(str(rows[0][columns.index("id")])) != subject


def test_no_residue_is_kept_when_it_is_turned_off(
        settings: Settings, clock: Clock, cheap_hashes: None) -> None:
    svc = open_services(dataclasses.replace(settings, keep_residue=False), clock)
    try:
        subject = student_with_a_life(svc)
        svc.lifecycle.request_deletion(subject, "self")
        clock.advance(29)
        assert svc.lifecycle.residues is None
        assert statuses(svc.purge_job.run()) == [(subject, "purged")]
        assert_fully_erased(svc, subject, "expired_window")
        assert "residues" not in tables_of(svc.read_models) \
            or ResiduePool(svc.read_models).all() == []
    finally:
        svc.close()
