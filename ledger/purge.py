"""The purge job (DEL-3, DEL-6, DEL-9): `ledger purge [--dry-run] [--limit N]`.

Each run:
1. soft-deletes the accounts unused past the retention schedule (DEL-6);
2. purges every soft-deleted account whose grace window is over, unless a legal hold is in
   place (DEL-7), through `Lifecycle.purge`, the same path as an immediate erasure.

The work list comes from the lifecycle view, but each subject is checked against their own
stream before anything is destroyed: a view may lag a recovery. A failure (the key store
at fault for one subject goes to the review queue with its kind, never its message, and the run
goes on to the next subject; the subject stays on the list, so the next run tries again. A store
that cannot be reached (the key store, the event store, the read models) stops the run at the
first such failure instead: every other subject would wait out the same outage in turn (seconds
each, hours for a big run), so the rest are not tried, stay due, and the report says which store
was down (`PurgeReport.stopped`). A purge is
idempotent at every step, so a run can be stopped at any point and run again: nothing is done
twice and nothing is left half-erased. A run bigger than the cap is refused unless the operator
says so: a wrong schedule should not erase a school before anyone notices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID

from eventsourcing.persistence import InterfaceError, OperationalError

from crypto import KeyStoreUnavailable
from crypto.sql import Database, DatabaseUnavailable, delete_naming
from ledger.application import ErasedPerson
from ledger.lifecycle import Lifecycle
from ledger.people import Person

DEFAULT_CAP = 10_000
BATCH = 100  # purged together: one key-store transaction and scrub, one save of receipts
REQUESTER = "purge-job"


class Due(Protocol):
    @property
    def subject_id(self) -> UUID: ...
    @property
    def reason(self) -> str: ...
    @property
    def requested_at(self) -> datetime: ...


class Worklist(Protocol):
    """Where the job finds work (the lifecycle view, projections/lifecycle.py)."""

    def pending(self, requested_by: datetime | None = None, limit: int | None = None
                ) -> Sequence[Due]: ...

    def inactive(self, active_before: datetime, kind: str | None = None,
                 limit: int | None = None, unwarned: bool = False) -> list[UUID]: ...


class PurgeCapExceeded(Exception):
    def __init__(self, due: int, cap: int) -> None:
        super().__init__(f"{due} accounts are due, more than the cap of {cap}: run with a"
                         f" --limit of at most {cap}, or confirm the whole run with"
                         " --over-cap after checking the dry run")
        self.due = due
        self.cap = cap


class StoreDown(Exception):
    """A store could not be reached: the run stops (see the module's docstring). The message
    names the store and the failure's kind, never a value."""

    def __init__(self, store: str, kind: str) -> None:
        super().__init__(f"{store} unreachable: {kind}")
        self.store = store
        self.kind = kind


def store_down(error: BaseException) -> StoreDown | None:
    """The outage `error` is, if it is one: a failure of a whole store, not of a subject."""
    if isinstance(error, StoreDown):
        return error
    if isinstance(error, KeyStoreUnavailable):
        return StoreDown("key store", type(error).__name__)
    if isinstance(error, (OperationalError, InterfaceError)):
        return StoreDown("event store", type(error).__name__)
    if isinstance(error, DatabaseUnavailable):
        return StoreDown("database", type(error).__name__)
    return None


@dataclass(frozen=True)
class Outcome:
    subject_id: UUID
    status: str  # purged, held, recovered, not_due, failed (and, in a dry run, would_purge)
    reason: str  # the receipt's reason: expired_window or inactivity
    error: str | None = None  # the failure's kind, never its message


@dataclass
class PurgeReport:
    dry_run: bool
    soft_deleted_for_inactivity: list[UUID] = field(default_factory=list)
    warned_of_inactivity: list[UUID] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    stopped: StoreDown | None = None  # the outage that ended the run early, if one did

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)


