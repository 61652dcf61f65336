"""Reads the whole log in pages, for projections and rebuilds: the replay hot path.

The library's `select_notifications` builds a `Notification` and a `UUID` for every row. Here
a page is read as plain rows, stream ids are turned into `UUID`s once per stream (a stream's
events sit close together in the log), and the keys of a page are fetched in one round trip.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar
from uuid import UUID

from eventsourcing.utils import resolve_topic
from psycopg.rows import tuple_row

from crypto import Aead, SubjectKeys, WrappedKey
from ledger.sealing import SealedMapper, keyless, sealing_subject

# A stream's events sit close together in a replay, so a small cache hits; a large one holds
# many objects for the garbage collector to walk (measured: -8% replay at 65,536 entries).
STREAM_ID_CACHE = 2_048


# A rebuild's keys, one per subject: an AES-GCM context (or a wrapped key) is a few hundred
# bytes, so 100,000 stay well inside a rebuild's 300 MB. Past that the oldest go, and come back
# at one more round trip each.
REBUILD_OPENERS = 100_000

K = TypeVar("K")


class RebuildKeys(Generic[K]):
    """The keys of the subjects met in one rebuild: each subject's key is fetched from the key
    store once per rebuild (with the other new subjects of its page, in one round trip),
    however many pages its events span. Erased subjects are kept as `None`, so their events
    become `ErasedEvent`s with no lookup and no attempt to decrypt. Lives for one rebuild: the
    shared key cache is not disturbed by it. Keys are kept as `fetch` gives them: openers
    (`RebuildOpeners`), or wrapped for a worker process (`RebuildWrappedKeys`)."""

    def __init__(self, keys: SubjectKeys, fetch: Callable[[set[bytes]], dict[bytes, K | None]],
                 limit: int = REBUILD_OPENERS) -> None:
        self.keys = keys
        self.fetch = fetch
        self.limit = limit
        self._known: dict[bytes, K | None] = {}

    def of(self, subjects: set[bytes]) -> dict[bytes, K | None]:
        """The keys of a page's subjects, asking the store only about subjects not met yet;
        no entry for a subject with neither key nor tombstone."""
        self.keys.sync_erasures_if_due()
        known = self._known
        new = {s for s in subjects if s not in known}
        if new:
            for subject, key in self.fetch(new).items():
                if len(known) >= self.limit:
                    known.pop(next(iter(known)))
                known[subject] = key
        found = {}
        for subject in subjects:
            if subject in known:
                # An erasure committed during the rebuild voids a key fetched before it.
                found[subject] = None if self.keys.known_erased(subject) else known[subject]
        return found


class RebuildOpeners(RebuildKeys[Aead]):
    """A rebuild's keys as openers, each AES-GCM context built once (`SubjectKeys.openers`)."""

    def __init__(self, keys: SubjectKeys, limit: int = REBUILD_OPENERS) -> None:
        super().__init__(keys, keys.fetch_openers, limit)


class RebuildWrappedKeys(RebuildKeys[WrappedKey]):
    """A rebuild's keys as the store keeps them, wrapped under the KEK, for worker processes
    that unwrap them (`SubjectKeys.fetch_wrapped`)."""

    def __init__(self, keys: SubjectKeys, limit: int = REBUILD_OPENERS) -> None:
        super().__init__(keys, keys.fetch_wrapped, limit)


Openers = Callable[[set[bytes]], dict[bytes, Aead | None]]  # a page's subjects -> their keys


class Topics:
    """The stored topics a reader of the log wants, given the event classes it handles (and
    their subclasses): decided once per topic. A row of another topic is skipped unopened, so
    that a read model pays nothing for the many events it ignores (access records, say). A
    topic that names no class is wanted, so that opening it fails as it would unfiltered."""

    def __init__(self, classes: tuple[type, ...]) -> None:
        self.classes = classes
        self._known: dict[str, bool] = {}

    def __contains__(self, topic: str) -> bool:
        known = self._known.get(topic)
        if known is None:
            try:
                cls = resolve_topic(topic)
            except Exception:  # a topic of no class: wanted, so that opening it fails
                known = True
            else:
                known = isinstance(cls, type) and issubclass(cls, self.classes)
            self._known[topic] = known
        return known


