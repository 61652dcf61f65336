"""Who may see what (ACC-1, ACC-2, ACC-5), on both backends: one small school world, then a
table of callers x students with the fields each may see; the field rules as a pure table;
and sight that follows enrolment, school choice and erasure.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.access import (
    EVERY_FIELD,
    NO_FIELDS,
    PRIVATE_FIELDS,
    REGISTRAR_FIELDS,
    STAFF_FIELDS,
    TEACHER_FIELDS,
    Relation,
    visible_fields,
)
from api.services import Services
from api.tokens import Principal, Role
from ledger.identity import PARENT_EMAIL
from ledger.schools import district_id_for

PARENT = "parent@example.org"


@dataclass
class World:
    """Three teachers at three schools (two in the North district, one in the South), each
    with a section; Ana in Rivera's, Ben in Okafor's, Cai in Lee's; Dev was in Rivera's and
    was removed; Ana's parent is linked by email."""

    services: Services
    hill: UUID
    lake: UUID
    bay: UUID
    north: UUID
    south: UUID
    rivera: UUID
    okafor: UUID
    lee: UUID
    ana: UUID
    ben: UUID
    cai: UUID
    dev: UUID
    rivera_section: UUID
    okafor_section: UUID
    parent_token: str

    def who(self, role: str, subject_id: UUID | None = None, scope: str | None = None
            ) -> Principal:
        return Principal(uuid4(), role, f"{role}-1", subject_id, scope)


def build_world(services: Services) -> World:
    accounts, sections = services.accounts, services.sections
    hill = accounts.register_school("Hill Elementary", "North", "public")
    lake = accounts.register_school("Lake Middle", "North", "public")
    bay = accounts.register_school("Bay High", "South", "charter")
    rivera, okafor, lee = (services.ledger.register_teacher(n) for n in ("Rivera", "Okafor",
                                                                         "Lee"))
    for teacher, school in ((rivera, hill), (okafor, lake), (lee, bay)):
        accounts.choose_school(teacher, school)
    ana, ben, cai, dev = (services.ledger.register_student(n, "14")
                          for n in ("Ana", "Ben", "Cai", "Dev"))
    own = {t: sections.create(t, "Period 1", "csd", "8", "email") for t in (rivera, okafor, lee)}
    for teacher, student in ((rivera, ana), (okafor, ben), (lee, cai), (rivera, dev)):
        sections.add_student(teacher, own[teacher], student)
    sections.remove(rivera, own[rivera], dev)
    accounts.link_parent_email(ana, PARENT)
    services.settle()
    return World(services, hill, lake, bay, district_id_for("North"), district_id_for("South"),
                 rivera, okafor, lee, ana, ben, cai, dev, own[rivera], own[okafor],
                 services.ledger.identity.token(PARENT_EMAIL, PARENT).hex())


@pytest.fixture
def world(services: Services) -> World:
    return build_world(services)


