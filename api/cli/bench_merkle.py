"""The tamper-evident log's workload of `ledger bench` (issue 7).

- **Verify** (`verify_rate`): `MerkleLog.verify` over `--merkle-events` events the ledger stored
  (the bench's 10-event saves), against a plain `eventsourcing` replay of the same number of
  events in the same run (every notification read and decoded by the library), as a ratio.
  Sealing the same events is timed too.
- **Inclusion proofs** (`proof_latencies_ms`): `prove_inclusion` for random events under the
  latest signed head (the head, the leaf's position and the stored event read, the path taken
  from the tree kept in memory), p50 and p99, and the proof's size in hashes.
- **The append path** (`append_with_sealer_ratio`): the ledger's 10-event saves while a sealer
  follows the log every 50 ms, against the same saves with no sealer, in alternating rounds.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from typing import Any

from api.cli import bench_workload as workload
from ledger.application import Ledger
from ledger.merkle_log import MerkleLog
from ledger.persistence import open_merkle_log
from ledger.proofs import prove_inclusion

SEAL_EVERY_SECONDS = 0.05


def fill(app: Any, events: int) -> None:
    """`events` events in 10-event saves (the bench's aggregate and payloads)."""
    kept: list[workload.BenchSubject] = []
    workload.append_streams(app, events // 10, 0, kept, 0)


def verify_rate(stores: workload.Stores, ledger: Ledger, events: int) -> dict[str, Any]:
    fill(ledger, events)
    plain = stores.open_plain()
    try:
        fill(plain, events)
        log = open_merkle_log(stores.ledger_settings, ledger.signer)
        started = time.perf_counter()
        sealed = log.seal()
        seal_seconds = time.perf_counter() - started
        head = log.sign_head()
        started = time.perf_counter()
        report = log.verify(ledger.signer.public_key)
        verify_seconds = time.perf_counter() - started
        if not report.ok:
            raise RuntimeError(f"the bench's own log failed to verify: {report.discrepancy}")
        replayed, replay_seconds = workload.replay(plain)
    finally:
        plain.close()
    verify_per_s = report.events / verify_seconds
    plain_per_s = replayed / replay_seconds
    return {"merkle_events": report.events, "merkle_head_size": head.tree_size,
            "seal_per_s": round(sealed / seal_seconds),
            "verify_per_s": round(verify_per_s), "plain_replay_per_s": round(plain_per_s),
            "verify_ratio": round(verify_per_s / plain_per_s, 2)}


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
    return {"proof_leaves": head.tree_size, "proof_p50_ms": round(statistics.median(times), 3),
            "proof_p99_ms": round(times[int(0.99 * (len(times) - 1))], 3),
            "proof_max_hashes": hashes}


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


def append_with_sealer_ratio(stores: workload.Stores, ledger: Ledger, events: int,
                             rounds: int) -> dict[str, Any]:
    log = open_merkle_log(stores.ledger_settings, ledger.signer)
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
    return {"append_with_sealer_ratio": round(statistics.median(ratios), 3),
            "append_with_sealer_events": streams * 10 * rounds}
