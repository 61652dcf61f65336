"""The ledger application: commands and reads over sealed streams, and erasure by key destruction.

Read top-down: construction wires the sealed mapper and the append-only store; then the
commands a registrar runs; then reads, which answer `ErasedPerson` for an erased subject;
then `erase_subject`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import Mapper

from crypto import DestroyedKey, KeyErased, SubjectKeys
from ledger import people
from ledger.erasure import ErasureRecord
from ledger.log import LogPage, LogReader
from ledger.people import Person, Student, Teacher
from ledger.persistence import enforce_append_only, eventsourcing_env, open_subject_keys
from ledger.sealing import LEDGER_SUBJECT, SealedMapper
from ledger.settings import Settings
from ledger.transcoder import OrjsonTranscoder

ERASURE_REASONS = ("user_request", "school_request", "support_request", "parent_request",
                   "expired_window", "inactivity", "missing_parental_consent")


class PersonNotFound(LookupError):
    def __init__(self, person_id: UUID) -> None:
        super().__init__(f"no person {person_id}")
        self.person_id = person_id


@dataclass(frozen=True)
class ErasedPerson:
    """What a read of an erased subject gives: the id and the fact of erasure, nothing else."""

    id: UUID
    erased_at: datetime


class Ledger(Application[UUID]):
    name = "Ledger"
    is_snapshotting_enabled = True
    snapshotting_intervals = {Student: 50, Teacher: 50}  # noqa: RUF012 (the library's shape)

    def __init__(self, settings: Settings, keys: SubjectKeys | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.keys = keys or open_subject_keys(settings)
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

    def construct_mapper(self) -> Mapper[UUID]:
        return SealedMapper.bound_to(self.keys)(transcoder=self.construct_transcoder())

    def construct_transcoder(self) -> OrjsonTranscoder:
        return OrjsonTranscoder()

    # -- commands -------------------------------------------------------------------------
    def register_student(self, display_name: str, age: str, age_given_on: date | None = None
                         ) -> UUID:
        return self._register(Student, display_name, age, age_given_on)

    def register_teacher(self, display_name: str, age: str = "21+",
                         age_given_on: date | None = None) -> UUID:
        return self._register(Teacher, display_name, age, age_given_on)

    def _register(self, kind: type[Person], name: str, age: str, given_on: date | None) -> UUID:
        given_on = given_on or datetime.now(UTC).date()
        person = people.register(kind, name, age, given_on, self.keys.new_subject)
        self.save(person)
        return person.id

    def rename(self, person_id: UUID, display_name: str) -> None:
        person = self._live(person_id)
        person.rename(people.display_name(display_name))
        self.save(person)

    # -- reads ----------------------------------------------------------------------------
    def read_log(self, after: int, limit: int) -> LogPage:
        """The events after notification id `after`, opened, for projections and rebuilds."""
        return self._log.page(after, limit)

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

    def _live(self, person_id: UUID) -> Person:
        person = self.person(person_id)
        if isinstance(person, ErasedPerson):
            raise KeyErased(person_id)
        return person

    # -- erasure --------------------------------------------------------------------------
    def erase_subject(self, subject_id: UUID, reason: str) -> DestroyedKey:
        """Destroy the subject's key, then record the erasure in the log for the projections.

        Idempotent, and safe to run again after a crash between the two steps.
        """
        if reason not in ERASURE_REASONS:
            raise people.InvalidRecord("reason", f"must be one of {', '.join(ERASURE_REASONS)}")
        if self.keys.erasure_of(subject_id) is None:
            self.person(subject_id)  # PersonNotFound for an id that never existed
        destroyed = self.keys.erase(subject_id)
        record_id = ErasureRecord.id_for(subject_id)
        try:
            self.repository.get(record_id)
        except AggregateNotFoundError:
            self.save(ErasureRecord(subject_id, reason, destroyed.key_id, destroyed.kek_version,
                                    destroyed.erased_at))
        return destroyed

    def close(self) -> None:
        super().close()
        self.keys.close()

    def _forget_cached(self, subject_id: UUID) -> None:
        cache = self.repository.cache
        if cache is not None:
            with contextlib.suppress(KeyError):
                cache.get(subject_id, evict=True)