def student_table(w: World) -> list[tuple[str, Principal, UUID, frozenset[str]]]:
    """(caller, principal, student, the fields they may see): every pairing the rules name."""
    rows: list[tuple[str, Principal, UUID, frozenset[str]]] = []

    def expect(caller: str, principal: Principal, sees: dict[UUID, frozenset[str]]) -> None:
        for student in (w.ana, w.ben, w.cai, w.dev):
            rows.append((caller, principal, student, sees.get(student, NO_FIELDS)))

    expect("Ana herself", w.who(Role.STUDENT, w.ana), {w.ana: EVERY_FIELD})
    expect("a student with no subject", w.who(Role.STUDENT), {})
    # ACC-1: own sections' students only, never the removed one, never the private fields.
    expect("Rivera, Ana's teacher", w.who(Role.TEACHER, w.rivera), {w.ana: TEACHER_FIELDS})
    expect("Okafor, Ben's teacher", w.who(Role.TEACHER, w.okafor), {w.ben: TEACHER_FIELDS})
    expect("a teacher with no subject", w.who(Role.TEACHER), {})
    expect("a teacher named as another student", w.who(Role.TEACHER, w.ana), {})
    # ACC-2: students in sections of teachers at the school or in the district.
    expect("Hill's administrator", w.who(Role.SCHOOL_ADMIN, scope=f"school:{w.hill}"),
           {w.ana: STAFF_FIELDS})
    expect("Bay's administrator", w.who(Role.SCHOOL_ADMIN, scope=f"school:{w.bay}"),
           {w.cai: STAFF_FIELDS})
    expect("a school administrator of no school", w.who(Role.SCHOOL_ADMIN,
                                                        scope=f"school:{uuid4()}"), {})
    expect("North's administrator", w.who(Role.DISTRICT_ADMIN, scope=f"district:{w.north}"),
           {w.ana: STAFF_FIELDS, w.ben: STAFF_FIELDS})
    expect("South's administrator", w.who(Role.DISTRICT_ADMIN, scope=f"district:{w.south}"),
           {w.cai: STAFF_FIELDS})
    expect("a school administrator with a district scope",
           w.who(Role.SCHOOL_ADMIN, scope=f"district:{w.north}"), {})
    expect("a district administrator with a school scope",
           w.who(Role.DISTRICT_ADMIN, scope=f"school:{w.hill}"), {})
    expect("an administrator with no scope", w.who(Role.DISTRICT_ADMIN), {})
    expect("an administrator with a malformed scope",
           w.who(Role.SCHOOL_ADMIN, scope="school:hill"), {})
    # Parents: by the token of the email linked to the student.
    expect("Ana's parent", w.who(Role.PARENT, scope=f"parent:{w.parent_token}"),
           {w.ana: EVERY_FIELD})
    expect("someone else's parent", w.who(Role.PARENT, scope=f"parent:{'ab' * 32}"), {})
    expect("a parent with a malformed token", w.who(Role.PARENT, scope="parent:xyz"), {})
    expect("a parent with another kind of scope",
           w.who(Role.PARENT, scope=f"school:{w.hill}"), {})
    expect("a parent's token on a teacher's role",
           w.who(Role.TEACHER, scope=f"parent:{w.parent_token}"), {})
    everyone = (w.ana, w.ben, w.cai, w.dev)
    expect("support", w.who(Role.SUPPORT), dict.fromkeys(everyone, EVERY_FIELD))
    expect("the operator", w.who(Role.OPERATOR), dict.fromkeys(everyone, EVERY_FIELD))
    # A registrar is school staff, scoped like the school's administrators.
    expect("Hill's registrar", w.who(Role.REGISTRAR, scope=f"school:{w.hill}"),
           {w.ana: REGISTRAR_FIELDS})
    expect("a registrar with no scope", w.who(Role.REGISTRAR), {})
    expect("a registrar with a district scope",
           w.who(Role.REGISTRAR, scope=f"district:{w.north}"), {})
    # ACC-3: aggregates only, elsewhere.
    expect("a researcher", w.who(Role.RESEARCHER, w.ana, f"school:{w.hill}"), {})
    expect("a service", w.who(Role.SERVICE), {})
    expect("an unknown role", w.who("principal", w.ana, f"school:{w.hill}"), {})
    return rows


# -- ACC-1, ACC-2: the table --------------------------------------------------------------------
def test_acc1_acc2_who_sees_which_student_and_which_fields(world: World) -> None:
    access = world.services.access
    names = {world.ana: "Ana", world.ben: "Ben", world.cai: "Cai", world.dev: "Dev"}
    wrong = [
        f"{caller} -> {names[student]}: {sorted(got)} (expected {sorted(expected)})"
        for caller, principal, student, expected in student_table(world)
        if (got := access.student_fields(principal, student)) != expected
        or access.may_see_student(principal, student) != bool(expected)
    ]
    assert wrong == []


def test_acc1_teachers_and_administrators_never_get_private_fields(world: World) -> None:
    access = world.services.access
    staff = (Role.TEACHER, Role.SCHOOL_ADMIN, Role.DISTRICT_ADMIN)
    for _, principal, student, _ in student_table(world):
        if principal.role in staff:
            assert not access.student_fields(principal, student) & PRIVATE_FIELDS
            if principal.role != Role.TEACHER:
                assert "secret" not in access.student_fields(principal, student)


