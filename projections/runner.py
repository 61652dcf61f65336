"""Follows the ledger's notification log in order and applies each event to a read model.

Exactly once: a batch of events and the new tracking position commit in one read-model
transaction, and the position only moves forward from the value read in that transaction, so a
crash or a racing runner can neither skip nor repeat an event.

Rebuilds: each projection's tables carry a generation number. `rebuild()` fills generation n+1
from position 0 while generation n keeps serving, then switches readers over in one transaction
once it has caught up, and drops generation n. Read models change shape only this way, never by
ALTER: a runner whose live generation lacks a table or column its projection declares
(`Projection.shape`) rebuilds it when it starts.

Both backends poll (SQLite has no subscriptions); PostgreSQL's table lock on insert makes commit
order equal id order, so paging by `> last id` never misses a late commit.

Set aside, never stuck: an event a projection cannot open or apply is recorded in
`projection_set_aside` (position, error class, digest of the stored bytes: never a value) in the
same transaction as the position moving past it, and the projection goes on; an operator
retries or skips it (`ledger projections ...`). A page that fails as a whole is applied again
event by event, each in a savepoint, so that only the bad event is set aside.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import psycopg

from crypto import KeyStoreUnavailable
from crypto.sql import Cursor, Database, DatabaseUnavailable, delete_naming
from ledger.application import Ledger
from ledger.log import LogPage, Openers, Replay, Topics, wanted_rows
from ledger.people import Person
from projections.folding import FoldedPage, FoldingReplay, worker_did_not_start

log = logging.getLogger("ledger.projections")

REGISTRY_DDL = [
    "CREATE TABLE IF NOT EXISTS projection_generations ("
    " projection TEXT PRIMARY KEY, live INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS projection_tracking ("
    " projection TEXT NOT NULL, generation INTEGER NOT NULL, position BIGINT NOT NULL,"
    " PRIMARY KEY (projection, generation))",
    # Events a projection could not open or apply. Never a value: an error's message may quote
    # one, so only its class is kept, and the stored bytes only as a digest (to tell whether a
    # position still holds the event that failed, as an acknowledgement is carried over).
    "CREATE TABLE IF NOT EXISTS projection_set_aside ("
    " projection TEXT NOT NULL, generation INTEGER NOT NULL, position BIGINT NOT NULL,"
    " error TEXT NOT NULL, digest TEXT NOT NULL, status TEXT NOT NULL, set_aside_at TEXT NOT NULL,"
    " PRIMARY KEY (projection, generation, position))",
]

PENDING, SKIPPED = "pending", "skipped"


class RunnerRaced(RuntimeError):
    """Another runner moved the position under this one: its batch was rolled back."""


class NotSetAside(LookupError):
    """No event is set aside at that position of the projection's live generation."""


# Failures of the surroundings, not of one event: waited out or raised as they are, never a
# reason to set an event aside (a key store down would otherwise set aside everything).
NOT_THE_EVENTS: tuple[type[BaseException], ...] = (
    KeyStoreUnavailable, DatabaseUnavailable, RunnerRaced, BrokenProcessPool,
    psycopg.OperationalError, sqlite3.OperationalError)


@dataclass(frozen=True)
class SetAside:
    """An event a projection could not open or apply: where, and the class of the error."""

    projection: str
    generation: int
    position: int
    error: str
    digest: str  # SHA-256 of the stored (sealed) bytes, hex
    status: str  # PENDING (needs attention) or SKIPPED (acknowledged)
    set_aside_at: str

    def as_dict(self) -> dict[str, Any]:
        return {"position": self.position, "generation": self.generation, "error": self.error,
                "digest": self.digest, "status": self.status, "set_aside_at": self.set_aside_at}


@dataclass(frozen=True)
class RetryOutcome:
    position: int
    applied: bool
    error: str | None  # the class of the error if it failed again


@contextlib.contextmanager
def savepoint(cur: Cursor) -> Iterator[None]:
    """What the block wrote is undone if it raises; the transaction goes on (both backends)."""
    cur.execute("SAVEPOINT one_event")
    try:
        yield
    except BaseException:
        cur.execute("ROLLBACK TO SAVEPOINT one_event")
        cur.execute("RELEASE SAVEPOINT one_event")
        raise
    cur.execute("RELEASE SAVEPOINT one_event")


