"""The workload behind `ledger bench`: one aggregate shape, two applications, timed phases.

Both sides store the same `BenchSubject` events: plain `eventsourcing` (no cipher, its default
`JSONTranscoder`) and the `Ledger` (sealed per subject, orjson). Every aggregate is a subject of
its own, so the ledger creates one data key per aggregate, as it does for each new person.

Replays run in a fresh interpreter (`python -m api.cli.bench_workload replay SPEC`) so that the
peak RSS is that of the replay and the key cache starts cold, as in a projection rebuild.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from ledger import people
from ledger.application import Ledger
from ledger.persistence import eventsourcing_env
from ledger.settings import Settings

PAGE_SIZE = 500
NOTE = "Finished the weekly exercise set; revisit equivalent fractions next"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class BenchSubject(Aggregate):
    """The benchmark's aggregate: a learner's progress, 10 events per stream in the workload."""

    @event("Started")
    def __init__(self, id: UUID, display_name: str, level_id: str, attempts: int,
                 note: str) -> None:
        self.display_name = display_name
        self.level_id = level_id
        self.attempts = attempts
        self.note = note

    @event("Recorded")
    def record(self, display_name: str, level_id: str, attempts: int, note: str) -> None:
        self.display_name = display_name
        self.level_id = level_id
        self.attempts = attempts
        self.note = note

    @event("SignedIn")
    def sign_in(self, method: str, region: str | None) -> None:
        """The shape of the ledger's `Person.SignedIn`, for the sign-in rows."""
        self.last_signed_in = (method, region)


class PlainBench(Application[UUID]):
    """Plain `eventsourcing`: no cipher, no compressor, the default JSON transcoder."""

    name = "PlainBench"


def payload(serial: int, step: int) -> dict[str, Any]:
    return {
        "display_name": f"Learner {serial:07d}",
        "level_id": str(uuid4()),
        "attempts": step,
        "note": NOTE,
    }


# -- the stores ------------------------------------------------------------------------------
@dataclass
class Stores:
    """A fresh temp directory, and on PostgreSQL three fresh schemas, dropped by `remove()`."""

    backend: str
    var_dir: str
    ledger_settings: Settings
    plain_env: dict[str, str]
    postgres_url: str | None = None
    schemas: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, backend: str, postgres_url: str) -> Stores:
        var_dir = tempfile.mkdtemp(prefix="ledger-bench-")
        try:
            if backend == "sqlite":
                settings = Settings.build(var_dir=var_dir)
                plain = Settings.build(
                    database_url=f"sqlite:///{os.path.join(var_dir, 'plain.sqlite3')}",
                    var_dir=var_dir,
                )
                return cls(backend, var_dir, settings, eventsourcing_env(plain))
            schema = f"bench_{uuid4().hex[:12]}"
            settings = Settings.build(database_url=postgres_url, schema=schema, var_dir=var_dir)
            plain = Settings.build(database_url=postgres_url, schema=f"{schema}_plain",
                                   var_dir=var_dir)
            stores = cls(backend, var_dir, settings, {}, postgres_url,
                         [settings.schema, settings.keystore_schema, plain.schema])
            stores.plain_env = eventsourcing_env(plain)  # creates the plain schema
            return stores
        except BaseException:
            shutil.rmtree(var_dir, ignore_errors=True)
            raise

    def remove(self) -> None:
        try:
            if self.postgres_url is not None and self.schemas:
                with psycopg.connect(self.postgres_url, autocommit=True) as conn:
                    for schema in self.schemas:
                        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            shutil.rmtree(self.var_dir, ignore_errors=True)

    def settle(self) -> None:
        """Leave freshly filled stores as a log at rest is: on PostgreSQL, every table of the
        stores vacuumed and analysed, as autovacuum would have done (it is off on some servers,
        this machine's among them). Otherwise the first reader of each row pays for marking it
        visible to all (hint bits), which no rebuild of a settled log pays. Both sides alike."""
        if self.postgres_url is None or not self.schemas:
            return
        with psycopg.connect(self.postgres_url, autocommit=True) as conn:
            tables = conn.execute("SELECT schemaname, tablename FROM pg_tables"
                                  " WHERE schemaname = ANY(%s)", (self.schemas,)).fetchall()
            for schema, table in tables:
                conn.execute(f'VACUUM (ANALYZE) "{schema}"."{table}"')

    def open_plain(self) -> PlainBench:
        return PlainBench(env=self.plain_env)

    def open_ledger(self) -> Ledger:
        return Ledger(self.ledger_settings)


