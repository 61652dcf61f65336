"""The roster read model (PRG-5, ACC-2's school and district scopes) on both backends: it follows
sections, enrolments and school choices; it forgets an erased teacher's sections and an erased
student's memberships, live and after a rebuild; a rebuild equals the live model, soft deletes
(DEL-1) and their withdrawals (DEL-2) included; and a section's name and join code rest only
sealed. (What a soft delete hides is tests/test_views_hide_deleted.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.services import Services
from crypto import SealBroken
from ledger.people import Person, Teacher
from ledger.schools import district_id_for
from projections.roster import Tables
from projections.runner import table_name
from tests.test_leak_scan import haystack


def teacher(services: Services, name: str = "Ms Rivera") -> UUID:
    return services.ledger.register_teacher(name)


def student(services: Services, name: str = "Ana") -> UUID:
    return services.ledger.register_student(name, "14")


def section(services: Services, teacher_id: UUID, name: str = "Period 3",
            login_type: str = "email") -> UUID:
    return services.sections.create(teacher_id, name, "csd", "8", login_type)


def live_tables(services: Services) -> Tables:
    return Tables(table_name(services.roster.projection, services.roster.live_generation()))


def plain_rows(services: Services) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the live roster, without the sealed columns (fresh nonces on a rebuild)."""
    t = live_tables(services)
    with services.read_models.transaction(write=False) as cur:
        queries = {
            "sections": f"SELECT section_id, teacher_id, course, grade, login_type, created_at"
                        f" FROM {t.sections}",
            "members": f"SELECT section_id, student_id, teacher_id, enrolled_at FROM {t.members}",
            "teachers": f"SELECT teacher_id, school_id, district_id FROM {t.teachers}",
            "schools": f"SELECT school_id, district_id, school_type FROM {t.schools}",
            "hidden": f"SELECT person_id FROM {t.hidden}",
        }
        rows = {}
        for name, sql in queries.items():
            cur.execute(sql)
            rows[name] = sorted(tuple(row) for row in cur.fetchall())
    return rows


def mentions(rows: dict[str, list[tuple[Any, ...]]], subject: UUID) -> list[tuple[Any, ...]]:
    return [row for table in rows.values() for row in table if str(subject) in row]


# -- PRG-5: sections, and who is in them ------------------------------------------------------
def test_prg5_roster_follows_create_rename_enrol_join_leave_remove(services: Services) -> None:
    rivera = teacher(services)
    ana, ben, cai, dev = (student(services, n) for n in ("Ana", "Ben", "Cai", "Dev"))
    period_3 = section(services, rivera)
    for s in (ana, ben, cai):
        services.sections.add_student(rivera, period_3, s)
    code = services.sections.section(period_3).join_code
    services.sections.join(dev, code.lower())
    services.sections.rename(rivera, period_3, "Period 3 (CS)")
    services.sections.assign_course(rivera, period_3, "csp", "10")
    services.settle()

    view = services.roster_reader.section(period_3)
    assert view is not None
    assert (view.teacher_id, view.name, view.course, view.grade, view.login_type) == \
        (rivera, "Period 3 (CS)", "csp", "10", "email")
    assert view.join_code == code and view.student_count == 4
    assert services.roster_reader.students_of_section(period_3) == [ana, ben, cai, dev]
    assert services.roster_reader.sections_of_teacher(rivera) == [view]

    services.sections.leave(ana, period_3)
    services.sections.remove(rivera, period_3, ben)
    services.settle()
    assert services.roster_reader.students_of_section(period_3) == [cai, dev]
    assert services.roster_reader.sections_of_student(ana) == []
    assert services.roster_reader.teachers_of_student(ana) == set()
    assert services.roster_reader.sections_of_student(cai) == [period_3]
    assert services.roster_reader.teachers_of_student(cai) == {rivera}
    assert services.roster_reader.section(period_3).student_count == 2  # type: ignore[union-attr]


def test_prg5_a_student_in_two_teachers_sections(services: Services) -> None:
    rivera, okafor = teacher(services, "Rivera"), teacher(services, "Okafor")
    ana = student(services)
    first, second = section(services, rivera, "Maths"), section(services, okafor, "Art")
    third = section(services, rivera, "Clubs")
    for owner, s in ((rivera, first), (okafor, second), (rivera, third)):
        services.sections.add_student(owner, s, ana)
    services.settle()
    assert services.roster_reader.sections_of_student(ana) == [first, second, third]
    assert services.roster_reader.teachers_of_student(ana) == {rivera, okafor}
    assert [v.id for v in services.roster_reader.sections_of_teacher(rivera)] == [first, third]
    assert services.roster_reader.section(uuid4()) is None
    assert services.roster_reader.students_of_section(uuid4()) == []


def test_young_section_student_created_by_teacher_is_enrolled(services: Services) -> None:
    rivera = teacher(services)
    services.accounts.attest_parental_consent(rivera)
    words = section(services, rivera, "Room 4", login_type="word")
    kid = services.sections.create_student(rivera, words, "Kim")  # no age: counts as under 13
    services.settle()
    assert services.roster_reader.students_of_section(words) == [kid]
    assert services.roster_reader.section(words).login_type == "word"  # type: ignore[union-attr]


