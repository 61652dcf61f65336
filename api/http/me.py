"""The person signed in, acting on their own record: `/me` and below.

Every route here takes the session's person (`signed_in`), never an id from the request, so no
one reaches another's record through these. The rules (AGE-2 race, AGE-5 consents, AGE-6 study
contact, MIN-1 email as a hash) are the ledger's: a refused change is a 422 problem naming the
field and the rule, and nothing of it is kept. Routes that only a student or only a teacher has
take `Permission.ME_STUDENT` or `ME_TEACHER`; the other kind gets 403.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from api.http.auth import Session, signed_in
from api.http.deps import ClientAddress, Svc, path_id
from api.http.models import (
    Attestation,
    Consent,
    EmailChange,
    Joined,
    JoinSection,
    OptIn,
    ParentEmail,
    PasswordChange,
    ProfileChange,
    ProviderLink,
    RecordOut,
    SchoolChoice,
    SectionOut,
    StudyContact,
)
from api.http.problems import responses
from api.services import Services
from api.tokens import Permission, Role
from ledger.accounts import ProfileChange as Profile
from ledger.people import Person

log = logging.getLogger("api.http")
router = APIRouter(tags=["me"])

Reader = Annotated[Session, Depends(signed_in(Permission.ME_READ))]
Writer = Annotated[Session, Depends(signed_in(Permission.ME_WRITE))]
StudentSelf = Annotated[Session, Depends(signed_in(Permission.ME_STUDENT))]
TeacherSelf = Annotated[Session, Depends(signed_in(Permission.ME_TEACHER))]

_READ = responses(401, 403, 410, 503)
_WRITE = responses(401, 403, 409, 410, 422, 503)  # 409: also RGT-3's restriction


def _record(svc: Services, me: Session) -> RecordOut:
    person: Person = svc.ledger.live(me.person_id)
    return RecordOut.of(person)


def _read_own(svc: Services, me: Session, request: Request, resource: str,
              fields: list[str]) -> None:
    """AUD-5: nothing for the person themself; a support session acting as them is recorded,
    with both identities, before the data leaves."""
    svc.record_access(me.principal, me.person_id, resource, fields, None,
                      request.state.request_id)


def _done(what: str, me: Session) -> Response:
    log.info("%s id=%s principal=%s", what, me.person_id, me.principal.id)
    return Response(status_code=204)


@router.get("/me", response_model=RecordOut, response_model_exclude_unset=True,
            responses=_READ)
def my_record(svc: Svc, me: Reader, request: Request) -> RecordOut:
    """Every field of one's own record, except a student's email: only whether one is on file
    (MIN-1: only its keyed hash is kept, so there is nothing to show)."""
    record = _record(svc, me)
    _read_own(svc, me, request, "/me", sorted(record.model_dump(exclude_unset=True)))
    return record


@router.patch("/me", response_model=RecordOut, response_model_exclude_unset=True,
              responses=_WRITE)
def change_profile(body: ProfileChange, svc: Svc, me: Writer) -> RecordOut:
    """Display name, gender, race, age: only the fields sent, all saved together or, if one
    is refused (422), none."""
    sent = body.model_fields_set
    fields = {name: getattr(body, name) for name in sent}
    svc.accounts.change_profile(me.person_id, Profile(**fields))
    svc.settle()
    log.info("profile changed id=%s fields=%s principal=%s", me.person_id,
             ",".join(sorted(sent)), me.principal.id)
    return _record(svc, me)


_REAUTHENTICATED = responses(401, 403, 409, 410, 422, 429, 503)


@router.put("/me/password", status_code=204, responses=_REAUTHENTICATED)
def change_password(body: PasswordChange, svc: Svc, me: Writer,
                    client: ClientAddress) -> Response:
    """With the current password (`current_password`), unless the account has none yet (a
    student whose teacher made the account, adding a personal login): a stolen session alone
    does not take the account. A wrong one is 403 reauthentication-failed, counted as a failed
    sign-in to the account (429 too-many-attempts after a few), and changes nothing."""
    svc.sign_in.confirm_password(me.person_id, body.current_password, client)
    svc.accounts.set_password(me.person_id, body.password)
    return _done("password changed", me)


@router.put("/me/email", status_code=204, responses=_REAUTHENTICATED)
def change_email(body: EmailChange, svc: Svc, me: Writer, client: ClientAddress) -> Response:
    """A student's is kept only as its keyed hash (MIN-1); a teacher's sealed (MIN-2). The
    email resets the password, so changing it takes the current password too, if there is one
    (as `PUT /me/password`)."""
    svc.sign_in.confirm_password(me.person_id, body.current_password, client)
    svc.accounts.set_email(me.person_id, body.email)
    return _done("email changed", me)


@router.put("/me/providers/{provider}", status_code=204, responses=_WRITE)
def connect_provider(provider: str, body: ProviderLink, svc: Svc, me: Writer) -> Response:
    """Third-party sign-in connected (a consent, AGE-5)."""
    svc.accounts.connect_provider(me.person_id, provider, body.provider_subject)
    return _done("provider connected", me)


@router.delete("/me/providers/{provider}", status_code=204, responses=_WRITE)
def disconnect_provider(provider: str, svc: Svc, me: Writer) -> Response:
    svc.accounts.disconnect_provider(me.person_id, provider)
    return _done("provider disconnected", me)


@router.put("/me/partners/{partner}", status_code=204, responses=_WRITE)
def share_with_partner(partner: str, body: OptIn, svc: Svc, me: Writer) -> Response:
    """Sharing with a partner, opted in or out, per partner (AGE-5). Not processing the
    service needs: while the person is restricted (RGT-3), opting in is refused (409)."""
    if body.opted_in:
        svc.rights.refuse_if_restricted(me.person_id)
    svc.accounts.share_with_partner(me.person_id, partner, body.opted_in)
    return _done("partner sharing changed", me)


@router.get("/me/consents", response_model=list[Consent], responses=_READ)
def my_consents(svc: Svc, me: Reader, request: Request) -> list[Consent]:
    """AGE-5: every consent change, oldest first, with its state before and after."""
    _read_own(svc, me, request, "/me/consents", ["consents"])
    return [Consent(consent=c.consent, before=c.before, after=c.after, at=c.timestamp)
            for c in svc.accounts.consents(me.person_id)]


@router.get("/me/sections", response_model=list[SectionOut],
            response_model_exclude_none=True, responses=_READ)
def my_sections(svc: Svc, me: Reader, request: Request) -> list[SectionOut]:
    """A teacher's own sections (with join codes), or the sections a student is in."""
    _read_own(svc, me, request, "/me/sections", ["sections"])
    roster = svc.roster_reader
    if me.principal.role == Role.TEACHER:
        return [SectionOut.of(view, teacher=True)
                for view in roster.sections_of_teacher(me.person_id)]
    views = (roster.section(section_id) for section_id in roster.sections_of_student(
        me.person_id))
    return [SectionOut.of(view, teacher=False) for view in views if view is not None]


