"""DEL-1 and DEL-2 in the read models, on both backends: a soft-deleted person leaves every
teacher's and administrator's view at once (directory, roster, projects and the gallery), what
changes meanwhile is still followed, withdrawing the deletion shows them again exactly as they
now are, a rebuild from the log equals the live views, an erasure while hidden leaves nothing,
and a generation made before the hidden state existed is rebuilt when a runner starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from api.services import Services
from api.tokens import Principal, Role
from ledger.people import Person
from ledger.settings import Settings
from projections.directory import StudentDirectory
from projections.projects import ProjectsView
from projections.projects import Tables as ProjectTables
from projections.roster import Roster
from projections.roster import Tables as RosterTables
from projections.runner import ProjectionRunner, table_name


# -- helpers ----------------------------------------------------------------------------------
def soft_delete(services: Services, person_id: UUID) -> None:
    """As the account-deletion service will: the event on the person's own stream. Loaded with
    `Ledger.person`, since `Ledger.live` may come to refuse a soft-deleted person."""
    person = services.ledger.person(person_id)
    assert isinstance(person, Person)
    assert person.request_deletion("user_request", f"student:{uuid4()}", datetime.now(UTC))
    services.ledger.save(person)
    services.catch_up()


def withdraw(services: Services, person_id: UUID) -> None:
    person = services.ledger.person(person_id)
    assert isinstance(person, Person)
    person.withdraw_deletion(f"support:{uuid4()}")
    services.ledger.save(person)
    services.catch_up()


def rename(services: Services, person_id: UUID, display_name: str) -> None:
    """On the aggregate: commands refuse a soft-deleted person, but a rename saved just before
    the deletion can reach the log after it, and the views must follow it."""
    person = services.ledger.person(person_id)
    assert isinstance(person, Person)
    person.rename(display_name)
    services.ledger.save(person)
    services.catch_up()


def enrol(services: Services, teacher_id: UUID, section_id: UUID, student_id: UUID,
          enrolled: bool = True) -> None:
    """On the section's aggregate directly: the services may come to refuse a soft-deleted
    person, but an enrolment change can still reach the log while they are hidden (one loaded
    just before the deletion), and the view must follow it."""
    section = services.sections.section(section_id, teacher_id)
    if enrolled:
        section.enrol(student_id, "added")
    else:
        section.unenrol(student_id, "removed")
    services.ledger.save(section)
    services.catch_up()


def teacher_of(teacher_id: UUID) -> Principal:
    return Principal(uuid4(), Role.TEACHER, "t", teacher_id)


def admin_of(school_id: UUID) -> Principal:
    return Principal(uuid4(), Role.SCHOOL_ADMIN, "a", scope=f"school:{school_id}")


def views(services: Services, people: list[UUID], sections: list[UUID],
          schools: list[UUID]) -> dict[str, Any]:
    """Every reader's answer about these people, sections and schools (for live = rebuilt)."""
    roster, directory, projects = (services.roster_reader, services.directory_reader,
                                   services.projects_reader)
    return {
        "entries": directory.entries(limit=1000),
        "entries_of": directory.entries_of(people),
        "entry": [directory.entry(p) for p in people],
        "sections_of_teacher": [roster.sections_of_teacher(p) for p in people],
        "section": [roster.section(s) for s in sections],
        "students_of_section": [roster.students_of_section(s) for s in sections],
        "sections_of_student": [roster.sections_of_student(p) for p in people],
        "teachers_of_student": [roster.teachers_of_student(p) for p in people],
        "school_of_teacher": [roster.school_of_teacher(p) for p in people],
        "teachers_in_scope": [roster.teachers_in_scope(f"school:{s}") for s in schools],
        "students_in_scope": [roster.students_in_scope(f"school:{s}") for s in schools],
        "of_owner": [projects.of_owner(p) for p in people],
        "gallery": projects.gallery(limit=1000),
    }


