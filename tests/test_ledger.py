"""The ledger itself: the append-only rule enforced by the database (LED-1), erasure that is safe
to run again after a crash and writes nothing when refused, and exact orjson transcoding."""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent, TranscodingNotRegisteredError
from eventsourcing.utils import get_topic

from ledger.application import ErasedPerson, Ledger, PersonNotFound
from ledger.erasure import ErasureRecord
from ledger.people import InvalidRecord, Person
from ledger.settings import Settings, sqlite_path
from ledger.transcoder import OrjsonTranscoder

# -- LED-1: append-only, enforced by the database ---------------------------------------------


@contextmanager
def raw_connection(settings: Settings) -> Iterator[Callable[[str, tuple[Any, ...]], None]]:
    """Runs one statement per call in its own transaction, as an operator's client would."""
    if settings.backend == "sqlite":
        conn = sqlite3.connect(sqlite_path(settings.database_url), isolation_level=None)

        def run_sqlite(sql: str, params: tuple[Any, ...] = ()) -> None:
            conn.execute(sql, params)

        try:
            yield run_sqlite
        finally:
            conn.close()
    else:
        with psycopg.connect(settings.database_url, autocommit=True,
                             options=f"-c search_path={settings.schema}") as pg:

            def run_pg(sql: str, params: tuple[Any, ...] = ()) -> None:
                pg.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]

            yield run_pg


def _refused(settings: Settings) -> tuple[type[Exception], ...]:
    if settings.backend == "sqlite":
        return (sqlite3.IntegrityError,)
    return (psycopg.errors.InsufficientPrivilege,)


@pytest.fixture
def written(ledger: Ledger) -> tuple[list[StoredEvent], list[StoredEvent]]:
    ana = ledger.register_student("Ana", "12")
    ledger.rename(ana, "Ana B")
    ledger.take_snapshot(ana)
    assert ledger.snapshots is not None
    return (list(ledger.recorder.select_notifications(start=None, limit=100)),
            list(ledger.snapshots.recorder.select_events(ana)))


def _tables(settings: Settings) -> tuple[str, str]:
    if settings.backend == "sqlite":
        return "stored_events", "stored_snapshots"
    return "ledger_events", "ledger_snapshots"


def _statements(settings: Settings, table: str, row: StoredEvent
                ) -> dict[str, tuple[str, tuple[Any, ...]]]:
    oid: Any = row.originator_id.hex if settings.backend == "sqlite" else row.originator_id
    key = (oid, row.originator_version)
    statements = {
        "update": (f"UPDATE {table} SET state = ? WHERE originator_id = ? AND"
                   " originator_version = ?", (b"\x01forged", *key)),
        "update all": (f"UPDATE {table} SET topic = topic", ()),
        "delete": (f"DELETE FROM {table} WHERE originator_id = ? AND originator_version = ?",
                   key),
        "delete all": (f"DELETE FROM {table}", ()),
        "upsert": (f"INSERT INTO {table} (originator_id, originator_version, topic, state)"
                   " VALUES (?, ?, ?, ?) ON CONFLICT (originator_id, originator_version)"
                   " DO UPDATE SET state = excluded.state", (*key, row.topic, b"\x01forged")),
    }
    if settings.backend == "sqlite":
        # SQLite's REPLACE deletes the old row without firing DELETE triggers.
        for verb in ("INSERT OR REPLACE", "REPLACE"):
            statements[verb.lower()] = (
                f"{verb} INTO {table} (originator_id, originator_version, topic, state)"
                " VALUES (?, ?, ?, ?)", (*key, row.topic, b"\x01forged"))
    else:
        statements["truncate"] = (f"TRUNCATE {table}", ())
        statements["truncate cascade"] = (f"TRUNCATE {table} CASCADE", ())
    return statements


@pytest.mark.parametrize("kind", ["events", "snapshots"])
def test_stored_events_and_snapshots_cannot_be_changed_or_removed(
    ledger: Ledger, settings: Settings, written: tuple[list[StoredEvent], list[StoredEvent]],
    kind: str,
) -> None:
    events, snapshots = written
    table = _tables(settings)[0 if kind == "events" else 1]
    row = (events if kind == "events" else snapshots)[0]
    statements = _statements(settings, table, row)
    accepted = []
    with raw_connection(settings) as run:
        for name, (sql, params) in statements.items():
            try:
                run(sql, params)
            except _refused(settings) as error:
                assert "append-only" in str(error), (name, error)
            else:
                accepted.append(name)
    assert accepted == []
    assert ledger.recorder.select_notifications(start=None, limit=100) == events
    assert ledger.snapshots is not None
    assert ledger.snapshots.recorder.select_events(row.originator_id) == snapshots
    person = ledger.person(row.originator_id)  # type: ignore[arg-type]
    assert isinstance(person, Person) and person.display_name == "Ana B"


