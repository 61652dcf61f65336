"""The replay path (`Ledger.read_log`) gives exactly what the library's path gives, page by page."""

from __future__ import annotations

import pytest
from eventsourcing.persistence import MapperDeserialisationError, StoredEvent
from eventsourcing.utils import get_topic

from ledger.application import Ledger
from ledger.log import Topics
from ledger.people import Person
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


def test_a_reader_of_some_classes_gets_only_their_events_and_passes_over_the_rest(
        ledger: Ledger) -> None:
    people = [ledger.register_student(f"S{i}", "12") for i in range(6)]
    for person in people[:4]:
        ledger.rename(person, "Renamed")
    ledger.erase_subject(people[1], "user_request")
    wanted = Topics((Person.Renamed,))
    events, position, read = [], 0, 0
    while (page := ledger.read_log(position, 3, wanted)).read:
        events += page.events
        position, read = page.last_id, read + page.read
    assert position == ledger.recorder.max_notification_id() and read == position
    everything = _library_replay(ledger)
    assert [vars(e) for e in events if not isinstance(e, ErasedEvent)] == [
        vars(e) for e in everything if isinstance(e, Person.Renamed)]
    # The erased student's rename comes as a placeholder; their other events do not come.
    assert [(e.originator_id, e.erased_topic) for e in events if isinstance(e, ErasedEvent)] \
        == [(people[1], "ledger.people:Person.Renamed")]


class RenamedAgain(Person.Renamed):
    """A subclass, as an aggregate's own version of an event would be."""


def test_a_class_names_its_subclasses_and_a_topic_of_no_class_is_wanted() -> None:
    wanted = Topics((Person.Renamed,))
    assert get_topic(RenamedAgain) in wanted
    assert get_topic(Person.AgeGiven) not in wanted
    assert f"{__name__}:Topics" not in wanted  # a name that is no event class
    assert "ledger.people:NoSuchEvent" in wanted  # opening it fails, as it would unfiltered