def hidden_rows(services: Services) -> list[tuple[str, ...]]:
    """Every row of the live generations' hidden state, whichever table holds it."""
    roster = RosterTables(table_name(services.roster.projection,
                                     services.roster.live_generation()))
    projects = ProjectTables(table_name(services.projects_view.projection,
                                        services.projects_view.live_generation()))
    directory = table_name(services.directory.projection, services.directory.live_generation())
    rows: list[tuple[str, ...]] = []
    with services.read_models.transaction(write=False) as cur:
        for name, sql in (("roster", f"SELECT person_id FROM {roster.hidden}"),
                          ("projects", f"SELECT person_id FROM {projects.hidden}"),
                          ("directory", f"SELECT person_id FROM {directory} WHERE hidden = 1")):
            cur.execute(sql)
            rows += [(name, str(row[0])) for row in cur.fetchall()]
    return sorted(rows)


# -- the directory ----------------------------------------------------------------------------
def test_a_soft_deleted_person_leaves_every_directory_reader_and_comes_back(
        services: Services) -> None:
    ana = services.ledger.register_student("Ana", "14")
    ben = services.ledger.register_student("Ben", "14")
    rivera = services.ledger.register_teacher("Ms Rivera")
    services.catch_up()
    before = {p: services.directory_reader.entry(p) for p in (ana, rivera)}

    soft_delete(services, ana)
    soft_delete(services, rivera)
    reader = services.directory_reader
    assert [e.id for e in reader.entries()] == [ben]
    assert reader.entries(kind="teacher") == []
    assert [e.id for e in reader.entries(kind="student")] == [ben]
    assert reader.entry(ana) is None and reader.entry(rivera) is None
    assert set(reader.entries_of([ana, ben, rivera])) == {ben}

    rename(services, ana, "Ana B")  # a change while hidden is still followed
    assert reader.entry(ana) is None
    withdraw(services, ana)
    withdraw(services, rivera)
    assert reader.entry(rivera) == before[rivera]
    was = before[ana]
    assert was is not None and reader.entry(ana) == replace(was, display_name="Ana B")
    assert {e.id for e in reader.entries()} == {ana, ben, rivera}


# -- the roster: a student --------------------------------------------------------------------
def test_a_soft_deleted_student_leaves_rosters_scopes_and_access_and_comes_back_as_now(
        services: Services) -> None:
    school = services.accounts.register_school("Hill Elementary", "North", "public")
    rivera = services.ledger.register_teacher("Rivera")
    okafor = services.ledger.register_teacher("Okafor")
    services.accounts.choose_school(rivera, school)
    ana = services.ledger.register_student("Ana", "14")
    ben = services.ledger.register_student("Ben", "14")
    maths = services.sections.create(rivera, "Maths", "csd", "8", "email")
    art = services.sections.create(rivera, "Art", "csd", "8", "email")
    clubs = services.sections.create(okafor, "Clubs", "csd", "8", "email")
    for s in (ana, ben):
        services.sections.add_student(rivera, maths, s)
    services.sections.add_student(okafor, clubs, ana)
    services.catch_up()
    roster = services.roster_reader
    assert services.access.may_see_student(teacher_of(rivera), ana)
    assert services.access.may_see_student(admin_of(school), ana)

    soft_delete(services, ana)
    assert roster.students_of_section(maths) == [ben]
    assert roster.section(maths).student_count == 1  # type: ignore[union-attr]
    assert roster.students_of_section(clubs) == []
    assert roster.sections_of_student(ana) == []
    assert roster.teachers_of_student(ana) == set()
    assert roster.students_in_scope(f"school:{school}") == {ben}
    for principal in (teacher_of(rivera), teacher_of(okafor), admin_of(school)):
        assert not services.access.may_see_student(principal, ana)
        assert not services.access.may_see_progress(principal, ana)
    section_roster = services.section_roster(teacher_of(rivera), maths)
    assert section_roster is not None and [e.id for e in section_roster.students] == [ben]
    grid = services.section_progress(teacher_of(rivera), maths)
    assert grid is not None and [e.id for e in grid.students] == [ben]
    assert [r.student.id for r in services.school_report(school)] == [ben]

    # While she is hidden: out of Maths, into Art; Clubs unchanged.
    enrol(services, rivera, maths, ana, enrolled=False)
    enrol(services, rivera, art, ana)
    assert roster.students_of_section(art) == [] and roster.sections_of_student(ana) == []

    withdraw(services, ana)
    assert roster.sections_of_student(ana) == [clubs, art]
    assert roster.teachers_of_student(ana) == {rivera, okafor}
    assert roster.students_of_section(maths) == [ben]
    assert roster.students_of_section(art) == [ana]
    assert roster.section(art).student_count == 1  # type: ignore[union-attr]
    assert roster.students_in_scope(f"school:{school}") == {ana, ben}
    assert services.access.may_see_student(teacher_of(rivera), ana)
    assert services.access.may_see_student(admin_of(school), ana)