def test_appending_still_works_under_the_rule(ledger: Ledger) -> None:
    ids = [ledger.register_student(f"S{i}", "10") for i in range(3)]
    for person_id in ids:
        ledger.rename(person_id, "Renamed")
    assert all(ledger.person(i).display_name == "Renamed" for i in ids)  # type: ignore[union-attr]


# -- erasure ----------------------------------------------------------------------------------


def _erasure_records(ledger: Ledger) -> list[Any]:
    topic = get_topic(ErasureRecord.SubjectErased)
    return [ledger.mapper.to_domain_event(n) for n in
            ledger.recorder.select_notifications(start=None, limit=1000, topics=[topic])]


def test_erasure_completes_when_run_again_after_a_crash(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    ana = ledger.register_student("Ana", "12")
    ben = ledger.register_student("Ben", "12")
    save = Ledger.save
    crashes = []

    def crash_once(self: Ledger, *objs: Any, **kwargs: Any) -> Any:
        if not crashes:
            crashes.append(objs)
            raise RuntimeError("power cut after the key was destroyed")
        return save(self, *objs, **kwargs)

    monkeypatch.setattr(Ledger, "save", crash_once)
    with pytest.raises(RuntimeError, match="power cut"):
        ledger.erase_subject(ana, "user_request")
    assert isinstance(crashes[0][0], ErasureRecord)  # the crash came after the key went
    assert ledger.keys.is_erased(ana)
    assert _erasure_records(ledger) == []
    assert isinstance(ledger.person(ana), ErasedPerson)

    first = ledger.erase_subject(ana, "user_request")
    again = ledger.erase_subject(ana, "school_request")
    assert first == again and first.receipt.key_id is not None  # the first receipt stands
    assert first.verify(ledger.signer.public_key)
    (record,) = _erasure_records(ledger)
    assert record.subject_id == ana and record.reason == "user_request"
    assert record.key_id == first.receipt.key_id
    assert record.kek_version == first.receipt.kek_version
    assert isinstance(ledger.person(ben), Person)


def test_erasing_an_unknown_id_raises_and_writes_nothing(ledger: Ledger) -> None:
    ledger.register_student("Ana", "12")
    position = ledger.recorder.max_notification_id()
    live = ledger.keys.store.count_live()
    for unknown in (uuid4(), ErasureRecord.id_for(uuid4())):
        with pytest.raises(PersonNotFound):
            ledger.erase_subject(unknown, "user_request")
        assert ledger.keys.erasure_of(unknown) is None
    with pytest.raises(PersonNotFound):
        ledger.person(ErasureRecord.id_for(uuid4()))
    assert ledger.recorder.max_notification_id() == position
    assert ledger.keys.store.count_live() == live
    assert ledger.keys.store.tombstones_after(0) == []


def test_erasing_a_ledger_record_stream_is_refused(ledger: Ledger) -> None:
    ana = ledger.register_student("Ana", "12")
    ledger.erase_subject(ana, "user_request")
    with pytest.raises(PersonNotFound):
        ledger.erase_subject(ErasureRecord.id_for(ana), "user_request")
    assert len(_erasure_records(ledger)) == 1


@pytest.mark.parametrize("reason", ["", "because", "USER_REQUEST", "user_request "])
def test_an_invalid_reason_is_refused_before_anything_is_destroyed(
    ledger: Ledger, reason: str
) -> None:
    ana = ledger.register_student("Ana", "12")
    position = ledger.recorder.max_notification_id()
    with pytest.raises(InvalidRecord) as refused:
        ledger.erase_subject(ana, reason)
    assert refused.value.field == "reason"
    assert reason.strip() == "" or reason not in str(refused.value)  # the value is not echoed
    assert not ledger.keys.is_erased(ana)
    assert ledger.recorder.max_notification_id() == position
    assert isinstance(ledger.person(ana), Person)


# -- orjson transcoding -----------------------------------------------------------------------


class Mood(enum.Enum):
    CALM = "calm"


class Grade(enum.IntEnum):
    FIRST = 1


class Colour(enum.StrEnum):
    RED = "red"


EXACT = [
    UUID("b2723fe2-c01a-40d2-875e-a3aac6a09ff5"),
    datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=UTC),
    datetime(2024, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=5, minutes=45))),
    datetime(2024, 3, 1, 12, 30),  # naive stays naive
    date(2024, 3, 1),
    Decimal("1.10"),
    Decimal("-0"),
    Decimal("12345678901234567890.123456789"),
    Mood.CALM,
    Grade.FIRST,
    Colour.RED,
]


