"""The tamper-evident log's workload of `ledger bench` (issue 7).

- **Verify** (`verify_rate`): sealing, then `MerkleLog.verify`, over every event the bench
  stored before (over a million with the default `--audit-records`), against a plain
  `eventsourcing` replay of the plain side's store in the same run (every notification read
  and decoded by the library), per event, as a ratio.
- **Inclusion proofs** (`proof_latencies_ms`): `prove_inclusion` for random events under the
  latest signed head (the head, the leaf's position and the stored event read, the path taken
  from the tree kept in memory), p50 and p99, and the proof's size in hashes.
- **The append path** (`append_with_sealer_ratio`): the ledger's 10-event saves (5 x
  `--events`) while a sealer follows the log every 50 ms (20 times as often as `ledger serve`
  seals by default, so that it runs many times in each phase), against the same saves with no
  sealer, in alternating rounds.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from typing import Any
from uuid import UUID

from eventsourcing.application import Application

from api.cli import bench_workload as workload
from crypto.signing import LedgerPublicKey
from ledger.application import Ledger
from ledger.merkle_log import MerkleLog
from ledger.proofs import prove_inclusion

SEAL_EVERY_SECONDS = 0.05


def verify_rate(log: MerkleLog, public_key: LedgerPublicKey, plain: Application[UUID]
                ) -> dict[str, Any]:
    """Seal and verify the whole store (everything the bench wrote before), against a plain
    replay of the plain side's store, per event."""
    started = time.perf_counter()
    sealed = log.seal()
    seal_seconds = time.perf_counter() - started
    head = log.sign_head()
    started = time.perf_counter()
    report = log.verify(public_key)
    verify_seconds = time.perf_counter() - started
    if not report.ok:
        raise RuntimeError(f"the bench's own log failed to verify: {report.discrepancy}")
    replayed, replay_seconds = workload.replay(plain)
    verify_per_s = report.events / verify_seconds
    plain_per_s = replayed / replay_seconds
    return {"merkle_events": report.events, "merkle_head_size": head.tree_size,
            "merkle_seal_per_s": sealed / seal_seconds if sealed else 0.0,
            "merkle_verify_per_s": verify_per_s, "merkle_plain_replay_per_s": plain_per_s,
            "merkle_verify_ratio": verify_per_s / plain_per_s}


def proof_latencies_ms(log: MerkleLog, count: int) -> dict[str, Any]:
    head = log.sign_head()
    log.tree()  # loaded once, as a serving process keeps it
    picks = [random.randint(1, head.tree_size) for _ in range(count)]  # noqa: S311
    times, hashes = [], 0
    for notification_id in picks:
        started = time.perf_counter()
        proof = prove_inclusion(log, notification_id)
        times.append((time.perf_counter() - started) * 1000)
        hashes = max(hashes, len(proof.path))
    times.sort()
    return {"merkle_proof_leaves": head.tree_size, "merkle_proofs": count,
            "merkle_proof_p50_ms": statistics.median(times),
            "merkle_proof_p99_ms": times[int(0.99 * (len(times) - 1))],
            "merkle_proof_max_hashes": hashes}


class _Sealer:
    """A sealer following the log as `ledger serve` runs one."""

    def __init__(self, log: MerkleLog) -> None:
        self.log = log
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(SEAL_EVERY_SECONDS):
            self.log.seal()

    def __enter__(self) -> _Sealer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


def append_with_sealer_ratio(log: MerkleLog, ledger: Ledger, events: int, rounds: int
                             ) -> dict[str, Any]:
    log.seal()
    streams, serial, ratios = max(1, events // 10 // rounds), 10_000_000, []
    kept: list[workload.BenchSubject] = []
    for round_ in range(rounds):
        timings: dict[bool, float] = {}
        for sealing in ((False, True) if round_ % 2 == 0 else (True, False)):
            if sealing:
                with _Sealer(log):
                    timings[sealing] = workload.append_streams(ledger, streams, serial, kept, 0)
            else:
                timings[sealing] = workload.append_streams(ledger, streams, serial, kept, 0)
            serial += streams
        ratios.append(timings[False] / timings[True])  # rate with / rate without
    log.seal()
    return {"merkle_append_ratio": statistics.median(ratios),
            "merkle_append_events": streams * 10 * rounds}
