"""The deletion lifecycle over HTTP (DEL-1..8): thin, as every router; the rules live in
ledger/lifecycle.py and ledger/holds.py.

- A person deletes their own account (`DELETE /me`): a soft delete, recoverable for the grace
  window; a teacher first reads who goes with them (`GET /me/deletion`) and confirms it.
- They recover it with their credentials (`POST /recovery`), or support does for them.
- Erasure at once (`DELETE /people/{id}`, DEL-4) by staff, or by a parent, the school or the
  student's teacher through their relation to the student; the answer is the signed receipt.
- Legal holds (DEL-7) and receipts (DEL-8) for the privacy officer; the ledger's public key for
  anyone who wants to check a receipt.

Every deleted account's sessions end at once.
"""

from __future__ import annotations

import logging
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response

from api.access import STAFF_ERASURE_REASON
from api.http.auth import Session, require, signed_in
from api.http.deps import MAX_POSITION, ClientAddress, Svc, Tokens, path_id
from api.http.models import (
    DeletionOut,
    DeletionPreview,
    ErasureOut,
    ErasuresOut,
    HoldIn,
    HoldOut,
    PersonRef,
    PublicKeyOut,
    ReceiptPage,
    RecoveryOut,
    SignInBody,
)
from api.http.problems import VALIDATION, ProblemError, not_found, responses
from api.services import Services
from api.tokens import Permission, Principal, TokenStore
from ledger.application import ERASURE_REASONS, ErasedPerson
from ledger.people import Student

log = logging.getLogger("api.http")
router = APIRouter(tags=["deletion"])

Me = Annotated[Session, Depends(signed_in(Permission.ME_WRITE))]
Eraser = Annotated[Principal, Depends(require(Permission.PEOPLE_ERASE))]
Recoverer = Annotated[Principal, Depends(require(Permission.PEOPLE_RECOVER))]
HoldKeeper = Annotated[Principal, Depends(require(Permission.HOLDS_MANAGE))]
ReceiptReader = Annotated[Principal, Depends(require(Permission.RECEIPTS_READ))]


def requester(principal: Principal) -> str:
    """Who asked, for the events and the receipt: a role and an opaque id, never a name."""
    return f"{principal.role}:{principal.id}"


def _refs(svc: Services, ids: tuple[UUID, ...]) -> list[PersonRef]:
    entries = svc.directory_reader.entries_of(list(ids))
    return [PersonRef(id=i, display_name=entries[i].display_name) for i in ids if i in entries]


def _end_sessions(tokens: TokenStore, ids: list[UUID]) -> None:
    with tokens.db.transaction() as cur:
        tokens.forget_rows(cur, ids)


# -- one's own account ------------------------------------------------------------------------
@router.get("/me/deletion", response_model=DeletionPreview, responses=responses(401, 403, 503))
def deletion_preview(svc: Svc, me: Me) -> DeletionPreview:
    """DEL-5: what `DELETE /me` would do. A teacher's students who depend on them alone are
    deleted with them; the others only lose the teacher's sections."""
    person = svc.ledger.live(me.person_id)
    days = svc.lifecycle.schedule.grace.days
    if isinstance(person, Student):
        return DeletionPreview(deletes=[], unenrols=[], confirmation=None,
                               recoverable_for_days=days)
    cascade = svc.lifecycle.cascade(me.person_id)
    return DeletionPreview(deletes=_refs(svc, cascade.deletes),
                           unenrols=_refs(svc, cascade.unenrols),
                           confirmation=cascade.confirmation if cascade.deletes else None,
                           recoverable_for_days=days)