# -- ACC-5 ----------------------------------------------------------------------------------------
def test_acc5_a_student_not_visible_answers_like_one_that_does_not_exist(world: World) -> None:
    access = world.services.access
    for caller, principal, student, expected in student_table(world):
        if not expected:
            nobody = uuid4()
            assert access.student_fields(principal, student) == \
                access.student_fields(principal, nobody) == NO_FIELDS, caller


# -- teachers and sections --------------------------------------------------------------------
def test_acc2_who_sees_which_teacher(world: World) -> None:
    access, w = world.services.access, world
    expected = {
        "Rivera": (w.who(Role.TEACHER, w.rivera), {w.rivera}),
        "Hill's administrator": (w.who(Role.SCHOOL_ADMIN, scope=f"school:{w.hill}"),
                                 {w.rivera}),
        "North's administrator": (w.who(Role.DISTRICT_ADMIN, scope=f"district:{w.north}"),
                                  {w.rivera, w.okafor}),
        "a school administrator, district scope": (
            w.who(Role.SCHOOL_ADMIN, scope=f"district:{w.north}"), set()),
        "support": (w.who(Role.SUPPORT), {w.rivera, w.okafor, w.lee}),
        "the operator": (w.who(Role.OPERATOR), {w.rivera, w.okafor, w.lee}),
        "Hill's registrar": (w.who(Role.REGISTRAR, scope=f"school:{w.hill}"), {w.rivera}),
        "a registrar with no scope": (w.who(Role.REGISTRAR), set()),
        "Ana": (w.who(Role.STUDENT, w.ana), set()),
        "Ana's parent": (w.who(Role.PARENT, scope=f"parent:{w.parent_token}"), set()),
        "a researcher": (w.who(Role.RESEARCHER), set()),
        "a service": (w.who(Role.SERVICE), set()),
    }
    wrong = [
        caller for caller, (principal, sees) in expected.items()
        if {t for t in (w.rivera, w.okafor, w.lee) if access.may_see_teacher(principal, t)}
        != sees
    ]
    assert wrong == []


def test_prg5_only_the_owner_and_the_operator_manage_a_section(world: World) -> None:
    access, w = world.services.access, world
    assert access.may_manage_section(w.who(Role.TEACHER, w.rivera), w.rivera_section)
    assert access.may_manage_section(w.who(Role.OPERATOR), w.rivera_section)
    for principal in (w.who(Role.TEACHER, w.okafor), w.who(Role.TEACHER),
                      w.who(Role.SCHOOL_ADMIN, scope=f"school:{w.hill}"),
                      w.who(Role.STUDENT, w.ana), w.who(Role.SUPPORT), w.who(Role.REGISTRAR)):
        assert not access.may_manage_section(principal, w.rivera_section), principal.role
    assert not access.may_manage_section(w.who(Role.TEACHER, w.rivera), uuid4())


# -- the pure table of fields -----------------------------------------------------------------
@pytest.mark.parametrize("role", [*Role, "unknown"])
def test_field_table_denies_by_default(role: str) -> None:
    for relation in Relation:
        fields = visible_fields(role, relation)
        assert fields <= EVERY_FIELD
        if role in (Role.TEACHER, Role.SCHOOL_ADMIN, Role.DISTRICT_ADMIN):
            assert not fields & PRIVATE_FIELDS  # ACC-1
        if role in (Role.RESEARCHER, Role.SERVICE, "unknown"):
            assert fields == NO_FIELDS  # ACC-3
        if relation == Relation.NONE and role not in (Role.OPERATOR, Role.SUPPORT,
                                                      Role.REGISTRAR):
            assert fields == NO_FIELDS
    assert visible_fields(Role.TEACHER, Relation.IN_SCOPE) == NO_FIELDS  # a relation not theirs
    assert visible_fields(Role.SCHOOL_ADMIN, Relation.TEACHER) == NO_FIELDS
    assert visible_fields(Role.STUDENT, Relation.PARENT) == NO_FIELDS