# -- ACC-2: schools and districts -------------------------------------------------------------
def test_acc2_school_choice_puts_teacher_and_their_students_in_scope(services: Services) -> None:
    north = services.accounts.register_school("Hill Elementary", "North District", "public")
    other = services.accounts.register_school("Lake Middle", "North District", "charter")
    south = services.accounts.register_school("Bay High", "South District", "public")
    rivera, okafor, lee = teacher(services, "Rivera"), teacher(services, "Okafor"), teacher(
        services, "Lee")
    services.accounts.choose_school(rivera, north)
    services.accounts.choose_school(okafor, other)
    services.accounts.choose_school(lee, south)
    ana, ben, cai = student(services, "Ana"), student(services, "Ben"), student(services, "Cai")
    for owner, s in ((rivera, ana), (okafor, ben), (lee, cai)):
        services.sections.add_student(owner, section(services, owner), s)
    services.settle()
    reader, district = services.roster_reader, district_id_for("north district")

    assert reader.school_of_teacher(rivera) == (north, district)
    assert reader.teachers_in_scope(f"school:{north}") == {rivera}
    assert reader.teachers_in_scope(f"district:{district}") == {rivera, okafor}
    assert reader.students_in_scope(f"school:{north}") == {ana}
    assert reader.students_in_scope(f"district:{district}") == {ana, ben}
    assert reader.students_in_scope(f"school:{south}") == {cai}
    for malformed in ("", "school:", f"school{north}", f"county:{north}", "district:x"):
        assert reader.students_in_scope(malformed) == set()
        assert reader.teachers_in_scope(malformed) == set()

    services.accounts.choose_school(rivera, south)  # moving school moves the scope
    services.accounts.choose_school(okafor, None)
    services.settle()
    assert reader.school_of_teacher(rivera) == (south, district_id_for("South District"))
    assert reader.school_of_teacher(okafor) is None
    assert reader.students_in_scope(f"district:{district}") == set()
    assert reader.students_in_scope(f"school:{south}") == {ana, cai}


# -- erasure ----------------------------------------------------------------------------------
def test_erased_teachers_sections_vanish_live_and_after_rebuild(services: Services) -> None:
    school = services.accounts.register_school("Hill Elementary", "North", "public")
    rivera, okafor = teacher(services, "Rivera"), teacher(services, "Okafor")
    services.accounts.choose_school(rivera, school)
    ana = student(services)
    gone, kept = section(services, rivera), section(services, okafor)
    services.sections.add_student(rivera, gone, ana)
    services.sections.add_student(okafor, kept, ana)
    services.settle()

    services.ledger.erase_subject(rivera, "school_request")
    services.settle()
    for rebuilt in (False, True):
        if rebuilt:
            services.roster.rebuild()
        rows = plain_rows(services)
        assert mentions(rows, rivera) == [] and mentions(rows, gone) == []
        assert services.roster_reader.section(gone) is None
        assert services.roster_reader.sections_of_teacher(rivera) == []
        assert services.roster_reader.school_of_teacher(rivera) is None
        assert services.roster_reader.sections_of_student(ana) == [kept]
        assert services.roster_reader.teachers_of_student(ana) == {okafor}
        assert services.roster_reader.students_in_scope(f"school:{school}") == set()


def test_erased_student_leaves_the_member_table(services: Services) -> None:
    rivera = teacher(services)
    ana, ben = student(services, "Ana"), student(services, "Ben")
    period_3 = section(services, rivera)
    services.sections.add_student(rivera, period_3, ana)
    services.sections.add_student(rivera, period_3, ben)
    services.settle()
    services.ledger.erase_subject(ana, "user_request")
    services.settle()
    assert mentions(plain_rows(services), ana) == []
    assert services.roster_reader.students_of_section(period_3) == [ben]
    assert services.roster_reader.section(period_3).student_count == 1  # type: ignore[union-attr]
    services.roster.rebuild()
    assert mentions(plain_rows(services), ana) == []
    assert services.roster_reader.students_of_section(period_3) == [ben]


def test_an_enrolment_logged_after_the_students_erasure_is_ignored(services: Services) -> None:
    """The section stream still names the erased student (an opaque id, by design); a racing
    enrolment saved after the erasure must not put the id back in the read model."""
    rivera = teacher(services)
    ana = student(services)
    period_3 = section(services, rivera)
    services.ledger.erase_subject(ana, "user_request")
    stale = services.sections.section(period_3, rivera)
    stale.enrol(ana, "added")  # as a command that loaded Ana just before her erasure would
    services.ledger.save(stale)
    services.settle()
    assert mentions(plain_rows(services), ana) == []


# -- rebuild equals live ----------------------------------------------------------------------
_STEP = st.tuples(st.sampled_from(["enrol", "unenrol", "erase_student", "erase_teacher",
                                   "rename", "school", "hide_student", "hide_teacher",
                                   "withdraw_student", "withdraw_teacher"]),
                  st.integers(0, 2), st.integers(0, 3))


