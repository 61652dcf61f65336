"""The ledger application: commands and reads over sealed streams, and erasure by key destruction.

Read top-down: construction wires the sealed mapper and the append-only store; then the
commands a registrar runs; then reads, which answer `ErasedPerson` for an erased subject;
then `erase_subject`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
)
from eventsourcing.domain import Aggregate, DomainEventProtocol, MutableOrImmutableAggregate
from eventsourcing.persistence import InfrastructureFactory, Mapper, Recording
from eventsourcing.utils import Environment

from crypto import KeyErased, SubjectKeys
from crypto.sql import Cursor, Database, SQLiteDatabase, delete_naming
from ledger import people, usernames
from ledger.erasure import ErasureRecord
from ledger.idempotency import IdempotencyKeys, with_pending_record
from ledger.identity import CLAIMED, TAKEN, USERNAME, IdentityIndex
from ledger.log import LogPage, LogReader, Replay, Topics
from ledger.people import Person, Student, Teacher
from ledger.persistence import (
    bound_library_sessions,
    enforce_append_only,
    eventsourcing_env,
    open_database,
    open_signer,
    open_subject_keys,
)
from ledger.progress import Progress
from ledger.receipts import RECEIPT_REASONS, ErasureReceipt, SignedReceipt
from ledger.sealing import LEDGER_SUBJECT, SealedMapper, sealed_mapper
from ledger.settings import Settings
from ledger.transcoder import OrjsonTranscoder

# A claim is made a moment before its save; one this old with no events never got saved.
ORPHAN_CLAIM_AGE = timedelta(minutes=10)
ERASURE_REASONS = RECEIPT_REASONS


# Rows deleted by an erasure whose receipt is not saved yet: ids and counts only.
ERASURE_COUNTS = "erasure_counts"
_ERASURE_COUNTS_DDL = (f"CREATE TABLE IF NOT EXISTS {ERASURE_COUNTS} (subject_id TEXT NOT NULL,"
                       " store TEXT NOT NULL, deleted INTEGER NOT NULL,"
                       " PRIMARY KEY (subject_id, store))")


def _recorded_counts(cur: Cursor, store: str, subject_ids: Sequence[UUID]) -> dict[UUID, int]:
    """The counts of `store` recorded so far, per subject (0 where none is)."""
    ids = [str(s) for s in dict.fromkeys(subject_ids)]
    before: dict[str, int] = {}
    for part in range(0, len(ids), 500):
        chunk = ids[part:part + 500]
        cur.execute(f"SELECT subject_id, deleted FROM {ERASURE_COUNTS} WHERE store = ?"
                    f" AND subject_id IN ({','.join('?' * len(chunk))})", [store, *chunk])
        before.update({row[0]: int(row[1]) for row in cur.fetchall()})
    return {UUID(s): before.get(s, 0) for s in ids}


def _record_counts(cur: Cursor, store: str, counts: Mapping[UUID, int]) -> None:
    cur.executemany(f"INSERT INTO {ERASURE_COUNTS} (subject_id, store, deleted) VALUES (?, ?, ?)"
                    " ON CONFLICT (subject_id, store) DO UPDATE SET deleted = excluded.deleted",
                    [(str(s), store, n) for s, n in counts.items()])


def _add_counts(cur: Cursor, store: str, subject_ids: Sequence[UUID],
                counts: Mapping[UUID, int]) -> dict[UUID, int]:
    """Add this run's counts of `store` to those recorded; the totals, per subject."""
    before = _recorded_counts(cur, store, subject_ids)
    totals = {s: n + counts.get(s, 0) for s, n in before.items()}
    _record_counts(cur, store, totals)
    return totals