@router.delete("/me", response_model=DeletionOut, responses=responses(401, 403, 409, 422, 503))
def delete_me(svc: Svc, me: Me, tokens: Tokens,
              confirmation: Annotated[str | None, Query(
                  max_length=64, description="a teacher's, from GET /me/deletion")] = None,
              ) -> DeletionOut:
    """DEL-1: delete your account. It can no longer sign in and leaves every teacher's and
    administrator's view at once; recover it within the window with `POST /recovery`."""
    deleted = svc.lifecycle.request_deletion(me.person_id, requester(me.principal),
                                             "user_request", confirmation)
    _end_sessions(tokens, deleted)
    svc.settle()
    log.info("deletion requested id=%s with=%d principal=%s", me.person_id, len(deleted) - 1,
             me.principal.id)
    return DeletionOut(deleted=deleted,
                       recoverable_until=svc.lifecycle.schedule.grace.ends(svc.lifecycle.clock()))


@router.post("/me/erasure", response_model=ErasuresOut,
             responses=responses(401, 403, 409, 422, 503))
def erase_me_now(svc: Svc, me: Me, tokens: Tokens,
                 confirmation: Annotated[str | None, Query(
                     max_length=64, description="a teacher's, from GET /me/deletion")] = None,
                 ) -> ErasuresOut:
    """DEL-4: erase your account now, skipping the recovery window: your data key is
    destroyed and nothing can bring it back. A teacher's dependent students go too, once
    confirmed as for `DELETE /me`. 409 legal-hold while a hold is in place."""
    receipts = svc.lifecycle.erase_own_account_now(me.person_id, requester(me.principal),
                                                   confirmation)
    _end_sessions(tokens, [r.receipt.subject_id for r in receipts])
    svc.settle()
    log.info("erased at own request id=%s with=%d principal=%s", me.person_id,
             len(receipts) - 1, me.principal.id)
    return ErasuresOut(items=[ErasureOut.of(r) for r in receipts])


@router.post("/recovery", response_model=RecoveryOut, responses=responses(401, 409, 410, 422,
                                                                          429, 503))
def recover_own(body: SignInBody, svc: Svc, client: ClientAddress) -> RecoveryOut:
    """DEL-2: your deleted account back, exactly as it was, with your username or email and
    password; then sign in. 409 recovery-window-closed once the window is over."""
    person = svc.sign_in.account_to_recover(body.login, body.password, client)
    recovered = svc.lifecycle.recover(person.id, f"{person.kind}:{person.id}")
    svc.settle()
    log.info("recovered id=%s with=%d", person.id, len(recovered) - 1)
    return RecoveryOut(recovered=recovered)


# -- staff and the people around a student ----------------------------------------------------
@router.post("/people/{person_id}/recovery", response_model=RecoveryOut,
             responses=responses(401, 403, 404, 409, 410, 422, 503))
def recover(person_id: str, svc: Svc, who: Recoverer) -> RecoveryOut:
    """DEL-2, for an account whose owner cannot sign in (a teacher-managed student, say)."""
    recovered = svc.lifecycle.recover(path_id(person_id), requester(who))
    svc.settle()
    log.info("recovered id=%s with=%d principal=%s", person_id, len(recovered) - 1, who.id)
    return RecoveryOut(recovered=recovered)


@router.delete("/people/{person_id}", response_model=ErasureOut,
               responses=responses(401, 403, 404, 409, 422, 503))
def erase(person_id: str, svc: Svc, who: Eraser,
          reason: Annotated[str | None, Query(
              description="staff give who asked them, one of: " + ", ".join(ERASURE_REASONS)
                          + " (support: support_request if left out); anyone else's follows"
                            " from who they are")] = None,
          ) -> ErasureOut:
    """DEL-4: erase now, skipping the grace window: the data key is destroyed and every
    record of the person becomes unreadable. Answers the signed receipt (again, if already
    erased). 409 legal-hold while a hold is in place."""
    subject = path_id(person_id)
    why = _erasure_reason(svc, who, subject, reason)
    receipt = svc.lifecycle.erase_now(subject, requester(who), why)
    svc.settle()
    log.info("erased id=%s reason=%s principal=%s", subject, why, who.id)
    return ErasureOut.of(receipt)


