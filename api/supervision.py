"""Supervised background loops: each survives any exception with capped, jittered backoff, and
a watchdog restarts a loop whose thread dies anyway; every loop's state is visible.

A loop is a body called again and again (`every` seconds apart after a success). When the body
raises, whatever it raises (a psycopg or eventsourcing connection error as much as the project's
own `DatabaseUnavailable`, a key store outage, a bug), the loop logs the error's class only (the
message may hold personal values), goes to `backing_off` and waits 0.5 s, then 1, 2, ... up to
30 s, each wait shortened at random by up to half so that loops (and processes) that failed
together do not retry together. That backoff is the circuit breaker of the loop: while the store
is down the loop is "open" and touches it once per wait, not once per poll; the first success
closes it (`running`) and resets the wait. `/readyz` and `/metrics` show each loop's state.

Only an exception that is not an `Exception` (a `BaseException` such as `SystemExit`) can end a
loop's thread; the watchdog sees the thread dead and starts the loop again (`restarts`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

log = logging.getLogger("api.supervision")


class LoopState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    BACKING_OFF = "backing_off"  # the breaker is open: the body failed, waiting to retry
    DEAD = "dead"  # the thread ended while the loop should run; the watchdog restarts it
    STOPPED = "stopped"


@dataclass
class Loop:
    """One supervised loop and what can be said of it (no personal data: names and classes)."""

    name: str
    body: Callable[[], object]
    every: float  # seconds between two runs after a success
    first_after: float = 0.0  # seconds before the first run
    state: LoopState = LoopState.STARTING
    last_error: str | None = None  # the class of the last exception, never its message
    failures: int = 0  # every failure since start
    consecutive_failures: int = 0
    restarts: int = 0  # threads started again by the watchdog
    runs: int = 0  # successful runs
    last_success: float | None = None  # time.time() of the last successful run
    retry_in: float = 0.0  # the current backoff wait, seconds
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def current_state(self) -> LoopState:
        """The state, `dead` if the thread has ended though the loop was not stopped (until
        the watchdog starts it again)."""
        if self.state is not LoopState.STOPPED and self.thread is not None \
                and not self.thread.is_alive():
            return LoopState.DEAD
        return self.state

    @property
    def healthy(self) -> bool:
        return self.current_state in (LoopState.STARTING, LoopState.RUNNING)


class Supervision:
    """Starts loops, keeps them going, and stops them all at `stop()`."""

    def __init__(self, backoff_initial: float = 0.5, backoff_max: float = 30.0,
                 watch_every: float = 1.0) -> None:
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.watch_every = watch_every
        self.loops: dict[str, Loop] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._watchdog: threading.Thread | None = None

    def start(self, name: str, body: Callable[[], object], every: float,
              first_after: float = 0.0) -> Loop:
        """Run `body` in a thread of its own until `stop()`, supervised."""
        loop = Loop(name, body, every, first_after)
        with self._lock:
            if name in self.loops:
                raise ValueError(f"a loop named {name} is already supervised")
            self.loops[name] = loop
            self._start_thread(loop)
            if self._watchdog is None:
                self._watchdog = threading.Thread(target=self._watch, name="supervision-watchdog",
                                                  daemon=True)
                self._watchdog.start()
        return loop

    def backoff(self, consecutive_failures: int) -> float:
        """The wait after the n-th failure in a row: doubling from `backoff_initial`, capped at
        `backoff_max`, less up to half of it at random (jitter)."""
        ceiling: float = min(self.backoff_max,
                             self.backoff_initial * 2.0 ** min(consecutive_failures - 1, 32))
        # Jitter spreads retries; it guards nothing, so a plain generator will do.
        return ceiling * (1 - random.random() / 2)  # noqa: S311

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._lock:
            threads = [t for t in [self._watchdog, *(lp.thread for lp in self.loops.values())]
                       if t is not None]
        for thread in threads:
            thread.join(timeout=timeout)
        for loop in self.loops.values():
            loop.state = LoopState.STOPPED

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _start_thread(self, loop: Loop) -> None:
        loop.thread = threading.Thread(target=self._run, args=(loop,), name=loop.name,
                                       daemon=True)
        loop.thread.start()

    def _run(self, loop: Loop) -> None:
        try:
            self._follow(loop)
        except BaseException as error:  # SystemExit and the like: the thread ends here
            loop.last_error = type(error).__name__
            log.error("loop %s ended (%s); the watchdog starts it again", loop.name,
                      loop.last_error)

    def _follow(self, loop: Loop) -> None:
        loop.state = LoopState.RUNNING
        wait = loop.first_after
        while not self._stop.wait(wait):
            try:
                loop.body()
            except Exception as error:  # any failure: wait it out, never end the thread
                loop.failures += 1
                loop.consecutive_failures += 1
                loop.last_error = type(error).__name__
                wait = loop.retry_in = self.backoff(loop.consecutive_failures)
                loop.state = LoopState.BACKING_OFF
                log.warning("loop %s failed (%s), %d in a row; retrying in %.1f s", loop.name,
                            loop.last_error, loop.consecutive_failures, wait)
                continue
            if loop.state is LoopState.BACKING_OFF:
                log.info("loop %s recovered after %d failures", loop.name,
                         loop.consecutive_failures)
            loop.runs += 1
            loop.last_success = time.time()
            loop.consecutive_failures, loop.retry_in = 0, 0.0
            loop.state = LoopState.RUNNING
            wait = loop.every

    def _watch(self) -> None:
        while not self._stop.wait(self.watch_every):
            self.check()

    def check(self) -> list[str]:
        """Start again every loop whose thread has died; the names of those restarted (also
        run by the watchdog every `watch_every` seconds)."""
        restarted: list[str] = []
        with self._lock:
            if self._stop.is_set():
                return restarted
            for loop in self.loops.values():
                if loop.thread is not None and not loop.thread.is_alive():
                    loop.state = LoopState.DEAD
                    loop.restarts += 1
                    log.error("loop %s: thread died; restart %d", loop.name, loop.restarts)
                    self._start_thread(loop)
                    restarted.append(loop.name)
        return restarted
