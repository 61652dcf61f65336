"""Wires the ledger, its key store and its read models from `Settings`: one place for both faces.

Read models follow the log in background threads (`start_projections`); a command whose
effect the same caller reads next (a section created, a student enrolled) is followed by
`settle()`, so that the writer reads their own writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from uuid import UUID

from api.access import Access
from api.metrics import PurgeMetrics, RequestMetrics
from api.supervision import Supervision
from api.tokens import Principal, TokenStore
from crypto.sql import Database
from ledger.accounts import Accounts
from ledger.application import Ledger
from ledger.attempts import Attempts
from ledger.audit import AuditTrail, RecordsAccess
from ledger.coursework import Coursework
from ledger.disclosures import Disclosures
from ledger.enrolment import Sections
from ledger.grants import Grants
from ledger.holds import Holds
from ledger.lifecycle import Clock, Lifecycle, system_clock
from ledger.media import MediaStore
from ledger.merkle_log import MerkleLog
from ledger.password_reset import Mailer, Outbox, PasswordResets
from ledger.persistence import open_database, open_merkle_log
from ledger.progress import LevelProgress
from ledger.project_service import Projects
from ledger.purge import PurgeCapExceeded, PurgeJob, ReviewQueue
from ledger.residue import ResiduePool
from ledger.retention import RetentionSchedule
from ledger.rights import ExtensionNotices, RightsRequests
from ledger.settings import Settings
from ledger.signin import SignIn
from ledger.throttle import Throttle
from projections.analytics import AnalyticsReader, AnalyticsView
from projections.audit import AuditIndex, AuditReader
from projections.directory import DirectoryEntry, DirectoryReader, StudentDirectory
from projections.lifecycle import LifecycleReader, LifecycleView
from projections.progress import ProgressCounts, ProgressReader, ProgressView
from projections.projects import ProjectsReader, ProjectsView
from projections.rights import RightsReader, RightsView
from projections.roster import SCHOOL_SCOPE, Roster, RosterReader, SectionView
from projections.runner import ProjectionRunner

log = logging.getLogger("api.services")
# AUD-1: the purpose recorded for a read by each role that reads without stating one.
ROLE_PURPOSES = {"parent": "parent_access", "operator": "records_administration",
                 "registrar": "records_administration"}
SUPPORT_SESSION_PURPOSE = "support_session"  # AUD-5: support acting as the user


@dataclass(frozen=True)
class SectionRoster:
    section: SectionView
    fields: frozenset[str]
    students: list[DirectoryEntry]


@dataclass(frozen=True)
class SectionProgress:
    """A teacher's grid: each student of the section (enrolment order) with their levels."""

    section: SectionView
    students: list[DirectoryEntry]
    levels: dict[UUID, dict[str, LevelProgress]]


@dataclass(frozen=True)
class ReportRow:
    """One student in one section of a school, with their totals (ACC-2)."""

    student: DirectoryEntry
    section: SectionView
    counts: ProgressCounts


