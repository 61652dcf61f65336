"""Legal holds (DEL-7): while one is in place, the subject's purge waits.

A hold is placed and lifted with a reason (for example an open inspection request under 34 CFR
99.10(e)). The reason is free text that may well name the student, so each subject's holds are
a stream sealed under that subject's key (`sealed_for_owner`): when the hold is lifted and the
subject is purged, the reasons go with everything else. Who placed or lifted a hold is an
opaque principal, never a name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4, uuid5

from eventsourcing.domain import Aggregate, event

from crypto import KeyErased
from ledger.application import ErasedPerson, Ledger
from ledger.people import short_text

HOLD_NAMESPACE = UUID("b4d1a0c2-5e7f-4a39-9c1d-2f6e8a0b3c47")
MAX_REASON = 500


def holds_id_for(subject_id: UUID) -> UUID:
    return uuid5(HOLD_NAMESPACE, str(subject_id))


@dataclass(frozen=True)
class Hold:
    id: UUID
    reason: str
    placed_by: str
    placed_at: datetime


class HoldNotFound(LookupError):
    def __init__(self) -> None:
        super().__init__("no such hold in place")


class LegalHolds(Aggregate):
    class Event(Aggregate.Event):
        sealed_for_owner = True
        owner_id: UUID

    class Opened(Aggregate.Created, Event):
        pass

    class Placed(Event):
        hold_id: UUID
        reason: str
        placed_by: str
        placed_at: datetime

    class Lifted(Event):
        hold_id: UUID
        reason: str
        lifted_by: str
        lifted_at: datetime

    @staticmethod
    def create_id(owner_id: UUID, **_: Any) -> UUID:
        return holds_id_for(owner_id)

    @event(Opened)
    def __init__(self, owner_id: UUID) -> None:
        self.owner_id = owner_id
        self.in_place: dict[str, list[Any]] = {}  # hold id -> [reason, placed_by, placed_at]

    @event(Placed)
    def _place(self, owner_id: UUID, hold_id: UUID, reason: str, placed_by: str,
               placed_at: datetime) -> None:
        self.in_place[str(hold_id)] = [reason, placed_by, placed_at]

    @event(Lifted)
    def _lift(self, owner_id: UUID, hold_id: UUID, reason: str, lifted_by: str,
              lifted_at: datetime) -> None:
        del self.in_place[str(hold_id)]

    def place(self, reason: str, by: str, at: datetime) -> UUID:
        hold_id = uuid4()
        self._place(self.owner_id, hold_id, short_text("reason", reason, MAX_REASON), by, at)
        return hold_id

    def lift(self, hold_id: UUID, reason: str, by: str, at: datetime) -> None:
        if str(hold_id) not in self.in_place:
            raise HoldNotFound()
        self._lift(self.owner_id, hold_id, short_text("reason", reason, MAX_REASON), by, at)

    @property
    def holds(self) -> list[Hold]:
        return [Hold(UUID(k), *v) for k, v in self.in_place.items()]


class Holds:
    """Place, lift and check the holds on a subject's purge."""

    def __init__(self, ledger: Ledger, clock: Callable[[], datetime]) -> None:
        self.ledger = ledger
        self.clock = clock

    def place(self, subject_id: UUID, reason: str, by: str) -> UUID:
        """Only on a person who is still there: `KeyErased` if purged, `PersonNotFound`."""
        if isinstance(self.ledger.person(subject_id), ErasedPerson):  # PersonNotFound too
            raise KeyErased(subject_id)
        holds = self._of(subject_id) or LegalHolds(subject_id)
        hold_id = holds.place(reason, by, self.clock())
        self.ledger.save(holds)
        return hold_id

    def lift(self, subject_id: UUID, hold_id: UUID, reason: str, by: str) -> None:
        holds = self._of(subject_id)
        if holds is None:
            raise HoldNotFound()
        holds.lift(hold_id, reason, by, self.clock())
        self.ledger.save(holds)

    def of(self, subject_id: UUID) -> list[Hold]:
        """The holds in place (read from the log, never from a lagging view: a purge that
        missed a hold placed a moment ago could not be undone)."""
        holds = self._of(subject_id)
        return holds.holds if holds is not None else []

    def _of(self, subject_id: UUID) -> LegalHolds | None:
        found: LegalHolds | None = self.ledger.aggregate(holds_id_for(subject_id), LegalHolds)
        return found
