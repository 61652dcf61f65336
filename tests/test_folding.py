"""Rebuilds whose pages are opened and folded by worker processes (`projections.folding`), on
both backends: they give the tables of a rebuild in one process and of the live runner; each
subject's key is fetched once per rebuild, by this process, and only wrapped keys go to the
workers; an error in a worker fails the rebuild with that error; a worker killed part way
leaves the old generation serving, and the rebuild resumes and converges."""

from __future__ import annotations

import dataclasses
import gc
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from api.services import Services
from crypto.sql import Cursor
from ledger.progress import Attempt
from ledger.settings import Settings
from projections import folding
from projections import runner as runner_module
from projections.runner import FoldingProjection, ProjectionRunner
from tests.test_analytics import all_tables, restrict, student
from tests.test_rebuild import CountingKeyStore, Wrapping, history_with_erasures, tables

AT = datetime(2026, 9, 7, 10, 0, tzinfo=UTC)


def a_school_year(svc: Services) -> None:
    """Students of every kind, their attempts, a class with an estimate, a restriction, and
    erasures part way through."""
    history_with_erasures(svc)
    teacher = svc.ledger.register_teacher("T")
    svc.accounts.choose_school(teacher, svc.accounts.register_school("A", "D1", "public"))
    section = svc.sections.create(teacher, "P1", "csf", "3", "email")
    code = svc.sections.section(section).join_code
    people = [student(svc, age, gender, race) for age, gender, race in
              [("15", "female", "asian"), ("9", "male", None), ("18", None, "white"),
               ("7", None, None), ("16", "male", None)]]
    for n, person in enumerate(people):
        svc.attempts.record_many(person, [
            Attempt(f"csf/unit-{n % 2}/level-{level}", ("failed", "solved", "optimal")[level % 3],
                    AT.replace(day=7 + level)) for level in range(12)])
    for person in people[1::2]:
        svc.sections.join(person, code)
    svc.sections.estimate_race(teacher, section, {"asian": 40})
    restrict(svc, people[0])
    svc.lifecycle.erase_now(people[2], "operator", "support_request")


def in_workers(svc: Services, runner: ProjectionRunner) -> ProjectionRunner:
    runner.fold_in_workers = True
    runner.rebuild_batch_size = 7  # many pages, folded by the workers out of order
    return runner


def test_a_rebuild_in_workers_gives_the_live_and_the_one_process_tables(
        services: Services) -> None:
    svc = services
    a_school_year(svc)
    svc.catch_up()
    live_analytics = all_tables(svc.analytics_reader)
    live_progress = tables(svc, svc.progress)
    assert live_analytics[("students", "age_band", "")] and all(live_progress.values())

    in_workers(svc, svc.analytics_view).rebuild()
    in_workers(svc, svc.progress).rebuild()
    assert all_tables(svc.analytics_reader) == live_analytics
    assert tables(svc, svc.progress) == live_progress

    svc.progress.fold_in_workers = False  # and in one process, the same
    svc.progress.rebuild()
    assert tables(svc, svc.progress) == live_progress
    # The rebuild froze what this process held, for its length only: a server that rebuilds
    # when it starts must not keep its garbage ever after.
    assert gc.get_freeze_count() == 0


