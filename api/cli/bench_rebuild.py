"""The rebuild workload of `ledger bench` (ANA-3): a read model rebuilt from the whole log, end
to end including writing its tables, against a plain `eventsourcing` replay of the same events.

Both sides store the same `Progress` streams (`STREAM_EVENTS` events each: the stream's start
and realistic attempts, `bench_progress.attempt`): the ledger sealed under each student's key,
with `ERASED_SHARE` of the students erased, plain `eventsourcing` unsealed with its default JSON
transcoder. The ledger's log also holds the students' own records, so it is slightly longer;
each side is measured in events per second of its own log.

After the fill both sides are left as a log at rest is (`Stores.settle`: vacuumed and analysed
on PostgreSQL). Each side runs in a fresh interpreter (`python -m api.cli.bench_rebuild rebuild
SPEC`, and `bench_workload.replay_in_child` for the plain side), so that the peak RSS is the
rebuild's and the key cache starts cold. The rebuilt read model is a parameter (`projection`,
a runner's name): analytics by default, the rebuild that the issue's users run (`ledger rebuild
analytics`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.application import Application

from api.cli import bench_progress
from api.cli import bench_workload as workload
from api.services import Services
from ledger.application import Ledger
from ledger.progress import Progress
from ledger.settings import Settings

STREAM_EVENTS = 100  # a student's progress stream: its start and 99 attempts
ERASED_SHARE = 100  # one student in this many is erased before the rebuild
DEFAULT_PROJECTION = "analytics"
log = logging.getLogger("ledger.bench")


def progress_stream(student_id: UUID, first_serial: int) -> Progress:
    stream = Progress(student_id)
    for serial in range(first_serial, first_serial + STREAM_EVENTS - 1):
        stream.record(bench_progress.attempt(serial))
    return stream


def fill(ledger: Ledger, plain: Application[UUID], events: int) -> int:
    """About `events` progress events on each side; erases some of the ledger's students.
    Returns the number of students."""
    students = max(1, events // STREAM_EVENTS)
    for n in range(students):
        student = ledger.register_student(f"Student {n}", "14")
        ledger.save(progress_stream(student, n * STREAM_EVENTS))
        plain.save(progress_stream(student, n * STREAM_EVENTS))
        if n % ERASED_SHARE == ERASED_SHARE - 1:
            ledger.erase_subject(student, "user_request")
    return students


def measure(backend: str, postgres_url: str, events: int,
            projection: str = DEFAULT_PROJECTION) -> dict[str, Any]:
    """Fill fresh stores, then rebuild `projection` and replay the plain side, each in a child."""
    stores = workload.Stores.create(backend, postgres_url)
    try:
        ledger, plain = stores.open_ledger(), stores.open_plain()
        try:
            log.info("rebuild: filling %d progress events a side", events)
            students = fill(ledger, plain, events)
        finally:
            ledger.close()
            plain.close()
        stores.settle()
        log.info("rebuild: %s from the whole log, in a fresh process", projection)
        rebuilt = rebuild_in_child(stores, projection)
        replayed = workload.replay_in_child("plain", stores)
    finally:
        stores.remove()
    rebuild_eps = rebuilt.events / rebuilt.seconds
    plain_eps = replayed.events / replayed.seconds
    return {
        "rebuild_projection": projection,
        "rebuild_events": rebuilt.events,
        "rebuild_students": students,
        "rebuild_eps": rebuild_eps,
        "plain_rebuild_replay_eps": plain_eps,
        "rebuild_ratio": rebuild_eps / plain_eps,
        "rebuild_peak_rss_mb": rebuilt.peak_rss_mb,
        "rebuild_baseline_rss_mb": rebuilt.baseline_rss_mb,
    }


def rebuild_in_child(stores: workload.Stores, projection: str) -> workload.ReplayResult:
    spec = {"ledger_settings": dataclasses.asdict(stores.ledger_settings),
            "projection": projection}
    return workload.measure_in_child("api.cli.bench_rebuild", "rebuild", spec,
                                     f"rebuild of {projection}")


def _rebuild_main(spec: dict[str, Any]) -> dict[str, Any]:
    services = Services.open(Settings(**spec["ledger_settings"]))
    try:
        runner = {r.projection.name: r for r in services.runners}[spec["projection"]]
        baseline = workload._max_rss_mb()
        started = time.perf_counter()
        with WorkersPeak() as workers:
            runner.rebuild()
        seconds = time.perf_counter() - started
        # The peaks of this process and of each worker, added up: a bound on the rebuild's
        # memory whether or not the peaks came at the same moment.
        return {"events": services.ledger.recorder.max_notification_id() or 0,
                "seconds": seconds,
                "peak_rss_mb": workload._max_rss_mb() + sum(workers.peaks.values()),
                "baseline_rss_mb": baseline, "workers": len(workers.peaks)}
    finally:
        services.close()


class WorkersPeak:
    """The peak RSS (`VmHWM`) of each child process (a rebuild's workers), read every tenth of a
    second while it runs: a worker's own `ru_maxrss` would carry its parent's."""

    def __init__(self) -> None:
        self.peaks: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> WorkersPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            for child in multiprocessing.active_children():
                try:
                    with open(f"/proc/{child.pid}/status", encoding="ascii") as status:
                        for line in status:
                            if line.startswith("VmHWM:"):
                                peak = int(line.split()[1]) / 1024.0
                                self.peaks[child.pid or 0] = max(
                                    peak, self.peaks.get(child.pid or 0, 0.0))
                except OSError:  # gone, or no /proc here
                    continue


def main(argv: Sequence[str]) -> int:
    if list(argv) == ["rebuild"]:
        print(json.dumps(_rebuild_main(json.loads(sys.stdin.read()))))
        return 0
    if len(argv) >= 2 and argv[0] == "run":  # run BACKEND EVENTS [PROJECTION]: this part alone
        logging.basicConfig(level=logging.INFO)
        url = os.environ.get("LEDGER_BENCH_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
        print(json.dumps(measure(argv[1], url, int(argv[2]), *argv[3:4])))
        return 0
    print("usage: python -m api.cli.bench_rebuild rebuild < SPEC.json"
          " | run BACKEND EVENTS [PROJECTION]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