# -- appends ---------------------------------------------------------------------------------
def append_streams(app: Application[UUID], streams: int, first_serial: int,
                   keep: list[BenchSubject], keep_max: int) -> float:
    """Save `streams` new aggregates of 10 events, one `save()` each. Timed: the new id (the
    ledger's comes with its data key), the domain calls and `save()`; payloads are made outside."""
    elapsed = 0.0
    new_id = app.keys.new_subject if isinstance(app, Ledger) else uuid4
    for serial in range(first_serial, first_serial + streams):
        payloads = [payload(serial, step) for step in range(10)]
        started = time.perf_counter()
        subject = BenchSubject(new_id(), **payloads[0])
        for later in payloads[1:]:
            subject.record(**later)
        app.save(subject)
        elapsed += time.perf_counter() - started
        if len(keep) < keep_max:
            keep.append(subject)
    return elapsed


def append_singles(app: Application[UUID], subjects: Sequence[BenchSubject], count: int,
                   offset: int) -> float:
    """Add one event to each of `count` existing aggregates, one `save()` each."""
    elapsed = 0.0
    for i in range(offset, offset + count):
        subject = subjects[i % len(subjects)]
        subject.record(**payload(i, subject.version))
        started = time.perf_counter()
        app.save(subject)
        elapsed += time.perf_counter() - started
    return elapsed


# -- replay ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplayResult:
    events: int
    seconds: float
    peak_rss_mb: float
    baseline_rss_mb: float


def _max_rss_mb() -> float:
    """This process's peak RSS. On Linux `ru_maxrss` carries the parent's peak across fork and
    exec, so a child reads its own high-water mark, `VmHWM`, where there is one."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def replay(app: Application[UUID], page_size: int = PAGE_SIZE) -> tuple[int, float]:
    """Read and decode every event by pages of the notification log, holding one page at most."""
    recorder, mapper = app.recorder, app.mapper
    count, start, inclusive = 0, None, True
    started = time.perf_counter()
    if isinstance(app, Ledger):  # the ledger's own replay path, as projections use it
        position = 0
        while (log_page := app.read_log(position, page_size)).events:
            count += len(log_page.events)
            position = log_page.last_id
        return count, time.perf_counter() - started
    while True:
        page = recorder.select_notifications(start, page_size, inclusive_of_start=inclusive)
        if not page:
            break
        for notification in page:
            mapper.to_domain_event(notification)
        count += len(page)
        start, inclusive = page[-1].id, False
    return count, time.perf_counter() - started


def replay_in_child(side: str, stores: Stores) -> ReplayResult:
    """Run `replay` for one side in a fresh interpreter and return what it measured."""
    spec = {
        "side": side,
        "plain_env": stores.plain_env,
        "ledger_settings": dataclasses.asdict(stores.ledger_settings),
    }
    return measure_in_child("api.cli.bench_workload", "replay", spec, f"{side} replay")


def measure_in_child(module: str, action: str, spec: dict[str, Any], what: str
                     ) -> ReplayResult:
    """`python -m MODULE ACTION` in a fresh interpreter, `spec` as JSON on its stdin; its last
    line of output is what it measured (events, seconds, peak and baseline RSS)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
    )
    done = subprocess.run(  # noqa: S603 (our own modules, named by our callers)
        [sys.executable, "-m", module, action],
        input=json.dumps(spec), capture_output=True, text=True, env=env, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return ReplayResult(int(result["events"]), float(result["seconds"]),
                        float(result["peak_rss_mb"]), float(result["baseline_rss_mb"]))


def _replay_main(spec: dict[str, Any]) -> dict[str, Any]:
    app: Application[UUID]
    if spec["side"] == "ledger":
        app = Ledger(Settings(**spec["ledger_settings"]))
    else:
        app = PlainBench(env=spec["plain_env"])
    try:
        baseline = _max_rss_mb()
        events, seconds = replay(app)
        return {"events": events, "seconds": seconds, "peak_rss_mb": _max_rss_mb(),
                "baseline_rss_mb": baseline}
    finally:
        app.close()


# -- erasure ---------------------------------------------------------------------------------
def erase_latencies_ms(ledger: Ledger, count: int) -> list[float]:
    """Register `count` students of 10 events each, then erase them one at a time, timed."""
    today = datetime.now(UTC).date()
    ids: list[UUID] = []
    for i in range(count):
        person = people.register(people.Student, f"Erasable {i:05d}", "15", today,
                                 ledger.keys.new_subject)
        for step in range(9):
            person.rename(f"Erasable {i:05d} {step}")
        ledger.save(person)
        ids.append(person.id)
    latencies = []
    for person_id in ids:
        started = time.perf_counter()
        ledger.erase_subject(person_id, "user_request")
        latencies.append((time.perf_counter() - started) * 1000.0)
    return latencies


def main(argv: Sequence[str]) -> int:
    if list(argv) != ["replay"]:
        print("usage: python -m api.cli.bench_workload replay < SPEC.json", file=sys.stderr)
        return 2
    print(json.dumps(_replay_main(json.loads(sys.stdin.read()))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
