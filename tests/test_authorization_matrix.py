"""Every endpoint x every caller -> the expected status, computed from a small rule table.

Nothing here is a hand-picked case. `RULES` says, per endpoint, which roles may call it
(deny by default), whether support must state a purpose (ACC-4), which relation to the target
record the caller needs (else 404, exactly as if it did not exist: ACC-5), and the status of
success. `RELATIONS` says who stands in which relation to the one world's records. `expected`
combines the two, in the order the API checks them:

    public route                          -> success, token or not
    no token                              -> 401
    role not among the rule's roles       -> 403
    support without a stated purpose      -> 403 (where the rule asks for one)
    caller outside the rule's relation    -> 404 (same body as a record that does not exist)
    otherwise                             -> the rule's success status

The test walks every route of the OpenAPI document (a route missing from `RULES` fails it)
against every caller, and checks for each refusal: the problem type, that nothing was written,
and that the body carries no personal value of the world.

One world per backend (module scope), so the whole matrix runs in seconds: people are made
through the services and sessions are issued with `TokenStore.issue`. Password hashes are made
at a tiny scrypt cost here (the hash is self-describing, so verifying follows it): this test is
about who may call what, and the ~50+ sign-ups and sign-ins of the public routes would
otherwise cost most of its time; the real cost is tested in test_passwords_and_blind_index.
Routes that change what the matrix depends on (leaving a section, resetting a secret, erasing)
act on a fresh target made for that one call.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from api.services import Services
from api.tokens import TokenStore
from crypto import passwords
from ledger.identity import PARENT_EMAIL
from projections.runner import live_generation
from tests.conftest import BACKENDS, drop_schemas, make_settings

PASSWORD = "correct horse battery"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
LINKED_PARENT = "linked.parent@home.example"
P = "https://ledger.invalid/problems/"

# -- the callers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    name: str
    role: str | None  # None: no token at all
    person: str | None = None  # whose session: "S", "O" (students), "T", "U" (teachers)
    scope: str | None = None  # a key of World.scopes
    purpose: bool = False  # support states a purpose (X-Purpose)


CALLERS = (
    Caller("anonymous", None),
    Caller("student_self", "student", person="S"),
    Caller("other_student", "student", person="O"),
    Caller("teacher_of_section", "teacher", person="T"),
    Caller("other_teacher", "teacher", person="U"),
    Caller("school_admin_in", "school_admin", scope="school_A"),
    Caller("school_admin_out", "school_admin", scope="school_B"),
    Caller("district_admin_in", "district_admin", scope="district_A"),
    Caller("district_admin_out", "district_admin", scope="district_B"),
    Caller("parent_linked", "parent", scope="parent_of_S"),
    Caller("parent_not_linked", "parent", scope="parent_of_nobody"),
    Caller("support_with_purpose", "support", purpose=True),
    Caller("support_without_purpose", "support"),
    Caller("researcher", "researcher"),
    Caller("registrar_in", "registrar", scope="school_A"),
    Caller("registrar_out", "registrar", scope="school_B"),
    Caller("operator", "operator"),
    Caller("service", "service"),
    Caller("custodian_in", "records_custodian", scope="school_A"),
    Caller("custodian_out", "records_custodian", scope="school_B"),
    Caller("auditor", "auditor"),
)

# -- the rule table ---------------------------------------------------------------------------
# Who stands in which relation to the world's records. S is a student in section X of teacher
# T, at school A (district A); O is in section Z of teacher U, at school B (district B).
_STAFF_SEEING_ANYONE = {"support_with_purpose", "support_without_purpose", "operator"}
RELATIONS: dict[str, frozenset[str]] = {
    # ACC-1, ACC-2, linked parents, the student themself, and staff who keep the records.
    "sees_S": frozenset({"student_self", "teacher_of_section", "school_admin_in",
                         "district_admin_in", "parent_linked", "registrar_in",
                         *_STAFF_SEEING_ANYONE}),
    # A teacher sees themself; administrators their school's or district's teachers.
    "sees_T": frozenset({"teacher_of_section", "school_admin_in", "district_admin_in",
                         "registrar_in", *_STAFF_SEEING_ANYONE}),
    "owns_section": frozenset({"teacher_of_section"}),
    # A registrar is school staff: they create students in, and rename people of, their school.
    "places_in_X": frozenset({"registrar_in", "operator"}),
    "renames_S": frozenset({"registrar_in", "operator"}),
    # The gallery is open to every signed-in person: P is in it.
    "sees_P_in_gallery": frozenset({"student_self", "other_student", "teacher_of_section",
                                    "other_teacher"}),
    "in_section": frozenset({"student_self"}),
    "over_school_A": frozenset({"school_admin_in", "district_admin_in", "operator"}),
    "teaches_S": frozenset({"teacher_of_section"}),
    "owns_S_project": frozenset({"student_self"}),  # P, S's project in the gallery
    # DEL-4: erasure at once of one of S's projects: S, S's teacher, the operator.
    "may_erase_S_project": frozenset({"student_self", "teacher_of_section", "operator"}),
    # AUD-3: who may ask who has read S's records: S, S's parent, the custodian of S's school,
    # auditors and the privacy officer.
    "audits_S": frozenset({"student_self", "parent_linked", "custodian_in", "auditor",
                           "operator"}),
    # RGT: who files and follows S's rights requests (S, S's parent, the custodian of S's
    # school, the privacy officer), who attaches a statement (S, S's parent), who manages them
    # (the custodian, the privacy officer), who exports S's data (RGT-1, `Access.may_export`).
    "requests_for_S": frozenset({"student_self", "parent_linked", "custodian_in", "operator"}),
    "states_for_S": frozenset({"student_self", "parent_linked"}),
    "manages_S": frozenset({"custodian_in", "operator"}),
    "exports_S": frozenset({"student_self", "parent_linked", "custodian_in", "operator"}),
    # AUD-2: who may record a disclosure of S's records: the custodian of S's school, the
    # privacy officer.
    "discloses_S": frozenset({"custodian_in", "operator"}),
    # DEL-4: erasure at once of a student in T's section X with S's linked parent.
    "may_erase_student": frozenset({"teacher_of_section", "school_admin_in",
                                    "district_admin_in", "parent_linked", "support_with_purpose",
                                    "support_without_purpose", "operator"}),
}

PUBLIC: None = None
ANY_TOKEN = frozenset({"*"})
PEOPLE = frozenset({"student", "teacher"})
STUDENT = frozenset({"student"})
TEACHER = frozenset({"teacher"})
STAFF = frozenset({"operator", "registrar"})
READERS = frozenset({"operator", "registrar", "support", "student", "teacher", "school_admin",
                     "district_admin", "parent"})  # researchers: aggregates only (ACC-3)
ADMINS = frozenset({"operator", "school_admin", "district_admin"})
PROGRESS_READERS = READERS - {"registrar"}  # the education record: not a registrar's
ERASERS = frozenset({"operator", "support", "teacher", "school_admin", "district_admin",
                     "parent"})
RECOVERERS = frozenset({"operator", "support"})
PRIVACY_OFFICER = frozenset({"operator"})
SIGNED_IN = frozenset({"operator", "registrar", "support", "student", "teacher",
                       "school_admin", "district_admin", "parent", "researcher",
                       "records_custodian"})
AUDIT_READERS = frozenset({"student", "parent", "records_custodian", "auditor", "operator"})
RIGHTS_REQUESTERS = frozenset({"student", "parent", "records_custodian", "operator"})
RIGHTS_MANAGERS = frozenset({"records_custodian", "operator"})
EXPORTERS = frozenset({"student", "parent", "records_custodian", "operator"})
DISCLOSERS = frozenset({"records_custodian", "operator"})
ACTOR_AUDITORS = frozenset({"auditor", "operator"})  # an actor's reads span every school
PARTY_AUDITORS = frozenset({"auditor", "operator", "records_custodian"})  # custodian: own school
SUPPORTERS = frozenset({"support", "operator"})
ANALYSTS = frozenset({"researcher", "operator"})  # suppressed counts only (ANA-2, ACC-3)


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str] | None  # None: public
    ok: int
    relation: str | None = None
    purpose: bool = False


RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/healthz"): Rule(PUBLIC, 200),
    ("GET", "/livez"): Rule(PUBLIC, 200),
    ("GET", "/readyz"): Rule(PUBLIC, 200),
    ("GET", "/metrics"): Rule(frozenset({"service", "operator"}), 200),  # HEALTH_READ
    ("POST", "/sign-in"): Rule(PUBLIC, 200),
    ("POST", "/sign-in/section"): Rule(PUBLIC, 200),
    ("POST", "/sign-up/student"): Rule(PUBLIC, 201),
    ("POST", "/sign-up/teacher"): Rule(PUBLIC, 201),
    ("POST", "/sign-out"): Rule(ANY_TOKEN, 204),
    ("POST", "/password-reset/request"): Rule(PUBLIC, 202),
    ("POST", "/password-reset"): Rule(PUBLIC, 204),
    # one's own record
    ("GET", "/me"): Rule(PEOPLE, 200),
    ("PATCH", "/me"): Rule(PEOPLE, 200),
    ("PUT", "/me/password"): Rule(PEOPLE, 204),
    ("PUT", "/me/email"): Rule(PEOPLE, 204),
    ("PUT", "/me/providers/{provider}"): Rule(PEOPLE, 204),
    ("DELETE", "/me/providers/{provider}"): Rule(PEOPLE, 204),
    ("PUT", "/me/partners/{partner}"): Rule(PEOPLE, 204),
    ("GET", "/me/consents"): Rule(PEOPLE, 200),
    ("GET", "/me/sections"): Rule(PEOPLE, 200),
    ("PUT", "/me/parent-email"): Rule(STUDENT, 204),
    ("DELETE", "/me/parent-email"): Rule(STUDENT, 204),
    ("PUT", "/me/study-contact"): Rule(STUDENT, 204),
    ("DELETE", "/me/study-contact"): Rule(STUDENT, 204),
    ("POST", "/sections/join"): Rule(STUDENT, 200),
    ("DELETE", "/me/sections/{section_id}"): Rule(STUDENT, 204, "in_section"),
    ("POST", "/me/attestations"): Rule(TEACHER, 201),
    ("PUT", "/me/school"): Rule(TEACHER, 204),
    ("PUT", "/me/email-opt-in"): Rule(TEACHER, 204),
    # a teacher's sections
    ("POST", "/sections"): Rule(TEACHER, 201),
    ("GET", "/sections/{section_id}"): Rule(TEACHER, 200, "owns_section"),
    ("PATCH", "/sections/{section_id}"): Rule(TEACHER, 200, "owns_section"),
    ("GET", "/sections/{section_id}/students"): Rule(TEACHER, 200, "owns_section"),
    ("POST", "/sections/{section_id}/students"): Rule(TEACHER, 201, "owns_section"),
    ("PUT", "/sections/{section_id}/students/{student_id}"): Rule(TEACHER, 204,
                                                                  "owns_section"),
    ("DELETE", "/sections/{section_id}/students/{student_id}"): Rule(TEACHER, 204,
                                                                     "owns_section"),
    ("POST", "/sections/{section_id}/students/{student_id}/secret"): Rule(TEACHER, 200,
                                                                          "owns_section"),
    ("GET", "/sections/{section_id}/secrets-under-attack"): Rule(TEACHER, 200,
                                                                 "owns_section"),
    ("PUT", "/sections/{section_id}/race-estimate"): Rule(TEACHER, 204, "owns_section"),
    # people
    ("GET", "/students/{person_id}"): Rule(READERS, 200, "sees_S", purpose=True),
    ("GET", "/teachers/{person_id}"): Rule(READERS, 200, "sees_T", purpose=True),
    ("GET", "/students/{person_id}/access-records"): Rule(AUDIT_READERS, 200,
                                                         "audits_S"),
    # the audit trail (AUD-2, AUD-3, AUD-5)
    ("GET", "/students/{person_id}/audit-trail"): Rule(AUDIT_READERS, 200, "audits_S"),
    ("POST", "/students/{person_id}/disclosures"): Rule(DISCLOSERS, 201, "discloses_S"),
    ("GET", "/audit/actors/{actor_id}"): Rule(ACTOR_AUDITORS, 200),
    ("GET", "/audit/disclosures"): Rule(PARTY_AUDITORS, 200),
    ("POST", "/support-sessions"): Rule(SUPPORTERS, 201),
    ("POST", "/students"): Rule(STAFF, 201, "places_in_X"),
    ("POST", "/teachers"): Rule(STAFF, 201),
    ("PATCH", "/people/{person_id}"): Rule(STAFF, 200, "renames_S"),
    ("DELETE", "/people/{person_id}"): Rule(ERASERS, 200, "may_erase_student"),
    # the deletion lifecycle (DEL-1..8)
    ("GET", "/me/deletion"): Rule(PEOPLE, 200),
    ("DELETE", "/me"): Rule(PEOPLE, 200),
    ("POST", "/me/erasure"): Rule(PEOPLE, 200),
    ("POST", "/recovery"): Rule(PUBLIC, 200),
    ("POST", "/people/{person_id}/recovery"): Rule(RECOVERERS, 200),
    ("GET", "/people/{person_id}/holds"): Rule(PRIVACY_OFFICER, 200),
    ("POST", "/people/{person_id}/holds"): Rule(PRIVACY_OFFICER, 201),
    ("POST", "/people/{person_id}/holds/{hold_id}/lift"): Rule(PRIVACY_OFFICER, 204),
    ("GET", "/erasure-receipts"): Rule(RECOVERERS, 200),
    ("GET", "/erasure-receipts/{subject_id}"): Rule(RECOVERERS, 200),
    ("GET", "/ledger/public-key"): Rule(PUBLIC, 200),
    ("GET", "/sections/{section_id}/students/{student_id}/removal"): Rule(TEACHER, 200,
                                                                          "owns_section"),
    ("GET", "/people"): Rule(STAFF, 200),
    # schools
    ("POST", "/schools"): Rule(STAFF, 201),
    ("GET", "/schools/{school_id}"): Rule(SIGNED_IN, 200),
    ("GET", "/schools/{school_id}/roster"): Rule(ADMINS, 200, "over_school_A"),
    # progress (PRG-1, ACC-1, ACC-2)
    ("POST", "/me/attempts"): Rule(STUDENT, 201),
    ("GET", "/me/progress"): Rule(STUDENT, 200),
    ("GET", "/sections/{section_id}/progress"): Rule(TEACHER, 200, "owns_section"),
    ("GET", "/students/{person_id}/progress"): Rule(PROGRESS_READERS, 200, "sees_S",
                                                    purpose=True),
    ("GET", "/schools/{school_id}/progress"): Rule(ADMINS, 200, "over_school_A"),
    # projects and uploads (PRG-2, AGE-3, AGE-4)
    ("POST", "/me/projects"): Rule(PEOPLE, 201),
    ("GET", "/me/projects"): Rule(PEOPLE, 200),
    ("GET", "/me/projects/{project_id}"): Rule(PEOPLE, 200, "owns_S_project"),
    ("PATCH", "/me/projects/{project_id}"): Rule(PEOPLE, 204, "owns_S_project"),
    ("PUT", "/me/projects/{project_id}/source"): Rule(PEOPLE, 204, "owns_S_project"),
    ("DELETE", "/me/projects/{project_id}"): Rule(PEOPLE, 204, "owns_S_project"),
    ("POST", "/me/projects/{project_id}/media"): Rule(PEOPLE, 201, "owns_S_project"),
    ("GET", "/me/media/{media_id}"): Rule(PEOPLE, 200, "owns_S_project"),
    ("PUT", "/me/projects/{project_id}/gallery"): Rule(PEOPLE, 204, "owns_S_project"),
    ("DELETE", "/me/projects/{project_id}/gallery"): Rule(PEOPLE, 204, "owns_S_project"),
    ("POST", "/me/projects/{project_id}/social-posts"): Rule(PEOPLE, 204, "owns_S_project"),
    ("POST", "/projects/{project_id}/remixes"): Rule(PEOPLE, 201, "sees_P_in_gallery"),
    ("POST", "/projects/{project_id}/erasure"): Rule(PEOPLE | {"operator"}, 200,
                                                     "may_erase_S_project"),
    ("GET", "/gallery"): Rule(PUBLIC, 200),
    ("GET", "/students/{person_id}/projects"): Rule(PROGRESS_READERS, 200, "sees_S",
                                                    purpose=True),
    # coursework (PRG-3, PRG-4)
    ("POST", "/me/answers"): Rule(STUDENT, 204),
    ("POST", "/me/surveys"): Rule(STUDENT, 204),
    ("GET", "/me/feedback"): Rule(STUDENT, 200),
    ("POST", "/students/{person_id}/feedback"): Rule(TEACHER, 201, "teaches_S"),
    ("GET", "/students/{person_id}/feedback"): Rule(PROGRESS_READERS, 200, "sees_S",
                                                    purpose=True),
    ("GET", "/students/{person_id}/answers"): Rule(PROGRESS_READERS, 200, "sees_S",
                                                   purpose=True),
    ("GET", "/sections/{section_id}/surveys"): Rule(TEACHER, 200, "owns_section"),
    # the tamper-evident log (LED-2): heads and consistency are public hashes; an inclusion
    # proof carries a stored event, for the privacy officer and auditors
    ("GET", "/analytics/tables/{measure}"): Rule(ANALYSTS, 200),
    ("GET", "/analytics/chart"): Rule(ANALYSTS, 200),
    ("GET", "/analytics/race-estimates"): Rule(ANALYSTS, 200),
    ("GET", "/ledger/tree-heads"): Rule(PUBLIC, 200),
    ("GET", "/ledger/tree-heads/latest"): Rule(PUBLIC, 200),
    ("POST", "/ledger/tree-heads"): Rule(PRIVACY_OFFICER, 201),
    # the read models' set-aside events (issue 18): the operator only
    ("GET", "/operations/projections"): Rule(PRIVACY_OFFICER, 200),
    ("POST", "/operations/projections/{name}/retry"): Rule(PRIVACY_OFFICER, 200),
    ("POST", "/operations/projections/{name}/skip"): Rule(PRIVACY_OFFICER, 200),
    ("GET", "/ledger/proofs/consistency"): Rule(PUBLIC, 200),
    ("GET", "/ledger/proofs/inclusion/{notification_id}"): Rule(
        frozenset({"operator", "auditor"}), 200),
    # rights requests and the export (RGT-1..4)
    ("POST", "/students/{person_id}/rights-requests"): Rule(RIGHTS_REQUESTERS, 201,
                                                            "requests_for_S"),
    ("GET", "/students/{person_id}/rights-requests"): Rule(RIGHTS_REQUESTERS, 200,
                                                           "requests_for_S"),
    ("POST", "/students/{person_id}/rights-requests/{request_id}/withdrawal"): Rule(
        RIGHTS_REQUESTERS, 200, "requests_for_S"),
    ("POST", "/students/{person_id}/rights-requests/{request_id}/statements"): Rule(
        frozenset({"student", "parent"}), 201, "states_for_S"),
    ("POST", "/students/{person_id}/rights-requests/{request_id}/extension"): Rule(
        RIGHTS_MANAGERS, 200, "manages_S"),
    ("POST", "/students/{person_id}/rights-requests/{request_id}/fulfilment"): Rule(
        RIGHTS_MANAGERS, 200, "manages_S"),
    ("POST", "/students/{person_id}/rights-requests/{request_id}/refusal"): Rule(
        RIGHTS_MANAGERS, 200, "manages_S"),
    ("POST", "/students/{person_id}/restriction/lift"): Rule(RIGHTS_MANAGERS, 200,
                                                             "manages_S"),
    ("GET", "/rights-requests"): Rule(RIGHTS_MANAGERS, 200),
    ("GET", "/rights-requests/overdue"): Rule(RIGHTS_MANAGERS, 200),
    ("GET", "/students/{person_id}/export"): Rule(EXPORTERS, 200, "exports_S"),
    ("GET", "/students/{person_id}/export/{table}.csv"): Rule(EXPORTERS, 200, "exports_S"),
}


def expected(rule: Rule, caller: Caller) -> int:
    if rule.roles is PUBLIC:
        return rule.ok
    if caller.role is None:
        return 401
    if rule.roles is not ANY_TOKEN and caller.role not in rule.roles:
        return 403
    if rule.purpose and caller.role == "support" and not caller.purpose:
        return 403
    if rule.relation is not None and caller.name not in RELATIONS[rule.relation]:
        return 404
    return rule.ok


# -- the world --------------------------------------------------------------------------------
@dataclass
class World:
    svc: Services
    http: TestClient
    tokens: TokenStore
    ids: dict[str, UUID] = field(default_factory=dict)
    scopes: dict[str, str] = field(default_factory=dict)
    auth: dict[str, dict[str, str]] = field(default_factory=dict)
    personal: dict[str, str] = field(default_factory=dict)  # values no refusal may carry

    def token(self, caller: Caller) -> dict[str, str]:
        if caller.role is None:
            return {}
        subject = self.ids[caller.person] if caller.person else None
        scope = self.scopes[caller.scope] if caller.scope else None
        issued = self.tokens.issue(caller.role, caller.name.replace("_", "-"),
                                   timedelta(hours=1), subject_id=subject, scope=scope)
        headers = {"Authorization": f"Bearer {issued.token}"}
        if caller.purpose:
            headers["X-Purpose"] = "technical_issue"
        return headers

    # fresh targets, for routes whose effect would change the world's relations
    def fresh_section(self, *students: UUID) -> UUID:
        section = self.svc.sections.create(self.ids["T"], "Spare", "csf", "3", "word")
        for student in students:
            self.svc.sections.add_student(self.ids["T"], section, student)
        self.svc.settle()
        return section

    def fresh_project(self, shared: bool = False) -> UUID:
        project = self.svc.projects.create(self.ids["S"], "app", "Spare")
        if shared:
            self.svc.projects.share_to_gallery(self.ids["S"], project)
        return project

    def fresh_project_of_S_without_holds(self) -> UUID:
        """A project to erase: a legal hold on S (a refused hold route can leave one) would
        block its erasure (409), which is not what the matrix asks."""
        for hold in self.svc.holds.of(self.ids["S"]):
            self.svc.holds.lift(self.ids["S"], hold.id, "placed by a test", "operator")
        return self.fresh_project()

    def fresh_student(self, enrolled: bool = False, linked: bool = False) -> UUID:
        if enrolled:
            student = self.svc.sections.create_student(self.ids["T"], self.ids["X"], "Fresh",
                                                       "10")
        else:
            student = self.svc.ledger.register_student("Fresh", "10")
        if linked:
            self.svc.accounts.link_parent_email(student, LINKED_PARENT)
        self.svc.settle()
        return student

    def fresh_self(self, caller: Caller) -> dict[str, str]:
        """A session of a new person of the caller's kind, for a route that erases its caller."""
        person = (self.svc.ledger.register_teacher("Fresh Teacher") if caller.role == "teacher"
                  else self.svc.ledger.register_student("Fresh", "10"))
        issued = self.tokens.issue(str(caller.role), "fresh", timedelta(hours=1),
                                   subject_id=person)
        return {"Authorization": f"Bearer {issued.token}"}

    def removal_of(self, student: UUID) -> str:
        """Removing a student who depends on T alone deletes them: confirmed (DEL-5)."""
        removal = self.svc.lifecycle.removal(self.ids["T"], student)
        return (f"/sections/{self.ids['X']}/students/{student}"
                f"?confirmation={removal.confirmation}")

    def soft_deleted(self, who: str) -> UUID:
        """S or T, deleted by themself (recovered again by `_restore`)."""
        if self.svc.ledger.person(self.ids[who]).deleted:  # type: ignore[union-attr]
            return self.ids[who]
        cascade = self.svc.lifecycle.cascade(self.ids["T"]).confirmation if who == "T" else None
        self.svc.lifecycle.request_deletion(self.ids[who], "operator", confirmation=cascade)
        self.svc.settle()
        return self.ids[who]

    def erased_student(self) -> UUID:
        student = self.fresh_student()
        self.svc.lifecycle.erase_now(student, "operator", "school_request")
        return student

    def recover_everyone(self) -> None:
        """Undo a deletion of the world's people, and give their callers new sessions."""
        for who in ("S", "O", "T", "U"):
            person = self.svc.ledger.person(self.ids[who])
            if person.deleted:  # type: ignore[union-attr]
                self.svc.lifecycle.recover(self.ids[who], "operator")
        self.svc.settle()
        self.auth.update({c.name: self.token(c) for c in CALLERS if c.person})