def _erasure_reason(svc: Services, who: Principal, subject: UUID, asked: str | None) -> str:
    if who.role in STAFF_ERASURE_REASON:  # staff relay whoever asked them
        reason = asked or STAFF_ERASURE_REASON[who.role]
        if reason is None or reason not in ERASURE_REASONS:
            raise _invalid_reason("must be one of: " + ", ".join(ERASURE_REASONS))
        return reason
    if isinstance(svc.ledger.person(subject), ErasedPerson):
        raise not_found()  # whose it was is no longer anyone's to know
    relation_reason = svc.access.erasure_reason(who, subject)
    if relation_reason is None:
        raise not_found()
    if asked is not None and asked != relation_reason:
        raise _invalid_reason(f"yours is {relation_reason}: leave it out or give that one")
    return relation_reason


def _invalid_reason(rule: str) -> ProblemError:
    return ProblemError(422, VALIDATION, "Invalid request", f"reason {rule}",
                        errors=[{"field": "reason", "rule": rule}])


# -- legal holds (DEL-7) ----------------------------------------------------------------------
@router.get("/people/{person_id}/holds", response_model=list[HoldOut],
            responses=responses(401, 403, 404, 410, 422, 503))
def holds(person_id: str, svc: Svc, who: HoldKeeper) -> list[HoldOut]:
    return [HoldOut(id=h.id, reason=h.reason, placed_by=h.placed_by, placed_at=h.placed_at)
            for h in svc.holds.of(path_id(person_id))]


@router.post("/people/{person_id}/holds", status_code=201, response_model=HoldOut,
             responses=responses(401, 403, 404, 410, 422, 503))
def place_hold(person_id: str, body: HoldIn, svc: Svc, who: HoldKeeper) -> HoldOut:
    """Blocks the purge (and erasure at once) of this person until lifted."""
    subject = path_id(person_id)
    hold_id = svc.holds.place(subject, body.reason, requester(who))
    log.info("hold placed id=%s hold=%s principal=%s", subject, hold_id, who.id)
    (placed,) = [h for h in svc.holds.of(subject) if h.id == hold_id]
    return HoldOut(id=placed.id, reason=placed.reason, placed_by=placed.placed_by,
                   placed_at=placed.placed_at)


@router.post("/people/{person_id}/holds/{hold_id}/lift", status_code=204,
             responses=responses(401, 403, 404, 410, 422, 503))
def lift_hold(person_id: str, hold_id: UUID, body: HoldIn, svc: Svc, who: HoldKeeper
              ) -> Response:
    subject = path_id(person_id)
    svc.holds.lift(subject, hold_id, body.reason, requester(who))
    log.info("hold lifted id=%s hold=%s principal=%s", subject, hold_id, who.id)
    return Response(status_code=204)


# -- receipts (DEL-8) -------------------------------------------------------------------------
@router.get("/erasure-receipts", response_model=ReceiptPage,
            responses=responses(401, 403, 422, 503))
def receipts(svc: Svc, who: ReceiptReader, after: Annotated[int, Query(ge=0, le=MAX_POSITION)] = 0,
             limit: Annotated[int, Query(ge=1, le=500)] = 100) -> ReceiptPage:
    """Every erasure's signed receipt, in the order they were made."""
    svc.lifecycle_view.catch_up()
    page = svc.lifecycle_reader.erased(after, limit)
    items = [svc.ledger.receipt_of(subject) for _, subject in page]
    return ReceiptPage(items=[ErasureOut.of(r) for r in items if r is not None],
                       next_after=page[-1][0] if page else None)


@router.get("/erasure-receipts/{subject_id}", response_model=ErasureOut,
            responses=responses(401, 403, 404, 422, 503))
def receipt(subject_id: str, svc: Svc, who: ReceiptReader) -> ErasureOut:
    found = svc.ledger.receipt_of(path_id(subject_id))
    if found is None:
        raise not_found("receipt")
    return ErasureOut.of(found)


@router.get("/ledger/public-key", response_model=PublicKeyOut, responses=responses(503))
def public_key(svc: Svc) -> PublicKeyOut:
    """The key that checks the ledger's signatures: public, for anyone holding a receipt."""
    key = svc.ledger.signer.public_key
    return PublicKeyOut(key_id=key.key_id, public_key=key.to_text())