class Replay:
    """One rebuild's pass over the log. Each subject's key is fetched once (`RebuildOpeners`),
    and the rows of the next page are read in a thread while the current page is opened and
    projected, so that the rebuild does not wait on the database in between (measured: a
    tenth faster on PostgreSQL). Pages are asked for by position, as a runner tracks it; a
    page read ahead for another position is not used, nor is an empty one (the log may have
    grown since)."""

    def __init__(self, reader: LogReader, keys: SubjectKeys, limit: int,
                 wanted: Topics | None = None) -> None:
        self.reader = reader
        self.limit = limit
        self.wanted = wanted
        self.openers = RebuildOpeners(keys)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="log-read-ahead")
        self._ahead: tuple[int, Future[list[Any]]] | None = None

    def page(self, after: int) -> LogPage:
        rows = self._rows_after(after)
        if rows:
            last = int(rows[-1][0])
            self._ahead = (last, self._thread.submit(self.reader.rows, last, self.limit))
        return self.reader.open_rows(rows, after, self.openers.of, self.wanted)

    def _rows_after(self, after: int) -> list[Any]:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            position, rows = ahead
            if position == after and (read := rows.result()):
                return read
            rows.cancel()
        return self.reader.rows(after, self.limit)

    def close(self) -> None:
        self._thread.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Replay:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


@dataclass(frozen=True)
class LogPage:
    events: list[Any]  # those of the rows read that the reader wants, opened
    last_id: int  # the notification id of the last row read, or the `after` given if none
    read: int  # rows read: 0 only at the end of the log


def wanted_rows(rows: list[Any], wanted: Topics | None) -> list[Any]:
    """The stored rows (as `LogReader.rows` read them) of the topics wanted; all if None."""
    return rows if wanted is None else [row for row in rows if row[3] in wanted]