def _build_world(svc: Services) -> World:
    app = create_app(svc)
    # Entered once: a TestClient outside `with` starts an event-loop thread for every request.
    world = World(svc, TestClient(app).__enter__(), app.state.tokens)
    accounts, sections = svc.accounts, svc.sections
    school_a = accounts.register_school("Hill School", "North", "public")
    school_b = accounts.register_school("Dale School", "South", "public")
    teacher = accounts.sign_up_teacher("Tamsin Teachwell", "tamsin@school.example", PASSWORD,
                                       school_id=school_a)
    other_teacher = svc.ledger.register_teacher("Ulrich Otherhall")
    accounts.choose_school(other_teacher, school_b)
    accounts.attest_parental_consent(teacher)
    accounts.attest_parental_consent(other_teacher)
    x = sections.create(teacher, "Period 1", "csf", "4", "word")
    z = sections.create(other_teacher, "Period 9", "csf", "4", "word")
    student = sections.create_student(teacher, x, "Sunny Learnwright", "18")
    other_student = sections.create_student(other_teacher, z, "Otto Elsewhere", "18")
    accounts.link_parent_email(student, LINKED_PARENT)
    project = svc.projects.create(student, "app", "Sunny's app", "onClick()")
    media = svc.projects.upload(student, project, PNG, "image/png").media_id
    svc.projects.share_to_gallery(student, project)
    # A third school that no caller stands in any relation to: its ids are the foreign
    # targets of `test_no_caller_acts_on_what_they_have_no_relation_to`.
    school_c = accounts.register_school("Cove School", "East", "public")
    far_teacher = svc.ledger.register_teacher("Vera Faraway", school_id=school_c)
    accounts.attest_parental_consent(far_teacher)
    y = sections.create(far_teacher, "Period 5", "csf", "4", "word")
    far_student = sections.create_student(far_teacher, y, "Rhea Nobodysees", "18")
    far_project = svc.projects.create(far_student, "app", "Rhea's app", "onClick()")
    far_media = svc.projects.upload(far_student, far_project, PNG, "image/png").media_id
    far_request = svc.rights.file(far_student, "access", "operator", "matrix")
    svc.settle()
    world.ids.update(S=student, O=other_student, T=teacher, U=other_teacher, X=x, Z=z,
                     A=school_a, B=school_b, P=project, M=media, R=far_student, V=far_teacher,
                     Y=y, C=school_c, RP=far_project, RM=far_media, RQ=far_request)
    identity = svc.ledger.identity
    world.scopes.update(
        school_A=f"school:{school_a}", school_B=f"school:{school_b}",
        district_A=f"district:{accounts.school(school_a).district_id}",
        district_B=f"district:{accounts.school(school_b).district_id}",
        parent_of_S=f"parent:{identity.token(PARENT_EMAIL, LINKED_PARENT).hex()}",
        parent_of_nobody=f"parent:{identity.token(PARENT_EMAIL, 'no.one@home.example').hex()}")
    s, t = svc.ledger.live(student), svc.ledger.live(teacher)
    world.personal.update(
        student_name=s.display_name, student_username=s.username, student_secret=s.secret,
        other_student_name="Otto Elsewhere", teacher_name=t.display_name,
        teacher_username=t.username, teacher_email="tamsin@school.example",
        other_teacher_name="Ulrich Otherhall", parent=LINKED_PARENT,
        far_student_name="Rhea Nobodysees", far_teacher_name="Vera Faraway",
        join_code=sections.section(x).join_code, section_name="Period 1")
    world.auth = {caller.name: world.token(caller) for caller in CALLERS}
    return world


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[World]:
    settings = make_settings(str(request.param), str(tmp_path_factory.mktemp("matrix")))
    svc = Services.open(settings)
    real_hash = passwords.hash_password
    cheap = passwords.ScryptCost(log2_n=4)
    patch = pytest.MonkeyPatch()
    patch.setattr(passwords, "hash_password", lambda password, cost=cheap: real_hash(password,
                                                                                     cost))
    try:
        built = _build_world(svc)
        yield built
        built.http.__exit__(None, None, None)
    finally:
        patch.undo()
        svc.close()
        if settings.backend == "postgres":
            drop_schemas(settings.schema, settings.keystore_schema)


