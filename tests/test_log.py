"""The replay path (`Ledger.read_log`) gives exactly what the library's path gives, page by page."""

from __future__ import annotations

import pytest
from eventsourcing.persistence import MapperDeserialisationError, StoredEvent

from ledger.application import Ledger
from ledger.sealing import ErasedEvent


def _library_replay(ledger: Ledger) -> list[object]:
    notifications = ledger.recorder.select_notifications(start=None, limit=10_000)
    return [ledger.mapper.to_domain_event(n) for n in notifications]


def test_read_log_equals_the_library_replay_across_pages(ledger: Ledger) -> None:
    people = [ledger.register_student(f"S{i}", "12") for i in range(7)]
    for person in people[:4]:
        ledger.rename(person, "Renamed")
    ledger.erase_subject(people[5], "user_request")
    events, position = [], 0
    while (page := ledger.read_log(position, 3)).events:
        events += page.events
        position = page.last_id
    expected = _library_replay(ledger)
    assert position == ledger.recorder.max_notification_id()
    assert [type(e) for e in events] == [type(e) for e in expected]
    assert [vars(e) for e in events] == [vars(e) for e in expected]
    erased = [e for e in events if isinstance(e, ErasedEvent)]
    assert [e.originator_id for e in erased] == [people[5]]


def test_read_log_refuses_a_state_moved_into_another_stream(ledger: Ledger) -> None:
    ana = ledger.register_student("Ana", "12")
    ben = ledger.register_student("Ben", "12")
    stolen = ledger.recorder.select_notifications(start=None, limit=10)
    ana_state = next(n.state for n in stolen if n.originator_id == ana)
    # Inserting is allowed (append-only): a forged event 2 of Ben's stream carrying Ana's state.
    ledger.recorder.insert_events([StoredEvent(ben, 2, "ledger.people:Person.Renamed",
                                               ana_state)])
    with pytest.raises(MapperDeserialisationError, match="failed to open"):
        ledger.read_log(0, 10)
    # Relabelled as sealed by the ledger's key, it fails too; an unknown label is refused.
    for position, header in ((3, b"\x02"), (4, b"\x07")):
        forged = header + ana_state[1:]
        ledger.recorder.insert_events([StoredEvent(ben, position, "ledger.people:Person.Renamed",
                                                   forged)])
        with pytest.raises(MapperDeserialisationError, match=r"failed to open|not sealed"):
            ledger.read_log(position, 10)


def test_read_log_after_the_end_is_empty(ledger: Ledger) -> None:
    ledger.register_student("Ana", "12")
    page = ledger.read_log(ledger.recorder.max_notification_id() or 0, 10)
    assert page.events == [] and page.last_id == ledger.recorder.max_notification_id()