class LogReader:
    """Without `keys` (a rebuild's worker), rows are opened only with the openers given."""

    def __init__(self, recorder: Any, mapper: SealedMapper, keys: SubjectKeys | None,
                 backend: str) -> None:
        self.recorder = recorder
        self.mapper = mapper
        self.keys = keys
        self.backend = backend
        self._streams: dict[str | bytes, tuple[UUID, bytes]] = {}

    def page(self, after: int, limit: int, wanted: Topics | None = None) -> LogPage:
        """The events with notification ids above `after`, in order, at most `limit` rows (only
        those of `wanted` topics, if given); keys from the shared key cache."""
        return self.open_rows(self.rows(after, limit), after, None, wanted)

    def open_rows(self, rows: list[Any], after: int, openers: Openers | None = None,
                  wanted: Topics | None = None) -> LogPage:
        """The page of `rows` (as `rows` read them after `after`), opened: only those of
        `wanted` topics if given; keys from `openers` if given (a rebuild's), else from the
        shared key cache."""
        if not rows:
            return LogPage([], after, 0)
        last_id, read = int(rows[-1][0]), len(rows)
        rows = wanted_rows(rows, wanted)
        streams, subjects = self._streams_and_subjects(rows)
        present = {subject for subject in subjects if subject is not None}
        if openers is None:
            if self.keys is None:
                raise ValueError("a reader without keys opens rows with the openers given")
            openers = self.keys.openers
        aeads = openers(present)
        open_stored = self.mapper.open_stored
        events = []
        for row, (originator_id, stream), subject in zip(rows, streams, subjects, strict=True):
            if subject is not None and subject not in aeads:
                raise keyless(stream)
            aead = aeads[subject] if subject is not None else None
            events.append(open_stored(originator_id, stream, row[2], row[3], row[4], aead))
        return LogPage(events, last_id, read)

    def subjects(self, rows: list[Any]) -> set[bytes]:
        """The subjects whose keys sealed `rows` (as `rows` read them)."""
        return {subject for subject in self._streams_and_subjects(rows)[1] if subject is not None}

    def _streams_and_subjects(self, rows: list[Any]
                              ) -> tuple[list[tuple[UUID, bytes]], list[bytes | None]]:
        stream_of = self._stream
        streams = [stream_of(row[1]) for row in rows]
        return streams, [sealing_subject(row[4], stream)
                         for row, (_, stream) in zip(rows, streams, strict=True)]

    def rows(self, after: int, limit: int) -> list[Any]:
        """The stored rows above `after`, in order, at most `limit`: (id, stream id as stored,
        version, topic, sealed state)."""
        datastore = self.recorder.datastore
        if self.backend == "sqlite":
            with datastore.transaction(commit=False) as cursor:
                # Plain tuples, not the library's `sqlite3.Row`s: a rebuild's worker is sent them.
                cursor.sqlite_cursor.row_factory = None
                cursor.execute(
                    "SELECT rowid, originator_id, originator_version, topic, state"
                    f" FROM {self.recorder.events_table_name} WHERE rowid > ?"
                    " ORDER BY rowid LIMIT ?", (after, limit))
                return list(cursor.fetchall())
        with (datastore.get_connection() as conn,
              conn.cursor(row_factory=tuple_row, binary=True) as cursor):  # bytea unencoded
            cursor.execute(  # uuid_send: the id's 16 bytes, cheaper to hash than a UUID
                "SELECT notification_id, uuid_send(originator_id), originator_version, topic,"
                " state"
                f" FROM {datastore.schema}.{self.recorder.events_table_name}"
                " WHERE notification_id > %s ORDER BY notification_id LIMIT %s",
                (after, limit))
            return list(cursor.fetchall())

    def _stream(self, stored_id: str | bytes) -> tuple[UUID, bytes]:
        """A stream id as stored (hex text on SQLite, 16 bytes from PostgreSQL) -> (UUID, bytes)."""
        known = self._streams.get(stored_id)
        if known is None:
            uuid = UUID(bytes=stored_id) if type(stored_id) is bytes else UUID(str(stored_id))
            known = (uuid, uuid.bytes)
            if len(self._streams) >= STREAM_ID_CACHE:
                self._streams = {}  # start again: runners share the reader, nothing to race
            self._streams[stored_id] = known
        return known

    def first_events(self, stream_ids: list[UUID]) -> list[tuple[bytes, int, str, bytes]]:
        """The first event of each stream, as stored: (stream id bytes, version, topic, sealed
        state); streams with no event are left out. One probe of the primary key each."""
        if not stream_ids:
            return []
        table = self.recorder.events_table_name
        datastore = self.recorder.datastore
        if self.backend == "sqlite":
            marks = ", ".join("?" for _ in stream_ids)
            with datastore.transaction(commit=False) as cursor:
                cursor.execute(
                    f"SELECT originator_id, originator_version, topic, state FROM {table}"
                    f" WHERE originator_id IN ({marks}) AND originator_version = 1",
                    [i.hex for i in stream_ids])
                return [(UUID(row[0]).bytes, row[1], row[2], bytes(row[3]))
                        for row in cursor.fetchall()]
        with (datastore.get_connection() as conn,
              conn.cursor(row_factory=tuple_row, binary=True) as cursor):
            # A join on the whole primary key: with `originator_id = ANY(...)` the planner,
            # misjudging how many events a stream holds, scanned all 1,000,000 rows.
            cursor.execute(
                "SELECT uuid_send(e.originator_id), e.originator_version, e.topic, e.state"
                " FROM unnest(%s::uuid[]) AS ids(id)"
                f" JOIN {datastore.schema}.{table} e"
                " ON e.originator_id = ids.id AND e.originator_version = 1", (stream_ids,))
            return [(bytes(r[0]), r[1], r[2], bytes(r[3])) for r in cursor.fetchall()]
