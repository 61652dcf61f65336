"""A section's events (and snapshots) are sealed under its teacher's key (header 0x03 + owner id),
so that erasing the teacher erases their sections with them and no one else's. Both backends."""

from __future__ import annotations

from uuid import UUID

import pytest
from eventsourcing.persistence import MapperDeserialisationError, StoredEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.application import ErasedPerson, Ledger
from ledger.enrolment import SectionNotFound, Sections
from ledger.people import Student
from ledger.sealing import SEALED_FOR_OWNER, SEALED_FOR_STREAM, ErasedEvent
from ledger.sections import Section
from tests.test_accounts import stored_events

PROPERTY = settings(max_examples=15, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def rows(ledger: Ledger, stream: UUID) -> list[StoredEvent]:
    found = list(ledger.recorder.select_events(stream))
    assert ledger.snapshots is not None
    return found + list(ledger.snapshots.recorder.select_events(stream))


def test_a_section_is_sealed_under_its_teachers_key_and_erased_with_the_teacher(
        ledger: Ledger) -> None:
    sections = Sections(ledger)
    erased_teacher, kept_teacher = ledger.register_teacher("Ms G"), ledger.register_teacher("Mr H")
    student = ledger.register_student("Ivo", "14")
    gone = sections.create(erased_teacher, "Gone Section", "csd", "7", "email")
    kept = sections.create(kept_teacher, "Kept Section", "csd", "7", "email")
    for section_id in (gone, kept):
        sections.add_student(ledger.aggregate(section_id, Section).owner_id, section_id, student)
    sections.rename(erased_teacher, gone, "Gone Section 2")
    ledger.take_snapshot(gone)  # a snapshot is sealed as the events are
    code = sections.section(gone).join_code

    for section_id, owner in ((gone, erased_teacher), (kept, kept_teacher)):
        stored = rows(ledger, section_id)
        assert stored and all(r.state[:17] == SEALED_FOR_OWNER + owner.bytes for r in stored)
        assert ledger.keys.store.load(section_id) is None  # no key of the section's own

    ledger.erase_subject(erased_teacher, "user_request")
    history = ledger.history(gone)
    assert len(history) == 3 and all(isinstance(e, ErasedEvent) for e in history)
    assert [e.originator_version for e in history] == [1, 2, 3]
    logged = stored_events(ledger, gone)
    assert len(logged) == 3 and all(isinstance(e, ErasedEvent) for e in logged)
    with pytest.raises(SectionNotFound):
        sections.section(gone)
    with pytest.raises(SectionNotFound):
        sections.join(student, code)
    assert isinstance(ledger.person(erased_teacher), ErasedPerson)

    # Everyone else's records are whole: the other teacher's section, the student.
    section = sections.section(kept, kept_teacher)
    assert (section.name, section.students) == ("Kept Section", [student])
    assert ledger.live(student, Student).display_name == "Ivo"
    assert not any(isinstance(e, ErasedEvent) for e in stored_events(ledger, kept))


def test_a_section_state_moved_to_another_owners_header_fails_to_open(ledger: Ledger) -> None:
    sections = Sections(ledger)
    first, second = ledger.register_teacher("Ms J"), ledger.register_teacher("Mr K")
    mine = sections.create(first, "Mine", "csp", "11", "email")
    theirs = sections.create(second, "Theirs", "csp", "11", "email")
    (row,) = rows(ledger, mine)
    body = row.state[17:]
    for header in (SEALED_FOR_OWNER + second.bytes, SEALED_FOR_OWNER + mine.bytes,
                   SEALED_FOR_OWNER + theirs.bytes, SEALED_FOR_STREAM, SEALED_FOR_OWNER):
        moved = StoredEvent(row.originator_id, row.originator_version, row.topic, header + body)
        with pytest.raises(MapperDeserialisationError):
            ledger.mapper.to_domain_event(moved)
    # And the whole state, header and all, moved to the other section's stream.
    moved = StoredEvent(theirs, row.originator_version, row.topic, row.state)
    with pytest.raises(MapperDeserialisationError):
        ledger.mapper.to_domain_event(moved)
    assert ledger.mapper.to_domain_event(row).originator_id == mine


@PROPERTY
@given(plan=st.lists(st.tuples(st.integers(min_value=0, max_value=2), st.booleans()),
                     min_size=1, max_size=5),
       erase=st.sets(st.integers(min_value=0, max_value=2), max_size=3),
       data=st.data())
def test_erasing_any_owners_leaves_exactly_the_other_owners_sections_readable(
        ledger: Ledger, plan: list[tuple[int, bool]], erase: set[int],
        data: st.DataObject) -> None:
    """`plan[i]` = (which of three teachers owns section i, snapshot it?). Then any subset of the
    teachers is erased; then any section's state is moved under any other live owner's header."""
    sections = Sections(ledger)
    teachers = [ledger.register_teacher(f"Owner {i}") for i in range(3)]
    owned: dict[UUID, int] = {}
    for i, (owner, snapshot) in enumerate(plan):
        section_id = sections.create(teachers[owner], f"Section {i}", "csa", "12", "email")
        sections.rename(teachers[owner], section_id, f"Section {i}!")
        if snapshot:
            ledger.take_snapshot(section_id)
        owned[section_id] = owner
    for owner in erase:
        ledger.erase_subject(teachers[owner], "school_request")

    for section_id, owner in owned.items():
        if owner in erase:
            with pytest.raises(SectionNotFound):
                sections.section(section_id)
            assert all(isinstance(e, ErasedEvent) for e in ledger.history(section_id))
        else:
            assert sections.section(section_id, teachers[owner]).name.endswith("!")
            for other in set(range(3)) - {owner}:
                with pytest.raises(SectionNotFound):
                    sections.section(section_id, teachers[other])

    source = data.draw(st.sampled_from(sorted(owned)))
    live_owners = [t for i, t in enumerate(teachers) if i not in erase]
    if not live_owners:
        return
    new_owner = data.draw(st.sampled_from(live_owners))
    row = data.draw(st.sampled_from(rows(ledger, source)))
    if new_owner == teachers[owned[source]]:
        return  # not moved
    moved = StoredEvent(row.originator_id, row.originator_version, row.topic,
                        SEALED_FOR_OWNER + new_owner.bytes + row.state[17:])
    with pytest.raises(MapperDeserialisationError):
        ledger.mapper.to_domain_event(moved)