# -- one valid request per endpoint -------------------------------------------------------------
@dataclass(frozen=True)
class Raw:
    """A body sent as is (an upload), not as JSON."""

    content: bytes
    content_type: str


Request = tuple[str, Any]  # (url, JSON body or None)
Build = Callable[[World, Caller], Request]


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid4().hex[:10]}"


def _reset_token(w: World) -> str:
    """A fresh reset token of a fresh teacher (the mailer is the in-memory outbox)."""
    address = _unique("reset") + "@school.example"
    w.svc.accounts.sign_up_teacher("Resetting", address, PASSWORD)
    w.svc.password_resets.request(address)
    outbox: Any = w.svc.password_resets.mailer
    return str(outbox.sent[-1][1])


def _signed_head(w: World) -> int:
    """A tree head over everything stored now; its size."""
    return w.svc.merkle_log.sign_head().tree_size


def _rights_request(w: World, refused: bool = False) -> str:
    """A fresh request about S (a refused rectification, for a statement), as a URL prefix."""
    svc, student = w.svc, w.ids["S"]
    if refused:
        request = svc.rights.file(student, "rectify", "parent", "matrix", "display_name",
                                  "Sunny Learnwright")
        svc.rights.refuse(student, request, "the roster is right", "matrix")
    else:
        request = svc.rights.file(student, "access", "operator", "matrix")
    return f"/students/{student}/rights-requests/{request}"