# -- a student's own -----------------------------------------------------------------------
@router.put("/me/parent-email", status_code=204, responses=_WRITE)
def link_parent(body: ParentEmail, svc: Svc, me: StudentSelf) -> Response:
    """Sealed under the student's key (MIN-2); linking is a consent (AGE-5)."""
    svc.accounts.link_parent_email(me.person_id, body.parent_email)
    return _done("parent email linked", me)


@router.delete("/me/parent-email", status_code=204, responses=_WRITE)
def unlink_parent(svc: Svc, me: StudentSelf) -> Response:
    svc.accounts.link_parent_email(me.person_id, None)
    return _done("parent email unlinked", me)


@router.put("/me/study-contact", status_code=204, responses=_WRITE)
def give_study_contact(body: StudyContact, svc: Svc, me: StudentSelf) -> Response:
    """AGE-6: offered only to students 18 or older; from anyone younger, 422 and nothing kept.
    Being contacted for studies is not processing the service needs: refused (409) while the
    student is restricted (RGT-3); withdrawing is always allowed."""
    svc.rights.refuse_if_restricted(me.person_id)
    svc.accounts.give_study_contact(me.person_id, body.contact)
    return _done("study contact given", me)


@router.delete("/me/study-contact", status_code=204, responses=_WRITE)
def withdraw_study_contact(svc: Svc, me: StudentSelf) -> Response:
    svc.accounts.give_study_contact(me.person_id, None)
    return _done("study contact withdrawn", me)


@router.post("/sections/join", response_model=Joined,
             responses=responses(401, 403, 404, 429, 503))
def join_section(body: JoinSection, svc: Svc, me: StudentSelf, client: ClientAddress) -> Joined:
    """With the section's join code; an unknown code is 404, like any section not found, and
    counts as a failed attempt: 429 too-many-attempts after a few (per student, per client
    address, overall), so codes are not found by trying them."""
    section_id = svc.sections.join(me.person_id, body.join_code, client)
    svc.settle()
    log.info("joined section=%s id=%s principal=%s", section_id, me.person_id, me.principal.id)
    return Joined(section_id=section_id)


@router.delete("/me/sections/{section_id}", status_code=204,
               responses=responses(401, 403, 404, 503))
def leave_section(section_id: str, svc: Svc, me: StudentSelf) -> Response:
    svc.sections.leave(me.person_id, path_id(section_id, "section"))
    svc.settle()
    return _done("left section", me)


# -- a teacher's own -----------------------------------------------------------------------
@router.post("/me/attestations", status_code=201, response_model=Consent,
             responses=_WRITE)
def attest_parental_consent(body: Attestation, svc: Svc, me: TeacherSelf) -> Consent:
    """AGE-1: the teacher attests that the school holds parental consent, under the policy
    version in force; needed before creating accounts for students under 13."""
    svc.accounts.attest_parental_consent(me.person_id, body.policy_version)
    log.info("attested parental consent id=%s principal=%s", me.person_id, me.principal.id)
    name = f"parental_consent:{body.policy_version}"
    latest = [c for c in svc.accounts.consents(me.person_id) if c.consent == name][-1]
    return Consent(consent=latest.consent, before=latest.before, after=latest.after,
                   at=latest.timestamp)


@router.put("/me/school", status_code=204, responses=_WRITE)
def choose_school(body: SchoolChoice, svc: Svc, me: TeacherSelf) -> Response:
    """MIN-4: a teacher gives a school (name, district, type: `POST /schools`), nothing finer."""
    svc.accounts.choose_school(me.person_id, body.school_id)
    svc.settle()
    return _done("school chosen", me)


@router.put("/me/email-opt-in", status_code=204, responses=_WRITE)
def opt_in_to_email(body: OptIn, svc: Svc, me: TeacherSelf) -> Response:
    """Non-transactional email, opted in or out (AGE-5). Opting in is refused (409) while the
    teacher is restricted (RGT-3): such mail is not a service message."""
    if body.opted_in:
        svc.rights.refuse_if_restricted(me.person_id)
    svc.accounts.opt_in_to_email(me.person_id, body.opted_in)
    return _done("email opt-in changed", me)