def set_hidden(services: Services, person_id: UUID, hidden: bool) -> None:
    """A soft delete (DEL-1) or its withdrawal (DEL-2), on the person's aggregate."""
    person = services.ledger.person(person_id)
    assert isinstance(person, Person)
    if hidden:
        person.request_deletion("user_request", f"student:{uuid4()}", datetime.now(UTC))
    else:
        person.withdraw_deletion(f"support:{uuid4()}")
    services.ledger.save(person)


def set_enrolled(services: Services, teacher_id: UUID, section_id: UUID, student_id: UUID,
                 enrolled: bool) -> None:
    """On the section's aggregate: commands refuse a soft-deleted person, but a change loaded
    before the deletion can still reach the log after it, and the roster must follow it."""
    section = services.sections.section(section_id, teacher_id)
    if section.enrol(student_id, "added") if enrolled else section.unenrol(student_id,
                                                                              "removed"):
        services.ledger.save(section)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(steps=st.lists(_STEP, min_size=1, max_size=14))
def test_rebuild_equals_live_after_any_enrol_unenrol_erase_sequence(
        services: Services, steps: list[tuple[str, int, int]]) -> None:
    schools = [services.accounts.register_school(f"School {i}", f"D{i % 2}", "public")
               for i in range(2)]
    teachers = [teacher(services, f"T{i}") for i in range(3)]
    students = [student(services, f"S{i}") for i in range(4)]
    sections = {t: section(services, t, f"Class of {i}") for i, t in enumerate(teachers)}
    erased: set[UUID] = set()
    for action, t_index, s_index in steps:
        t, s = teachers[t_index], students[s_index]
        kind, _, whom = action.partition("_")
        if kind in ("hide", "withdraw"):
            person = s if whom == "student" else t
            if person not in erased:
                set_hidden(services, person, kind == "hide")
        elif action == "erase_student" and s not in erased:
            services.ledger.erase_subject(s, "user_request")
            erased.add(s)
        elif action == "erase_teacher" and t not in erased:
            services.ledger.erase_subject(t, "school_request")
            erased.add(t)
        elif t in erased or (action in ("enrol", "unenrol") and s in erased):
            continue
        elif action in ("enrol", "unenrol"):
            set_enrolled(services, t, sections[t], s, action == "enrol")
        elif action == "rename":
            services.sections.rename(t, sections[t], f"Renamed {s_index}")
        elif action == "school":  # on the aggregate, so that a hidden teacher moves too
            chosen = services.ledger.person(t)
            assert isinstance(chosen, Teacher)
            chosen.choose_school(schools[s_index % 2])
            services.ledger.save(chosen)
        if s_index == 3:  # sometimes follow live in the middle of the sequence
            services.settle()
    services.settle()

    def views() -> dict[str, Any]:
        reader = services.roster_reader
        return {
            "sections_of_teacher": {t: reader.sections_of_teacher(t) for t in teachers},
            "students_of_section": {t: reader.students_of_section(sections[t])
                                    for t in teachers},
            "sections_of_student": {s: reader.sections_of_student(s) for s in students},
            "teachers_of_student": {s: reader.teachers_of_student(s) for s in students},
            "students_in_scope": [reader.students_in_scope(f"school:{school}")
                                  for school in schools],
        }

    live, live_views = plain_rows(services), views()
    for subject in erased:
        assert mentions(live, subject) == []
    services.roster.rebuild()
    assert plain_rows(services) == live
    assert views() == live_views


# -- the one rule -----------------------------------------------------------------------------
@pytest.mark.parametrize("login_type", ["email", "picture"])
def test_section_name_and_join_code_rest_only_sealed(services: Services,
                                                     login_type: str) -> None:
    rivera = teacher(services)
    marker = f"Marker Section {uuid4().hex[:10]}"
    period_3 = section(services, rivera, marker, login_type)
    code = services.sections.section(period_3).join_code
    services.settle()
    assert services.roster_reader.section(period_3).name == marker  # type: ignore[union-attr]
    found = haystack(services.settings).find({"section name": marker.encode()})
    assert found == []
    t = live_tables(services)
    with services.read_models.transaction(write=False) as cur:
        cur.execute(f"SELECT sealed_name, sealed_join_code FROM {t.sections}")
        sealed = [bytes(column) for row in cur.fetchall() for column in row]
    assert sealed and not any(marker.encode() in b or code.encode() in b for b in sealed)


def test_a_sealed_column_moved_to_another_row_does_not_open(services: Services) -> None:
    rivera = teacher(services)
    first, second = section(services, rivera, "First"), section(services, rivera, "Second")
    services.settle()
    t = live_tables(services)
    with services.read_models.transaction() as cur:
        cur.execute(f"SELECT sealed_name FROM {t.sections} WHERE section_id = ?", (str(first),))
        moved = cur.fetchone()[0]
        cur.execute(f"UPDATE {t.sections} SET sealed_name = ? WHERE section_id = ?",
                    (moved, str(second)))
    with pytest.raises(SealBroken):
        services.roster_reader.section(second)