def _set_aside(w: World) -> int:
    """An event of the log set aside by the directory, as a runner records one it cannot
    apply; its position."""
    runner = w.svc.directory
    position = w.svc.ledger.recorder.max_notification_id() or 0
    (row,) = w.svc.ledger.log_reader.rows(position - 1, 1)
    with runner.db.transaction() as cur:
        runner._set_aside(cur, live_generation(cur, runner.projection), row, ValueError())
    return position


BUILDERS: dict[tuple[str, str], Build] = {
    ("POST", "/operations/projections/{name}/retry"): lambda w, c: (
        "/operations/projections/student_directory/retry", {}),
    ("POST", "/operations/projections/{name}/skip"): lambda w, c: (
        "/operations/projections/student_directory/skip", {"position": _set_aside(w)}),
    ("GET", "/analytics/tables/{measure}"): lambda w, c: (
        "/analytics/tables/students?by=age_band&by=gender", None),
    ("GET", "/ledger/tree-heads/latest"): lambda w, c: (
        "/ledger/tree-heads/latest", None) if _signed_head(w) else ("", None),
    ("GET", "/ledger/proofs/consistency"): lambda w, c: (
        f"/ledger/proofs/consistency?first={_signed_head(w)}", None),
    ("GET", "/ledger/proofs/inclusion/{notification_id}"): lambda w, c: (
        f"/ledger/proofs/inclusion/{_signed_head(w)}", None),
    ("POST", "/sign-in"): lambda w, c: ("/sign-in", {
        "login": w.personal["teacher_username"], "password": PASSWORD}),
    ("POST", "/sign-in/section"): lambda w, c: ("/sign-in/section", {
        "join_code": w.personal["join_code"], "username": w.personal["student_username"],
        "secret": w.personal["student_secret"]}),
    ("POST", "/password-reset/request"): lambda w, c: ("/password-reset/request", {
        "email": _unique("nobody") + "@home.example"}),
    ("POST", "/password-reset"): lambda w, c: ("/password-reset", {
        "token": _reset_token(w), "password": PASSWORD}),
    ("POST", "/sign-up/student"): lambda w, c: ("/sign-up/student", {
        "display_name": "Newcomer", "age": "15", "email": _unique("s") + "@home.example",
        "password": PASSWORD}),
    ("POST", "/sign-up/teacher"): lambda w, c: ("/sign-up/teacher", {
        "display_name": "Newcomer", "email": _unique("t") + "@school.example",
        "password": PASSWORD}),
    ("PATCH", "/me"): lambda w, c: ("/me", {"gender": "prefer_not_to_say"}),
    # Re-authentication: the callers with a password (T) give it; the others have none yet.
    ("PUT", "/me/password"): lambda w, c: ("/me/password", {"password": PASSWORD,
                                                            "current_password": PASSWORD}),
    ("PUT", "/me/email"): lambda w, c: ("/me/email", {
        "email": _unique("me") + "@home.example", "current_password": PASSWORD}),
    ("PUT", "/me/providers/{provider}"): lambda w, c: ("/me/providers/google", {
        "provider_subject": _unique("g")}),
    ("DELETE", "/me/providers/{provider}"): lambda w, c: ("/me/providers/google", None),
    ("PUT", "/me/partners/{partner}"): lambda w, c: ("/me/partners/code-club",
                                                     {"opted_in": True}),
    ("PUT", "/me/parent-email"): lambda w, c: ("/me/parent-email", {
        "parent_email": LINKED_PARENT if c.person == "S" else "another@home.example"}),
    ("PUT", "/me/study-contact"): lambda w, c: ("/me/study-contact", {
        "contact": "study@home.example"}),
    ("POST", "/sections/join"): lambda w, c: ("/sections/join", {
        "join_code": w.svc.sections.section(w.fresh_section()).join_code}),
    ("DELETE", "/me/sections/{section_id}"): lambda w, c: (
        f"/me/sections/{w.fresh_section(w.ids['S'])}", None),
    ("POST", "/me/attestations"): lambda w, c: ("/me/attestations", {
        "policy_version": "2022-10-03"}),
    ("PUT", "/me/school"): lambda w, c: ("/me/school", {
        "school_id": str(w.ids["B" if c.person == "U" else "A"])}),
    ("PUT", "/me/email-opt-in"): lambda w, c: ("/me/email-opt-in", {"opted_in": False}),
    ("POST", "/sections"): lambda w, c: ("/sections", {
        "name": "Period 3", "course": "csd", "grade": "7", "login_type": "email"}),
    ("GET", "/sections/{section_id}"): lambda w, c: (f"/sections/{w.ids['X']}", None),
    ("PATCH", "/sections/{section_id}"): lambda w, c: (f"/sections/{w.ids['X']}", {
        "name": "Period 1"}),
    ("GET", "/sections/{section_id}/students"): lambda w, c: (
        f"/sections/{w.ids['X']}/students", None),
    ("POST", "/sections/{section_id}/students"): lambda w, c: (
        f"/sections/{w.ids['X']}/students", {"display_name": "New Kid", "age": "10"}),
    # Enrolling by id a student already T's (S, in X) into another of T's sections.
    ("PUT", "/sections/{section_id}/students/{student_id}"): lambda w, c: (
        f"/sections/{w.fresh_section()}/students/{w.ids['S']}", None),
    ("DELETE", "/sections/{section_id}/students/{student_id}"): lambda w, c: (
        w.removal_of(w.fresh_student(enrolled=True)), None),
    ("POST", "/sections/{section_id}/students/{student_id}/secret"): lambda w, c: (
        f"/sections/{w.ids['X']}/students/{w.fresh_student(enrolled=True)}/secret", None),
    ("GET", "/sections/{section_id}/secrets-under-attack"): lambda w, c: (
        f"/sections/{w.ids['X']}/secrets-under-attack", None),
    ("PUT", "/sections/{section_id}/race-estimate"): lambda w, c: (
        f"/sections/{w.fresh_section()}/race-estimate", {"distribution": {"asian": 50}}),
    ("GET", "/students/{person_id}"): lambda w, c: (f"/students/{w.ids['S']}", None),
    ("GET", "/teachers/{person_id}"): lambda w, c: (f"/teachers/{w.ids['T']}", None),
    ("POST", "/students"): lambda w, c: ("/students", {"display_name": "Reg", "age": "12",
                                                       "section_id": str(w.ids["X"])}),
    ("POST", "/teachers"): lambda w, c: ("/teachers", {"display_name": "Reg"}),
    ("PATCH", "/people/{person_id}"): lambda w, c: (f"/people/{w.fresh_student(enrolled=True)}", {
        "display_name": "Renamed"}),
    ("DELETE", "/people/{person_id}"): lambda w, c: (
        f"/people/{w.fresh_student(enrolled=True, linked=True)}"
        + ("?reason=school_request" if c.role == "operator" else ""), None),
    ("DELETE", "/me"): lambda w, c: (
        "/me?confirmation=" + (w.svc.lifecycle.cascade(w.ids[c.person]).confirmation
                               if c.role == "teacher" and c.person else ""), None),
    ("POST", "/recovery"): lambda w, c: (w.soft_deleted("T") and "/recovery", {
        "login": w.personal["teacher_username"], "password": PASSWORD}),
    ("POST", "/people/{person_id}/recovery"): lambda w, c: (
        f"/people/{w.soft_deleted('S')}/recovery", None),
    ("GET", "/people/{person_id}/holds"): lambda w, c: (f"/people/{w.ids['S']}/holds", None),
    ("GET", "/students/{person_id}/access-records"): lambda w, c: (
        f"/students/{w.ids['S']}/access-records", None),
    ("GET", "/students/{person_id}/audit-trail"): lambda w, c: (
        f"/students/{w.ids['S']}/audit-trail", None),
    ("POST", "/students/{person_id}/disclosures"): lambda w, c: (
        f"/students/{w.ids['S']}/disclosures", {
            "recipient": "Dale Middle School", "disclosed_on": "2026-09-01",
            "legal_basis": "99.31(a)(2)", "legitimate_interest": "the student is enrolling",
            "disclosed": ["progress"]}),
    ("GET", "/audit/actors/{actor_id}"): lambda w, c: (f"/audit/actors/{uuid4()}", None),
    ("GET", "/audit/disclosures"): lambda w, c: (
        "/audit/disclosures?party=Dale%20Middle%20School", None),
    ("POST", "/support-sessions"): lambda w, c: ("/support-sessions", {
        "person_id": str(w.ids["S"]), "purpose": "technical_issue"}),
    ("POST", "/people/{person_id}/holds"): lambda w, c: (f"/people/{w.ids['S']}/holds", {
        "reason": "inspection request under 99.10(e)"}),
    ("POST", "/people/{person_id}/holds/{hold_id}/lift"): lambda w, c: (
        f"/people/{w.ids['S']}/holds/"
        f"{w.svc.holds.place(w.ids['S'], 'inspection', 'operator')}/lift", {
            "reason": "inspection closed"}),
    ("GET", "/erasure-receipts/{subject_id}"): lambda w, c: (
        f"/erasure-receipts/{w.erased_student()}", None),
    ("GET", "/sections/{section_id}/students/{student_id}/removal"): lambda w, c: (
        f"/sections/{w.ids['X']}/students/{w.ids['S']}/removal", None),
    ("POST", "/schools"): lambda w, c: ("/schools", {
        "name": "New School", "district": "North", "school_type": "charter"}),
    ("GET", "/schools/{school_id}"): lambda w, c: (f"/schools/{w.ids['A']}", None),
    ("GET", "/schools/{school_id}/roster"): lambda w, c: (f"/schools/{w.ids['A']}/roster",
                                                          None),
    ("POST", "/me/attempts"): lambda w, c: ("/me/attempts", {
        "level": "csf/unit-1/level-1", "result": "solved", "code": "move()"}),
    ("GET", "/sections/{section_id}/progress"): lambda w, c: (
        f"/sections/{w.ids['X']}/progress", None),
    ("GET", "/students/{person_id}/progress"): lambda w, c: (
        f"/students/{w.ids['S']}/progress", None),
    ("GET", "/schools/{school_id}/progress"): lambda w, c: (f"/schools/{w.ids['A']}/progress",
                                                            None),
    ("POST", "/me/projects"): lambda w, c: ("/me/projects", {"kind": "story", "name": "Tale"}),
    ("GET", "/me/projects/{project_id}"): lambda w, c: (f"/me/projects/{w.ids['P']}", None),
    ("PATCH", "/me/projects/{project_id}"): lambda w, c: (f"/me/projects/{w.ids['P']}", {
        "name": "Sunny's app"}),
    ("PUT", "/me/projects/{project_id}/source"): lambda w, c: (
        f"/me/projects/{w.ids['P']}/source", {"source": "onClick()"}),
    ("DELETE", "/me/projects/{project_id}"): lambda w, c: (
        f"/me/projects/{w.fresh_project()}", None),
    ("POST", "/me/projects/{project_id}/media"): lambda w, c: (
        f"/me/projects/{w.fresh_project()}/media", Raw(PNG, "image/png")),
    ("GET", "/me/media/{media_id}"): lambda w, c: (f"/me/media/{w.ids['M']}", None),
    ("PUT", "/me/projects/{project_id}/gallery"): lambda w, c: (
        f"/me/projects/{w.ids['P']}/gallery", None),
    ("DELETE", "/me/projects/{project_id}/gallery"): lambda w, c: (
        f"/me/projects/{w.fresh_project(shared=True)}/gallery", None),
    ("POST", "/me/projects/{project_id}/social-posts"): lambda w, c: (
        f"/me/projects/{w.ids['P']}/social-posts", {"network": "twitter"}),
    ("POST", "/projects/{project_id}/remixes"): lambda w, c: (
        f"/projects/{w.ids['P']}/remixes", {}),
    ("POST", "/projects/{project_id}/erasure"): lambda w, c: (
        f"/projects/{w.fresh_project_of_S_without_holds()}/erasure"
        + ("?reason=support_request" if c.role == "operator" else ""), None),
    ("GET", "/students/{person_id}/projects"): lambda w, c: (
        f"/students/{w.ids['S']}/projects", None),
    ("POST", "/me/answers"): lambda w, c: ("/me/answers", {
        "prompt": "csf/unit-1/reflection", "text": "Loops repeat things."}),
    ("POST", "/me/surveys"): lambda w, c: ("/me/surveys", {
        "survey": "csf/unit-1/survey", "answers": {"enjoyed": "yes"}}),
    ("POST", "/students/{person_id}/feedback"): lambda w, c: (
        f"/students/{w.ids['S']}/feedback", {"level": "csf/unit-1/level-1",
                                             "comment": "Nice work."}),
    ("GET", "/students/{person_id}/feedback"): lambda w, c: (
        f"/students/{w.ids['S']}/feedback", None),
    ("GET", "/students/{person_id}/answers"): lambda w, c: (
        f"/students/{w.ids['S']}/answers", None),
    ("GET", "/sections/{section_id}/surveys"): lambda w, c: (
        f"/sections/{w.ids['X']}/surveys?survey=csf/unit-1/survey", None),
    ("POST", "/students/{person_id}/rights-requests"): lambda w, c: (
        f"/students/{w.ids['S']}/rights-requests", {"kind": "access"}),
    ("GET", "/students/{person_id}/rights-requests"): lambda w, c: (
        f"/students/{w.ids['S']}/rights-requests", None),
    ("POST", "/students/{person_id}/rights-requests/{request_id}/withdrawal"): lambda w, c: (
        f"{_rights_request(w)}/withdrawal", None),
    ("POST", "/students/{person_id}/rights-requests/{request_id}/statements"): lambda w, c: (
        f"{_rights_request(w, refused=True)}/statements", {"text": "The roster is wrong."}),
    ("POST", "/students/{person_id}/rights-requests/{request_id}/extension"): lambda w, c: (
        f"{_rights_request(w)}/extension", {
            "due_at": (datetime.now(UTC) + timedelta(days=40)).isoformat(),
            "reason": "the archive is being moved"}),
    ("POST", "/students/{person_id}/rights-requests/{request_id}/fulfilment"): lambda w, c: (
        f"{_rights_request(w)}/fulfilment", None),
    ("POST", "/students/{person_id}/rights-requests/{request_id}/refusal"): lambda w, c: (
        f"{_rights_request(w)}/refusal", {"reason": "not ours to answer"}),
    ("POST", "/students/{person_id}/restriction/lift"): lambda w, c: (
        f"/students/{w.ids['S']}/restriction/lift", {"reason": "resolved"}),
    ("GET", "/students/{person_id}/export"): lambda w, c: (
        f"/students/{w.ids['S']}/export", None),
    ("GET", "/students/{person_id}/export/{table}.csv"): lambda w, c: (
        f"/students/{w.ids['S']}/export/profile.csv", None),
}