# -- the roster: a teacher --------------------------------------------------------------------
def test_a_soft_deleted_teachers_sections_leave_every_view_and_come_back(
        services: Services) -> None:
    school = services.accounts.register_school("Hill Elementary", "North", "public")
    rivera = services.ledger.register_teacher("Rivera")
    okafor = services.ledger.register_teacher("Okafor")
    for t in (rivera, okafor):
        services.accounts.choose_school(t, school)
    ana = services.ledger.register_student("Ana", "14")
    ben = services.ledger.register_student("Ben", "14")
    maths = services.sections.create(rivera, "Maths", "csd", "8", "email")
    clubs = services.sections.create(okafor, "Clubs", "csd", "8", "email")
    services.sections.add_student(rivera, maths, ana)
    services.sections.add_student(rivera, maths, ben)
    services.sections.add_student(okafor, clubs, ben)
    services.catch_up()
    roster = services.roster_reader
    before = roster.sections_of_teacher(rivera)

    soft_delete(services, rivera)
    assert roster.sections_of_teacher(rivera) == []
    assert roster.section(maths) is None
    assert roster.students_of_section(maths) == []
    assert roster.school_of_teacher(rivera) is None
    assert roster.teachers_in_scope(f"school:{school}") == {okafor}
    assert roster.students_in_scope(f"school:{school}") == {ben}
    assert roster.sections_of_student(ana) == [] and roster.teachers_of_student(ana) == set()
    assert roster.sections_of_student(ben) == [clubs]
    assert roster.teachers_of_student(ben) == {okafor}
    assert not services.access.may_see_student(admin_of(school), ana)
    assert not services.access.may_see_teacher(admin_of(school), rivera)
    assert services.section_roster(teacher_of(rivera), maths) is None
    assert [r.section.id for r in services.school_report(school)] == [clubs]

    enrol(services, rivera, maths, ben, enrolled=False)  # followed while hidden
    withdraw(services, rivera)
    again = roster.sections_of_teacher(rivera)
    assert [(v.id, v.name, v.join_code, v.student_count) for v in again] == \
        [(v.id, v.name, v.join_code, 1) for v in before]
    assert roster.students_of_section(maths) == [ana]
    assert roster.school_of_teacher(rivera) is not None
    assert roster.teachers_in_scope(f"school:{school}") == {rivera, okafor}
    assert roster.teachers_of_student(ana) == {rivera}


# -- projects and the gallery -----------------------------------------------------------------
def test_a_soft_deleted_owners_projects_leave_listings_and_the_gallery_and_come_back(
        services: Services) -> None:
    sam = services.ledger.register_student("Sam", "14")
    ana = services.ledger.register_student("Ana", "15")
    clicker = services.projects.create(sam, "app", "Clicker")
    services.projects.create(sam, "story", "Draft")
    services.projects.share_to_gallery(sam, clicker)
    remix = services.projects.remix(ana, clicker, "My clicker")
    services.projects.share_to_gallery(ana, remix)
    services.catch_up()
    reader = services.projects_reader
    mine, gallery = reader.of_owner(sam), reader.gallery()
    assert len(mine) == 2 and len(gallery) == 2

    soft_delete(services, sam)
    assert reader.of_owner(sam) == []
    assert [c.id for c in reader.gallery()] == [remix]  # the remix is Ana's own
    assert [c.id for c in reader.gallery(limit=1)] == [remix]  # filtered before the limit

    rename(services, sam, "Tam")  # followed while hidden: the initial changes
    withdraw(services, sam)
    assert reader.of_owner(sam) == mine
    assert [(c.id, c.owner_initial) for c in reader.gallery()] == \
        [(c.id, "T" if c.id == clicker else c.owner_initial) for c in gallery]


