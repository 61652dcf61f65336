"""`ledger bench`: the ledger against plain `eventsourcing`, in one run, on one backend.

Measures, for the same aggregate and payload (see `api.cli.bench_workload`):

- appends of 10 events per `save()` (one new aggregate, so one new subject key, per save) and of
  1 event per `save()` on existing aggregates; only the time inside `save()` counts;
- a full-log replay (`select_notifications` pages of 500, `mapper.to_domain_event` per event)
  in a fresh interpreter for each side, with the ledger replay's peak RSS;
- erasure latency of `Ledger.erase_subject`, one subject at a time;
- sign-in through the service layer (see `api.cli.bench_accounts`): by password, its scrypt
  hash reported apart and taken out of the ratio, and by secret words, each against a plain
  get-and-append of one event;
- a teacher's roster of a 30-student section (what backs `GET /sections/{id}/students`),
  through the service layer and through HTTP in-process, against a plain read of 30 streams;
- attempts recorded through the service layer (see `api.cli.bench_progress`), one per save and
  10 per save, on students who already have progress streams, each against a plain get, record
  and save of an aggregate of the same shape;
- a teacher's progress grid of a 30-student section over 100 levels (what backs
  `GET /sections/{id}/progress`), p50 and p99, with `--grid-attempts` attempts in the store;
- the purge job over `--purges` due accounts, each with a term's records (see
  `api.cli.bench_purge`), its rate, the time 10,000 would take and its memory, against plain
  appends of one event an account; and erasure at once (`DELETE /people/{id}`), p50 and p99;
- a read model rebuilt from the whole log (see `api.cli.bench_rebuild`), `--rebuild-events`
  progress events, tables written, in a fresh interpreter with its peak RSS, against a plain
  replay of the same events;
- the access record's cost on a teacher's read of a student (what `GET /students/{id}` does,
  see `api.cli.bench_audit`), 8 readers at once, with the record against without it; and the
  query by student (a page of 100 and its records opened) over `--audit-records` records.

The machine is shared and noisy, so appends and replays run in rounds, plain and ledger taking
turns to go first, and each ratio is the median of the per-round ratios (ledger / plain).
Every run uses a fresh temp directory (SQLite) or fresh schemas (PostgreSQL), removed at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from api.cli import bench_accounts as accounts
from api.cli import bench_audit as audit
from api.cli import bench_merkle as merkle
from api.cli import bench_progress as progress
from api.cli import bench_purge as purge
from api.cli import bench_rebuild as rebuild
from api.cli import bench_workload as workload
from api.cli.runtime import tuned_after_start_up
from api.services import Services
from crypto import passwords
from ledger.application import Ledger

DEFAULT_POSTGRES_URL = "postgresql://root@127.0.0.1:5432/test"
MAX_SINGLES = 20_000
MAX_REPLAY_ROUNDS = 3
SECRET_SIGN_INS_PER_PASSWORD = 25  # a secret-word sign-in costs no hash: many more of them
P = TypeVar("P")
L = TypeVar("L")
log = logging.getLogger("ledger.bench")


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "bench",
        help="measure the ledger against plain eventsourcing (appends, replay, erasure)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--events", type=int, default=20_000,
                        help="events appended by each side in 10-event saves (default 20000)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of alternating plain/ledger phases (default 5)")
    parser.add_argument("--erasures", type=int, default=None,
                        help="subjects to erase (default: events/100, from 20 to 200)")
    parser.add_argument("--sign-ins", type=int, default=10,
                        help="password sign-ins (default 10; each costs a scrypt hash, and as"
                             " many hashes are timed alone); secret-word sign-ins:"
                             f" {SECRET_SIGN_INS_PER_PASSWORD} times as many")
    parser.add_argument("--roster-reads", type=int, default=200,
                        help="reads of a 30-student roster, through the service layer and again"
                             " through HTTP (default 200)")
    parser.add_argument("--attempts", type=int, default=5_000,
                        help="attempts recorded by each side one per save, and as many again"
                             f" {progress.BATCH} per save (default 5000)")
    parser.add_argument("--grid-attempts", type=int, default=20_000,
                        help="attempts in the store for the teacher grid, recorded"
                             f" {progress.FILL_BATCH} a save (default 20000)")
    parser.add_argument("--grid-reads", type=int, default=200,
                        help="reads of the 30-student x 100-level grid (default 200)")
    parser.add_argument("--purges", type=int, default=1_000,
                        help="due accounts the purge job purges (default 1000)")
    parser.add_argument("--erasures-now", type=int, default=100,
                        help="accounts erased at once, one at a time (default 100)")
    parser.add_argument("--audit-reads", type=int, default=4_000,
                        help="teacher reads of a student by 8 threads, with the access record"
                             " and as many without (default 4000)")
    parser.add_argument("--audit-records", type=int, default=1_000_000,
                        help="access records in the store for the query by student"
                             " (default 1000000)")
    parser.add_argument("--audit-queries", type=int, default=200,
                        help="queries by student, a page of 100 each (default 200)")
    parser.add_argument("--merkle-proofs", type=int, default=1_000,
                        help="inclusion proofs over the whole store, after the audit trail's"
                             " records (default 1000)")
    parser.add_argument("--rebuild-events", type=int, default=1_000_000,
                        help="progress events a side for the rebuild of a read model from the"
                             " whole log (0: skip it; default: 1,000,000)")
    parser.add_argument("--rebuild-projection", default=rebuild.DEFAULT_PROJECTION,
                        help="the read model rebuilt (a runner's name; default: progress)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("LEDGER_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="PostgreSQL server for --backend postgres (default: $LEDGER_TEST_POSTGRES_URL or "
             f"{DEFAULT_POSTGRES_URL})",
    )
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class Plan:
    backend: str
    events: int
    rounds: int
    singles: int
    erasures: int
    sign_ins: int = 10
    account_rounds: int = 1
    roster_reads: int = 200
    roster_rounds: int = 1
    attempts: int = 5_000
    attempt_rounds: int = 1
    grid_attempts: int = 20_000
    grid_reads: int = 200
    purges: int = 1_000
    erasures_now: int = 100
    audit_reads: int = 4_000
    audit_records: int = 1_000_000
    audit_queries: int = 200
    merkle_proofs: int = 1_000

    @property
    def secret_sign_ins(self) -> int:
        return self.sign_ins * SECRET_SIGN_INS_PER_PASSWORD

    @classmethod
    def from_args(cls, backend: str, events: int, rounds: int, erasures: int | None,
                  sign_ins: int = 10, roster_reads: int = 200, attempts: int = 5_000,
                  grid_attempts: int = 20_000, grid_reads: int = 200, purges: int = 1_000,
                  erasures_now: int = 100, audit_reads: int = 4_000,
                  audit_records: int = 1_000_000, audit_queries: int = 200,
                  merkle_proofs: int = 1_000) -> Plan:
        if events < 100:
            raise ValueError("--events must be at least 100")
        rounds = max(1, min(rounds, events // 10))
        singles = min(max(events // 10, rounds), MAX_SINGLES)
        if erasures is None:
            erasures = min(200, max(20, events // 100))
        if erasures < 1:
            raise ValueError("--erasures must be at least 1")
        if sign_ins < 1:
            raise ValueError("--sign-ins must be at least 1")
        if roster_reads < 1:
            raise ValueError("--roster-reads must be at least 1")
        if attempts < progress.BATCH:
            raise ValueError(f"--attempts must be at least {progress.BATCH}")
        if grid_attempts < accounts.SECTION_SIZE:
            raise ValueError(f"--grid-attempts must be at least {accounts.SECTION_SIZE}")
        if grid_reads < 1:
            raise ValueError("--grid-reads must be at least 1")
        if purges < 1 or erasures_now < 1:
            raise ValueError("--purges and --erasures-now must be at least 1")
        if audit_reads < audit.READERS:
            raise ValueError(f"--audit-reads must be at least {audit.READERS}")
        if audit_records < 2 * audit.PAGE * 4:
            raise ValueError(f"--audit-records must be at least {2 * audit.PAGE * 4}")
        if audit_queries < 1:
            raise ValueError("--audit-queries must be at least 1")
        if merkle_proofs < 1:
            raise ValueError("--merkle-proofs must be at least 1")
        return cls(backend, events, rounds, singles, erasures, sign_ins,
                   min(rounds, sign_ins), roster_reads, min(rounds, roster_reads), attempts,
                   min(rounds, attempts // progress.BATCH), grid_attempts, grid_reads, purges,
                   erasures_now, audit_reads, audit_records, audit_queries, merkle_proofs)

    def share(self, total: int, round_index: int, rounds: int | None = None) -> int:
        """Round `round_index`'s part of `total` (of `rounds`, by default `self.rounds`), the
        remainder going to the last round."""
        rounds = rounds or self.rounds
        part = total // rounds
        return part + (total - part * rounds if round_index == rounds - 1 else 0)


@dataclass
class Paired:
    """Per-round rates of both sides (events/s); the ratio is the median of per-round ratios."""

    plain: list[float] = field(default_factory=list)
    ledger: list[float] = field(default_factory=list)

    def add(self, plain: float, ledger: float) -> None:
        self.plain.append(plain)
        self.ledger.append(ledger)

    @property
    def ratio(self) -> float:
        return statistics.median(lg / pl for pl, lg in zip(self.plain, self.ledger, strict=True))

    @property
    def plain_median(self) -> float:
        return statistics.median(self.plain)

    @property
    def ledger_median(self) -> float:
        return statistics.median(self.ledger)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100.0 * len(ordered)) - 1)]


def _alternate(round_index: int, plain: Callable[[], P], ledger: Callable[[], L]
               ) -> tuple[P, L]:
    """Run both phases, plain first on even rounds, and return (plain, ledger) results."""
    if round_index % 2 == 0:
        first = plain()
        return first, ledger()
    second = ledger()
    return plain(), second


def measure(plan: Plan, postgres_url: str) -> dict[str, Any]:
    started = time.perf_counter()
    stores = workload.Stores.create(plan.backend, postgres_url)
    try:
        plain_app = stores.open_plain()
        clock = purge.Clock()  # the lifecycle's: deletions asked for 30 days ago
        services = Services.open(stores.ledger_settings, clock=clock)
        try:
            # As `ledger serve` does once started, so that what is measured is that process.
            with tuned_after_start_up():
                result = _measure(plan, stores, plain_app, services.ledger)
                log.info("accounts: %d teachers and %d students sign up (outside the timing)",
                         min(accounts.TEACHERS, plan.sign_ins), accounts.SECTION_SIZE)
                fixture = accounts.set_up(services, min(accounts.TEACHERS, plan.sign_ins))
                result.update(_measure_sign_in(plan, services, plain_app, fixture))
                result.update(_measure_roster(plan, services, plain_app, fixture))
                result.update(_measure_grid(plan, services, fixture))
                result.update(_measure_attempts(plan, stores, services.ledger))
                result.update(_measure_purge(plan, stores, services, clock))
                result.update(_measure_audit(plan, services, fixture))
                result.update(_measure_merkle(plan, services, plain_app))
                result["seconds"] = time.perf_counter() - started
                return result
        finally:
            plain_app.close()
            services.close()
    finally:
        stores.remove()


def _measure(plan: Plan, stores: workload.Stores, plain_app: workload.PlainBench,
             ledger: Ledger) -> dict[str, Any]:
    # Warm up both sides (tables, pools, the ledger's own key), outside every timing.
    warm: list[workload.BenchSubject] = []
    for app in (plain_app, ledger):
        workload.append_streams(app, 2, 0, warm, 0)

    log.info("append: %d events a side in %d rounds of 10-event saves", plan.events, plan.rounds)
    append = Paired()
    keep: dict[str, list[workload.BenchSubject]] = {"plain": [], "ledger": []}
    serial = 0
    for r in range(plan.rounds):
        streams = plan.share(plan.events // 10, r)

        def phase(app: Any, side: str, streams: int = streams, first: int = serial) -> float:
            seconds = workload.append_streams(app, streams, first, keep[side], plan.singles)
            return streams * 10 / seconds

        append.add(*_alternate(r, lambda: phase(plain_app, "plain"),
                               lambda: phase(ledger, "ledger")))
        serial += streams

    log.info("append: %d single-event saves a side", plan.singles)
    single = Paired()
    offset = 0
    for r in range(plan.rounds):
        count = plan.share(plan.singles, r)

        def singles(app: Any, side: str, count: int = count, offset: int = offset) -> float:
            return count / workload.append_singles(app, keep[side], count, offset)

        single.add(*_alternate(r, lambda: singles(plain_app, "plain"),
                               lambda: singles(ledger, "ledger")))
        offset += count
    keep.clear()

    replay_rounds = min(plan.rounds, MAX_REPLAY_ROUNDS)
    log.info("replay: %d rounds, each side in a fresh process", replay_rounds)
    replay = Paired()
    replays: dict[str, list[workload.ReplayResult]] = {"plain": [], "ledger": []}

    def replay_side(side: str) -> float:
        result = workload.replay_in_child(side, stores)
        replays[side].append(result)
        return result.events / result.seconds

    for r in range(replay_rounds):
        replay.add(*_alternate(r, lambda: replay_side("plain"), lambda: replay_side("ledger")))
    counts = {res.events for side in replays.values() for res in side}
    if len(counts) != 1:
        raise RuntimeError(f"the two logs differ in length: {sorted(counts)}")

    log.info("erase: %d subjects, one at a time", plan.erasures)
    latencies = workload.erase_latencies_ms(ledger, plan.erasures)

    ledger_rss = max(res.peak_rss_mb for res in replays["ledger"])
    return {
        "backend": plan.backend,
        "events": plan.events,
        "rounds": plan.rounds,
        "append_ratio": append.ratio,
        "append_single_ratio": single.ratio,
        "replay_ratio": replay.ratio,
        "erase_p50_ms": percentile(latencies, 50),
        "erase_p99_ms": percentile(latencies, 99),
        "replay_peak_rss_mb": ledger_rss,
        "plain_append_eps": append.plain_median,
        "ledger_append_eps": append.ledger_median,
        "singles": plan.singles,
        "plain_append_single_eps": single.plain_median,
        "ledger_append_single_eps": single.ledger_median,
        "replayed_events": counts.pop(),
        "plain_replay_eps": replay.plain_median,
        "ledger_replay_eps": replay.ledger_median,
        "replay_baseline_rss_mb": min(res.baseline_rss_mb for res in replays["ledger"]),
        "plain_replay_peak_rss_mb": max(res.peak_rss_mb for res in replays["plain"]),
        "erasures": plan.erasures,
        "erase_max_ms": max(latencies),
    }


def _measure_sign_in(plan: Plan, services: Services, plain_app: workload.PlainBench,
                     fixture: accounts.AccountFixture) -> dict[str, Any]:
    plain_ids = accounts.plain_streams(plain_app, accounts.SECTION_SIZE)
    # Warm-up, untimed: the throttle's table, the sign-in paths, the plain side's streams.
    accounts.password_sign_ins(services, fixture.teacher_logins, 1, 0)
    accounts.secret_sign_ins(services, fixture.join_code, fixture.students, 1, 0)
    accounts.plain_append_get(plain_app, plain_ids, 1, 0)

    rounds = plan.account_rounds
    log.info("sign-in: %d by password, %d by secret words, in %d rounds", plan.sign_ins,
             plan.secret_sign_ins, rounds)
    secret, minus_hash = Paired(), Paired()
    password_rate: list[float] = []
    hash_in_ms: list[float] = []
    alone_ms: list[float] = []
    done_password = done_secret = 0
    for r in range(rounds):
        n_password = plan.share(plan.sign_ins, r, rounds)
        n_secret = plan.share(plan.secret_sign_ins, r, rounds)

        def plain(n: int = n_secret, offset: int = done_secret) -> float:
            return n / accounts.plain_append_get(plain_app, plain_ids, n, offset)

        def ledger(n: int = n_secret, m: int = n_password, offset: int = done_secret,
                   offset_password: int = done_password) -> tuple[float, float, float, float]:
            secret_rate = n / accounts.secret_sign_ins(services, fixture.join_code,
                                                       fixture.students, n, offset)
            total, hashing = accounts.password_sign_ins(services, fixture.teacher_logins, m,
                                                        offset_password)
            return secret_rate, total / m, hashing / m, accounts.scrypt_alone(m) / m

        plain_rate, (secret_rate, total, hashing, alone) = _alternate(r, plain, ledger)
        secret.add(plain_rate, secret_rate)
        minus_hash.add(plain_rate, 1.0 / (total - hashing))
        password_rate.append(1.0 / total)
        hash_in_ms.append(hashing * 1000.0)
        alone_ms.append(alone * 1000.0)
        done_password += n_password
        done_secret += n_secret

    cost = passwords.DEFAULT_COST
    return {
        "sign_ins": plan.sign_ins,
        "secret_sign_ins": plan.secret_sign_ins,
        "sign_in_rounds": rounds,
        "scrypt_cost": f"n=2^{cost.log2_n}, r={cost.r}, p={cost.p}",
        "sign_in_password_per_s": statistics.median(password_rate),
        "sign_in_password_ms": statistics.median(1000.0 / rate for rate in password_rate),
        "sign_in_hash_ms": statistics.median(hash_in_ms),
        "scrypt_alone_ms": statistics.median(alone_ms),
        "sign_in_minus_hash_ms": statistics.median(1000.0 / rate for rate in minus_hash.ledger),
        "sign_in_minus_hash_ratio": minus_hash.ratio,
        "sign_in_secret_per_s": secret.ledger_median,
        "sign_in_secret_ms": statistics.median(1000.0 / rate for rate in secret.ledger),
        "sign_in_secret_ratio": secret.ratio,
        "plain_append_get_per_s": secret.plain_median,
        "plain_append_get_ms": statistics.median(1000.0 / rate for rate in secret.plain),
    }


def _measure_roster(plan: Plan, services: Services, plain_app: workload.PlainBench,
                    fixture: accounts.AccountFixture) -> dict[str, Any]:
    size = accounts.SECTION_SIZE
    plain_ids = accounts.plain_streams(plain_app, size)  # fresh: two events each, as a student
    with accounts.quiet_request_log():
        http = accounts.HttpRoster(services, fixture)
        try:
            # Warm-up, untimed, and a check that both doors answer the whole roster.
            for rows in (accounts.roster_rows(services, fixture.principal, fixture.section_id),
                         http.read()):
                if len(rows) != size or any("display_name" not in row for row in rows):
                    raise RuntimeError(f"the roster read gave {len(rows)} rows, not {size}")
            accounts.plain_read(plain_app, plain_ids)

            rounds = plan.roster_rounds
            log.info("roster: %d reads of %d students through each door, in %d rounds",
                     plan.roster_reads, size, rounds)
            service, through_http = Paired(), Paired()
            service_ms: list[float] = []
            http_ms: list[float] = []
            for r in range(rounds):
                n = plan.share(plan.roster_reads, r, rounds)

                def plain(n: int = n) -> float:
                    return n / sum(accounts.plain_read(plain_app, plain_ids) for _ in range(n))

                def ledger(n: int = n) -> tuple[list[float], list[float]]:
                    by_service = accounts.latencies_ms(
                        lambda: accounts.roster_rows(services, fixture.principal,
                                                     fixture.section_id), n)
                    return by_service, accounts.latencies_ms(http.read, n)

                plain_rate, (by_service, by_http) = _alternate(r, plain, ledger)
                service.add(plain_rate, 1000.0 * n / sum(by_service))
                through_http.add(plain_rate, 1000.0 * n / sum(by_http))
                service_ms += by_service
                http_ms += by_http
        finally:
            http.close()
    return {
        "roster_reads": plan.roster_reads,
        "roster_rounds": rounds,
        "roster_section_size": size,
        "roster_service_per_s": service.ledger_median,
        "roster_service_p50_ms": percentile(service_ms, 50),
        "roster_service_p99_ms": percentile(service_ms, 99),
        "roster_service_ratio": service.ratio,
        "roster_http_per_s": through_http.ledger_median,
        "roster_http_p50_ms": percentile(http_ms, 50),
        "roster_http_p99_ms": percentile(http_ms, 99),
        "roster_http_ratio": through_http.ratio,
        "plain_read_section_per_s": service.plain_median,
        "plain_read_section_ms": statistics.median(1000.0 / rate for rate in service.plain),
    }


def _measure_attempts(plan: Plan, stores: workload.Stores, ledger: Ledger) -> dict[str, Any]:
    plain_app = progress.PlainProgressBench(env=stores.plain_env)
    try:
        log.info("attempts: %d students a side, each with a progress stream (outside the"
                 " timing)", progress.STUDENTS)
        fixture = progress.set_up(ledger, plain_app)
        # Warm-up, untimed: both paths, one save each.
        progress.ledger_attempts(ledger, fixture.students, progress.BATCH, progress.BATCH, 0)
        progress.plain_attempts(plain_app, fixture.plain, progress.BATCH, progress.BATCH, 0)

        rounds = plan.attempt_rounds
        out: dict[str, Any] = {"attempts": plan.attempts, "attempt_rounds": rounds,
                               "attempt_batch": progress.BATCH}
        for key, per_save in (("attempt_single", 1), ("attempt_batch", progress.BATCH)):
            log.info("attempts: %d a side, %d a save, in %d rounds", plan.attempts, per_save,
                     rounds)
            paired = Paired()
            done = progress.BATCH  # after the warm-up's
            for r in range(rounds):
                n = plan.share(plan.attempts, r, rounds) // per_save * per_save

                def plain(n: int = n, offset: int = done, per_save: int = per_save) -> float:
                    return n / progress.plain_attempts(plain_app, fixture.plain, n, per_save,
                                                       offset)

                def sealed(n: int = n, offset: int = done, per_save: int = per_save) -> float:
                    return n / progress.ledger_attempts(ledger, fixture.students, n, per_save,
                                                        offset)

                paired.add(*_alternate(r, plain, sealed))
                done += n
            out[f"{key}_ratio"] = paired.ratio
            out[f"plain_{key}_per_s"] = paired.plain_median
            out[f"ledger_{key}_per_s"] = paired.ledger_median
        return out
    finally:
        plain_app.close()


def _measure_grid(plan: Plan, services: Services, fixture: accounts.AccountFixture
                  ) -> dict[str, Any]:
    section = services.roster_reader.students_of_section(fixture.section_id)
    log.info("grid: %d attempts into the store, %d a save", plan.grid_attempts,
             progress.FILL_BATCH)
    started = time.perf_counter()
    filled = progress.fill(
        services.ledger, section, plan.grid_attempts,
        lambda n: services.ledger.register_student(f"Grid Student {n}", "12"),
        lambda done: log.info("grid: %d attempts recorded", done))
    fill_seconds = time.perf_counter() - started
    log.info("grid: catching the progress view up")
    started = time.perf_counter()
    services.settle()
    catch_up_seconds = time.perf_counter() - started

    levels = progress.LEVELS

    def by_service() -> int:
        found = services.section_progress(fixture.principal, fixture.section_id, levels)
        if found is None:
            raise LookupError("not this teacher's section")
        return sum(len(row) for row in found.levels.values())

    def by_reader() -> int:
        return sum(len(row) for row in services.progress_reader.grid(section, levels).values())

    each = progress.section_attempts(plan.grid_attempts, len(section))
    cells = len(section) * min(each, len(levels))  # the first `each` levels are tried
    for read in (by_service, by_reader):  # warm-up, untimed, and a check of the cells
        if (got := read()) != cells:
            raise RuntimeError(f"the grid gave {got} cells, not {cells}")
    log.info("grid: %d reads of %d students x %d levels", plan.grid_reads, len(section),
             len(levels))
    service_ms = accounts.latencies_ms(by_service, plan.grid_reads)
    reader_ms = accounts.latencies_ms(by_reader, plan.grid_reads)
    return {
        "grid_attempts": filled,
        "grid_students": len(section),
        "grid_levels": len(levels),
        "grid_cells": cells,
        "grid_reads": plan.grid_reads,
        "grid_fill_attempts_per_s": filled / fill_seconds,
        "grid_catch_up_s": catch_up_seconds,
        "grid_service_p50_ms": percentile(service_ms, 50),
        "grid_service_p99_ms": percentile(service_ms, 99),
        "grid_reader_p50_ms": percentile(reader_ms, 50),
        "grid_reader_p99_ms": percentile(reader_ms, 99),
    }


TARGETS: dict[str, tuple[str, float]] = {
    "append_ratio": (">=", 0.95),
    "append_single_ratio": (">=", 0.95),
    "replay_ratio": (">=", 1.0),
    "erase_p99_ms": ("<=", 20.0),
    "replay_peak_rss_mb": ("<=", 300.0),
    "attempt_single_ratio": (">=", 0.9),
    "attempt_batch_ratio": (">=", 0.9),
    "grid_service_p99_ms": ("<=", 50.0),
    "purge_10k_s": ("<=", 30.0),  # on PostgreSQL
    "erase_now_p99_ms": ("<=", 50.0),
    "audit_read_ratio": (">=", 0.5),  # on PostgreSQL
    "audit_query_p95_ms": ("<=", 20.0),  # on PostgreSQL
    "merkle_verify_per_s": (">=", 200_000.0),  # on SQLite
    "merkle_proof_p99_ms": ("<=", 5.0),  # at a million leaves
    "merkle_append_ratio": (">=", 0.9),
    "rebuild_eps": (">=", 50_000.0),  # on PostgreSQL, at 1,000,000 events
    "rebuild_peak_rss_mb": ("<=", 300.0),
}


def _measure_audit(plan: Plan, services: Services, fixture: accounts.AccountFixture
                   ) -> dict[str, Any]:
    rounds = max(1, min(plan.rounds, plan.audit_reads // audit.READERS))
    log.info("audit: %d teacher reads a side by %d threads, in %d rounds", plan.audit_reads,
             audit.READERS, rounds)
    rates = audit.read_ratio(services, fixture, plan.audit_reads, rounds)
    log.info("audit: %d access records through the ledger, then the index", plan.audit_records)
    trail = audit.fill(services, plan.audit_records)
    log.info("audit: %d queries by student, opened one by one and in bulk", plan.audit_queries)
    bulk = audit.query_ms(services, trail, plan.audit_queries, bulk=True)
    single = audit.query_ms(services, trail, plan.audit_queries, bulk=False)
    return {
        "audit_reads": plan.audit_reads,
        "audit_readers": audit.READERS,
        "audit_read_rounds": rounds,
        "audit_recorded_reads_per_s": statistics.median(rates.recorded),
        "audit_unrecorded_reads_per_s": statistics.median(rates.unrecorded),
        "audit_read_ratio": rates.ratio,
        "audit_records": trail.records,
        "audit_student_records": trail.student_records,
        "audit_fill_records_per_s": trail.records / trail.fill_seconds,
        "audit_catch_up_s": trail.catch_up_seconds,
        "audit_queries": plan.audit_queries,
        "audit_query_p50_ms": percentile(bulk, 50),
        "audit_query_p95_ms": percentile(bulk, 95),
        "audit_query_p99_ms": percentile(bulk, 99),
        "audit_query_one_by_one_p50_ms": percentile(single, 50),
        "audit_query_one_by_one_p95_ms": percentile(single, 95),
        "audit_query_one_by_one_p99_ms": percentile(single, 99),
    }


def _measure_merkle(plan: Plan, services: Services, plain_app: workload.PlainBench
                    ) -> dict[str, Any]:
    """The tamper-evident log (issue 7) over everything stored so far (see bench_merkle)."""
    log.info("merkle log: seal and verify the whole store; %d inclusion proofs",
             plan.merkle_proofs)
    result = merkle.verify_rate(services.merkle_log, services.ledger.signer.public_key,
                                plain_app)
    result.update(merkle.proof_latencies_ms(services.merkle_log, plan.merkle_proofs))
    log.info("merkle log: appends with a sealer following, %d rounds", plan.rounds)
    result.update(merkle.append_with_sealer_ratio(services.merkle_log, services.ledger,
                                                  5 * plan.events, plan.rounds))
    return result


def _measure_purge(plan: Plan, stores: workload.Stores, services: Services,
                   clock: purge.Clock) -> dict[str, Any]:
    log.info("purge: %d due accounts with records (outside the timing)", plan.purges)
    purge.fill_due(services, clock, plan.purges)
    log.info("purge: the job over %d accounts", plan.purges)
    run = purge.purge_all(services, clock, plan.purges)
    plain_seconds = purge.plain_one_event_each(stores.plain_env, plan.purges)
    log.info("erase at once: %d accounts, one at a time", plan.erasures_now)
    latencies = purge.erase_now_ms(services, plan.erasures_now)
    return {
        "purges": run.purged,
        "purge_per_s": run.per_second,
        "purge_10k_s": 10_000 / run.per_second,
        "purge_rss_start_mb": run.rss_start_mb,
        "purge_rss_peak_mb": run.rss_peak_mb,
        "plain_one_event_per_s": plan.purges / plain_seconds,
        "purge_ratio": run.per_second / (plan.purges / plain_seconds),
        "erasures_now": len(latencies),
        "erase_now_p50_ms": percentile(latencies, 50),
        "erase_now_p99_ms": percentile(latencies, 99),
    }


def render(result: dict[str, Any]) -> str:
    def verdict(key: str) -> str:
        if key not in TARGETS:
            return ""
        op, bound = TARGETS[key]
        ok = result[key] >= bound if op == ">=" else result[key] <= bound
        return f"target {op} {bound:g}: {'met' if ok else 'MISSED'}"

    rows = [
        ("append, 10 events/save", "plain_append_eps", "ledger_append_eps", "append_ratio"),
        ("append, 1 event/save", "plain_append_single_eps", "ledger_append_single_eps",
         "append_single_ratio"),
        ("replay (decode all)", "plain_replay_eps", "ledger_replay_eps", "replay_ratio"),
    ]
    lines = [
        f"ledger bench: {result['backend']}, {result['events']:,} events a side, "
        f"{result['rounds']} rounds, {result['seconds']:.1f} s",
        "",
        f"{'events/s':<24}{'plain':>12}{'ledger':>12}{'ratio':>8}  ",
    ]
    for label, plain, sealed, ratio in rows:
        lines.append(f"{label:<24}{result[plain]:>12,.0f}{result[sealed]:>12,.0f}"
                     f"{result[ratio]:>8.2f}  {verdict(ratio)}")
    lines += [
        "",
        f"replay of {result['replayed_events']:,} events: ledger peak RSS "
        f"{result['replay_peak_rss_mb']:.0f} MB (at start {result['replay_baseline_rss_mb']:.0f}"
        f" MB; plain {result['plain_replay_peak_rss_mb']:.0f} MB)  "
        f"{verdict('replay_peak_rss_mb')}",
        f"erase of {result['erasures']} subjects: p50 {result['erase_p50_ms']:.1f} ms, "
        f"p99 {result['erase_p99_ms']:.1f} ms, max {result['erase_max_ms']:.1f} ms  "
        f"{verdict('erase_p99_ms')}",
        "",
        f"sign-in, service layer: {result['sign_ins']} by password, {result['secret_sign_ins']}"
        f" by secret words ({result['sign_in_rounds']} rounds); plain: get one stream and"
        " append one event",
        f"{'':<32}{'per s':>9}{'ms':>9}{'plain ms':>10}{'ratio':>8}",
        f"{'password (hash included)':<32}{result['sign_in_password_per_s']:>9,.1f}"
        f"{result['sign_in_password_ms']:>9.2f}",
        f"{'  its scrypt hash':<32}{'':>9}{result['sign_in_hash_ms']:>9.2f}",
        f"{'  password minus its hash':<32}{1000.0 / result['sign_in_minus_hash_ms']:>9,.0f}"
        f"{result['sign_in_minus_hash_ms']:>9.2f}{result['plain_append_get_ms']:>10.2f}"
        f"{result['sign_in_minus_hash_ratio']:>8.2f}",
        f"{'secret words (no hash)':<32}{result['sign_in_secret_per_s']:>9,.0f}"
        f"{result['sign_in_secret_ms']:>9.2f}{result['plain_append_get_ms']:>10.2f}"
        f"{result['sign_in_secret_ratio']:>8.2f}",
        f"{'scrypt alone (' + result['scrypt_cost'] + ')':<32}{'':>9}"
        f"{result['scrypt_alone_ms']:>9.2f}",
        "",
        f"roster of a {result['roster_section_size']}-student section, {result['roster_reads']}"
        f" reads a door ({result['roster_rounds']} rounds); plain: get"
        f" {result['roster_section_size']} streams",
        f"{'':<32}{'per s':>9}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>8}",
        f"{'service layer':<32}{result['roster_service_per_s']:>9,.0f}"
        f"{result['roster_service_p50_ms']:>9.2f}{result['roster_service_p99_ms']:>9.2f}"
        f"{result['roster_service_ratio']:>8.2f}",
        f"{'HTTP in-process':<32}{result['roster_http_per_s']:>9,.0f}"
        f"{result['roster_http_p50_ms']:>9.2f}{result['roster_http_p99_ms']:>9.2f}"
        f"{result['roster_http_ratio']:>8.2f}",
        f"{'plain (median)':<32}{result['plain_read_section_per_s']:>9,.0f}"
        f"{result['plain_read_section_ms']:>9.2f}",
        "",
        f"attempts, service layer: {result['attempts']:,} a row"
        f" ({result['attempt_rounds']} rounds); plain: get the stream, record, save",
        f"{'attempts/s':<24}{'plain':>12}{'ledger':>12}{'ratio':>8}  ",
    ]
    for label, key in (("attempt, 1 per save", "attempt_single"),
                       (f"attempts, {result['attempt_batch']} per save", "attempt_batch")):
        lines.append(f"{label:<24}{result[f'plain_{key}_per_s']:>12,.0f}"
                     f"{result[f'ledger_{key}_per_s']:>12,.0f}{result[f'{key}_ratio']:>8.2f}  "
                     f"{verdict(f'{key}_ratio')}")
    lines += [
        "",
        f"progress grid of a {result['grid_students']}-student section x"
        f" {result['grid_levels']} levels ({result['grid_cells']:,} cells),"
        f" {result['grid_attempts']:,} attempts in the store, {result['grid_reads']} reads",
        f"  filled at {result['grid_fill_attempts_per_s']:,.0f} attempts/s"
        f" ({progress.FILL_BATCH} a save); progress view caught up in"
        f" {result['grid_catch_up_s']:.1f} s",
        f"{'':<32}{'p50 ms':>9}{'p99 ms':>9}",
        f"{'service layer':<32}{result['grid_service_p50_ms']:>9.2f}"
        f"{result['grid_service_p99_ms']:>9.2f}  {verdict('grid_service_p99_ms')}",
        f"{'ProgressReader.grid alone':<32}{result['grid_reader_p50_ms']:>9.2f}"
        f"{result['grid_reader_p99_ms']:>9.2f}",
        "",
        f"purge job over {result['purges']:,} due accounts (each with a section, 10 attempts,"
        f" a project): {result['purge_per_s']:,.0f} accounts/s; 10,000 in"
        f" {result['purge_10k_s']:.1f} s  {verdict('purge_10k_s')}",
        f"  memory {result['purge_rss_start_mb']:.0f} MB at start,"
        f" {result['purge_rss_peak_mb']:.0f} MB at most; plain: one event an account at"
        f" {result['plain_one_event_per_s']:,.0f}/s (ratio {result['purge_ratio']:.2f})",
        f"erase at once, {result['erasures_now']} accounts: p50"
        f" {result['erase_now_p50_ms']:.1f} ms, p99 {result['erase_now_p99_ms']:.1f} ms  "
        f"{verdict('erase_now_p99_ms')}",
        "",
        f"access record on a teacher's read of a student (service layer,"
        f" {result['audit_readers']} readers at once, {result['audit_reads']:,} reads a side,"
        f" {result['audit_read_rounds']} rounds)",
        f"{'reads/s':<24}{'without':>12}{'with':>12}{'ratio':>8}  ",
        f"{'read, record saved':<24}{result['audit_unrecorded_reads_per_s']:>12,.0f}"
        f"{result['audit_recorded_reads_per_s']:>12,.0f}{result['audit_read_ratio']:>8.2f}  "
        f"{verdict('audit_read_ratio')}",
        f"query by student over {result['audit_records']:,} access records"
        f" ({result['audit_student_records']:,} of the student), {result['audit_queries']}"
        f" pages of {audit.PAGE}",
        f"  filled at {result['audit_fill_records_per_s']:,.0f} records/s"
        f" ({audit.FILL_BATCH} a save); index caught up in {result['audit_catch_up_s']:.1f} s",
        f"{'':<32}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}",
        f"{'records opened in bulk':<32}{result['audit_query_p50_ms']:>9.2f}"
        f"{result['audit_query_p95_ms']:>9.2f}{result['audit_query_p99_ms']:>9.2f}  "
        f"{verdict('audit_query_p95_ms')}",
        f"{'records opened one by one':<32}{result['audit_query_one_by_one_p50_ms']:>9.2f}"
        f"{result['audit_query_one_by_one_p95_ms']:>9.2f}"
        f"{result['audit_query_one_by_one_p99_ms']:>9.2f}",
        "",
        f"Merkle log over the whole store ({result['merkle_events']:,} events): sealed at"
        f" {result['merkle_seal_per_s']:,.0f}/s",
        f"{'events/s':<24}{'plain':>12}{'ledger':>12}{'ratio':>8}  ",
        f"{'verify (plain: replay)':<24}{result['merkle_plain_replay_per_s']:>12,.0f}"
        f"{result['merkle_verify_per_s']:>12,.0f}{result['merkle_verify_ratio']:>8.2f}  "
        f"{verdict('merkle_verify_per_s')}",
        f"inclusion proofs at {result['merkle_proof_leaves']:,} leaves"
        f" ({result['merkle_proofs']}, at most {result['merkle_proof_max_hashes']} hashes):"
        f" p50 {result['merkle_proof_p50_ms']:.2f} ms, p99 {result['merkle_proof_p99_ms']:.2f}"
        f" ms  {verdict('merkle_proof_p99_ms')}",
        f"appends with a sealer following / without: {result['merkle_append_ratio']:.2f}"
        f" ({result['merkle_append_events']:,} events)  {verdict('merkle_append_ratio')}",
    ]
    if "rebuild_eps" in result:
        lines += render_rebuild(result, verdict)
    return "\n".join(lines)


def render_rebuild(result: dict[str, Any], verdict: Callable[[str], str]) -> list[str]:
    return [
        "",
        f"rebuild of {result['rebuild_projection']} from {result['rebuild_events']:,} events"
        f" ({result['rebuild_students']:,} students, 1 in {rebuild.ERASED_SHARE} erased),"
        " tables written; plain: replay of the same progress events",
        f"{'rebuild events/s':<24}{result['plain_rebuild_replay_eps']:>12,.0f}"
        f"{result['rebuild_eps']:>12,.0f}{result['rebuild_ratio']:>8.2f}  "
        f"{verdict('rebuild_eps')}",
        f"rebuild peak RSS {result['rebuild_peak_rss_mb']:.0f} MB, with its workers' (at"
        f" start {result['rebuild_baseline_rss_mb']:.0f} MB)  {verdict('rebuild_peak_rss_mb')}",
    ]


def run(args: argparse.Namespace) -> int:
    try:
        plan = Plan.from_args(args.backend, args.events, args.rounds, args.erasures,
                              args.sign_ins, args.roster_reads, args.attempts,
                              args.grid_attempts, args.grid_reads, args.purges,
                              args.erasures_now, args.audit_reads, args.audit_records,
                              args.audit_queries, args.merkle_proofs)
    except ValueError as error:
        log.error("%s", error)
        return 2
    result = measure(plan, args.postgres_url)
    if args.rebuild_events > 0:
        result.update(rebuild.measure(plan.backend, args.postgres_url, args.rebuild_events,
                                      args.rebuild_projection))
    print(json.dumps(result) if args.json else render(result))
    return 0