def _restore(world: World, method: str, path: str) -> None:
    """Undo what a call changed that the world's relations rest on."""
    if (method, path) == ("DELETE", "/me/parent-email"):
        world.svc.accounts.link_parent_email(world.ids["S"], LINKED_PARENT)
    if (method, path) in {("DELETE", "/me"), ("POST", "/recovery"),
                          ("POST", "/people/{person_id}/recovery")}:
        world.recover_everyone()
    if (method, path) == ("POST", "/people/{person_id}/holds"):
        for hold in world.svc.holds.of(world.ids["S"]):
            world.svc.holds.lift(world.ids["S"], hold.id, "placed by a test", "operator")


_PROBLEM_TYPES = {401: {"unauthenticated"}, 403: {"forbidden", "purpose-required"},
                  404: {"not-found"}}


def test_every_route_is_in_the_rule_table(world: World) -> None:
    spec = world.http.get("/openapi.json").json()
    routes = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    assert routes == set(RULES), "a new route needs a rule (and a request in BUILDERS)"


def test_every_endpoint_by_every_caller(world: World) -> None:
    failures: list[tuple[str, str, str, int, int]] = []
    leaks: list[str] = []
    not_found: dict[tuple[str, str], set[bytes]] = {}  # ACC-5: one body per route
    for (method, path), rule in RULES.items():
        build = BUILDERS.get((method, path), lambda w, c, p=path: (p, None))
        built: Request | None = None
        for caller in CALLERS:
            want = expected(rule, caller)
            # A request refused for who sends it changes nothing: no fresh target needed.
            if built is None or want not in (401, 403):
                built = build(world, caller)
            url, body = built
            # sign-out revokes the token it is called with: give it one of its own; erasing
            # oneself destroys the caller: a fresh person of theirs stands in
            auth = (world.token(caller) if path == "/sign-out" else
                    world.fresh_self(caller) if path == "/me/erasure" and caller.person else
                    world.auth[caller.name])
            before = world.svc.ledger.recorder.max_notification_id()
            if isinstance(body, Raw):
                response = world.http.request(method, url, content=body.content, headers={
                    **auth, "Content-Type": body.content_type})
            else:
                response = world.http.request(method, url, json=body, headers=auth)
            try:
                if response.status_code != want:
                    failures.append((method, path, caller.name, response.status_code, want))
                    continue
                if want < 400:
                    continue
                problem = response.json()
                assert response.headers["content-type"] == "application/problem+json"
                assert problem["type"].removeprefix(P) in _PROBLEM_TYPES[want], (path, problem)
                assert world.svc.ledger.recorder.max_notification_id() == before, (path, caller)
                if want == 404:
                    not_found.setdefault((method, path), set()).add(response.content)
                leaks += [f"{label} in {method} {path} as {caller.name}"
                          for label, value in world.personal.items()
                          if value and value.lower() in response.text.lower()]
            finally:
                _restore(world, method, path)
    assert failures == []
    assert leaks == []
    assert {route: len(bodies) for route, bodies in not_found.items() if len(bodies) > 1} == {}