class ReviewQueue:
    """Subjects whose purge failed, for a person to look at: id, time, kind of failure, tries.
    A later success takes the subject off."""

    def __init__(self, db: Database) -> None:
        self.db = db
        with db.transaction() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS purge_review (subject_id TEXT PRIMARY KEY,"
                        " failed_at TEXT NOT NULL, error TEXT NOT NULL,"
                        " attempts INTEGER NOT NULL)")

    def failed(self, subject_id: UUID, at: datetime, error: str) -> None:
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO purge_review AS r (subject_id, failed_at, error, attempts)"
                        " VALUES (?, ?, ?, 1) ON CONFLICT (subject_id) DO UPDATE SET"
                        " failed_at = excluded.failed_at, error = excluded.error,"
                        " attempts = r.attempts + 1", (str(subject_id), at.isoformat(), error))

    def succeeded(self, *subject_ids: UUID) -> None:
        with self.db.transaction() as cur:
            delete_naming(cur, "purge_review", ("subject_id",), [str(s) for s in subject_ids])

    def items(self) -> list[tuple[UUID, datetime, str, int]]:
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT subject_id, failed_at, error, attempts FROM purge_review"
                        " ORDER BY failed_at")
            rows = cur.fetchall()
        return [(UUID(r[0]), datetime.fromisoformat(r[1]), r[2], int(r[3])) for r in rows]