class RebuildProgress(Protocol):
    def __call__(self, done: int, total: int) -> None:
        """`done` of `total` log positions replayed into the new generation."""


class Projection(ABC):
    """A read model. Table names are given per generation: `f"{name}_g{generation}"`."""

    name: str
    # The event classes `process` handles (with their subclasses); events of other classes are
    # not even opened for it. Empty: every event. An erased stream's placeholders
    # (`ErasedEvent`) come for the streams of the classes named.
    consumes: tuple[type, ...] = ()

    @abstractmethod
    def create_tables(self, cur: Cursor, table: str, blob: str) -> None:
        """Create the generation's tables; `blob` is the backend's binary column type."""

    @abstractmethod
    def process(self, cur: Cursor, table: str, event: Any) -> None: ...

    def process_page(self, cur: Cursor, table: str, events: Sequence[Any]) -> None:
        """A page of the log, in order, in one transaction. One event at a time by default; a
        projection that can fold a page in memory writes it in a few statements instead
        (`FoldingProjection`)."""
        for event in events:
            self.process(cur, table, event)

    def drop_tables(self, cur: Cursor, table: str) -> None:
        """The generation's tables: those `shape` names, else the one named `table`."""
        for name in self.shape(table) or [table]:
            cur.execute(f"DROP TABLE IF EXISTS {name}")

    @abstractmethod
    def subject_columns(self, table: str) -> list[tuple[str, tuple[str, ...]]]:
        """Where a subject's rows are: each table of the generation named `table`, with the
        columns that hold a subject's id (a person's, or a stream's such as a section)."""

    def forget(self, cur: Cursor, table: str, subject_ids: Sequence[UUID]) -> Counter[UUID]:
        """Delete every row of erased subjects (what `SubjectErased` does when it arrives,
        and the erasure itself, in batches); how many went for each, for the receipts.
        Idempotent."""
        ids = [str(subject_id) for subject_id in subject_ids]
        counts: Counter[UUID] = Counter({subject_id: 0 for subject_id in subject_ids})
        for name, columns in self.subject_columns(table):
            for subject, count in delete_naming(cur, name, columns, ids).items():
                counts[UUID(subject)] += count
        return counts

    def shape(self, table: str) -> dict[str, frozenset[str]]:
        """The tables of the generation named `table`, each with the columns this version reads
        and writes. A live generation made by an older version lacks some, and is rebuilt when
        a runner starts. Empty (the default): nothing to check."""
        return {}


class FoldingProjection(Projection):
    """A projection that folds a page of events in memory, without the database (`fold`: plain,
    picklable data), then writes what it folded in a few statements (`write`). Since the fold
    needs no database, a rebuild may open and fold pages in another process while this one
    writes (`projections.folding`). `fold` must depend on the page alone, never on an earlier
    page: pages may be folded ahead and some thrown away."""

    @abstractmethod
    def fold(self, events: Sequence[Any]) -> Any: ...

    @abstractmethod
    def write(self, cur: Cursor, table: str, folded: Any) -> None: ...

    def process(self, cur: Cursor, table: str, event: Any) -> None:
        self.write(cur, table, self.fold([event]))

    def process_page(self, cur: Cursor, table: str, events: Sequence[Any]) -> None:
        self.write(cur, table, self.fold(events))


def hide(cur: Cursor, hidden_table: str, event: Person.DeletionRequested |
         Person.DeletionWithdrawn) -> None:
    """A soft delete (DEL-1) puts the person in a projection's hidden table, its withdrawal
    (DEL-2) takes them out; readers leave out whoever is in it."""
    if isinstance(event, Person.DeletionRequested):
        cur.execute(f"INSERT INTO {hidden_table} (person_id) VALUES (?) ON CONFLICT DO NOTHING",
                    (str(event.originator_id),))
    else:
        cur.execute(f"DELETE FROM {hidden_table} WHERE person_id = ?",
                    (str(event.originator_id),))


