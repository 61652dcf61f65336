"""Who may see what (ACC-1, ACC-2, ACC-5): everything not granted here is denied.

Two steps, so that the rules read as a table. First `Access.relation` finds how the caller
stands to a student, from the roster and the parent links: the student themself, a linked
parent, the teacher of one of their sections, an administrator over the school or district of
one of their teachers, or nothing. Then `visible_fields(role, relation)`, a pure lookup, says
which fields of the student's record that role in that relation may see. An empty set means
"not at all", which the HTTP layer answers exactly like a record that does not exist (ACC-5).

Support staff see a record only with a stated purpose (ACC-4); the HTTP layer records it.
Researchers and services see no one (ACC-3: aggregates only, elsewhere).

Writes need a relation as reads do: an id is not a capability. Every route that names a person,
section or school to change it asks here first (`may_enrol`, `may_rename`, `may_place_at`,
`erasure_reason`, ...) and, without a relation, answers exactly as for an id that does not
exist and writes nothing. A registrar is school staff, scoped to one school like the school's
administrators and custodian; only the operator (the privacy officer) and support (with a
purpose) stand in a relation to everyone.
"""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from api.tokens import Principal, Role
from ledger.identity import IdentityIndex
from projections.roster import (
    DISTRICT_SCOPE,
    SCHOOL_SCOPE,
    RosterReader,
    SectionView,
    parse_scope,
)

PARENT_SCOPE = "parent"


class Relation(StrEnum):
    SELF = "self"
    PARENT = "parent"  # linked to the parent's email (MIN-2)
    TEACHER = "teacher"  # enrolled now in one of the caller's own sections
    IN_SCOPE = "in_scope"  # in a section of a teacher at the administrator's school or district
    NONE = "none"


# The fields of a student record, as the HTTP layer names them.
STAFF_FIELDS = frozenset({"id", "kind", "display_name", "username", "login_type",
                          "secret_kind"})
# A teacher hands out the secret words or picture of their young sections (MIN-6).
TEACHER_FIELDS = STAFF_FIELDS | {"secret"}
REGISTRAR_FIELDS = STAFF_FIELDS | {"age", "age_given_on"}
# ACC-1: never shown per student to teachers or administrators.
PRIVATE_FIELDS = frozenset({"email_on_file", "parent_email", "race", "gender"})
EVERY_FIELD = TEACHER_FIELDS | REGISTRAR_FIELDS | PRIVATE_FIELDS | {"consents", "last_sign_in"}
NO_FIELDS: frozenset[str] = frozenset()

# Roles that see a student whatever their relation (the record is theirs to keep or to help).
_BY_ROLE: dict[str, frozenset[str]] = {
    Role.OPERATOR: EVERY_FIELD,
    Role.SUPPORT: EVERY_FIELD,
}
# Roles that see a student only through a relation to them.
_BY_RELATION: dict[tuple[str, Relation], frozenset[str]] = {
    (Role.STUDENT, Relation.SELF): EVERY_FIELD,
    (Role.PARENT, Relation.PARENT): EVERY_FIELD,
    (Role.TEACHER, Relation.TEACHER): TEACHER_FIELDS,
    (Role.SCHOOL_ADMIN, Relation.IN_SCOPE): STAFF_FIELDS,
    (Role.DISTRICT_ADMIN, Relation.IN_SCOPE): STAFF_FIELDS,
    (Role.REGISTRAR, Relation.IN_SCOPE): REGISTRAR_FIELDS,
}
_PROGRESS_ROLES = frozenset({Role.OPERATOR, Role.SUPPORT, Role.STUDENT, Role.PARENT, Role.TEACHER,
                             Role.SCHOOL_ADMIN, Role.DISTRICT_ADMIN})
# What an administrator's scope must name.
_ADMIN_SCOPES: dict[str, str] = {Role.SCHOOL_ADMIN: SCHOOL_SCOPE,
                                 Role.DISTRICT_ADMIN: DISTRICT_SCOPE,
                                 Role.RECORDS_CUSTODIAN: SCHOOL_SCOPE,
                                 Role.REGISTRAR: SCHOOL_SCOPE}
# AUD-3: who may ask who has read or received a student's records; RGT-1: who may export them.
_AUDITING = frozenset({(Role.STUDENT, Relation.SELF), (Role.PARENT, Relation.PARENT),
                       (Role.RECORDS_CUSTODIAN, Relation.IN_SCOPE)})
_AUDITING_ANYONE = frozenset({Role.OPERATOR, Role.AUDITOR})
_EXPORTING = _AUDITING
_EXPORTING_ANYONE = frozenset({Role.OPERATOR})