class PurgeJob:
    def __init__(self, lifecycle: Lifecycle, worklist: Worklist, review: ReviewQueue,
                 cap: int = DEFAULT_CAP, catch_up: Callable[[], object] = lambda: None,
                 batch: int = BATCH) -> None:
        self.lifecycle = lifecycle
        self.worklist = worklist
        self.review = review
        self.cap = cap
        self.batch = batch
        self.catch_up = catch_up  # brings the work list up to the log's end

    def run(self, *, dry_run: bool = False, limit: int | None = None, over_cap: bool = False,
            on_progress: Callable[[int, int], None] | None = None) -> PurgeReport:
        """One run; `on_progress(done, total)` after each subject (a progress bar).

        An outage before any subject is tried (the work list unreadable, say) raises
        `StoreDown`; one during the run ends it with `report.stopped` set."""
        try:
            self.catch_up()
        except Exception as error:
            raise store_down(error) or error from None
        now = self.lifecycle.clock()
        schedule = self.lifecycle.schedule
        report = PurgeReport(dry_run)
        try:
            inactive = self.worklist.inactive(schedule.inactive_since(now))
            due = list(self.worklist.pending(requested_by=now - _days(schedule.grace.days)))
        except Exception as error:
            raise store_down(error) or error from None
        due_ids = {d.subject_id for d in due}
        total = len(due) + sum(s not in due_ids for s in inactive)
        if limit is not None:
            if limit > self.cap and not over_cap:
                raise PurgeCapExceeded(limit, self.cap)
        elif total > self.cap and not over_cap:
            raise PurgeCapExceeded(total, self.cap)
        try:
            if not dry_run:
                for subject_id in inactive:
                    if self._soft_delete_inactive(subject_id):
                        report.soft_deleted_for_inactivity.append(subject_id)
                to_warn = self.worklist.inactive(schedule.warn_since(now), kind="teacher",
                                                 unwarned=True)
                for teacher_id in to_warn:
                    if self._warn(teacher_id):
                        report.warned_of_inactivity.append(teacher_id)
            todo = due[:limit] if limit is not None else due
            for start in range(0, len(todo), self.batch):
                self._batch(todo[start:start + self.batch], now, dry_run, report.outcomes)
                if on_progress is not None:
                    on_progress(len(report.outcomes), len(todo))
        except StoreDown as down:
            report.stopped = down
        except (KeyStoreUnavailable, OperationalError, InterfaceError,
                DatabaseUnavailable) as error:  # the work list or a review write
            report.stopped = store_down(error)
        return report

    def _batch(self, items: Sequence[Due], now: datetime, dry_run: bool,
               into: list[Outcome]) -> None:
        """Check each subject against their own stream, then purge the live ones together;
        if that fails, each on its own, so that only the one at fault fails. The outcomes go
        to `into` in the order of `items`; on an outage, those known so far (`StoreDown`
        follows)."""
        outcomes: dict[UUID, Outcome] = {}
        try:
            self._batch_outcomes(items, now, dry_run, outcomes)
        finally:
            into += [outcomes[item.subject_id] for item in items if item.subject_id in outcomes]

    def _batch_outcomes(self, items: Sequence[Due], now: datetime, dry_run: bool,
                        outcomes: dict[UUID, Outcome]) -> None:
        live: list[tuple[Person, Due]] = []
        for item in items:
            checked = self._check(item, now, dry_run)
            if isinstance(checked, Outcome):
                outcomes[item.subject_id] = checked
            elif dry_run or not isinstance(checked, Person):  # or erased, half-done
                outcomes[item.subject_id] = self._one(item, checked, now, dry_run)
            else:
                live.append((checked, item))
        if live:
            try:
                receipts = self.lifecycle.purge_many(
                    [(person, _reason(item), item.requested_at) for person, item in live],
                    REQUESTER)
            except Exception as error:
                if (down := store_down(error)) is not None:
                    raise down from None
                for person, item in live:
                    outcomes[item.subject_id] = self._one(item, person, now, dry_run=False)
            else:
                for _person, item in live:
                    done = receipts[item.subject_id] is not None
                    outcomes[item.subject_id] = Outcome(
                        item.subject_id, "purged" if done else "held", _reason(item))
                self.review.succeeded(*(s for s, r in receipts.items() if r is not None))

    def _check(self, item: Due, now: datetime, dry_run: bool
               ) -> Outcome | Person | ErasedPerson:
        """The subject as their own stream has them (the view may lag), or why they are not
        to be purged now: recovered since, their window not over, or unreadable."""
        subject_id, reason = item.subject_id, _reason(item)
        try:
            person = self.lifecycle.ledger.person(subject_id)
        except Exception as error:
            return self._failed(item, now, dry_run, error)
        if isinstance(person, Person):
            if person.deletion is None:
                return Outcome(subject_id, "recovered", reason)
            if self.lifecycle.schedule.grace.is_open(person.deletion.requested_at, now):
                return Outcome(subject_id, "not_due", reason)
        return person

    def _soft_delete_inactive(self, subject_id: UUID) -> bool:
        try:
            return self.lifecycle.mark_inactive(subject_id)
        except Exception as error:
            if (down := store_down(error)) is not None:
                raise down from None
            self.review.failed(subject_id, self.lifecycle.clock(), type(error).__name__)
            return False

    def _warn(self, teacher_id: UUID) -> bool:
        try:
            return self.lifecycle.warn_inactive(teacher_id)
        except Exception as error:  # a mail that fails is retried by the next run
            if (down := store_down(error)) is not None:
                raise down from None
            self.review.failed(teacher_id, self.lifecycle.clock(), type(error).__name__)
            return False

    def _one(self, item: Due, person: Person | ErasedPerson, now: datetime, dry_run: bool
             ) -> Outcome:
        """One checked subject on their own: held, a dry run's answer, or purged (finishing
        an erasure a crash left half-done)."""
        subject_id, reason = item.subject_id, _reason(item)
        try:
            if isinstance(person, Person) and self.lifecycle.holds.of(subject_id):
                return Outcome(subject_id, "held", reason)
            if dry_run:
                return Outcome(subject_id, "would_purge" if isinstance(person, Person)
                               else "would_finish", reason)
            self.lifecycle.purge(subject_id, reason, REQUESTER, item.requested_at, person)
        except Exception as error:
            return self._failed(item, now, dry_run, error)
        self.review.succeeded(subject_id)
        return Outcome(subject_id, "purged", reason)

    def _failed(self, item: Due, now: datetime, dry_run: bool, error: Exception) -> Outcome:
        """To the review queue, with the failure's kind only (a message may carry values).
        An outage is no fault of the subject's: it stops the run instead (`StoreDown`), and
        the subject, still due, is tried by the next."""
        if (down := store_down(error)) is not None:
            raise down from None
        if not dry_run:
            self.review.failed(item.subject_id, now, type(error).__name__)
        return Outcome(item.subject_id, "failed", _reason(item), type(error).__name__)


def _reason(item: Due) -> str:
    """The receipt's reason: the window ran out, or (DEL-6) the account was unused."""
    return "inactivity" if item.reason == "inactivity" else "expired_window"


def _days(days: int) -> timedelta:
    return timedelta(days=days)