def test_the_rule_table_is_not_trivial() -> None:
    """Each kind of answer occurs, and no caller is allowed or refused everywhere."""
    outcomes = {expected(rule, caller) for rule in RULES.values() for caller in CALLERS}
    assert {200, 201, 204, 401, 403, 404} <= outcomes
    for caller in CALLERS:
        statuses = {expected(rule, caller) for rule in RULES.values()}
        assert len(statuses) > 1, caller.name


# -- an id is not a capability ------------------------------------------------------------------
# Path parameters that name a record, and the record of the same kind in the third school
# (R in V's section Y at school C), which no caller of the matrix stands in a relation to.
FOREIGN: dict[str, Callable[[World, str], UUID]] = {
    "person_id": lambda w, path: w.ids["V" if path.startswith("/teachers/") else "R"],
    "student_id": lambda w, path: w.ids["R"],
    "section_id": lambda w, path: w.ids["Y"],
    "project_id": lambda w, path: w.ids["RP"],
    "media_id": lambda w, path: w.ids["RM"],
    "school_id": lambda w, path: w.ids["C"],
    "request_id": lambda w, path: w.ids["RQ"],
}
# Parameters that are not a record's id: a fixed vocabulary, or a position in the public log.
NOT_A_RECORD = frozenset({"provider", "partner", "table", "measure", "notification_id", "name"})
# Roles that stand in a relation to everyone: the privacy officer, support (with a purpose
# where reading), auditors (the trail only).
EVERYONES = frozenset({"operator", "support", "auditor"})
# Routes that name a record by id and need no relation, and why.
OPEN_BY_ID = {
    ("GET", "/schools/{school_id}"): "a school's name, district and type: no personal data",
}
_PARAM = re.compile(r"{(\w+)}")


