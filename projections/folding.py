"""A rebuild whose pages are opened and folded by worker processes while this process writes
them (ANA-3). Decrypting and decoding events is most of a rebuild's work, and it needs no
database, so it can run on the machine's other cores.

This process reads each page's rows as stored (sealed), in a read-ahead thread, with the keys
of the page's subjects as the key store keeps them (wrapped under the KEK, each fetched once
per rebuild: `RebuildWrappedKeys`), and hands both to a worker. The worker unwraps the keys
with its own keyring, opens the rows and folds them (`FoldingProjection.fold`). This process
writes each folded page with its position, in order, in one transaction, as a rebuild in one
process does. So what crosses between the processes is sealed rows and wrapped keys one way,
and the fold (what the projection writes to its tables) the other: never a data key, never a
whole event.

The workers are started with the ledger's settings, from which each opens the keyring (the
KEK) and nothing else: a worker never reaches the key store or the log. They ignore Ctrl-C,
which a terminal sends to its whole process group: the rebuilding process stops as it would
alone, then stops them. A worker that dies, or any error in one (a keyring that will not open,
a row that fails to open), fails the rebuild with that error, and it can be resumed like any
stopped rebuild.

A worker dies with the process that started it, whatever ends that process (`kill -9`
included): each holds the KEK in memory, and one left behind would hold it for ever. On Linux
the kernel sends it SIGKILL when its parent goes (`prctl(PR_SET_PDEATHSIG)`); elsewhere a thread
in it watches its parent's pid. The kernel's signal follows the *thread* that started the
worker, so all of them are started at once by the thread that opens the pool (and closes it),
never later by the read-ahead thread, which comes and goes.
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from crypto import Aead, SubjectKeys, WrappedKey, opener_of_wrapped
from ledger.log import LogReader, RebuildWrappedKeys, Topics, wanted_rows
from ledger.persistence import open_keyring
from ledger.sealing import sealed_mapper
from ledger.settings import Settings

if TYPE_CHECKING:  # the runner imports this module
    from projections.runner import FoldingProjection

# Two workers: measured on two cores, the writing process then waits on them least (a rebuild
# of analytics, PostgreSQL: 37,000-42,000 events/s with one worker, 49,000 with two).
WORKERS = 2
# Pages read and handed to the workers before this process has written them: enough to keep
# every worker busy while a page is written, few enough that the pages held stay small (a page
# of 5,000 rows is about 5 MB).
PAGES_AHEAD = 2 * WORKERS
# Keys a worker keeps unwrapped: a subject's events sit close together in the log, so a page's
# subjects and some before suffice (each costs 2 KB); a miss costs one unwrap, not a round trip.
WORKER_OPENERS = 1_024
PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_POLL_SECONDS = 0.5  # where the kernel cannot be asked: how soon an orphan notices


@dataclass(frozen=True)
class FoldedPage:
    folded: Any  # what the projection's `fold` made of the page's events; None if none wanted
    last_id: int  # as `LogPage`
    read: int


@dataclass(frozen=True)
class _SealedPage:
    """What a worker is sent: a page's wanted rows, sealed, with their subjects' keys. The rows
    go as columns, each topic named once: a list of rows pickles row by row and field by field
    (measured on a page of 5,000: 0.66 us a row to pickle and 0.44 to unpickle; as columns,
    with building them, 0.36 and 0.08)."""

    ids: tuple[int, ...]
    streams: tuple[Any, ...]
    versions: tuple[int, ...]
    topics: tuple[str, ...]  # the page's topics, each once
    topic_of: tuple[int, ...]  # each row's, as its index in `topics`
    states: tuple[bytes, ...]
    after: int
    last_id: int
    read: int
    keys: dict[bytes, WrappedKey | None]

    @classmethod
    def of(cls, rows: list[Any], after: int, last_id: int, read: int,
           keys: dict[bytes, WrappedKey | None]) -> _SealedPage:
        ids, streams, versions, topics, states = zip(*rows, strict=True)
        index: dict[str, int] = {}
        topic_of = tuple([index.setdefault(topic, len(index)) for topic in topics])
        return cls(ids, streams, versions, tuple(index), topic_of, states, after, last_id, read,
                   keys)

    def rows(self) -> list[tuple[Any, ...]]:
        """The rows as `LogReader.rows` read them."""
        topics = self.topics
        return list(zip(self.ids, self.streams, self.versions,
                        [topics[i] for i in self.topic_of], self.states, strict=True))


class FoldingReplay:
    """One rebuild's pass over the log, opened and folded by worker processes; `page(after)`
    as `ledger.log.Replay`'s, giving `FoldedPage`s. Close it when done: the workers stop."""

    def __init__(self, settings: Settings, reader: LogReader, keys: SubjectKeys,
                 projection: FoldingProjection, limit: int, workers: int = WORKERS) -> None:
        self.reader = reader
        self.limit = limit
        self.wanted = Topics(projection.consumes) if projection.consumes else None
        self._keys = RebuildWrappedKeys(keys)
        self._pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker, initargs=(settings, projection, os.getpid()))
        # Every worker now, from this thread (see the module's docstring): a submit from the
        # read-ahead thread would otherwise start them there.
        for _ in range(workers):
            self._pool._adjust_process_count()
        self._ahead: _ReadAhead | None = None
        # What this process holds now outlives the rebuild: out of the cyclic collector's way
        # until the rebuild ends (garbage collected first, so none is kept), or every full
        # collection walks all of it again (measured: a fifth of this process's time). After
        # the pool, which may fail to start: then nothing was frozen.
        gc.collect()
        gc.freeze()

    def page(self, after: int) -> FoldedPage:
        ahead = self._ahead
        if ahead is None or ahead.next_position != after:
            self._stop_reading_ahead()
            ahead = self._ahead = _ReadAhead(self, after)
        folded = ahead.next_page()
        if folded is None:  # the read-ahead met the end of the log: ask again, it may have grown
            self._stop_reading_ahead()
            rows = self.reader.rows(after, self.limit)
            return self.fold(rows, after).result() if rows else FoldedPage(None, after, 0)
        return folded

    def fold(self, rows: list[Any], after: int) -> Future[FoldedPage]:
        """The page of `rows` (as `LogReader.rows` read them after `after`), to be folded by a
        worker; at once if it holds nothing wanted."""
        last_id, read = int(rows[-1][0]), len(rows)
        wanted = wanted_rows(rows, self.wanted)
        if not wanted:
            nothing: Future[FoldedPage] = Future()
            nothing.set_result(FoldedPage(None, last_id, read))
            return nothing
        keys = self._keys.of(self.reader.subjects(wanted))
        return self._pool.submit(_fold, _SealedPage.of(wanted, after, last_id, read, keys))

    def close(self) -> None:
        self._stop_reading_ahead()
        self._pool.shutdown(wait=True, cancel_futures=True)
        gc.unfreeze()  # what was held may become garbage now: the collector sees it again

    def _stop_reading_ahead(self) -> None:
        if self._ahead is not None:
            self._ahead.stop()
            self._ahead = None

    def __enter__(self) -> FoldingReplay:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


