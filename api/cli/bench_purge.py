"""The deletion workload of `ledger bench` (issue 5): the purge job over many due accounts, and
single erasures at once.

Due accounts (`fill_due`): students who signed up long ago, each with a term's worth of records
the purge must take (a membership in a class of 30, ten attempts, a project), who asked to be
deleted 30 days before the bench's clock; made outside the timing, with the read models caught
up. The purge (`purge_all`) is one `PurgeJob.run` over all of them, as `ledger purge
--over-cap` runs it; the process's resident memory is sampled as it goes, to show whether it
stays flat.

Erasure at once (`erase_now_ms`): `Lifecycle.erase_now`, what `DELETE /people/{id}` runs (holds
checked, residue taken, key destroyed, every store's rows deleted, the signed receipt
appended), one subject at a time, timed each.

Plain `eventsourcing` has no erasure to compare with; the bench reports, beside the purge's
rate, the rate of appending one event per account in a plain application in the same run (the
least any per-account record of a purge costs), as a ratio for scale.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from api.cli.bench_progress import attempt
from api.services import Services

ATTEMPTS_EACH = 10
CLASS_SIZE = 30


class Clock:
    """The bench's lifecycle clock: deletions are asked for in the past, the purge runs now."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC) - timedelta(days=30)

    def __call__(self) -> datetime:
        return self.now


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm", encoding="ascii") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def fill_due(services: Services, clock: Clock, count: int) -> list[UUID]:
    """`count` students with records, each asking to be deleted 30 days ago; classes of 30."""
    ledger, sections = services.ledger, services.sections
    teacher = ledger.register_teacher("Bench Teacher")
    ids = []
    for n in range(count):
        if n % CLASS_SIZE == 0:
            join_code = sections.section(sections.create(
                teacher, f"Bench section {n // CLASS_SIZE}", "csf", "9", "email")).join_code
        student = ledger.register_student(f"Due Student {n}", "15")
        sections.join(student, join_code)
        services.attempts.record_many(student, [attempt(n * ATTEMPTS_EACH + i)
                                                for i in range(ATTEMPTS_EACH)])
        services.projects.create(student, "app", f"Project {n}", "move()")
        services.lifecycle.request_deletion(student, "student:self")
        ids.append(student)
    services.catch_up()
    services.lifecycle_view.catch_up()
    return ids


@dataclass(frozen=True)
class PurgeRun:
    accounts: int
    purged: int
    seconds: float
    rss_start_mb: float
    rss_peak_mb: float

    @property
    def per_second(self) -> float:
        return self.purged / self.seconds if self.seconds else 0.0


def purge_all(services: Services, clock: Clock, accounts: int) -> PurgeRun:
    clock.now = datetime.now(UTC)
    start = _rss_mb()
    peak = [start]

    def sample(done: int, total: int) -> None:
        if done % 250 == 0 or done == total:
            peak[0] = max(peak[0], _rss_mb())

    began = time.perf_counter()
    report = services.purge_job.run(over_cap=True, on_progress=sample)
    seconds = time.perf_counter() - began
    return PurgeRun(accounts, report.count("purged"), seconds, start, peak[0])


def erase_now_ms(services: Services, count: int) -> list[float]:
    """`count` students with records, erased at once one at a time; each erasure timed."""
    ids = fill_due(services, Clock(), count)
    latencies = []
    for student in ids:
        began = time.perf_counter()
        services.lifecycle.erase_now(student, "operator:" + str(uuid4()), "school_request")
        latencies.append((time.perf_counter() - began) * 1000)
    return latencies


class _Closed(Aggregate):
    @event("Closed")
    def __init__(self, reason: str) -> None:
        self.reason = reason


def plain_one_event_each(env: dict[str, str], count: int) -> float:
    """Seconds for plain `eventsourcing` to append one event for each of `count` accounts."""
    app: Application[UUID] = Application(env=env)
    try:
        began = time.perf_counter()
        for _ in range(count):
            app.save(_Closed("expired_window"))
        return time.perf_counter() - began
    finally:
        app.close()