def _id_params(path: str) -> list[str]:
    return [name for name in _PARAM.findall(path) if name not in NOT_A_RECORD]


def test_every_route_naming_a_record_needs_a_relation() -> None:
    """A route that names a record by id decides whether the caller stands in a relation to
    it, or only roles that stand in one to everyone may call it: a new route is held to it."""
    loose = [(method, path) for (method, path), rule in RULES.items()
             if _id_params(path) and rule.relation is None and (method, path) not in OPEN_BY_ID
             and (rule.roles is None or not rule.roles <= EVERYONES)]
    assert loose == []
    assert set(_PARAM.findall(" ".join(path for _, path in RULES))) <= \
        set(FOREIGN) | NOT_A_RECORD | {"hold_id", "subject_id", "actor_id"}


def _with_id(path: str, url: str, param: str, value: UUID) -> str:
    """`url` (built for `path`) with the value of `param` replaced."""
    pattern = re.escape(path).replace(r"\{", "{").replace(r"\}", "}")
    pattern = _PARAM.sub(lambda m: f"(?P<{m.group(1)}>[^/?]+)", pattern)
    found = re.match(pattern + r"(?P<_query>\?.*)?$", url)
    assert found is not None, (path, url)
    start, end = found.span(param)
    return url[:start] + str(value) + url[end:]