_END = object()


class _ReadAhead:
    """Reads pages' rows from `after` on in a thread and hands each to a worker as soon as it
    is read, up to `PAGES_AHEAD` pages before they are asked for."""

    def __init__(self, replay: FoldingReplay, after: int) -> None:
        self.next_position = after
        self._replay = replay
        self._pages: queue.Queue[Any] = queue.Queue(PAGES_AHEAD)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(after,),
                                        name="log-read-ahead", daemon=True)
        self._thread.start()

    def next_page(self) -> FoldedPage | None:
        """The next page, folded; None at the end of the log as the thread found it."""
        item = self._pages.get()
        if item is _END:
            return None
        if isinstance(item, BaseException):
            raise item
        page: FoldedPage = item.result()
        self.next_position = page.last_id
        return page

    def stop(self) -> None:
        self._stopped.set()
        while self._thread.is_alive():  # unblock a waiting `put`
            try:
                item = self._pages.get(timeout=0.05)
            except queue.Empty:
                continue
            if isinstance(item, Future):
                item.cancel()
        self._thread.join()

    def _read(self, after: int) -> None:
        try:
            while not self._stopped.is_set():
                rows = self._replay.reader.rows(after, self._replay.limit)
                if not rows:
                    self._put(_END)
                    return
                self._put(self._replay.fold(rows, after))
                after = int(rows[-1][0])
        except BaseException as error:  # handed to the rebuild, which fails with it
            self._put(error)

    def _put(self, item: Any) -> None:
        while not self._stopped.is_set():
            try:
                self._pages.put(item, timeout=0.05)
                return
            except queue.Full:
                continue
        if isinstance(item, Future):
            item.cancel()


