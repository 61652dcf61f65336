"""The deletion lifecycle (DEL-1..5, DEL-7, DEL-10): soft delete, recovery, cascades, purge.

    request_deletion ──(grace window: 28 days)──> purge (the job, DEL-3)
          │                                         ▲
          └── recover (inside the window, DEL-2)    └── erase_now (DEL-4) skips the window

A soft delete is an event on the person's own stream: nothing else is touched, so recovery
is withdrawing it and the account is back exactly as it was. Every purge, whether the job's
or an immediate one, goes through `purge`: holds checked (read from the log, never from a
view that may lag), the residue taken (DEL-10), then `Ledger.erase_subject` destroys the key,
deletes the rows beside the log and appends the signed receipt.

Time comes from `clock`, so tests cross 28 days in microseconds.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID

from eventsourcing.domain import Aggregate

from crypto import KeyErased
from ledger.application import ErasedPerson, ErasureRequest, Ledger
from ledger.enrolment import SectionNotFound
from ledger.holds import Holds
from ledger.password_reset import Mailer
from ledger.people import Person, Student, Teacher
from ledger.progress import Progress, progress_id_for
from ledger.receipts import SignedReceipt
from ledger.residue import Residue, ResiduePool, residue_of
from ledger.retention import RetentionSchedule
from ledger.rights import RightsFile, rights_file_id
from ledger.sections import Section

log = logging.getLogger("ledger.lifecycle")
Clock = Callable[[], datetime]


class Enrolments(Protocol):
    """Who is in whose sections, for DEL-5 (the roster read model answers: the domain does
    not import projections)."""

    def students_of_teacher(self, teacher_id: UUID) -> Iterable[UUID]: ...

    def teachers_of_student(self, student_id: UUID) -> set[UUID]: ...


def system_clock() -> datetime:
    return datetime.now(UTC)


class NotDeleted(LookupError):
    def __init__(self) -> None:
        super().__init__("this account has no deletion pending")


class RecoveryWindowClosed(Exception):
    """DEL-2: the grace window ended; the purge is due (or done, which is `KeyErased`)."""

    def __init__(self, ended_at: datetime) -> None:
        super().__init__(f"the recovery window ended at {ended_at.isoformat()}")
        self.ended_at = ended_at


class LegalHoldInPlace(Exception):
    def __init__(self) -> None:
        super().__init__("a legal hold is in place: the purge waits until it is lifted")


class CascadeChanged(Exception):
    """DEL-5: the teacher confirmed a list of students that is not (or no longer) the list."""

    def __init__(self) -> None:
        super().__init__("the students deleted with this account changed since the preview;"
                         " preview again and confirm the new list")


@dataclass(frozen=True)
class Cascade:
    """DEL-5: who is deleted with a teacher (created or rostered by them, in no other
    teacher's section, no personal login) and who only loses the teacher's sections."""

    teacher_id: UUID
    deletes: tuple[UUID, ...]
    unenrols: tuple[UUID, ...]

    @property
    def confirmation(self) -> str:
        """What the teacher sends back to confirm exactly this list."""
        digest = hashlib.sha256(self.teacher_id.bytes)
        for student_id in sorted(self.deletes):
            digest.update(student_id.bytes)
        return digest.hexdigest()[:32]


class Lifecycle:
    def __init__(self, ledger: Ledger, schedule: RetentionSchedule, holds: Holds,
                 enrolments: Enrolments, residues: ResiduePool | None,
                 clock: Clock = system_clock, mailer: Mailer | None = None) -> None:
        self.ledger = ledger
        self.schedule = schedule
        self.holds = holds
        self.enrolments = enrolments
        self.residues = residues  # None: no residue is kept (DEL-10 off)
        self.clock = clock
        self.mailer = mailer  # DEL-6 warnings; None: none are mailed (still recorded)

    # -- soft delete and recovery ----------------------------------------------------------
    def cascade(self, teacher_id: UUID) -> Cascade:
        self.ledger.live(teacher_id, Teacher)
        deletes, unenrols = [], []
        for student_id in self.enrolments.students_of_teacher(teacher_id):
            if self.depends_on(student_id, teacher_id):
                deletes.append(student_id)
            else:
                unenrols.append(student_id)
        return Cascade(teacher_id, tuple(sorted(deletes)), tuple(sorted(unenrols)))

    def depends_on(self, student_id: UUID, teacher_id: UUID) -> bool:
        """In this teacher's sections and no other's, with no personal login (DEL-5)."""
        if self.enrolments.teachers_of_student(student_id) != {teacher_id}:
            return False
        student = self.ledger.person(student_id)
        return isinstance(student, Student) and not student.deleted \
            and student.login_type != "personal"

    def request_deletion(self, subject_id: UUID, requester: str, reason: str = "user_request",
                         confirmation: str | None = None) -> list[UUID]:
        """DEL-1: soft-delete the account (and, for a teacher, the students who depend on
        them, DEL-5, once the teacher has confirmed the preview's list). Returns who was
        deleted. An account already deleted is as if gone (`PersonNotFound`): its first
        request's clock keeps running."""
        person: Person = self.ledger.live(subject_id)
        now = self.clock()
        dependents: list[Student] = []
        if isinstance(person, Teacher):
            cascade = self.cascade(subject_id)
            if cascade.deletes and confirmation != cascade.confirmation:
                raise CascadeChanged()
            dependents = [self.ledger.live(s, Student) for s in cascade.deletes]
        person.request_deletion(reason, requester, now, dependents=[s.id for s in dependents])
        for student in dependents:
            student.request_deletion(reason, requester, now, cascade_of=subject_id)
        self.ledger.save(person, *dependents)  # one transaction: all of them or none
        return [subject_id, *(s.id for s in dependents)]

    def removal(self, teacher_id: UUID, student_id: UUID) -> Cascade:
        """DEL-5, before a teacher removes a student from a section: is the student deleted
        (they depend on this teacher alone) or only unenrolled?"""
        if self.depends_on(student_id, teacher_id):
            return Cascade(teacher_id, (student_id,), ())
        return Cascade(teacher_id, (), (student_id,))

    def remove_from_section(self, teacher_id: UUID, section_id: UUID, student_id: UUID,
                            requester: str, confirmation: str | None = None) -> bool:
        """Unenrol the student; if they depend on this teacher alone, soft-delete them too,
        in the same transaction, once the teacher has confirmed. True if they were deleted."""
        section = self.ledger.aggregate(section_id, Section)
        if section is None or section.owner_id != teacher_id:
            raise SectionNotFound(section_id)
        removal = self.removal(teacher_id, student_id)
        if removal.deletes and confirmation != removal.confirmation:
            raise CascadeChanged()
        changed: list[Aggregate] = [section] if section.unenrol(student_id, "removed") else []
        if removal.deletes:
            student: Student = self.ledger.live(student_id, Student)
            student.request_deletion("teacher_request", requester, self.clock(),
                                     cascade_of=teacher_id)
            changed.append(student)
        if changed:
            self.ledger.save(*changed)
        return bool(removal.deletes)

    def erase_own_account_now(self, subject_id: UUID, requester: str,
                              confirmation: str | None = None) -> list[SignedReceipt]:
        """DEL-4 asked by the subject: their account (and, for a teacher, the students who
        depend on them, DEL-5, once confirmed) purged at once, skipping the window. Soft
        deletion first, so that a crash midway leaves accounts the purge job finishes."""
        person = self.ledger.live(subject_id)
        dependents = self.cascade(subject_id).deletes if isinstance(person, Teacher) else ()
        if any(self.holds.of(s) for s in (subject_id, *dependents)):
            raise LegalHoldInPlace()  # before anything is done
        deleted = self.request_deletion(subject_id, requester, "user_request", confirmation)
        people = [self.ledger.person(s) for s in deleted]
        done = self.purge_many([(p, "user_request", self.clock()) for p in people
                                if isinstance(p, Person)], requester)
        return [r for r in done.values() if r is not None]

    def mark_inactive(self, subject_id: UUID) -> bool:
        """DEL-6: an account unused past the schedule is soft-deleted like any other (its
        window runs from now, so it can still be recovered); no cascade: each student's own
        activity decides for them. False if it is already deleted or gone."""
        person = self.ledger.person(subject_id)
        if not isinstance(person, Person) or not person.request_deletion(
                "inactivity", "purge-job", self.clock()):
            return False
        self.ledger.save(person)
        return True

    def warn_inactive(self, teacher_id: UUID) -> bool:
        """DEL-6: tell a teacher, a month before (by the schedule), that their unused account
        will be deleted; once per lapse (signing in again starts a new one). The mail goes
        before the event, so a failed mail is tried again by the next run."""
        teacher = self.ledger.person(teacher_id)
        if not isinstance(teacher, Teacher) or teacher.deleted \
                or teacher.inactivity_warned_at is not None:
            return False
        now = self.clock()
        if teacher.email is not None and self.mailer is not None:
            self.mailer.send_inactivity_warning(
                teacher.email, self.schedule.deleted_after_warning(now).date())
        teacher.warn_of_inactivity(now)
        self.ledger.save(teacher)
        return True

    def recover(self, subject_id: UUID, requester: str) -> list[UUID]:
        """DEL-2: within the window, withdraw the deletion (and a teacher's cascade) so the
        account is exactly as it was. `KeyErased` once purged; `RecoveryWindowClosed` after
        the window; `NotDeleted` if nothing is pending."""
        person = self.ledger.person(subject_id)
        if isinstance(person, ErasedPerson):
            raise KeyErased(subject_id)
        deletion = person.deletion
        if deletion is None:
            raise NotDeleted()
        if not self.schedule.grace.is_open(deletion.requested_at, self.clock()):
            raise RecoveryWindowClosed(self.schedule.grace.ends(deletion.requested_at))
        person.withdraw_deletion(requester)
        recovered = [person]
        for student_id in deletion.dependents:
            student = self.ledger.person(student_id)
            if isinstance(student, Student) and student.deletion is not None \
                    and student.deletion.cascade_of == subject_id:
                student.withdraw_deletion(requester)
                recovered.append(student)
        self.ledger.save(*recovered)
        return [p.id for p in recovered]

    # -- purge -----------------------------------------------------------------------------
    def erase_now(self, subject_id: UUID, requester: str, reason: str) -> SignedReceipt:
        """DEL-4: purge at once, skipping the window (deleted or not)."""
        person = self.ledger.person(subject_id)  # PersonNotFound for an unknown id
        requested_at = person.deletion.requested_at if isinstance(person, Person) \
            and person.deletion else self.clock()
        return self.purge(subject_id, reason, requester, requested_at, person)

    def purge(self, subject_id: UUID, reason: str, requester: str,
              requested_at: datetime | None, person: object = None) -> SignedReceipt:
        """Destroy the subject's key and everything beside the log, with a signed receipt.
        Idempotent: after a crash at any step, running it again finishes the job. `person`:
        the subject as just read, if the caller has it (one read fewer)."""
        if self.ledger.keys.is_erased(subject_id):
            done = self.ledger.receipt_of(subject_id)
            if done is not None:
                return done
            residue = None  # a run that crashed after the key went: its residue is lost
        else:
            if self.holds.of(subject_id):
                raise LegalHoldInPlace()
            residue = self._residue(subject_id, person, self._restricted([subject_id]))
        receipt = self.ledger.erase_subject(subject_id, reason, requester, requested_at, person)
        if residue is not None:
            self._keep(residue)
        return receipt

    def purge_many(self, due: Sequence[tuple[Person, str, datetime | None]], requester: str
                   ) -> dict[UUID, SignedReceipt | None]:
        """`purge` for many people just read as live (the purge job's batches): holds read
        from the log for each, then one erasure of all who are not held. None for a held
        one. If this fails, `purge` each: it finishes whatever was left half-done."""
        free = [(person, reason, at) for person, reason, at in due
                if not self.holds.of(person.id)]
        restricted = self._restricted([person.id for person, _, _ in free])
        residues = [self._residue(person.id, person, restricted) for person, _, _ in free]
        receipts = self.ledger.erase_subjects(
            [ErasureRequest(person.id, reason, requester, at) for person, reason, at in free])
        self._keep(*(r for r in residues if r is not None))
        done: dict[UUID, SignedReceipt | None] = {person.id: None for person, _, _ in due}
        done.update({receipt.receipt.subject_id: receipt for receipt in receipts})
        return done

    def _keep(self, *residues: Residue) -> None:
        if residues and self.residues is not None:
            try:
                self.residues.add_many(residues)
            except Exception as error:  # the erasure is complete; a residue is optional
                log.warning("residues lost after erasures (%s)", type(error).__name__)

    def _residue(self, subject_id: UUID, person: object, restricted: set[UUID]
                 ) -> Residue | None:
        if self.residues is None or subject_id in restricted:
            return None
        if not isinstance(person, Person):
            person = self.ledger.person(subject_id)
        if not isinstance(person, Person):
            return None
        progress = self.ledger.aggregate(progress_id_for(subject_id), Progress)
        return residue_of(person, progress)

    def _restricted(self, subject_ids: Sequence[UUID]) -> set[UUID]:
        """RGT-3: a restricted subject is left out of analytics, and the residue is kept for
        nothing else: none is taken of them. Read from the log, like the holds; most people
        never filed a request, so one query finds the few rights files, and only those are
        read."""
        if self.residues is None or not subject_ids:
            return set()
        files = {rights_file_id(subject): subject for subject in subject_ids}
        restricted = set()
        for row in self.ledger.first_events(list(files)):
            file_id = UUID(bytes=row[0])
            rights: RightsFile | None = self.ledger.aggregate(file_id, RightsFile)
            if rights is not None and rights.restriction is not None:
                restricted.add(files[file_id])
        return restricted