def _read_models_digest(world: World) -> str:
    """Every row of every read-model table but the caller's own bookkeeping (tokens, sign-in
    throttles), hashed: 'nothing written' beyond the log's length."""
    db = world.svc.read_models
    digest = hashlib.sha256()
    with db.transaction(write=False) as cur:
        if world.svc.settings.backend == "postgres":
            cur.execute("SELECT table_name FROM information_schema.tables"
                        " WHERE table_schema = current_schema() ORDER BY table_name")
        else:
            cur.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        tables = [row[0] for row in cur.fetchall()]
        for table in tables:
            if table.startswith(("api_tokens", "sign_in_")):
                continue
            cur.execute(f"SELECT * FROM {table}")
            rows = sorted(repr(tuple(bytes(v) if isinstance(v, memoryview) else v
                                     for v in row)) for row in cur.fetchall())
            digest.update(table.encode() + b"\0" + "\n".join(rows).encode())
    return digest.hexdigest()


def test_no_caller_acts_on_what_they_have_no_relation_to(world: World) -> None:
    """For every route that names a record, and every caller the route lets act on the
    world's own records: the same request naming the third school's record of that kind
    answers exactly as a record that does not exist, and writes nothing, neither to the log
    nor to any read model. Generated from the rule table: a new route is in it."""
    failures: list[tuple[str, str, str, str, int]] = []
    tried = 0
    for (method, path), rule in RULES.items():
        params = [p for p in _id_params(path) if p in FOREIGN]
        if rule.relation is None or not params:
            continue
        build = BUILDERS.get((method, path), lambda w, c, p=path: (p, None))
        for caller in CALLERS:
            if caller.role in EVERYONES or expected(rule, caller) != rule.ok:
                continue
            for param in params:
                url, body = build(world, caller)
                foreign = _with_id(path, url, param, FOREIGN[param](world, path))
                made_up = _with_id(path, url, param, uuid4())
                headers = world.auth[caller.name]
                before = (world.svc.ledger.recorder.max_notification_id(),
                          _read_models_digest(world))
                sent = (dict(content=body.content, headers={
                    **headers, "Content-Type": body.content_type}) if isinstance(body, Raw)
                        else dict(json=body, headers=headers))
                response = world.http.request(method, foreign, **sent)  # type: ignore[arg-type]
                after = (world.svc.ledger.recorder.max_notification_id(),
                         _read_models_digest(world))
                absent = world.http.request(method, made_up, **sent)  # type: ignore[arg-type]
                tried += 1
                if response.status_code != 404 or response.content != absent.content:
                    failures.append((method, path, caller.name, param, response.status_code))
                elif after != before:
                    failures.append((method, path, caller.name, param, -1))  # wrote something
                _restore(world, method, path)
    assert failures == []
    assert tried > 50  # the table reaches the routes it should