# -- rebuild equals live ----------------------------------------------------------------------
def test_a_rebuild_equals_the_live_views_while_hidden_and_after_withdrawal(
        services: Services) -> None:
    school = services.accounts.register_school("Hill Elementary", "North", "public")
    rivera = services.ledger.register_teacher("Rivera")
    okafor = services.ledger.register_teacher("Okafor")
    for t in (rivera, okafor):
        services.accounts.choose_school(t, school)
    students = [services.ledger.register_student(f"S{i}", "14") for i in range(4)]
    maths = services.sections.create(rivera, "Maths", "csd", "8", "email")
    clubs = services.sections.create(okafor, "Clubs", "csd", "8", "email")
    for s in students[:3]:
        services.sections.add_student(rivera, maths, s)
    services.sections.add_student(okafor, clubs, students[0])
    for s in students[:2]:
        project = services.projects.create(s, "app", "Game")
        services.projects.share_to_gallery(s, project)
    services.catch_up()
    people = [rivera, okafor, *students]
    args = (people, [maths, clubs], [school])

    def rebuilt() -> dict[str, Any]:
        for runner in (services.directory, services.roster, services.projects_view):
            runner.rebuild()
        return views(services, *args)

    soft_delete(services, students[0])
    soft_delete(services, rivera)
    soft_delete(services, students[3])
    enrol(services, rivera, maths, students[0], enrolled=False)
    enrol(services, okafor, clubs, students[3])
    withdraw(services, students[3])
    live, hidden = views(services, *args), hidden_rows(services)
    assert {person for _, person in hidden} == {str(students[0]), str(rivera)}
    assert rebuilt() == live and hidden_rows(services) == hidden

    withdraw(services, students[0])
    withdraw(services, rivera)
    live = views(services, *args)
    assert hidden_rows(services) == []
    assert rebuilt() == live


# -- erasure while hidden ---------------------------------------------------------------------
def test_erasing_a_hidden_person_leaves_no_hidden_row_live_or_rebuilt(
        services: Services) -> None:
    rivera = services.ledger.register_teacher("Rivera")
    ana = services.ledger.register_student("Ana", "14")
    maths = services.sections.create(rivera, "Maths", "csd", "8", "email")
    services.sections.add_student(rivera, maths, ana)
    services.projects.create(ana, "app", "Game")
    services.catch_up()
    soft_delete(services, ana)
    soft_delete(services, rivera)
    services.ledger.erase_subject(ana, "user_request")  # the purge after the grace window
    services.catch_up()
    assert hidden_rows(services) == [(name, str(rivera))
                                     for name in ("directory", "projects", "roster")]
    for runner in (services.directory, services.roster, services.projects_view):
        runner.rebuild()
    assert hidden_rows(services) == [(name, str(rivera))
                                     for name in ("directory", "projects", "roster")]
    assert services.directory_reader.entry(ana) is None


# -- the same number of queries ---------------------------------------------------------------
@contextmanager
def counting(services: Services) -> Iterator[list[str]]:
    """The statements each reader sends, through the read models' transactions."""
    statements: list[str] = []
    real = services.read_models.transaction

    @contextmanager
    def counted(*, write: bool = True) -> Iterator[Any]:
        with real(write=write) as cur:
            yield _Counting(cur, statements)

    services.read_models.transaction = counted  # type: ignore[method-assign]
    try:
        yield statements
    finally:
        services.read_models.transaction = real  # type: ignore[method-assign]


class _Counting:
    def __init__(self, cur: Any, statements: list[str]) -> None:
        self._cur, self._statements = cur, statements

    def execute(self, sql: str, params: Any = ()) -> Any:
        self._statements.append(sql)
        return self._cur.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


