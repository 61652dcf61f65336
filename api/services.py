"""Wires the ledger, its key store and its read models from `Settings`: one place for both faces."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from crypto.sql import Database
from ledger.accounts import Accounts
from ledger.application import Ledger
from ledger.enrolment import Sections
from ledger.settings import Settings
from ledger.signin import SignIn
from projections.directory import DirectoryReader, StudentDirectory
from projections.runner import ProjectionRunner


@dataclass
class Services:
    settings: Settings
    ledger: Ledger
    read_models: Database
    directory: ProjectionRunner
    directory_reader: DirectoryReader
    accounts: Accounts
    sections: Sections
    sign_in: SignIn
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    @classmethod
    def open(cls, settings: Settings) -> Services:
        ledger = Ledger(settings)
        read_models = ledger.read_models
        projection = StudentDirectory(ledger.keys)
        return cls(
            settings=settings,
            ledger=ledger,
            read_models=read_models,
            directory=ProjectionRunner(ledger, read_models, projection),
            directory_reader=DirectoryReader(read_models, ledger.keys, projection),
            accounts=Accounts(ledger),
            sections=Sections(ledger),
            sign_in=SignIn(ledger),
        )

    @property
    def runners(self) -> list[ProjectionRunner]:
        return [self.directory]

    def start_projections(self) -> None:
        for runner in self.runners:
            thread = threading.Thread(target=runner.run_forever, args=(self._stop,),
                                      name=f"projection-{runner.projection.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def catch_up(self) -> None:
        for runner in self.runners:
            runner.catch_up()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self.ledger.close()  # and the read models, which it opened