# -- in a worker process -----------------------------------------------------------------------
class _Worker:
    def __init__(self, settings: Settings, projection: FoldingProjection) -> None:
        # The keyring alone: a worker unwraps the keys it is sent, and never reaches the key
        # store (nor writes to it as a `SubjectKeys` does when it opens).
        self.keyring = open_keyring(settings)
        self.reader = LogReader(None, sealed_mapper(None), None, settings.backend)
        self.projection = projection
        self._openers: dict[bytes, Aead | None] = {}  # by wrapped key

    def fold(self, page: _SealedPage) -> FoldedPage:
        # A page's events are thousands of small dicts, alive until folded, that the cyclic
        # collector would walk again at every collection (measured: a quarter of a worker's
        # time). They hold no cycles: reference counting frees them.
        gc.disable()
        try:
            aeads = {subject: self._opener(stored) for subject, stored in page.keys.items()}
            opened = self.reader.open_rows(page.rows(), page.after, lambda _: aeads)
            return FoldedPage(self.projection.fold(opened.events), page.last_id, page.read)
        finally:
            gc.enable()

    def _opener(self, stored: WrappedKey | None) -> Aead | None:
        if stored is None:  # erased
            return None
        if (aead := self._openers.get(stored.wrapped)) is None:
            if len(self._openers) >= WORKER_OPENERS:
                self._openers = {}
            aead = self._openers[stored.wrapped] = opener_of_wrapped(self.keyring, stored)
        return aead


_worker: _Worker | Exception | None = None

# Noted on a worker's start-up error (it crosses to this process with the exception): no
# event's fault, so the runner raises it rather than setting the page's events aside.
WORKER_DID_NOT_START = "a worker of the rebuild did not start"


def worker_did_not_start(error: BaseException) -> bool:
    return WORKER_DID_NOT_START in getattr(error, "__notes__", ())


def _die_with_parent(parent: int) -> None:
    """End this process when `parent` ends, however it ends (see the module's docstring)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
        if armed:
            # The parent may have died before the signal was asked for: then none will come.
            if os.getppid() != parent:
                os._exit(1)
            return
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watch",
                     daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:  # an orphan is adopted by another process: its ppid changes
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


def _start_worker(settings: Settings, projection: FoldingProjection, parent: int) -> None:
    global _worker
    _die_with_parent(parent)
    # A Ctrl-C reaches every process of the terminal's group: the rebuilding process alone
    # stops (its batch rolled back, where it stopped said) and then shuts the workers down.
    # SIGTERM is left to kill: it is how a broken pool ends the workers it has left.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _worker = _Worker(settings, projection)
    except Exception as error:  # raised with the first page: an initializer's error would
        error.add_note(WORKER_DID_NOT_START)  # break the pool, and the rebuild would say only
        _worker = error  # that a worker died; the note keeps it from being taken for the page's
    gc.freeze()  # what the worker imported and opened lives as long as it: never garbage


def _fold(page: _SealedPage) -> FoldedPage:
    if isinstance(_worker, Exception):
        raise _worker
    assert _worker is not None, "the pool's initializer starts the worker"
    return _worker.fold(page)