def test_hiding_adds_no_query_to_any_reader(services: Services) -> None:
    """Each read is the live generation's look-up and its one query, hidden people or not."""
    rivera = services.ledger.register_teacher("Rivera")
    school = services.accounts.register_school("Hill Elementary", "North", "public")
    services.accounts.choose_school(rivera, school)
    kids = [services.ledger.register_student(f"S{i}", "14") for i in range(3)]
    maths = services.sections.create(rivera, "Maths", "csd", "8", "email")
    for s in kids:
        services.sections.add_student(rivera, maths, s)
        services.projects.share_to_gallery(s, services.projects.create(s, "app", "Game"))
    services.catch_up()
    soft_delete(services, kids[0])
    reads: list[Callable[[], object]] = [
        lambda: services.directory_reader.entries(),
        lambda: services.directory_reader.entry(kids[1]),
        lambda: services.directory_reader.entries_of(kids),
        lambda: services.roster_reader.section(maths),
        lambda: services.roster_reader.sections_of_teacher(rivera),
        lambda: services.roster_reader.students_of_section(maths),
        lambda: services.roster_reader.sections_of_student(kids[1]),
        lambda: services.roster_reader.teachers_of_student(kids[1]),
        lambda: services.roster_reader.school_of_teacher(rivera),
        lambda: services.roster_reader.teachers_in_scope(f"school:{school}"),
        lambda: services.roster_reader.students_in_scope(f"school:{school}"),
        lambda: services.projects_reader.of_owner(kids[1]),
        lambda: services.projects_reader.gallery(),
    ]
    for read in reads:
        with counting(services) as statements:
            read()
        assert len(statements) == 2, statements


# -- generations made before the hidden state existed -----------------------------------------
def test_a_generation_without_the_hidden_state_is_rebuilt_when_its_runner_starts(
        settings: Settings) -> None:
    first = Services.open(settings)
    ana = first.ledger.register_student("Ana", "14")
    rivera = first.ledger.register_teacher("Rivera")
    maths = first.sections.create(rivera, "Maths", "csd", "8", "email")
    first.sections.add_student(rivera, maths, ana)
    project = first.projects.create(ana, "app", "Game")
    first.catch_up()
    soft_delete(first, ana)
    with first.read_models.transaction() as cur:  # the shapes of the previous version
        cur.execute("DROP TABLE roster_g1_hidden")
        cur.execute("DROP TABLE projects_g1_hidden")
        cur.execute("ALTER TABLE student_directory_g1 DROP COLUMN hidden")
    first.close()

    reopened = Services.open(settings)
    try:
        for runner in (reopened.directory, reopened.roster, reopened.projects_view):
            assert (runner.projection.name, runner.live_generation()) == \
                (runner.projection.name, 2)
            assert runner.is_current()
        assert reopened.progress.live_generation() == 1  # its shape did not change
        assert reopened.directory_reader.entry(ana) is None
        assert reopened.roster_reader.students_of_section(maths) == []
        assert reopened.projects_reader.of_owner(ana) == []
        withdraw(reopened, ana)
        assert reopened.roster_reader.students_of_section(maths) == [ana]
        assert [p.id for p in reopened.projects_reader.of_owner(ana)] == [project]
    finally:
        reopened.close()


def test_a_current_generation_is_not_rebuilt_on_start(settings: Settings) -> None:
    first = Services.open(settings)
    first.ledger.register_student("Ana", "14")
    first.catch_up()
    first.close()
    reopened = Services.open(settings)
    try:
        assert [r.live_generation() for r in reopened.runners] == [1] * len(reopened.runners)
        for projection in (StudentDirectory(reopened.ledger.keys), Roster(reopened.ledger.keys),
                           ProjectsView(reopened.ledger.keys)):
            assert ProjectionRunner(reopened.ledger, reopened.read_models,
                                    projection).live_generation() == 1
    finally:
        reopened.close()


@pytest.mark.parametrize("name", ["roster", "projects"])
def test_the_shape_names_every_table_a_generation_creates(services: Services,
                                                         name: str) -> None:
    """So that a table added later is noticed: `shape` and `create_tables` agree."""
    runner = services.roster if name == "roster" else services.projects_view
    table = table_name(runner.projection, runner.live_generation())
    with services.read_models.transaction(write=False) as cur:
        if services.read_models.backend == "postgres":
            cur.execute("SELECT table_name FROM information_schema.tables"
                        " WHERE table_schema = current_schema() AND table_name LIKE ?",
                        (f"{table}%",))
        else:
            cur.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?",
                        (f"{table}%",))
        created = {str(row[0]) for row in cur.fetchall()}
    assert created == set(runner.projection.shape(table))
