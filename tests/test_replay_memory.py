"""A million events replay in bounded memory (issue target: peak <= 300 MB). Slow: CI runs it."""

from __future__ import annotations

import os

import pytest

from api.cli import bench_workload as bw
from tests.conftest import BACKENDS, postgres_url

EVENTS = int(os.environ.get("LEDGER_REPLAY_MEMORY_EVENTS", "1000000"))
STREAMS_PER_SAVE = 100  # 1,000 events a transaction: the store fills in a minute, not an hour


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_million_events_replay_in_bounded_memory(backend: str) -> None:
    url = postgres_url() if backend == "postgres" else ""
    stores = bw.Stores.create(backend, url)
    try:
        ledger = stores.open_ledger()
        try:
            serial = 0
            while serial * 10 < EVENTS:
                batch = []
                for _ in range(STREAMS_PER_SAVE):
                    payloads = [bw.payload(serial, step) for step in range(10)]
                    stream = bw.BenchSubject(ledger.keys.new_subject(), **payloads[0])
                    for later in payloads[1:]:
                        stream.record(**later)
                    batch.append(stream)
                    serial += 1
                ledger.save(*batch)
        finally:
            ledger.close()
        replayed = bw.replay_in_child("ledger", stores)
        assert replayed.events >= EVENTS  # plus the ledger's own records
        assert replayed.peak_rss_mb <= 300, f"peak {replayed.peak_rss_mb:.0f} MB"
    finally:
        stores.remove()
