"""Properties of the sealed mapper (CRY-1), on both backends where storage is involved.

- Any event round-trips exactly (type for type, value for value) through `SealedMapper` and the
  event store.
- Any change to a stored state, a flipped byte or a cut, fails to open.
- A stored state moved to another row (another stream, version or topic) fails to open.
- Erasing any subset of subjects leaves exactly the others readable.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import MapperDeserialisationError, StoredEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.application import ErasedPerson, Ledger
from ledger.people import Person
from ledger.sealing import ErasedEvent

PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Specimen(Aggregate):
    """A stream whose one event carries whatever payload the property draws."""

    @event("Created")
    def __init__(self, payload: Any) -> None:
        self.payload = payload

    @event("Noted")
    def note(self, payload: Any) -> None:
        self.payload = payload


# -- values -----------------------------------------------------------------------------------

_offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
_leaves = st.one_of(
    st.text(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),  # orjson's range; wider ones raise
    st.floats(),  # NaN and infinities included
    st.booleans(),
    st.none(),
    st.uuids(),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                 timezones=_offsets),
    st.dates(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.sampled_from(Colour),
    st.sampled_from(Level),
)
# A dict of exactly the keys "_type_" and "_data_" is the tag's own shape: the library's
# JSONTranscoder reads it as a tag too, so it is no payload either can carry.
_TAG_KEYS = {"_type_", "_data_"}
payloads = st.recursive(
    _leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=8), children, max_size=4).filter(
            lambda d: set(d) != _TAG_KEYS
        ),
    ),
    max_leaves=20,
)


def assert_exact(original: Any, copy: Any) -> None:
    """Equal, and of the same type all the way down (1 == 1.0 == True would not do)."""
    assert type(copy) is type(original), (original, copy)
    if isinstance(original, float):
        assert repr(copy) == repr(original)  # NaN, -0.0
    elif isinstance(original, (list, tuple)):
        assert len(copy) == len(original)
        for a, b in zip(original, copy, strict=True):
            assert_exact(a, b)
    elif isinstance(original, dict):
        assert list(copy) == list(original)
        for key in original:
            assert_exact(original[key], copy[key])
    elif isinstance(original, Decimal):
        assert str(copy) == str(original)  # Decimal("1.0") == Decimal("1.00"), but not exact
    elif isinstance(original, datetime):
        assert copy == original and copy.tzinfo == original.tzinfo
    else:
        assert copy == original


# -- round trip -------------------------------------------------------------------------------


@PROPERTY
@given(payload=payloads, note=payloads)
def test_any_event_round_trips_exactly_through_the_sealed_store(
    ledger: Ledger, payload: Any, note: Any
) -> None:
    specimen = Specimen(payload)
    specimen.note(note)
    originals = specimen.collect_events()
    ledger.events.put(originals)
    stored = ledger.recorder.select_events(specimen.id)
    assert [s.originator_version for s in stored] == [1, 2]
    for original, row in zip(originals, stored, strict=True):
        copy = ledger.mapper.to_domain_event(row)
        assert type(copy) is type(original)
        # ids, versions, timestamp, topics, payload (attribute order is no part of an event)
        assert_exact(dict(sorted(vars(original).items())), dict(sorted(vars(copy).items())))
    assert_exact(note, ledger.repository.get(specimen.id).payload)


@pytest.mark.parametrize("value", [
    UUID("b2723fe2-c01a-40d2-875e-a3aac6a09ff5"),
    datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
    date(2024, 2, 29),
    Decimal("-0.000"),
    Colour.GREEN,
    Level.HIGH,
    (1, ("a", 2.5)),
    float("nan"),
    float("-inf"),
    -0.0,
    {"nested": [{"deeper": (UUID(int=1), Decimal("1E+3"))}]},
])
def test_each_kind_round_trips_exactly(ledger: Ledger, value: Any) -> None:
    specimen = Specimen({"value": value, "list": [value], "bare": None})
    ledger.save(specimen)
    (row,) = ledger.recorder.select_events(specimen.id)
    assert_exact({"value": value, "list": [value], "bare": None},
                 ledger.mapper.to_domain_event(row).payload)


# -- tampering and moving ---------------------------------------------------------------------


@dataclass
class StoredRows:
    ledger: Ledger
    rows: list[StoredEvent]
    erased_rows: list[StoredEvent]

    @property
    def erased_ids(self) -> set[UUID | str]:
        return {row.originator_id for row in self.erased_rows}


@pytest.fixture
def stored_rows(ledger: Ledger) -> StoredRows:
    """Events and snapshots of three people, one of whom is then erased, and an erasure record."""
    people = [ledger.register_student(f"Person {i}", "12") for i in range(3)]
    for person_id in people:
        ledger.rename(person_id, "Someone else")
        ledger.take_snapshot(person_id)
    erased = people[2]
    erased_rows = list(ledger.recorder.select_events(erased))
    assert ledger.snapshots is not None
    erased_rows += ledger.snapshots.recorder.select_events(erased)
    ledger.erase_subject(erased, "user_request")
    rows: list[StoredEvent] = list(ledger.recorder.select_notifications(start=None, limit=100))
    for person_id in people[:2]:
        rows += ledger.snapshots.recorder.select_events(person_id)
    live = [r for r in rows if r.originator_id != erased]
    return StoredRows(ledger, live, erased_rows)


def _opens(ledger: Ledger, row: StoredEvent) -> None:
    ledger.mapper.to_domain_event(row)


def test_every_live_row_opens(stored_rows: StoredRows) -> None:
    for row in stored_rows.rows:
        _opens(stored_rows.ledger, row)
    assert len(stored_rows.rows) == 2 * 2 + 1 + 2  # events, the erasure record, snapshots


@PROPERTY
@given(data=st.data())
def test_flipping_any_byte_of_a_stored_state_fails_to_open(
    stored_rows: StoredRows, data: st.DataObject
) -> None:
    row = data.draw(st.sampled_from(stored_rows.rows))
    position = data.draw(st.integers(min_value=0, max_value=len(row.state) - 1))
    mask = data.draw(st.integers(min_value=1, max_value=255))
    state = bytearray(row.state)
    state[position] ^= mask
    tampered = StoredEvent(row.originator_id, row.originator_version, row.topic, bytes(state))
    with pytest.raises(MapperDeserialisationError):
        _opens(stored_rows.ledger, tampered)


@PROPERTY
@given(data=st.data())
def test_a_cut_stored_state_fails_to_open(stored_rows: StoredRows, data: st.DataObject) -> None:
    row = data.draw(st.sampled_from(stored_rows.rows))
    start = data.draw(st.integers(min_value=0, max_value=len(row.state) - 1))
    end = data.draw(st.integers(min_value=start, max_value=len(row.state) - 1))
    cut = row.state[:start] + row.state[end + 1:]
    with pytest.raises(MapperDeserialisationError):
        _opens(stored_rows.ledger, StoredEvent(row.originator_id, row.originator_version,
                                               row.topic, cut))


@PROPERTY
@given(data=st.data())
def test_a_state_moved_to_another_row_fails_to_open(
    stored_rows: StoredRows, data: st.DataObject
) -> None:
    """Moved to another stream, version or topic, or any mix of them; from a live subject or
    from an erased one (which must not pass for an erased event of the row it was moved to)."""
    source = data.draw(st.sampled_from(stored_rows.rows + stored_rows.erased_rows))
    target = data.draw(st.sampled_from(stored_rows.rows))
    originator_id = data.draw(st.sampled_from([source.originator_id, target.originator_id]))
    version = data.draw(st.sampled_from(sorted({source.originator_version,
                                                target.originator_version,
                                                source.originator_version + 1})))
    topic = data.draw(st.sampled_from(sorted({source.topic, target.topic})))
    if (originator_id, version, topic) == (source.originator_id, source.originator_version,
                                           source.topic):
        return  # not moved
    moved = StoredEvent(originator_id, version, topic, source.state)
    if originator_id in stored_rows.erased_ids:
        # Within an erased stream nothing can be authenticated any more, nor read: every row
        # of it is a placeholder, wherever its bytes came from.
        assert isinstance(stored_rows.ledger.mapper.to_domain_event(moved), ErasedEvent)
        return
    with pytest.raises(MapperDeserialisationError):
        _opens(stored_rows.ledger, moved)


def test_the_erased_rows_open_as_placeholders_only_in_place(stored_rows: StoredRows) -> None:
    for row in stored_rows.erased_rows:
        placeholder = stored_rows.ledger.mapper.to_domain_event(row)
        assert isinstance(placeholder, ErasedEvent)
        assert placeholder.originator_id == row.originator_id


# -- erasure of any subset --------------------------------------------------------------------


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=5))
def test_erasing_any_subset_leaves_exactly_the_others_readable(
    ledger: Ledger, plan: list[tuple[bool, bool]]
) -> None:
    """`plan[i]` = (erase person i?, snapshot person i first?)."""
    people = {}
    for i, (_, snapshot) in enumerate(plan):
        name = f"Subset {i}"
        person_id = ledger.register_student(name, "14")
        ledger.rename(person_id, name + " renamed")
        if snapshot:
            ledger.take_snapshot(person_id)
        people[person_id] = name + " renamed"
    erased = {pid for pid, (erase, _) in zip(people, plan, strict=True) if erase}
    for person_id in erased:
        ledger.erase_subject(person_id, "school_request")
    for person_id, name in people.items():
        read = ledger.person(person_id)
        if person_id in erased:
            assert isinstance(read, ErasedPerson) and read.id == person_id
        else:
            assert isinstance(read, Person) and read.display_name == name