# -- sight follows the roster -----------------------------------------------------------------
def test_acc1_a_teacher_loses_sight_of_a_student_who_leaves(world: World) -> None:
    w, access = world, world.services.access
    rivera = w.who(Role.TEACHER, w.rivera)
    assert access.may_see_student(rivera, w.ana)
    w.services.sections.leave(w.ana, w.rivera_section)
    w.services.settle()
    assert not access.may_see_student(rivera, w.ana)
    w.services.sections.add_student(w.okafor, w.okafor_section, w.ana)  # moved to Okafor
    w.services.settle()
    assert access.may_see_student(w.who(Role.TEACHER, w.okafor), w.ana)
    assert access.may_see_student(w.who(Role.SCHOOL_ADMIN, scope=f"school:{w.lake}"), w.ana)
    assert not access.may_see_student(w.who(Role.SCHOOL_ADMIN, scope=f"school:{w.hill}"),
                                      w.ana)


def test_acc2_administrators_follow_the_teachers_school_choice(world: World) -> None:
    w, access = world, world.services.access
    w.services.accounts.choose_school(w.rivera, w.bay)
    w.services.settle()
    assert not access.may_see_student(w.who(Role.SCHOOL_ADMIN, scope=f"school:{w.hill}"), w.ana)
    assert access.may_see_student(w.who(Role.DISTRICT_ADMIN, scope=f"district:{w.south}"),
                                  w.ana)
    assert access.may_see_teacher(w.who(Role.SCHOOL_ADMIN, scope=f"school:{w.bay}"), w.rivera)


def test_an_erased_teacher_opens_no_sight_of_their_students(world: World) -> None:
    w, access = world, world.services.access
    w.services.ledger.erase_subject(w.rivera, "school_request")
    w.services.settle()
    assert not access.may_see_student(w.who(Role.TEACHER, w.rivera), w.ana)
    assert not access.may_see_student(w.who(Role.SCHOOL_ADMIN, scope=f"school:{w.hill}"), w.ana)
    assert not access.may_see_teacher(w.who(Role.SCHOOL_ADMIN, scope=f"school:{w.hill}"),
                                      w.rivera)
    assert not access.may_manage_section(w.who(Role.TEACHER, w.rivera), w.rivera_section)


def test_an_erased_student_is_no_ones_to_see_through_the_roster(world: World) -> None:
    w, access = world, world.services.access
    w.services.ledger.erase_subject(w.ana, "user_request")
    w.services.settle()
    for principal in (w.who(Role.TEACHER, w.rivera),
                      w.who(Role.SCHOOL_ADMIN, scope=f"school:{w.hill}"),
                      w.who(Role.PARENT, scope=f"parent:{w.parent_token}")):
        assert not access.may_see_student(principal, w.ana), principal.role