def test_keys_are_fetched_once_per_subject_here_and_the_workers_fetch_none(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = services
    a_school_year(svc)
    svc.catch_up()
    keys = svc.ledger.keys
    counting = CountingKeyStore(keys.store)
    monkeypatch.setattr(keys, "store", counting)
    in_workers(svc, svc.analytics_view).rebuild_batch_size = 3  # a student spans many pages
    live = all_tables(svc.analytics_reader)

    svc.analytics_view.rebuild()

    assert counting.asked and max(counting.asked.values()) == 1
    assert all_tables(svc.analytics_reader) == live


def test_a_row_that_fails_to_open_in_a_worker_is_set_aside_and_the_rebuild_goes_on(
        services: Services) -> None:
    svc = services
    ana, ben = (svc.ledger.register_student(name, "15") for name in ("Ana", "Ben"))
    svc.catch_up()
    serving = svc.analytics_view.live_generation()
    stored = svc.ledger.recorder.select_events(ana, limit=1)[0]
    # Appending is allowed: a forged event 2 of Ben's stream carrying Ana's sealed state.
    svc.ledger.recorder.insert_events([StoredEvent(ben, 2, stored.topic, stored.state)])

    runner = in_workers(svc, svc.analytics_view)
    generation = runner.rebuild()  # issue 18: before, the rebuild failed with the error
    assert generation == serving + 1
    (aside,) = runner.set_aside(generation)
    assert aside.error == "MapperDeserialisationError"
    assert aside.position == svc.ledger.recorder.max_notification_id()
    assert gc.get_freeze_count() == 0


class SignalsTheWorkers(Wrapping, FoldingProjection):
    """The projection it wraps, whose workers (all, or the first `only`) are sent `signum` as
    this process writes its `at`th page: SIGKILL for a worker lost to the kernel's OOM killer,
    say; SIGINT for a Ctrl-C at the terminal, which reaches every process of its group."""

    inner: FoldingProjection

    def __init__(self, inner: FoldingProjection, at: int, signum: int,
                 only: int | None = None) -> None:
        self.inner, self.name, self.consumes = inner, inner.name, inner.consumes
        self.at, self.signum, self.only = at, signum, only

    def fold(self, events: Sequence[Any]) -> Any:
        return self.inner.fold(events)

    def write(self, cur: Cursor, table: str, folded: Any) -> None:
        self.at -= 1
        if self.at == 0:
            for worker in multiprocessing.active_children()[:self.only]:
                os.kill(worker.pid or 0, self.signum)
        self.inner.write(cur, table, folded)


def rebuild_or_fail_if_hung(runner: ProjectionRunner) -> BaseException | None:
    """What the rebuild raised (None if nothing). A rebuild still running after a minute fails
    the test: its workers are killed, so that the test run can end."""
    raised: list[BaseException | None] = []

    def rebuild() -> None:
        try:
            runner.rebuild()
        except BaseException as error:
            raised.append(error)
        else:
            raised.append(None)

    thread = threading.Thread(target=rebuild, daemon=True)
    thread.start()
    thread.join(60)
    if thread.is_alive():
        for worker in multiprocessing.active_children():
            os.kill(worker.pid or 0, signal.SIGKILL)
        thread.join(10)
        pytest.fail("the rebuild hung once a worker had died")
    return raised[0]


# One worker killed, the other alive: the pool stops the other with SIGTERM, so a worker that
# ignored SIGTERM left the rebuild waiting on it for ever.
@pytest.mark.parametrize(("at", "only"), [(1, None), (3, None), (2, 1)])
def test_a_worker_killed_part_way_leaves_the_old_generation_and_the_rebuild_resumes(
        services: Services, at: int, only: int | None) -> None:
    svc = services
    a_school_year(svc)
    svc.catch_up()
    runner = svc.progress
    live = tables(svc, runner)
    serving = runner.live_generation()
    killing = ProjectionRunner(svc.ledger, svc.read_models,
                               SignalsTheWorkers(runner.projection, at, signal.SIGKILL, only),
                               rebuild_batch_size=4, fold_in_workers=True)

    assert "terminated abruptly" in str(rebuild_or_fail_if_hung(killing))
    assert runner.live_generation() == serving and tables(svc, runner) == live
    unfinished = runner.unfinished_generation()  # the pages written before the error stay
    assert unfinished is not None and runner.position(unfinished) > 0

    in_workers(svc, runner).rebuild()  # resumes the unfinished generation and switches
    assert runner.unfinished_generation() is None
    assert tables(svc, runner) == live


def test_a_worker_that_cannot_start_fails_the_rebuild_with_its_own_error(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not "a worker died": the operator is told what is wrong (here a malformed KEK, which the
    workers read from the settings), and the old generation still serves."""
    svc = services
    history_with_erasures(svc)
    svc.catch_up()
    serving = svc.progress.live_generation()
    live = tables(svc, svc.progress)
    monkeypatch.setattr(svc.ledger, "settings",
                        dataclasses.replace(svc.ledger.settings, kek_inline="1-not-a-kek"))

    error = rebuild_or_fail_if_hung(in_workers(svc, svc.progress))
    assert isinstance(error, ValueError) and "LEDGER_KEK is malformed" in str(error)
    assert svc.progress.live_generation() == serving and tables(svc, svc.progress) == live
    assert "not-a-kek" not in str(error)


def test_a_ctrl_c_that_reaches_the_workers_leaves_them_to_this_process(
        services: Services) -> None:
    """Here the rebuild goes on (this process was not interrupted); at a terminal this process
    stops as it would alone, and then stops them."""
    svc = services
    a_school_year(svc)
    svc.catch_up()
    runner = svc.progress
    live = tables(svc, runner)
    signalling = ProjectionRunner(svc.ledger, svc.read_models,
                                  SignalsTheWorkers(runner.projection, 2, signal.SIGINT),
                                  rebuild_batch_size=4, fold_in_workers=True)
    signalling.rebuild()
    assert tables(svc, runner) == live


def test_workers_are_used_for_a_long_rebuild_of_a_projection_that_folds(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = services
    history_with_erasures(svc)
    end = svc.ledger.recorder.max_notification_id() or 0
    generation = svc.progress.live_generation()
    monkeypatch.setattr(runner_module, "FOLD_IN_WORKER_FROM", end)
    assert svc.progress.folds_in_workers(generation)
    monkeypatch.setattr(runner_module, "FOLD_IN_WORKER_FROM", end + 1)
    assert not svc.progress.folds_in_workers(generation)
    svc.progress.fold_in_workers = True
    assert svc.progress.folds_in_workers(generation)
    assert not svc.directory.folds_in_workers(generation)  # it does not fold


def test_where_no_worker_can_start_the_rebuild_runs_in_one_process(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = services
    history_with_erasures(svc)
    svc.catch_up()
    live = tables(svc, svc.progress)

    def no_pools(*args: object, **kwargs: object) -> None:
        raise OSError("no /dev/shm")

    monkeypatch.setattr(folding, "ProcessPoolExecutor", no_pools)
    in_workers(svc, svc.progress).rebuild()
    assert tables(svc, svc.progress) == live
    assert gc.get_freeze_count() == 0


# A rebuild that folds in workers, which stalls once its first page is folded: the parent is
# then killed while the workers are alive.
KILLED_REBUILD = """
import sys, time
from projections import folding, runner
runner.FOLD_IN_WORKER_FROM = 1
folded = folding.FoldingReplay.page
def page_then_stall(self, after):
    folded(self, after)
    time.sleep(600)
folding.FoldingReplay.page = page_then_stall
from api.cli.main import main
sys.exit(main(["rebuild", "progress"]))
"""


def processes_marked(mark: bytes) -> list[int]:
    """The pids of the live processes whose environment holds `mark` (inherited by the workers
    and by multiprocessing's helper from the process that started them)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if mark in environ.read().split(b"\0"):
                    with open(f"/proc/{entry}/stat", "rb") as stat:
                        if stat.read().rsplit(b")", 1)[1].split()[0] != b"Z":
                            found.append(int(entry))
        except OSError:  # gone, or not ours to read
            continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_workers_of_a_rebuild_die_with_it_when_it_is_killed(var_dir: Path) -> None:
    """Issue 18, finding 5: before, the workers (each holding the KEK) and multiprocessing's
    helper were still alive minutes after a `kill -9` of `ledger rebuild`."""
    services = Services.open(Settings.from_env())
    try:
        history_with_erasures(services)
    finally:
        services.close()
    mark = f"LEDGER_TEST_REBUILD_MARK={uuid4().hex}"
    parent = subprocess.Popen(
        [sys.executable, "-c", KILLED_REBUILD],
        env={**os.environ, mark.split("=")[0]: mark.split("=")[1]},
        cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(processes_marked(mark.encode()) ) < 1 + folding.WORKERS:  # parent + workers
            assert parent.poll() is None, "the rebuild ended before its workers were seen"
            assert time.monotonic() < deadline, "no workers started"
            time.sleep(0.1)
        time.sleep(1)  # the workers past their initializer, folding or waiting for pages
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while left := processes_marked(mark.encode()):
        if time.monotonic() > deadline:
            for pid in left:  # not to leave them to the next test either
                os.kill(pid, signal.SIGKILL)
            pytest.fail(f"{len(left)} processes of the killed rebuild are still alive")
        time.sleep(0.1)