@dataclass
class Services:
    settings: Settings
    ledger: Ledger
    read_models: Database
    directory: ProjectionRunner
    directory_reader: DirectoryReader
    roster: ProjectionRunner
    roster_reader: RosterReader
    access: Access
    accounts: Accounts
    sections: Sections
    sign_in: SignIn
    password_resets: PasswordResets
    attempts: Attempts
    progress: ProjectionRunner
    progress_reader: ProgressReader
    coursework: Coursework
    media: MediaStore
    projects: Projects
    projects_view: ProjectionRunner
    projects_reader: ProjectsReader
    lifecycle_view: ProjectionRunner
    lifecycle_reader: LifecycleReader
    holds: Holds
    lifecycle: Lifecycle
    purge_job: PurgeJob
    audit: AuditTrail
    audit_view: ProjectionRunner
    audit_reader: AuditReader
    merkle_log: MerkleLog
    rights: RightsRequests  # RGT-1..4: requests, statements, restriction
    rights_view: ProjectionRunner
    rights_reader: RightsReader
    disclosures: Disclosures
    grants: Grants
    analytics_view: ProjectionRunner  # ANA: de-identified counts
    analytics_reader: AnalyticsReader
    # Background loops (projections, purge, sealer) and what /metrics counts of this process.
    supervision: Supervision = field(default_factory=Supervision)
    request_metrics: RequestMetrics = field(default_factory=RequestMetrics)
    purge_metrics: PurgeMetrics = field(default_factory=PurgeMetrics)

    @classmethod
    def open(cls, settings: Settings, mailer: Mailer | None = None,
             clock: Clock = system_clock) -> Services:
        """`mailer` sends password-reset mail; by default an in-memory outbox (no mail server
        is configured: a deployment passes its own). `clock` is the deletion lifecycle's."""
        ledger = Ledger(settings)
        read_models = ledger.read_models
        directory = StudentDirectory(ledger.keys)
        directory_runner = ProjectionRunner(ledger, read_models, directory)
        roster = Roster(ledger.keys)
        roster_reader = RosterReader(read_models, ledger.keys, roster)
        progress = ProgressView()
        media = MediaStore(open_database(settings.media_url, settings.schema, settings),
                           ledger.keys, settings.max_upload_bytes)
        ledger.on_erase("uploads", media.forget_owners, media.count_owners)
        ledger.on_erase_rows("api_tokens", TokenStore(read_models).forget_rows)
        projects = ProjectsView(ledger.keys)

        def in_a_section(student_id: UUID) -> bool:  # AGE-4
            return bool(roster_reader.sections_of_student(student_id))

        def teaches(teacher_id: UUID, student_id: UUID) -> bool:  # PRG-4
            return teacher_id in roster_reader.teachers_of_student(student_id)

        lifecycle_view = LifecycleView()
        lifecycle_reader = LifecycleReader(read_models, lifecycle_view)
        lifecycle_runner = ProjectionRunner(ledger, read_models, lifecycle_view)
        audit_index = AuditIndex()
        rights_view = RightsView()
        holds = Holds(ledger, clock)
        mailer = mailer or Outbox()
        residues = ResiduePool(read_models) if settings.keep_residue else None
        lifecycle = Lifecycle(ledger, RetentionSchedule.load(settings.retention_file), holds,
                              roster_reader, residues, clock, mailer)
        analytics = AnalyticsView()
        throttle = Throttle(read_models)  # one for every door: an account's failures add up

        rights = RightsRequests(ledger, Accounts(ledger), clock, notices=mailer if isinstance(
            mailer, ExtensionNotices) else None)
        services = cls(
            settings=settings,
            ledger=ledger,
            read_models=read_models,
            directory=directory_runner,
            directory_reader=DirectoryReader(read_models, ledger.keys, directory),
            roster=ProjectionRunner(ledger, read_models, roster),
            roster_reader=roster_reader,
            access=Access(roster_reader, ledger.identity),
            accounts=Accounts(ledger),
            sections=Sections(ledger, throttle),
            sign_in=SignIn(ledger, throttle),
            password_resets=PasswordResets(ledger, mailer, throttle),
            attempts=Attempts(ledger),
            progress=ProjectionRunner(ledger, read_models, progress),
            progress_reader=ProgressReader(read_models, progress),
            coursework=Coursework(ledger, teaches),
            media=media,
            projects=Projects(ledger, media, in_a_section),
            projects_view=ProjectionRunner(ledger, read_models, projects),
            projects_reader=ProjectsReader(read_models, ledger.keys, projects),
            lifecycle_view=lifecycle_runner,
            lifecycle_reader=lifecycle_reader,
            holds=holds,
            lifecycle=lifecycle,
            purge_job=PurgeJob(lifecycle, lifecycle_reader, ReviewQueue(read_models),
                               catch_up=lifecycle_runner.catch_up),
            audit=AuditTrail(ledger),
            audit_view=ProjectionRunner(ledger, read_models, audit_index),
            audit_reader=AuditReader(read_models, audit_index),
            merkle_log=open_merkle_log(settings, ledger.signer),
            rights=rights,
            rights_view=ProjectionRunner(ledger, read_models, rights_view),
            rights_reader=RightsReader(read_models, rights_view),
            # RGT-2: a statement on a contested field goes with each disclosure of the field
            disclosures=Disclosures(ledger, ledger.identity.blind, clock,
                                    statements_of=rights.statements_of),
            grants=Grants(ledger, clock),
            analytics_view=ProjectionRunner(ledger, read_models, analytics),
            analytics_reader=AnalyticsReader(read_models, analytics, residues),
        )
        # The receipt counts each read model's rows. Not the lifecycle view's: its pending
        # row is the purge job's work list, which must keep the subject until the receipt is
        # in the log (a crash in between is then finished by the next run); the receipt's own
        # record takes the row when the view reads it.
        for runner in services.runners:
            if runner is not lifecycle_runner:
                ledger.on_erase_rows(f"read_model_{runner.projection.name}",
                                     runner.forget_subjects)
        return services

    @property
    def runners(self) -> list[ProjectionRunner]:
        return [self.directory, self.roster, self.progress, self.projects_view,
                self.lifecycle_view, self.audit_view, self.rights_view, self.analytics_view]

    def start_projections(self, poll_seconds: float = 0.2) -> None:
        """A supervised loop per read model (`api.supervision`): it survives any error of the
        databases or the key store, backing off while one is down, and its state shows in
        `/readyz` and `/metrics`. The loop calls `catch_up` (the runner's `run_once` until the
        log's end) rather than `run_forever`, so that every failure reaches the supervisor."""
        for runner in self.runners:
            self.supervision.start(f"projection-{runner.projection.name}", runner.catch_up,
                                   every=poll_seconds)

    def start_purge_schedule(self) -> None:
        """Run the purge job every `LEDGER_PURGE_EVERY_HOURS` (DEL-9), first one period after
        start. A run is the same as `ledger purge`: over the cap, it refuses and says so in
        the log (ids and counts only), for an operator to look at. A run that fails is tried
        again after the supervisor's backoff (at most 30 s apart), not a whole period later."""
        hours = self.settings.purge_every_hours
        if hours <= 0:
            return
        self.supervision.start("purge-schedule", self.run_purge, every=hours * 3600,
                               first_after=hours * 3600)

    def run_purge(self) -> None:
        """One scheduled purge run, counted in `purge_metrics` by outcome; raises if it fails
        (for the supervisor to back off)."""
        try:
            report = self.purge_job.run()
        except PurgeCapExceeded as refused:  # a refusal is an answer, not a failure to retry
            self.purge_metrics.runs["refused"] += 1
            log.warning("purge run refused: %d due, cap %d", refused.due, refused.cap)
            return
        except Exception:
            self.purge_metrics.runs["failed"] += 1
            raise
        self.purge_metrics.runs["ok"] += 1
        for result in ("purged", "held", "failed"):
            self.purge_metrics.subjects[result] += report.count(result)
        self.purge_metrics.subjects["soft_deleted"] += len(report.soft_deleted_for_inactivity)
        log.info("purge run: %d purged, %d held, %d failed, %d soft-deleted for"
                 " inactivity", report.count("purged"), report.count("held"),
                 report.count("failed"), len(report.soft_deleted_for_inactivity))

    def start_tree_keeping(self) -> None:
        """Seal new events into the Merkle log every `LEDGER_SEAL_EVERY_SECONDS`, and sign a
        tree head every `LEDGER_TREE_HEAD_EVERY_MINUTES` (LED-2); supervised."""
        seal_every = self.settings.seal_every_seconds
        sign_every = self.settings.tree_head_every_minutes * 60
        last_signed = time.monotonic()

        def keep_tree() -> None:
            nonlocal last_signed
            if sign_every and time.monotonic() - last_signed >= sign_every:
                head = self.merkle_log.sign_head()  # seals first
                last_signed = time.monotonic()
                log.info("tree head signed: size %d", head.tree_size)
            else:
                self.merkle_log.seal()

        self.supervision.start("merkle-sealer", keep_tree, every=seal_every,
                               first_after=seal_every)

    def catch_up(self) -> None:
        for runner in self.runners:
            runner.catch_up()

    def settle(self) -> None:
        """Bring the roster, the directory and progress up to the log's end now, here.

        Safe beside the background runners: each batch locks its tracking row, so an event is
        applied once whichever runner gets to it."""
        self.roster.catch_up()
        self.directory.catch_up()
        self.progress.catch_up()

    def record_access(self, principal: Principal, student_id: UUID, resource: str,
                      fields: Iterable[str], purpose: str | None, request_id: str) -> None:
        """AUD-1: the access record of a read of a student's records, saved before the data
        leaves (if it cannot be saved, this raises `AccessNotRecorded` and the read fails).
        None for the student reading their own. `purpose`: support's stated one (ACC-4); else
        the caller's role's. A session acted as by support (AUD-5) records even the user's own
        reads, with both identities."""
        access = self._access(principal, student_id, resource, fields, purpose, request_id)
        if access is not None:
            self.audit.record_access(access, self.lifecycle.clock())

    def record_accesses(self, principal: Principal, reads: Iterable[tuple[UUID, Iterable[str]]],
                        resource: str, purpose: str | None, request_id: str) -> None:
        """AUD-1 for a read of many students (a roster, a grid): one record per student, all
        saved in one transaction, all or none; `reads` is (student, fields returned)."""
        accesses = [access for student_id, fields in reads if (access := self._access(
            principal, student_id, resource, fields, purpose, request_id)) is not None]
        if accesses:
            self.audit.record_accesses(accesses, self.lifecycle.clock())

    @staticmethod
    def _access(principal: Principal, student_id: UUID, resource: str, fields: Iterable[str],
                purpose: str | None, request_id: str) -> RecordsAccess | None:
        acting = principal.acted_by
        if principal.subject_id == student_id and acting is None:
            return None
        return RecordsAccess(
            actor_id=acting or principal.id, actor_role=principal.role, student_id=student_id,
            resource=resource, fields=sorted(fields),
            purpose=purpose or (SUPPORT_SESSION_PURPOSE if acting else ROLE_PURPOSES.get(
                principal.role, "school_official")),
            request_id=request_id,
            on_behalf_of=(principal.subject_id or principal.id) if acting else None)

    def section_roster(self, principal: Principal, section_id: UUID) -> SectionRoster | None:
        """A teacher's roster of their own section (ACC-1): each student's directory entry and
        the fields this teacher may see. None if the section is not the caller's, to answer as
        if it did not exist (ACC-5). A few queries, whatever the size of the class."""
        view = self.roster_reader.section(section_id)
        fields = self.access.roster_fields(principal, view) if view is not None else None
        if view is None or not fields:
            return None
        members = self.roster_reader.students_of_section(view.id)
        entries = self.directory_reader.entries_of(members)
        return SectionRoster(view, fields, [entries[m] for m in members if m in entries])

    def section_progress(self, principal: Principal, section_id: UUID,
                         levels: list[str] | None = None) -> SectionProgress | None:
        """A teacher's progress grid of their own section (ACC-1): students x levels, in one
        query of the progress view. None if the section is not the caller's (ACC-5)."""
        roster = self.section_roster(principal, section_id)
        if roster is None:
            return None
        grid = self.progress_reader.grid([s.id for s in roster.students], levels)
        return SectionProgress(roster.section, roster.students, grid)

    def school_report(self, school_id: UUID) -> list[ReportRow]:
        """ACC-2: each student in each section of the school's teachers, with their totals;
        the caller's scope is checked before (`Access.may_see_school`)."""
        roster = self.roster_reader
        placed: list[tuple[UUID, SectionView]] = []
        for teacher_id in sorted(roster.teachers_in_scope(f"{SCHOOL_SCOPE}:{school_id}")):
            for view in roster.sections_of_teacher(teacher_id):
                placed += [(student, view) for student in roster.students_of_section(view.id)]
        students = list(dict.fromkeys(student for student, _ in placed))
        entries = self.directory_reader.entries_of(students)
        counts = self.progress_reader.report(students)
        return [ReportRow(entries[student], view, counts[student])
                for student, view in placed if student in entries]

    def close(self) -> None:
        self.supervision.stop()
        self.media.db.close()
        self.merkle_log.db.close()
        self.ledger.close()  # and the read models, which it opened