# DEL-4: the subject, a parent, the school, support, or a teacher for the students they manage.
_ERASURE_BY_RELATION: dict[tuple[str, Relation], str] = {
    (Role.STUDENT, Relation.SELF): "user_request",
    (Role.PARENT, Relation.PARENT): "parent_request",
    (Role.TEACHER, Relation.TEACHER): "teacher_request",
    (Role.SCHOOL_ADMIN, Relation.IN_SCOPE): "school_request",
    (Role.DISTRICT_ADMIN, Relation.IN_SCOPE): "school_request",
}
# Staff erase anyone, giving who asked them; left out, support's reason is its own request.
STAFF_ERASURE_REASON: dict[str, str | None] = {Role.SUPPORT: "support_request",
                                               Role.OPERATOR: None}


def visible_fields(role: str, relation: Relation) -> frozenset[str]:
    """The fields of a student record that `role`, standing in `relation` to them, may see."""
    by_role = _BY_ROLE.get(role)
    if by_role is not None:
        return by_role
    return _BY_RELATION.get((role, relation), NO_FIELDS)


class Access:
    def __init__(self, roster: RosterReader, identity: IdentityIndex) -> None:
        self.roster = roster
        self.identity = identity

    # -- students -----------------------------------------------------------------------------
    def relation(self, principal: Principal, student_id: UUID) -> Relation:
        """How the caller stands to the student; only the relations their role can have."""
        role = principal.role
        if role == Role.STUDENT and principal.subject_id == student_id:
            return Relation.SELF
        if role == Role.TEACHER and principal.subject_id is not None and \
                principal.subject_id in self.roster.teachers_of_student(student_id):
            return Relation.TEACHER
        if role in _ADMIN_SCOPES and any(self._in_admin_scope(principal, teacher_id)
                                         for teacher_id in self.roster.teachers_of_student(
                                             student_id)):
            return Relation.IN_SCOPE
        if role == Role.PARENT and student_id in self._children(principal):
            return Relation.PARENT
        return Relation.NONE

    def student_fields(self, principal: Principal, student_id: UUID) -> frozenset[str]:
        """The fields of the student's record this caller may see; empty: not the record."""
        if principal.role in _BY_ROLE:  # no roster look-up for roles that need none
            return _BY_ROLE[principal.role]
        return visible_fields(principal.role, self.relation(principal, student_id))

    def roster_fields(self, principal: Principal, section: SectionView) -> frozenset[str]:
        """The fields of each student in a section's roster, for the section's own teacher:
        every member stands to them as `Relation.TEACHER`, so no look-up per student."""
        if principal.role != Role.TEACHER or principal.subject_id != section.teacher_id:
            return NO_FIELDS
        return visible_fields(principal.role, Relation.TEACHER)

    def may_see_student(self, principal: Principal, student_id: UUID) -> bool:
        return bool(self.student_fields(principal, student_id))

    def may_see_progress(self, principal: Principal, student_id: UUID) -> bool:
        """A student's progress (PRG-1, ACC-1, ACC-2): the student, a linked parent, their
        teacher, an administrator in scope, support (with a purpose, asked by the route) and
        the operator. Never a registrar, researcher or service."""
        return principal.role in _PROGRESS_ROLES and self.may_see_student(principal, student_id)

    def erasure_reason(self, principal: Principal, student_id: UUID) -> str | None:
        """DEL-4: who may have a student erased at once, skipping the window, and the reason
        their receipt gives; None: not this caller. Staff may erase anyone (`by_staff`)."""
        return _ERASURE_BY_RELATION.get((principal.role, self.relation(principal, student_id)))

    def may_audit(self, principal: Principal, student_id: UUID) -> bool:
        """AUD-3: the student, a linked parent, the records custodian of the student's school,
        authorised auditors and the privacy officer may ask who read or received S's records."""
        return principal.role in _AUDITING_ANYONE or (
            principal.role, self.relation(principal, student_id)) in _AUDITING

    def may_export(self, principal: Principal, student_id: UUID) -> bool:
        """RGT-1: the student, a linked parent, the records custodian of the student's school
        and the privacy officer may export all of S's data (auditors see the trail only)."""
        return principal.role in _EXPORTING_ANYONE or (
            principal.role, self.relation(principal, student_id)) in _EXPORTING

    # -- teachers and sections ----------------------------------------------------------------
    def may_see_teacher(self, principal: Principal, teacher_id: UUID) -> bool:
        role = principal.role
        if role in (Role.OPERATOR, Role.SUPPORT):
            return True
        if role == Role.TEACHER:
            return principal.subject_id == teacher_id
        if role in _ADMIN_SCOPES:
            return self._in_admin_scope(principal, teacher_id)
        return False

    def may_see_school(self, principal: Principal, school_id: UUID, district_id: UUID) -> bool:
        """A school's roster (ACC-2): the operator; an administrator of that school, or of its
        district. A scope of the wrong kind for the role is none."""
        if principal.role == Role.OPERATOR:
            return True
        parsed = parse_scope(principal.scope)
        if parsed is None:
            return False
        kind, place = parsed
        if principal.role == Role.SCHOOL_ADMIN:
            return kind == SCHOOL_SCOPE and place == school_id
        if principal.role == Role.DISTRICT_ADMIN:
            return kind == DISTRICT_SCOPE and place == district_id
        return False

    def may_manage_section(self, principal: Principal, section_id: UUID) -> bool:
        """The teacher who owns the section; the operator."""
        if principal.role == Role.OPERATOR:
            return True
        if principal.role != Role.TEACHER or principal.subject_id is None:
            return False
        section = self.roster.section(section_id)
        return section is not None and section.teacher_id == principal.subject_id

    # -- writes that name someone -------------------------------------------------------------
    def may_enrol(self, principal: Principal, section_id: UUID, student_id: UUID) -> bool:
        """Enrolling an existing student by id: the section is the teacher's own, and the
        student is already theirs (in another of their sections: a move between sections).
        Anyone else joins with the section's code, or comes with the school's roster; a
        student's id alone never brings them into a stranger's section."""
        return self.may_manage_section(principal, section_id) and (
            principal.role == Role.OPERATOR
            or self.relation(principal, student_id) == Relation.TEACHER)

    def may_manage_member(self, principal: Principal, section_id: UUID, student_id: UUID
                          ) -> bool:
        """A student of one of the teacher's own sections, named with that section (removing
        them, their removal preview, a new secret): only while they are in it."""
        return self.may_manage_section(principal, section_id) and \
            student_id in self.roster.students_of_section(section_id)

    def may_rename(self, principal: Principal, person_id: UUID) -> bool:
        """A person's display name, changed by staff: the operator; a registrar for the
        students and teachers of their own school."""
        if principal.role == Role.OPERATOR:
            return True
        if principal.role != Role.REGISTRAR:
            return False
        return self.relation(principal, person_id) == Relation.IN_SCOPE or \
            self._in_admin_scope(principal, person_id)

    def may_place_at(self, principal: Principal, section_id: UUID | None) -> bool:
        """Where a registrar may create a student: in a section of a teacher at their own
        school (else the student would be theirs to create and never theirs to see). The
        operator may create one anywhere, or in no section."""
        if principal.role == Role.OPERATOR:
            return section_id is None or self.roster.section(section_id) is not None
        if principal.role != Role.REGISTRAR or section_id is None:
            return False
        section = self.roster.section(section_id)
        return section is not None and self._in_admin_scope(principal, section.teacher_id)

    def school_of(self, principal: Principal) -> UUID | None:
        """The school a school-scoped principal (registrar, school administrator, custodian)
        is confined to; None for any other."""
        parsed = parse_scope(principal.scope)
        if parsed is None or parsed[0] != SCHOOL_SCOPE or \
                _ADMIN_SCOPES.get(principal.role) != SCHOOL_SCOPE:
            return None
        return parsed[1]

    def directory_scope(self, principal: Principal) -> set[UUID] | None:
        """Whom a caller's directory lists: None for everyone (the operator); a registrar,
        the students and teachers of their school; anyone else, no one."""
        if principal.role == Role.OPERATOR:
            return None
        if principal.role != Role.REGISTRAR or self.school_of(principal) is None:
            return set()
        scope = principal.scope or ""
        return self.roster.students_in_scope(scope) | self.roster.teachers_in_scope(scope)

    # -- scopes -------------------------------------------------------------------------------
    def _in_admin_scope(self, principal: Principal, teacher_id: UUID) -> bool:
        """Whether the teacher is at the administrator's school, or in their district. A scope
        of the wrong kind for the role (a school administrator's "district:...") is none."""
        parsed = parse_scope(principal.scope)
        if parsed is None or parsed[0] != _ADMIN_SCOPES.get(principal.role):
            return False
        place = self.roster.school_of_teacher(teacher_id)
        if place is None:
            return False
        school_id, district_id = place
        return (school_id if parsed[0] == SCHOOL_SCOPE else district_id) == parsed[1]

    def _children(self, principal: Principal) -> set[UUID]:
        """The students linked to a parent's scope, "parent:<hex token>"; none if malformed."""
        kind, _, hex_token = (principal.scope or "").partition(":")
        if kind != PARENT_SCOPE or not hex_token:
            return set()
        try:
            token = bytes.fromhex(hex_token)
        except ValueError:
            return set()
        return self.identity.children_of(token)