# -- a property: sight equals what the enrolments and school choices say ----------------------
_STEP = st.tuples(st.sampled_from(["enrol", "unenrol", "school", "erase_student"]),
                  st.integers(0, 2), st.integers(0, 3))


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(_STEP, min_size=1, max_size=12))
def test_acc1_acc2_sight_follows_any_sequence_of_enrolments_and_school_choices(
        services: Services, steps: list[tuple[str, int, int]]) -> None:
    schools = [services.accounts.register_school(f"School {i}", f"D{i // 2}", "public")
               for i in range(4)]  # schools 0 and 1 in one district, 2 and 3 in another
    teachers = [services.ledger.register_teacher(f"T{i}") for i in range(3)]
    students = [services.ledger.register_student(f"S{i}", "14") for i in range(4)]
    own = {t: services.sections.create(t, "Class", "csd", "8", "email") for t in teachers}
    enrolled: dict[UUID, set[UUID]] = {t: set() for t in teachers}
    school_of: dict[UUID, int] = {}
    erased: set[UUID] = set()
    for action, t_index, s_index in steps:
        t, s = teachers[t_index], students[s_index]
        if action == "erase_student" and s not in erased:
            services.ledger.erase_subject(s, "user_request")
            erased.add(s)
        elif s in erased:
            continue
        elif action == "enrol":
            services.sections.add_student(t, own[t], s)
            enrolled[t].add(s)
        elif action == "unenrol":
            services.sections.remove(t, own[t], s)
            enrolled[t].discard(s)
        elif action == "school":
            services.accounts.choose_school(t, schools[s_index])
            school_of[t] = s_index
    services.settle()

    access = services.access
    for s in students:
        for t in teachers:
            expected = s in enrolled[t] and s not in erased
            assert access.may_see_student(Principal(uuid4(), Role.TEACHER, "t", t), s) == expected
        for i, school in enumerate(schools):
            at_school = any(s in enrolled[t] and school_of.get(t) == i for t in teachers)
            admin = Principal(uuid4(), Role.SCHOOL_ADMIN, "a", scope=f"school:{school}")
            assert access.may_see_student(admin, s) == (at_school and s not in erased)
        for d in range(2):
            in_district = any(s in enrolled[t] and t in school_of and school_of[t] // 2 == d
                              for t in teachers)
            admin = Principal(uuid4(), Role.DISTRICT_ADMIN, "a",
                              scope=f"district:{district_id_for(f'D{d}')}")
            assert access.may_see_student(admin, s) == (in_district and s not in erased)


# -- writes need a relation, like reads --------------------------------------------------------
def test_enrolling_an_existing_student_needs_to_be_their_teacher_already(world: World) -> None:
    """An id is not a capability: a teacher enrols by id only a student already theirs."""
    access, w = world.services.access, world
    second = w.services.sections.create(w.rivera, "Period 2", "csd", "8", "email")
    w.services.settle()
    rivera, okafor = w.who(Role.TEACHER, w.rivera), w.who(Role.TEACHER, w.okafor)
    allowed = {(caller, section, student)
               for caller, principal in (("Rivera", rivera), ("Okafor", okafor),
                                         ("operator", w.who(Role.OPERATOR)),
                                         ("Hill's administrator", w.who(
                                             Role.SCHOOL_ADMIN, scope=f"school:{w.hill}")))
               for section in (w.rivera_section, second, w.okafor_section)
               for student in (w.ana, w.ben, w.cai, w.dev, uuid4())
               if access.may_enrol(principal, section, student)}
    operator = {("operator", section, student) for section in (w.rivera_section, second,
                                                               w.okafor_section)
                for student in (w.ana, w.ben, w.cai, w.dev)}
    assert {row for row in allowed if row[0] != "operator"} == {
        ("Rivera", w.rivera_section, w.ana), ("Rivera", second, w.ana),
        ("Okafor", w.okafor_section, w.ben)}
    assert operator <= allowed  # the privacy officer: anyone, into any existing section


def test_a_registrar_renames_and_lists_only_their_school(world: World) -> None:
    access, w = world.services.access, world
    hill = w.who(Role.REGISTRAR, scope=f"school:{w.hill}")
    people = (w.ana, w.ben, w.cai, w.dev, w.rivera, w.okafor, w.lee)
    assert {p for p in people if access.may_rename(hill, p)} == {w.ana, w.rivera}
    assert {p for p in people if access.may_rename(w.who(Role.OPERATOR), p)} == set(people)
    for nobody in (w.who(Role.REGISTRAR), w.who(Role.SCHOOL_ADMIN, scope=f"school:{w.hill}"),
                   w.who(Role.SUPPORT), w.who(Role.TEACHER, w.rivera)):
        assert not any(access.may_rename(nobody, p) for p in people), nobody.role
    assert access.directory_scope(hill) == {w.ana, w.rivera}
    assert access.directory_scope(w.who(Role.REGISTRAR)) == set()
    assert access.directory_scope(w.who(Role.OPERATOR)) is None
    assert access.may_place_at(hill, w.rivera_section)
    assert not access.may_place_at(hill, w.okafor_section)
    assert not access.may_place_at(hill, None)