class AlreadyInUse(ValueError):
    """A unique value (an email, a third-party account) that belongs to someone else."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field}: already in use by another account")
        self.field = field


class Claim(Protocol):
    def __call__(self, purpose: str, value: str, subject_id: UUID,
                 required: bool = True, owner_id: UUID | None = None) -> bool: ...


class PersonNotFound(LookupError):
    def __init__(self, person_id: UUID) -> None:
        super().__init__(f"no person {person_id}")
        self.person_id = person_id


@dataclass(frozen=True)
class ErasureRequest:
    """One erasure asked for: whose, why, who asked (a role and an opaque id), since when."""

    subject_id: UUID
    reason: str
    requester: str
    requested_at: datetime | None = None


@dataclass(frozen=True)
class ErasedPerson:
    """What a read of an erased subject gives: the id and the fact of erasure, nothing else."""

    id: UUID
    erased_at: datetime


class Ledger(Application[UUID]):
    name = "Ledger"
    is_snapshotting_enabled = True
    snapshotting_intervals = {  # noqa: RUF012 (the library's shape)
        Student: 50, Teacher: 50, Progress: 50}

    def __init__(self, settings: Settings, keys: SubjectKeys | None = None,
                 env: dict[str, str] | None = None, read_models: Database | None = None
                 ) -> None:
        self.settings = settings
        self.keys = keys or open_subject_keys(settings)
        # Another process can open the same keys (a rebuild's worker) only if they are these.
        self.keys_opened_from_settings = keys is None
        # Before anything makes a key: a first start is known by a key store with none.
        self.signer = open_signer(settings, self.keys.store)
        # Blind indexes rest with the read models: rows that go at erasure, never in the log.
        self.read_models = read_models or open_database(settings.read_models_url,
                                                        settings.schema, settings)
        self.identity = IdentityIndex(self.read_models, self.keys)
        with self.read_models.transaction() as cur:
            cur.execute(_ERASURE_COUNTS_DDL)
        # name -> forget(...) -> rows deleted: what each erasure's receipt reports. Those named
        # in `_in_read_models` take a cursor and run in one read-models transaction.
        self._erasure_hooks: dict[str, Callable[..., Any]] = {
            "identity_index": self.identity.forget}
        self._in_read_models: set[str] = {"identity_index"}
        # The others: name -> count(...) -> rows it would delete (`_forget_elsewhere`).
        self._counters: dict[str, Callable[[Sequence[UUID]], Mapping[UUID, int]]] = {}
        super().__init__(env={**eventsourcing_env(settings), **(env or {})})
        enforce_append_only(self.recorder, settings.backend)
        if settings.backend == "sqlite" and ":memory:" not in self.env["SQLITE_DBNAME"]:
            # The library made the file and its -wal/-shm with the umask's mode.
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(self.env["SQLITE_DBNAME"] + suffix):
                    os.chmod(self.env["SQLITE_DBNAME"] + suffix, 0o600)
        self.keys.on_erasure(self._forget_cached)
        self.keys.sealer(LEDGER_SUBJECT)  # the ledger's own key exists from the start
        assert isinstance(self.mapper, SealedMapper)
        self._log = LogReader(self.recorder, self.mapper, self.keys, settings.backend)
        self.idempotency = IdempotencyKeys(self)

    def save(self, *objs: MutableOrImmutableAggregate[UUID] | DomainEventProtocol[UUID] | None,
             **kwargs: Any) -> list[Recording[UUID]]:
        """The library's save; a command run under an idempotency key (`IdempotencyKeys.once`)
        also writes the key's record here, in the same transaction as its own events."""
        return super().save(*with_pending_record(objs), **kwargs)

    def construct_factory(self, env: Environment) -> InfrastructureFactory[Any]:
        factory = super().construct_factory(env)
        bound_library_sessions(factory, self.settings)  # before its first connection
        return factory

    def construct_mapper(self) -> Mapper[UUID]:
        return sealed_mapper(self.keys, self.construct_transcoder())

    def construct_transcoder(self) -> OrjsonTranscoder:
        return OrjsonTranscoder()

    # -- commands -------------------------------------------------------------------------
    def register_student(self, display_name: str, age: str | None,
                         age_given_on: date | None = None, *,
                         login_type: str = "roster_managed") -> UUID:
        """A student registered by school staff (or a roster); see `Accounts` for sign-up."""
        return self.register(Student, display_name, age, age_given_on,
                             login_type=login_type).id

    def register_teacher(self, display_name: str, age: str = "21+",
                         age_given_on: date | None = None, school_id: UUID | None = None
                         ) -> UUID:
        """A teacher registered by staff; at `school_id` from their first event, if given (a
        registrar's teacher, who would otherwise be in no school and no one's to see)."""
        def at_school(person: Person, claim: Claim) -> list[Aggregate]:
            assert isinstance(person, Teacher)
            person.choose_school(school_id)
            return []

        return self.register(Teacher, display_name, age, age_given_on,
                             then=at_school if school_id is not None else None).id

    def register(self, kind: type[Person], name: str, age: str | None,
                 given_on: date | None = None, *, login_type: str = "personal",
                 gender: str | None = None,
                 then: Callable[[Person, Claim], Sequence[Aggregate]] | None = None) -> Person:
        """Validate, take an id, claim a unique username (MIN-7), let `then` add to the new
        person (and name other aggregates to save with it), and save it all at once."""
        given_on = given_on or datetime.now(UTC).date()
        with self.claiming() as claim:
            person = people.register(kind, name, age, given_on, self.keys.new_subject,
                                     username=lambda pid, valid: self._claim_username(
                                         pid, valid, claim),
                                     login_type=login_type, gender=gender)
            others = then(person, claim) if then else ()
            self.save(person, *others)
        return person

    def _claim_username(self, person_id: UUID, name: str, claim: Claim) -> str:
        for candidate in usernames.candidates(name):
            if claim(USERNAME, candidate, person_id, required=False):
                return candidate
        raise AlreadyInUse("username")  # 60 clashes in a row: the name space is exhausted

    @contextlib.contextmanager
    def claiming(self) -> Iterator[Claim]:
        """Claims of unique values made while saving: all released again if the save fails."""
        made: list[tuple[str, str, UUID]] = []

        def claim(purpose: str, value: str, subject_id: UUID, required: bool = True,
                  owner_id: UUID | None = None) -> bool:
            outcome = self.identity.claim(purpose, value, subject_id, owner_id)
            if outcome == TAKEN:
                if required:
                    raise AlreadyInUse(purpose)
                return False
            if outcome == CLAIMED:
                made.append((purpose, value, subject_id))
            return True

        try:
            yield claim
        except BaseException:
            for purpose, value, subject_id in made:
                self.identity.release(purpose, value, subject_id)
            raise

    def release_orphan_claims(self, min_age: timedelta = ORPHAN_CLAIM_AGE) -> int:
        """Release claims whose save never happened (a crash between claiming and saving):
        older than `min_age` and with no event in their subject's stream. Returns how many."""
        released = 0
        for purpose, token, subject_id in self.identity.claims_older_than(
                datetime.now(UTC) - min_age):
            if not self.recorder.select_events(subject_id, limit=1):
                self.identity.release_token(purpose, token, subject_id)
                released += 1
        return released

    def rename(self, person_id: UUID, display_name: str) -> None:
        person = self.live(person_id)
        person.rename(people.display_name(display_name))
        self.save(person)

    # -- reads ----------------------------------------------------------------------------
    def first_events(self, stream_ids: Sequence[UUID]) -> list[tuple[bytes, int, str, bytes]]:
        """The first stored event of each stream, sealed (`LogReader.first_events`): one query
        for many one-event records, or to learn which of many streams exist."""
        return self._log.first_events(list(stream_ids))

    def read_log(self, after: int, limit: int, wanted: Topics | None = None) -> LogPage:
        """The events after notification id `after`, opened, for projections (only those of
        `wanted` topics, if given: the others are not opened)."""
        return self._log.page(after, limit, wanted)

    @property
    def log_reader(self) -> LogReader:
        """The log's reader, for a rebuild that opens its rows in other processes."""
        return self._log

    def replay(self, limit: int, wanted: Topics | None = None) -> Replay:
        """A rebuild's pass over the log, by pages of `limit` (`Replay`: one key fetch per
        subject per rebuild, the next page read ahead). Close it when done."""
        return Replay(self._log, self.keys, limit, wanted)

    def person(self, person_id: UUID) -> Person | ErasedPerson:
        """The person, or `ErasedPerson` if erased. `PersonNotFound` if there never was one."""
        self.keys.sync_erasures_if_due()
        try:
            aggregate: Any = self.repository.get(person_id)
        except AggregateNotFoundError:
            erasure = self.keys.erasure_of(person_id)
            if erasure is not None:
                return ErasedPerson(person_id, erasure.erased_at)
            raise PersonNotFound(person_id) from None
        if not isinstance(aggregate, Person):
            raise PersonNotFound(person_id)
        return aggregate

    def live(self, person_id: UUID, kind: type[Person] = Person) -> Any:
        """The person, if not erased (`KeyErased`), of `kind` and not soft-deleted (else
        `PersonNotFound`: to every command, a deleted account is as if gone, DEL-1)."""
        person = self.person(person_id)
        if isinstance(person, ErasedPerson):
            raise KeyErased(person_id)
        if not isinstance(person, kind) or person.deleted:
            raise PersonNotFound(person_id)
        return person

    def aggregate(self, aggregate_id: UUID, kind: type[Aggregate]) -> Any:
        """An aggregate of `kind`, or None if there is none (or it is of another kind)."""
        try:
            found: Any = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, kind) else None

    def history(self, aggregate_id: UUID) -> list[Any]:
        """Every event of a stream, opened (an erased subject's come back as placeholders)."""
        return list(self.events.get(aggregate_id))

    # -- snapshots ------------------------------------------------------------------------
    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        """Snapshot each saved aggregate whose events reached a multiple of its interval, from
        the aggregate as it stands after the save: it is the recorded state, so reading the
        stream back (the library's default, per crossing) would only decode it again. One
        snapshot per save, at the aggregate's latest version, sealed like any other."""
        if self.snapshots is None:
            return
        due: dict[UUID, Any] = {}
        for saved in processing_event.events:
            found = processing_event.aggregates.get(saved.originator_id)
            interval = self.snapshotting_intervals.get(type(found)) if found else None
            if found is not None and interval and saved.originator_version % interval == 0:
                due[saved.originator_id] = found
        for aggregate in due.values():
            snapshot_class: Any = getattr(type(aggregate), "Snapshot", self.snapshot_class)
            self.snapshots.put([snapshot_class.take(aggregate)])

    # -- erasure --------------------------------------------------------------------------
    def erase_subject(self, subject_id: UUID, reason: str, requester: str = "operator",
                      requested_at: datetime | None = None, person: object = None
                      ) -> SignedReceipt:
        """Destroy the subject's key, delete their rows beside the log, and append the signed
        erasure receipt (DEL-8) for the projections and for auditors.

        Idempotent, and safe to run again after a crash between any two steps: a second run
        finds the key gone, deletes whatever rows are left and appends the receipt; once the
        receipt is in the log, it is the answer. `person`: the subject as the caller just read
        them, if it did (one read fewer).
        """
        request = ErasureRequest(subject_id, reason, requester, requested_at)
        self._check_before_destroying([request])
        if self.keys.is_erased(subject_id):
            done = self.receipt_of(subject_id)
            if done is not None:
                return done
        elif not (isinstance(person, Person) and person.id == subject_id) \
                and self.keys.owner_of(subject_id) is None:
            # Not erased yet, and not an owned key (a project's): it must be a person, so that
            # no other key (the ledger's own, a blind-index secret) is ever erased here.
            self.person(subject_id)  # PersonNotFound for an id that never existed
        return self._erase([request])[0]

    def erase_subjects(self, erasures: Sequence[ErasureRequest]) -> list[SignedReceipt]:
        """Erase several people at once (the purge job): one key-store transaction and scrub,
        one transaction for the rows beside the log, one save of the receipts. For people
        the caller has just read as live; if anything fails, run `erase_subject` for each
        (it finishes whatever this left half-done)."""
        self._check_before_destroying(erasures)
        return self._erase(erasures)

    def _check_before_destroying(self, erasures: Sequence[ErasureRequest]) -> None:
        """Every check a receipt makes, made before any key goes: an erasure refused after
        its key was destroyed would leave a person with no key and no receipt."""
        for erasure in erasures:
            if erasure.reason not in ERASURE_REASONS:
                raise people.InvalidRecord("reason", "must be one of "
                                                     f"{', '.join(ERASURE_REASONS)}")
            try:
                ErasureReceipt(subject_id=erasure.subject_id, reason=erasure.reason,
                               requester=erasure.requester, requested_at=erasure.requested_at,
                               erased_at=datetime.now(UTC), key_id=None, kek_version=None,
                               destroyed={}, ledger_key_id=self.signer.public_key.key_id)
            except ValueError as error:  # its messages name the field, never the value
                raise people.InvalidRecord("erasure", str(error)) from None

    def _erase(self, erasures: Sequence[ErasureRequest]) -> list[SignedReceipt]:
        self._check_before_destroying(erasures)
        ids = [e.subject_id for e in erasures]
        destroyed = self.keys.erase_many(ids)
        deleted = self._forget_everywhere(ids)
        receipts = [SignedReceipt.sign(ErasureReceipt(
            subject_id=e.subject_id, reason=e.reason, requester=e.requester,
            requested_at=e.requested_at, erased_at=d.erased_at, key_id=d.key_id,
            kek_version=d.kek_version, destroyed={**rows, "owned_keys": d.owned_keys},
            ledger_key_id=self.signer.public_key.key_id), self.signer)
            for e, d, rows in zip(erasures, destroyed, deleted, strict=True)]
        self.save(*(ErasureRecord(e.subject_id, e.reason, d.key_id, d.kek_version,
                                  d.erased_at, r.to_dict())
                    for e, d, r in zip(erasures, destroyed, receipts, strict=True)))
        with self.read_models.transaction() as cur:  # the receipts hold the counts now
            delete_naming(cur, ERASURE_COUNTS, ["subject_id"], [str(i) for i in ids])
        return receipts

    def receipt_of(self, subject_id: UUID) -> SignedReceipt | None:
        record = self.aggregate(ErasureRecord.id_for(subject_id), ErasureRecord)
        return SignedReceipt.from_dict(record.receipt) if record is not None else None

    def on_erase(self, name: str, forget: Callable[[Sequence[UUID]], Mapping[UUID, int]],
                 count: Callable[[Sequence[UUID]], Mapping[UUID, int]]) -> None:
        """Call `forget(subject_ids)` at each erasure (or batch of them), after the keys are
        destroyed: for a store beside the log that holds things of a person (uploads). It
        says how many went for each subject, for the receipts, and must be idempotent;
        `count(subject_ids)` says how many it would delete, deleting nothing (a store of its
        own cannot share the transaction that records the counts: see `_forget_elsewhere`)."""
        self._erasure_hooks[name] = forget
        self._counters[name] = count

    def on_erase_rows(self, name: str,
                      forget: Callable[[Cursor, Sequence[UUID]], Mapping[UUID, int]]) -> None:
        """As `on_erase`, for rows in the read-models database (blind indexes, tokens, read
        models): `forget(cursor, subject_ids)` runs with the others in one transaction, for a
        whole batch of erasures, and says how many rows went for each subject."""
        self._erasure_hooks[name] = forget
        self._in_read_models.add(name)

    def _forget_everywhere(self, subject_ids: list[UUID]) -> list[dict[str, int]]:
        """Run every erasure hook for each subject: what each deleted, per subject, counting
        what a run that crashed before its receipt deleted already (ERASURE_COUNTS)."""
        deleted = self._forget_read_models(subject_ids)
        for name, forget in self._erasure_hooks.items():
            if name not in self._in_read_models:
                totals = self._forget_elsewhere(name, forget, subject_ids)
                for rows, subject_id in zip(deleted, subject_ids, strict=True):
                    rows[name] = totals[subject_id]
        return [{name: rows[name] for name in self._erasure_hooks} for rows in deleted]

    def _forget_elsewhere(self, name: str,
                          forget: Callable[[Sequence[UUID]], Mapping[UUID, int]],
                          subject_ids: list[UUID]) -> dict[UUID, int]:
        """A hook on a store of its own (uploads), whose deletes cannot share a transaction
        with the record of their counts. So what is about to go is recorded first (pending),
        deleted, then folded into the total: a run that crashed after its delete and before
        the fold left a pending count with nothing left to delete, and the next run adds the
        difference. The rows of an erased subject only ever go, so it is exact."""
        pending = f"{name}:pending"
        present = self._counters[name](subject_ids)
        with self.read_models.transaction() as cur:
            recorded = _recorded_counts(cur, pending, subject_ids)
            gone = {s: max(recorded[s] - present.get(s, 0), 0) for s in recorded}
            _add_counts(cur, name, subject_ids, gone)
            _record_counts(cur, pending, {s: present.get(s, 0) for s in recorded})
        counts = forget(subject_ids)
        with self.read_models.transaction() as cur:
            totals = _add_counts(cur, name, subject_ids, counts)
            _record_counts(cur, pending, dict.fromkeys(totals, 0))
        return totals

    def _forget_read_models(self, subject_ids: list[UUID]) -> list[dict[str, int]]:
        """The hooks on rows in the read-models database, in one transaction with the record
        of their counts, so a retry after a crash reports what went, not the zero it finds."""
        deleted: list[dict[str, int]] = [{} for _ in subject_ids]
        with self.read_models.transaction() as cur:
            for name, forget in self._erasure_hooks.items():
                if name in self._in_read_models:
                    totals = _add_counts(cur, name, subject_ids, forget(cur, subject_ids))
                    for rows, subject_id in zip(deleted, subject_ids, strict=True):
                        rows[name] = totals[subject_id]
        if isinstance(self.read_models, SQLiteDatabase):
            # secure_delete zeroes the rows in the file, but their old pages stay in the
            # write-ahead log until a checkpoint: fold it in now, as the key store does.
            self.read_models.checkpoint()
        return deleted

    def close(self) -> None:
        super().close()
        self.read_models.close()
        self.keys.close()

    def _forget_cached(self, subject_id: UUID) -> None:
        cache = self.repository.cache
        if cache is not None:
            with contextlib.suppress(KeyError):
                cache.get(subject_id, evict=True)
