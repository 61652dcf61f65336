"""Wires the ledger, its key store and its read models from `Settings`: one place for both faces.

Read models follow the log in background threads (`start_projections`); a command whose
effect the same caller reads next (a section created, a student enrolled) is followed by
`settle()`, so that the writer reads their own writes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from uuid import UUID

from api.access import Access
from api.tokens import Principal
from crypto.sql import Database
from ledger.accounts import Accounts
from ledger.application import Ledger
from ledger.enrolment import Sections
from ledger.password_reset import Mailer, Outbox, PasswordResets
from ledger.settings import Settings
from ledger.signin import SignIn
from projections.directory import DirectoryEntry, DirectoryReader, StudentDirectory
from projections.roster import Roster, RosterReader, SectionView
from projections.runner import ProjectionRunner, table_name


@dataclass(frozen=True)
class SectionRoster:
    section: SectionView
    fields: frozenset[str]
    students: list[DirectoryEntry]


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
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    @classmethod
    def open(cls, settings: Settings, mailer: Mailer | None = None) -> Services:
        """`mailer` sends password-reset mail; by default an in-memory outbox (no mail server
        is configured: a deployment passes its own)."""
        ledger = Ledger(settings)
        read_models = ledger.read_models
        directory = StudentDirectory(ledger.keys)
        directory_runner = ProjectionRunner(ledger, read_models, directory)
        _rebuild_if_outdated(directory_runner, directory)
        roster = Roster(ledger.keys)
        roster_reader = RosterReader(read_models, ledger.keys, roster)
        return cls(
            settings=settings,
            ledger=ledger,
            read_models=read_models,
            directory=directory_runner,
            directory_reader=DirectoryReader(read_models, ledger.keys, directory),
            roster=ProjectionRunner(ledger, read_models, roster),
            roster_reader=roster_reader,
            access=Access(roster_reader, ledger.identity),
            accounts=Accounts(ledger),
            sections=Sections(ledger),
            sign_in=SignIn(ledger),
            password_resets=PasswordResets(ledger, mailer or Outbox()),
        )

    @property
    def runners(self) -> list[ProjectionRunner]:
        return [self.directory, self.roster]

    def start_projections(self) -> None:
        for runner in self.runners:
            thread = threading.Thread(target=runner.run_forever, args=(self._stop,),
                                      name=f"projection-{runner.projection.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def catch_up(self) -> None:
        for runner in self.runners:
            runner.catch_up()

    def settle(self) -> None:
        """Bring the roster and the directory up to the log's end now, in this thread.

        Safe beside the background runners: each batch locks its tracking row, so an event is
        applied once whichever runner gets to it."""
        self.roster.catch_up()
        self.directory.catch_up()

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

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self.ledger.close()  # and the read models, which it opened


def _rebuild_if_outdated(runner: ProjectionRunner, directory: StudentDirectory) -> None:
    """A directory made by an older version lacks columns: replay it into the current shape."""
    generation = runner.live_generation()
    with runner.db.transaction(write=False) as cur:
        current = directory.is_current(cur, table_name(directory, generation))
    if not current:
        runner.rebuild()
