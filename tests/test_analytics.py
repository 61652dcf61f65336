"""The analytics projection on a small world, on both backends: counts by dimension, the
under-13 race rule (AGE-2), restriction left out and back (RGT-3), erasure and its residue
(DEL-10), random analytics ids (ANA-1), and a rebuild giving the live tables (ANA-3)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.services import Services
from ledger.progress import Attempt
from projections.analytics import DIMENSIONS, MEASURES, AnalyticsReader, Tables, UnknownBreakdown
from projections.runner import live_table

AT = datetime(2026, 9, 7, 10, 0, tzinfo=UTC)


def table(svc: Services, measure: str, *by: str) -> dict[tuple[str, str], int]:
    svc.catch_up()
    crosstab = svc.analytics_reader.crosstab(measure, by)
    return {(r, c): crosstab.counts[i][j] for i, r in enumerate(crosstab.rows)
            for j, c in enumerate(crosstab.columns) if crosstab.counts[i][j]}


def student(svc: Services, age: str, gender: str | None = None,
            race: str | None = None) -> UUID:
    person = svc.ledger.register_student("S", age)
    if gender:
        svc.accounts.give_gender(person, gender)
    if race:
        svc.accounts.give_race(person, race)
    return person


def restrict(svc: Services, subject: UUID) -> None:
    request = svc.rights.file(subject, "restrict", "subject", "p")
    svc.rights.fulfil(subject, request, "custodian")


def test_counts_by_dimension_and_course(services: Services) -> None:
    svc = services
    a = student(svc, "15", "female", "asian")
    b = student(svc, "16", "male", "white")
    student(svc, "9", "female")
    svc.attempts.record_many(a, [Attempt("csf/unit-1/l-1", "failed", AT),
                                 Attempt("csf/unit-1/l-1", "solved", AT),
                                 Attempt("csf/unit-2/l-1", "optimal", AT)])
    svc.attempts.record_many(b, [Attempt("csd/unit-1/l-1", "solved", AT)])
    assert table(svc, "students", "age_band") == {("13_17", "all"): 2, ("under_13", "all"): 1}
    assert table(svc, "students", "gender", "age_band") == {
        ("female", "13_17"): 1, ("female", "under_13"): 1, ("male", "13_17"): 1}
    assert table(svc, "attempts", "course") == {("csf", "all"): 3, ("csd", "all"): 1}
    assert table(svc, "solved", "unit", "gender") == {
        ("csf/unit-1", "female"): 1, ("csf/unit-2", "female"): 1, ("csd/unit-1", "male"): 1}
    assert table(svc, "optimal", "course") == {("csf", "all"): 1}
    assert table(svc, "students", "course") == {("csf", "all"): 1, ("csd", "all"): 1}
    assert table(svc, "attempts", "week") == {("2026-W37", "all"): 4}
    assert table(svc, "students", "month") == {("2026-09", "all"): 2}


def test_race_is_counted_for_13_and_over_only_and_class_estimates_apart(
        services: Services) -> None:
    svc = services
    student(svc, "15", race="black")
    teacher = svc.ledger.register_teacher("T")
    section = svc.sections.create(teacher, "P1", "csf", "3", "email")
    code = svc.sections.section(section).join_code
    for _ in range(4):
        svc.sections.join(svc.ledger.register_student("S", "8"), code)
    svc.sections.estimate_race(teacher, section, {"hispanic": 50, "white": 25})
    races = table(svc, "students", "race")
    assert races == {("black", "all"): 1}  # the four under-13s are in no race cell
    assert table(svc, "students", "race", "age_band") == {("black", "13_17"): 1}
    assert svc.analytics_reader.section_race_estimates() == {"hispanic": 2.0, "white": 1.0}


def test_a_restricted_student_is_left_out_until_the_restriction_is_lifted(
        services: Services) -> None:
    svc = services
    kept, restricted = student(svc, "15", "female"), student(svc, "15", "male")
    restrict(svc, restricted)
    assert table(svc, "students", "gender") == {("female", "all"): 1}
    svc.rights.lift_restriction(restricted, "resolved", "custodian")
    assert table(svc, "students", "gender") == {("female", "all"): 1, ("male", "all"): 1}
    assert kept != restricted


def test_an_erased_student_leaves_no_row_and_their_residue_is_counted(
        services: Services) -> None:
    svc = services
    gone = student(svc, "15", "female")
    student(svc, "16", "male")
    svc.attempts.record_many(gone, [Attempt("csf/unit-1/l-1", "solved", AT)])
    svc.catch_up()
    with svc.read_models.transaction(write=False) as cur:
        t = Tables(live_table(cur, svc.analytics_view.projection))
        cur.execute(f"SELECT analytics_id FROM {t.links} WHERE student_id = ?", (str(gone),))
        analytics_id = cur.fetchone()[0]
    svc.lifecycle.erase_now(gone, "operator", "support_request")
    assert table(svc, "students", "gender") == {("female", "all"): 1, ("male", "all"): 1}
    assert table(svc, "solved", "course") == {("csf", "all"): 1}  # from the residue
    assert table(svc, "attempts", "course") == {}  # the residue keeps no attempts
    with svc.read_models.transaction(write=False) as cur:
        for name in (t.links, t.students, t.activity):
            cur.execute(f"SELECT * FROM {name}")
            rows = repr(cur.fetchall())
            assert str(gone) not in rows and analytics_id not in rows


def test_analytics_ids_are_random_and_share_nothing_with_student_ids(
        services: Services) -> None:
    svc = services
    students = [student(svc, "15") for _ in range(20)]
    svc.catch_up()
    with svc.read_models.transaction(write=False) as cur:
        t = Tables(live_table(cur, svc.analytics_view.projection))
        cur.execute(f"SELECT student_id, analytics_id FROM {t.links}")
        links = {UUID(s): UUID(a) for s, a in cur.fetchall()}
    assert set(links) == set(students)
    for student_id, analytics_id in links.items():
        assert analytics_id.version == 4 and analytics_id != student_id
        assert not set(analytics_id.hex[i:i + 6] for i in range(27)) \
            & set(student_id.hex[i:i + 6] for i in range(27))
    first = dict(links)
    svc.analytics_view.rebuild()  # a rebuild draws new ones: nothing derived them
    with svc.read_models.transaction(write=False) as cur:
        t = Tables(live_table(cur, svc.analytics_view.projection))
        cur.execute(f"SELECT student_id, analytics_id FROM {t.links}")
        again = {UUID(s): UUID(a) for s, a in cur.fetchall()}
    assert not set(again.values()) & set(first.values())


@pytest.mark.parametrize(("measure", "by"), [("visits", ["gender"]), ("students", []),
                                              ("students", ["email"]),
                                              ("students", ["gender", "gender"]),
                                              ("students", ["a", "b", "c"]),
                                              ("solved", ["week"])])
def test_an_unknown_breakdown_is_refused(services: Services, measure: str,
                                         by: list[str]) -> None:
    with pytest.raises(UnknownBreakdown):
        services.analytics_reader.crosstab(measure, by)


def all_tables(reader: AnalyticsReader) -> dict[tuple[str, str, str], object]:
    found: dict[tuple[str, str, str], object] = {}
    for measure in MEASURES:
        for first in DIMENSIONS:
            for second in ("", *DIMENSIONS):
                if second == first:
                    continue
                by = [first, second] if second else [first]
                try:
                    crosstab = reader.crosstab(measure, by)
                except UnknownBreakdown:
                    continue
                found[(measure, first, second)] = (crosstab.rows, crosstab.columns,
                                                   crosstab.counts)
    found[("estimates", "", "")] = reader.section_race_estimates()
    return found


steps = st.lists(st.tuples(st.sampled_from(["attempt", "restrict", "lift", "erase", "race",
                                            "join", "school"]),
                           st.integers(0, 5), st.sampled_from(["solved", "failed", "optimal"])),
                 max_size=25)


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps, st.integers(1, 30), st.integers(1, 30), st.booleans())
def test_a_rebuild_gives_the_live_tables(services: Services, history: list[tuple[str, int, str]],
                                         live_page: int, rebuild_page: int,
                                         in_workers: bool) -> None:
    """Whatever the pages the log is read in, live and rebuilt, and wherever the pages are
    folded (here, or by worker processes): a page is folded in memory before it is written,
    so a page boundary must change nothing."""
    svc = services
    svc.analytics_view.batch_size = live_page
    svc.analytics_view.rebuild_batch_size = rebuild_page
    svc.analytics_view.fold_in_workers = in_workers
    teacher = svc.ledger.register_teacher("T")
    section = svc.sections.create(teacher, "P1", "csf", "3", "email")
    code = svc.sections.section(section).join_code
    school = svc.accounts.register_school("A", "D1", "public")
    people = [student(svc, age, gender) for age, gender in
              [("15", "female"), ("9", "male"), ("18", None), ("13", "female"),
               ("7", None), ("16", "male")]]
    erased: set[UUID] = set()
    for what, who, result in history:
        person = people[who]
        if person in erased:
            continue
        if what == "attempt":
            svc.attempts.record_many(person, [Attempt(f"csf/unit-{who % 2}/l-1", result, AT)])
        elif what == "restrict" and not svc.rights.is_restricted(person):
            restrict(svc, person)
        elif what == "lift":
            svc.rights.lift_restriction(person, "resolved", "custodian")
        elif what == "erase":
            svc.lifecycle.erase_now(person, "operator", "support_request")
            erased.add(person)
        elif what == "race" and who in (0, 2, 3, 5):
            svc.accounts.give_race(person, "asian")
        elif what == "school":
            svc.accounts.choose_school(teacher, school if who % 2 else None)
        elif what == "join" and who in (1, 4):  # the under-13s: the class keeps its estimate
            svc.sections.join(person, code)
        if result == "optimal":  # live follows as it goes, at points the history chooses
            svc.analytics_view.catch_up()
    svc.sections.estimate_race(teacher, section, {"asian": 40})
    svc.catch_up()
    live = all_tables(svc.analytics_reader)
    svc.analytics_view.rebuild()
    assert all_tables(svc.analytics_reader) == live


def test_school_type_is_that_of_the_first_section_joined_and_counts_a_student_once(
        services: Services) -> None:
    svc = services
    charter = svc.accounts.register_school("A", "D1", "charter")
    public = svc.accounts.register_school("B", "D1", "public")
    sections = []
    for school in (charter, public):
        teacher = svc.ledger.register_teacher("T")
        svc.accounts.choose_school(teacher, school)
        section = svc.sections.create(teacher, "P1", "csf", "9", "email")
        sections.append((teacher, svc.sections.section(section).join_code))
    both, only_public = student(svc, "15"), student(svc, "15")
    student(svc, "15")  # in no section
    svc.sections.join(both, sections[0][1])
    svc.sections.join(both, sections[1][1])
    svc.sections.join(only_public, sections[1][1])
    assert table(svc, "students", "school_type") == {
        ("charter", "all"): 1, ("public", "all"): 1, ("not_given", "all"): 1}
    svc.lifecycle.erase_now(sections[0][0], "operator", "support_request")  # the charter teacher
    assert table(svc, "students", "school_type") == {
        ("public", "all"): 2, ("not_given", "all"): 1}
    live = all_tables(svc.analytics_reader)
    svc.analytics_view.rebuild()
    assert all_tables(svc.analytics_reader) == live