def time_text(value: datetime) -> str:
    """A time as read models keep it: UTC text of fixed width, which sorts as time does."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def table_name(projection: Projection, generation: int) -> str:
    return f"{projection.name}_g{generation}"


def live_generation(cur: Cursor, projection: Projection) -> int:
    """The generation readers use now (a rebuild switches it in one transaction)."""
    cur.execute("SELECT live FROM projection_generations WHERE projection = ?",
                (projection.name,))
    return int(cur.fetchone()[0])


def live_table(cur: Cursor, projection: Projection) -> str:
    return table_name(projection, live_generation(cur, projection))


def columns_of(cur: Cursor, backend: str, table: str) -> set[str]:
    """The columns of `table`; empty if there is no such table. From the catalogue, since a
    query on a missing table would abort a PostgreSQL transaction."""
    if backend == "postgres":
        cur.execute("SELECT column_name FROM information_schema.columns"
                    " WHERE table_schema = current_schema() AND table_name = ?", (table,))
    else:
        cur.execute("SELECT name FROM pragma_table_info(?)", (table,))
    return {str(row[0]) for row in cur.fetchall()}


# A rebuild of at least this many events has them opened and folded by worker processes, when
# its projection folds (`projections.folding`): starting the workers costs about a second.
FOLD_IN_WORKER_FROM = 100_000

# Events a rebuild applies in one transaction. Larger than a live batch: a page costs a few
# round trips and a hand-over to a worker whatever its size (measured on PostgreSQL: 2,000 a
# page replays a fifth faster than 500, and 5,000 a twelfth faster than 2,000 with workers),
# and a rebuild stopped part way loses at most one.
REBUILD_BATCH = 5_000


class ProjectionRunner:
    def __init__(self, ledger: Ledger, db: Database, projection: Projection,
                 batch_size: int = 500, rebuild_batch_size: int = REBUILD_BATCH,
                 fold_in_workers: bool | None = None) -> None:
        self.ledger = ledger
        self.db = db
        self.projection = projection
        self.batch_size = batch_size
        self.rebuild_batch_size = rebuild_batch_size
        self.fold_in_workers = fold_in_workers  # None: when the rebuild is long enough
        self.wanted = Topics(projection.consumes) if projection.consumes else None
        self._thread: threading.Thread | None = None  # the one following the log, if any
        with db.transaction() as cur:
            for statement in REGISTRY_DDL:
                cur.execute(statement)
            cur.execute("SELECT live FROM projection_generations WHERE projection = ?",
                        (projection.name,))
            if cur.fetchone() is None:
                self._start_generation(cur, 1)
                cur.execute("INSERT INTO projection_generations (projection, live) VALUES (?, 1)",
                            (projection.name,))
        self.rebuild_if_outdated()

    # -- following --------------------------------------------------------------------------
    def forget_subjects(self, cur: Cursor, subject_ids: Sequence[UUID]) -> Counter[UUID]:
        """At an erasure, in its read-models transaction, before its record reaches the
        runner: the live generation's rows of the subjects go now, so the receipts can count
        them. A rebuild under way gets the erasure records as it replays."""
        return self.projection.forget(cur, live_table(cur, self.projection), subject_ids)

    def live_generation(self) -> int:
        with self.db.transaction(write=False) as cur:
            return self._live(cur)

    def position(self, generation: int | None = None) -> int:
        with self.db.transaction(write=False) as cur:
            return self._position(cur, generation or self._live(cur))

    def run_once(self, generation: int | None = None,
                 replay: Replay | FoldingReplay | None = None) -> int:
        """Apply the next batch to `generation` (default: the live one). Returns the log
        positions passed (events read, applied, set aside or not wanted). A rebuild passes its
        `replay`, which reads the pages."""
        try:
            return self._run_page(generation, replay)
        except NOT_THE_EVENTS:
            raise
        except Exception as error:
            if worker_did_not_start(error):
                raise
            # The page rolled back whole: again event by event, so that only the events that
            # fail are set aside. Rare, so the page stays the fast path.
            log.warning("projection %s: a page failed (%s), applying it event by event",
                        self.projection.name, type(error).__name__)
            return self._run_one_by_one(generation, replay)

    def _run_page(self, generation: int | None,
                  replay: Replay | FoldingReplay | None) -> int:
        with self.db.transaction() as cur:
            gen, position = self._lock_position(cur, generation)
            page = (replay.page(position) if replay is not None
                    else self.ledger.read_log(position, self.batch_size, self.wanted))
            if not page.read:
                return 0
            self._apply(cur, gen, page)
            self._move(cur, gen, position, page.last_id)
            return page.read

    def _run_one_by_one(self, generation: int | None,
                        replay: Replay | FoldingReplay | None) -> int:
        limit = replay.limit if replay is not None else self.batch_size
        openers = replay.openers.of if isinstance(replay, Replay) else None
        with self.db.transaction() as cur:
            gen, position = self._lock_position(cur, generation)
            last_id, read = self._apply_one_by_one(cur, gen, position, limit, openers)
            if read:
                self._move(cur, gen, position, last_id)
            return read

    def _lock_position(self, cur: Cursor, generation: int | None) -> tuple[int, int]:
        if self.db.backend == "postgres":
            cur.execute("SELECT live FROM projection_generations WHERE projection = ? "
                        "FOR SHARE", (self.projection.name,))
        gen = generation or self._live(cur)
        return gen, self._position(cur, gen, lock=True)

    def _move(self, cur: Cursor, generation: int, position: int, to: int) -> None:
        cur.execute(
            "UPDATE projection_tracking SET position = ?"
            " WHERE projection = ? AND generation = ? AND position = ?",
            (to, self.projection.name, generation, position),
        )
        if cur.rowcount != 1:
            raise RunnerRaced("another runner moved this projection: batch rolled back")

    def _apply_one_by_one(self, cur: Cursor, generation: int, position: int, limit: int,
                          openers: Openers | None) -> tuple[int, int]:
        """The rows after `position`, each opened and applied in a savepoint; one that fails is
        set aside. (last id read, rows read)."""
        reader = self.ledger.log_reader
        rows = reader.rows(position, limit)
        if not rows:
            return position, 0
        table = table_name(self.projection, generation)
        for row in wanted_rows(rows, self.wanted):
            try:
                with savepoint(cur):
                    self._open_and_process(cur, table, row, openers)
            except NOT_THE_EVENTS:
                raise
            except Exception as error:
                self._set_aside(cur, generation, row, error)
        return int(rows[-1][0]), len(rows)

    def _open_and_process(self, cur: Cursor, table: str, row: Any,
                          openers: Openers | None) -> None:
        (event,) = self.ledger.log_reader.open_rows([row], int(row[0]) - 1, openers).events
        self.projection.process(cur, table, event)

    def _set_aside(self, cur: Cursor, generation: int, row: Any, error: Exception) -> None:
        position, digest = int(row[0]), hashlib.sha256(bytes(row[4])).hexdigest()
        # An event acknowledged in an earlier generation stays acknowledged when a rebuild
        # meets it again, if the position still holds the same bytes.
        cur.execute("SELECT 1 FROM projection_set_aside WHERE projection = ? AND position = ?"
                    " AND digest = ? AND status = ?",
                    (self.projection.name, position, digest, SKIPPED))
        status = SKIPPED if cur.fetchone() is not None else PENDING
        cur.execute(
            "INSERT INTO projection_set_aside (projection, generation, position, error, digest,"
            " status, set_aside_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (projection, generation, position) DO UPDATE SET"
            " error = excluded.error, digest = excluded.digest, status = excluded.status",
            (self.projection.name, generation, position, type(error).__name__, digest, status,
             time_text(datetime.now(UTC))))
        # The class only: a message may quote a value of the event.
        log.error("projection %s: event at position %d set aside (%s)", self.projection.name,
                  position, type(error).__name__)

    # -- set aside: what an operator sees and does -------------------------------------------
    def set_aside(self, generation: int | None = None,
                  status: str | None = None) -> list[SetAside]:
        """The events set aside in `generation` (default: the live one), by position."""
        with self.db.transaction(write=False) as cur:
            gen = generation or self._live(cur)
            cur.execute("SELECT projection, generation, position, error, digest, status,"
                        " set_aside_at FROM projection_set_aside WHERE projection = ?"
                        " AND generation = ? ORDER BY position", (self.projection.name, gen))
            found = [SetAside(str(r[0]), int(r[1]), int(r[2]), str(r[3]), str(r[4]), str(r[5]),
                              str(r[6])) for r in cur.fetchall()]
        return [s for s in found if status is None or s.status == status]

    def status(self) -> dict[str, Any]:
        """Where the projection stands: position, the log's head, the lag (in notification
        ids, which may have gaps: an upper bound), the events set aside, whether its thread is
        alive (None when this process does not follow the log)."""
        with self.db.transaction(write=False) as cur:
            generation = self._live(cur)
            position = self._position(cur, generation)
        head = self.ledger.recorder.max_notification_id() or 0
        set_aside = self.set_aside(generation)
        thread = self._thread
        return {"projection": self.projection.name, "generation": generation,
                "position": position, "head": head, "lag": max(head - position, 0),
                "needs_attention": [s.as_dict() for s in set_aside if s.status == PENDING],
                "skipped": [s.as_dict() for s in set_aside if s.status == SKIPPED],
                "thread_alive": None if thread is None else thread.is_alive()}

    def retry(self, position: int | None = None) -> list[RetryOutcome]:
        """Apply set-aside events of the live generation again: the one at `position` (pending
        or skipped), else every pending one. Those that apply now leave the table. Applied out
        of order, after the events that came later: for a projection whose rows the later
        events already changed, a rebuild is the exact remedy."""
        if position is not None:
            positions = [s.position for s in self.set_aside() if s.position == position]
            if not positions:
                raise NotSetAside(position)
        else:
            positions = [s.position for s in self.set_aside(status=PENDING)]
        return [self._retry_one(at) for at in positions]

    def _retry_one(self, position: int) -> RetryOutcome:
        with self.db.transaction() as cur:
            # The tracking row's lock keeps the background runner out while this applies.
            generation, _ = self._lock_position(cur, None)
            rows = self.ledger.log_reader.rows(position - 1, 1)
            if not rows or int(rows[0][0]) != position:
                raise NotSetAside(position)
            try:
                with savepoint(cur):
                    self._open_and_process(cur, table_name(self.projection, generation),
                                           rows[0], None)
            except NOT_THE_EVENTS:
                raise
            except Exception as error:
                self._set_aside(cur, generation, rows[0], error)
                return RetryOutcome(position, False, type(error).__name__)
            cur.execute("DELETE FROM projection_set_aside WHERE projection = ? AND generation = ?"
                        " AND position = ?", (self.projection.name, generation, position))
            log.info("projection %s: set-aside event at position %d applied",
                     self.projection.name, position)
            return RetryOutcome(position, True, None)

    def skip(self, position: int) -> None:
        """Acknowledge a set-aside event: it stays unapplied, recorded as skipped, and leaves
        the list of those that need attention."""
        with self.db.transaction() as cur:
            cur.execute("UPDATE projection_set_aside SET status = ? WHERE projection = ?"
                        " AND generation = ? AND position = ?",
                        (SKIPPED, self.projection.name, self._live(cur), position))
            if cur.rowcount != 1:
                raise NotSetAside(position)

    def catch_up(self, generation: int | None = None) -> int:
        total = 0
        while applied := self.run_once(generation):
            total += applied
        return total

    def run_forever(self, stop: threading.Event, poll_seconds: float = 0.2) -> None:
        """Follow the log until `stop` is set. A key store or database outage is waited out;
        an event that cannot be applied is set aside (`run_once`), and anything else is logged
        and tried again later: the thread never ends before `stop`."""
        self._thread = threading.current_thread()
        delay = poll_seconds
        while not stop.is_set():
            try:
                applied = self.catch_up()
                delay = poll_seconds
            except (KeyStoreUnavailable, DatabaseUnavailable) as error:
                log.warning("projection %s waiting: %s", self.projection.name, type(error).__name__)
                applied, delay = 0, min(delay * 2, 5.0)
            except Exception as error:  # the class only: a message may quote a value
                log.error("projection %s failed (%s), trying again", self.projection.name,
                          type(error).__name__)
                applied, delay = 0, min(delay * 2, 5.0)
            if not applied:
                stop.wait(delay)

    # -- rebuilding -------------------------------------------------------------------------
    def is_current(self, generation: int | None = None) -> bool:
        """Whether `generation` (default: the live one) has every table and column that the
        projection's `shape` declares."""
        with self.db.transaction(write=False) as cur:
            table = table_name(self.projection, generation or self._live(cur))
            return all(columns <= columns_of(cur, self.db.backend, name)
                       for name, columns in self.projection.shape(table).items())

    def rebuild_if_outdated(self) -> bool:
        """Replay the log into the current shape if the live generation is an older version's
        (done at start: a read model's readers query the new shape). True if it rebuilt."""
        if self.is_current():
            return False
        log.info("projection %s: live generation is an older shape, rebuilding",
                 self.projection.name)
        self.rebuild()
        return True

    def rebuild(self, on_progress: RebuildProgress | None = None) -> int:
        """Replay the whole log into a fresh generation, switch over, drop the old one.

        Resumable: a rebuild stopped part way (Ctrl-C, SIGTERM, a crash) leaves its generation
        with its tracked position, and the next `rebuild` continues it rather than starting
        over. Readers and the background runner only ever use the live generation, so the
        unfinished one is never served, switched to or dropped by them."""
        new = self._unfinished_or_new_generation()
        with self._replay_for(new) as replay:
            self._replay(new, replay, on_progress)
            return self._switch_to(new, replay)

    def folds_in_workers(self, generation: int) -> bool:
        """Whether a rebuild of `generation` has its pages opened and folded by worker
        processes (`projections.folding`): if the projection folds, the ledger's keys come from
        its settings (which the workers open again), and `fold_in_workers` says so or, left
        unset, at least `FOLD_IN_WORKER_FROM` events are left to replay."""
        if not isinstance(self.projection, FoldingProjection) \
                or not self.ledger.keys_opened_from_settings or self.fold_in_workers is False:
            return False
        if self.fold_in_workers:
            return True
        end = self.ledger.recorder.max_notification_id() or 0
        return end - self.position(generation) >= FOLD_IN_WORKER_FROM

    def _replay_for(self, generation: int) -> Replay | FoldingReplay:
        if self.folds_in_workers(generation):
            assert isinstance(self.projection, FoldingProjection)
            try:
                return FoldingReplay(self.ledger.settings, self.ledger.log_reader,
                                     self.ledger.keys, self.projection, self.rebuild_batch_size)
            except OSError as error:  # no process pools here (no /dev/shm, say)
                log.warning("projection %s: rebuilding in one process, no workers (%s)",
                            self.projection.name, type(error).__name__)
        return self.ledger.replay(self.rebuild_batch_size, self.wanted)

    def _switch_to(self, new: int, replay: Replay | FoldingReplay) -> int:
        """The last events since the catch-up, then the switch, in one transaction."""
        with self.db.transaction() as cur:
            if self.db.backend == "postgres":
                cur.execute("SELECT live FROM projection_generations WHERE projection = ? "
                            "FOR UPDATE", (self.projection.name,))
            old = self._live(cur)
            if old == new:  # a racing rebuild of the same generation switched first
                return new
            position = self._position(cur, new, lock=True)
            while True:
                try:
                    with savepoint(cur):
                        page = replay.page(position)
                        self._apply(cur, new, page)
                    last_id, read = page.last_id, page.read
                except NOT_THE_EVENTS:
                    raise
                except Exception as error:  # only the events that fail are set aside
                    if worker_did_not_start(error):
                        raise
                    log.warning("projection %s: a page failed (%s), applying it event by event",
                                self.projection.name, type(error).__name__)
                    last_id, read = self._apply_one_by_one(
                        cur, new, position, replay.limit,
                        replay.openers.of if isinstance(replay, Replay) else None)
                if not read:
                    break
                position = last_id
            cur.execute("UPDATE projection_tracking SET position = ? WHERE projection = ?"
                        " AND generation = ?", (position, self.projection.name, new))
            cur.execute("UPDATE projection_generations SET live = ? WHERE projection = ?",
                        (new, self.projection.name))
            self.projection.drop_tables(cur, table_name(self.projection, old))
            cur.execute("DELETE FROM projection_tracking WHERE projection = ? AND generation = ?",
                        (self.projection.name, old))
            cur.execute("DELETE FROM projection_set_aside WHERE projection = ?"
                        " AND generation = ?", (self.projection.name, old))
        return new

    def unfinished_generation(self) -> int | None:
        """A rebuild's generation not yet switched to (above the live one), if there is one."""
        with self.db.transaction(write=False) as cur:
            return self._unfinished(cur)

    def _unfinished_or_new_generation(self) -> int:
        """The unfinished rebuild's generation to continue, or a fresh one at position 0. An
        unfinished one made by an older version (lacking a table or column of the current
        shape) is started again, since it cannot be continued in the new shape."""
        with self.db.transaction() as cur:
            unfinished = self._unfinished(cur)
        if unfinished is not None and self.is_current(unfinished):
            log.info("projection %s: resuming the rebuild of generation %d",
                     self.projection.name, unfinished)
            return unfinished
        with self.db.transaction() as cur:
            new = unfinished if unfinished is not None else self._live(cur) + 1
            self._start_generation(cur, new)
        return new

    def _unfinished(self, cur: Cursor) -> int | None:
        cur.execute("SELECT max(generation) FROM projection_tracking WHERE projection = ?"
                    " AND generation > ?", (self.projection.name, self._live(cur)))
        row = cur.fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def _replay(self, generation: int, replay: Replay | FoldingReplay,
                on_progress: RebuildProgress | None) -> None:
        """Batch by batch, each committed with its position, so a stop loses one batch."""
        position = self.position(generation)
        end = self.ledger.recorder.max_notification_id() or 0
        while applied := self.run_once(generation, replay):
            position += applied  # an estimate for the bar; ids may have gaps
            if on_progress is not None:
                on_progress(min(position, end), end)

    # -- internals --------------------------------------------------------------------------
    def _apply(self, cur: Cursor, generation: int, page: LogPage | FoldedPage) -> None:
        if (page.folded is None) if isinstance(page, FoldedPage) else not page.events:
            return  # a page of events the projection does not read: only the position moves
        table = table_name(self.projection, generation)
        # On PostgreSQL a batch's statements go in one pipeline: a round trip per statement
        # would cap a rebuild at the server's latency (a few thousand events a second).
        pipelined = getattr(cur, "pipelined", None)
        with pipelined() if pipelined is not None else contextlib.nullcontext():
            if isinstance(page, FoldedPage):
                assert isinstance(self.projection, FoldingProjection)
                self.projection.write(cur, table, page.folded)
            else:
                self.projection.process_page(cur, table, page.events)

    def _start_generation(self, cur: Cursor, generation: int) -> None:
        table = table_name(self.projection, generation)
        self.projection.drop_tables(cur, table)
        self.projection.create_tables(cur, table, "BYTEA" if self.db.backend == "postgres"
                                      else "BLOB")
        cur.execute("DELETE FROM projection_tracking WHERE projection = ? AND generation = ?",
                    (self.projection.name, generation))
        cur.execute("DELETE FROM projection_set_aside WHERE projection = ? AND generation = ?",
                    (self.projection.name, generation))
        cur.execute("INSERT INTO projection_tracking (projection, generation, position)"
                    " VALUES (?, ?, 0)", (self.projection.name, generation))

    def _live(self, cur: Cursor) -> int:
        return live_generation(cur, self.projection)

    def _position(self, cur: Cursor, generation: int, lock: bool = False) -> int:
        suffix = " FOR UPDATE" if lock and self.db.backend == "postgres" else ""
        cur.execute("SELECT position FROM projection_tracking WHERE projection = ?"
                    f" AND generation = ?{suffix}", (self.projection.name, generation))
        row = cur.fetchone()
        if row is None:
            raise RuntimeError(f"projection {self.projection.name} has no generation {generation}")
        return int(row[0])