@pytest.mark.parametrize("value", EXACT, ids=lambda v: f"{type(v).__name__}:{v}")
def test_orjson_transcoding_is_exact(value: Any) -> None:
    transcoder = OrjsonTranscoder()
    for wrapped in (value, [value], {"v": value}, (value,)):
        copy = transcoder.decode(transcoder.encode(wrapped))
        assert type(copy) is type(wrapped)
        inner = copy if wrapped is value else (copy["v"] if isinstance(copy, dict) else copy[0])
        assert type(inner) is type(value)
        assert inner == value and str(inner) == str(value)
        if isinstance(value, datetime):
            assert inner.utcoffset() == value.utcoffset()
        if isinstance(value, enum.Enum):
            assert inner is value


def test_orjson_tags_values_that_json_would_flatten() -> None:
    transcoder = OrjsonTranscoder()
    encoded = transcoder.encode({"id": EXACT[0], "at": EXACT[1], "amount": Decimal("1.10")})
    assert encoded == (
        b'{"id":{"_type_":"uuid_hex","_data_":"b2723fe2c01a40d2875ea3aac6a09ff5"},'
        b'"at":{"_type_":"datetime_iso","_data_":"2024-03-01T12:30:15.123456+00:00"},'
        b'"amount":{"_type_":"decimal_str","_data_":"1.10"}}'
    )


def test_orjson_refuses_what_it_cannot_round_trip() -> None:
    transcoder = OrjsonTranscoder()
    with pytest.raises(TranscodingNotRegisteredError):
        transcoder.encode({"s": {1, 2}})
    with pytest.raises(TypeError):
        transcoder.encode({"n": 2**64})  # beyond orjson's integers: refused, not truncated
    with pytest.raises(TranscodingNotRegisteredError):
        transcoder.decode(b'{"_type_":"no_such_type","_data_":1}')


def test_a_persons_dates_and_ids_come_back_typed_from_the_store(ledger: Ledger) -> None:
    ana = ledger.register_student("Ana", "12", age_given_on=date(2024, 2, 29))
    ledger.close()
    reopened = Ledger(ledger.settings)
    person = reopened.person(ana)
    assert isinstance(person, Person)
    assert type(person.id) is UUID and person.id == ana
    assert type(person.age_given_on) is date and person.age_given_on == date(2024, 2, 29)
    assert person.created_on.tzinfo is not None
    reopened.close()


def test_the_ledgers_own_key_and_records_cannot_be_erased(ledger: Ledger) -> None:
    from ledger.application import PersonNotFound
    from ledger.erasure import ErasureRecord
    from ledger.sealing import LEDGER_SUBJECT

    ana = ledger.register_student("Ana", "12")
    ledger.erase_subject(ana, "user_request")
    before = ledger.recorder.max_notification_id()
    for not_a_person in (LEDGER_SUBJECT, ErasureRecord.id_for(ana)):
        with pytest.raises(PersonNotFound):
            ledger.erase_subject(not_a_person, "support_request")
    assert ledger.recorder.max_notification_id() == before
    assert not ledger.keys.is_erased(LEDGER_SUBJECT)
    assert ledger.repository.get(ErasureRecord.id_for(ana)).subject_id == ana


def test_refused_registrations_write_nothing_and_spend_no_key(ledger: Ledger) -> None:
    from ledger.people import InvalidRecord

    ledger.register_student("Ana", "12")  # the first batch of ids made ahead is in the store
    keys_before = ledger.keys.store.count_live()
    reserved_before = len(ledger.keys._reserved)
    events_before = ledger.recorder.max_notification_id()
    for name, age in (("", "12"), ("Ben", "3"), ("Ben", "1999-01-01"), ("x" * 101, "12")):
        with pytest.raises(InvalidRecord):
            ledger.register_student(name, age)
    with pytest.raises(InvalidRecord):
        ledger.register_teacher("Cy", "20")
    assert ledger.recorder.max_notification_id() == events_before
    assert ledger.keys.store.count_live() == keys_before
    assert len(ledger.keys._reserved) == reserved_before
