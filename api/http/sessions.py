"""Signing up, in and out: the only routes that need no token (apart from `/healthz`).

A session is a bearer token like any other (api/tokens.py), issued for the person's role
(student or teacher), naming them (`subject_id`), for 12 hours. Signing in records the time and
a coarse region only (MIN-5): the region comes from a trusted proxy's `X-Region` header (say
"US-WA"), which the ledger validates. The client's address is read only to throttle failures
by (a keyed token of it, `api/http/deps.py`), never stored nor logged. Failures answer one
body whatever went wrong (401 sign-in-failed), and repeated ones 429 with Retry-After
(api/http/problems.py), per account, per client address and overall.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Request, Response

from api.http.auth import authenticated
from api.http.deps import ClientAddress, Svc, Tokens
from api.http.idempotency import IdempotencyKey, made, once
from api.http.models import (
    AccountOut,
    PasswordReset,
    ResetRequest,
    SectionSignInBody,
    SessionOut,
    SignInBody,
    StudentSignUp,
    TeacherSignUp,
)
from api.http.problems import responses
from api.services import Services
from api.tokens import Principal, TokenStore
from ledger.people import Person

log = logging.getLogger("api.http")
router = APIRouter(tags=["sessions"])

SESSION_TTL = timedelta(hours=12)
SESSION_LABEL = "session"

Region = Annotated[str | None, Header(
    alias="X-Region",
    description='set by the trusted proxy in front: a country or country-state code such as'
                ' "US-WA", derived from the address it saw (MIN-5); never the address')]
Caller = Annotated[Principal, Depends(authenticated)]


def _session(request: Request, tokens: TokenStore, person: Person) -> SessionOut:
    issued = tokens.issue(person.kind, SESSION_LABEL, SESSION_TTL, subject_id=person.id)
    request.state.principal_id = str(issued.principal_id)
    log.info("signed in %s id=%s principal=%s", person.kind, person.id, issued.principal_id)
    return SessionOut(token=issued.token, expires_at=issued.expires_at, person_id=person.id,
                      kind=person.kind)  # type: ignore[arg-type]


@router.post("/sign-in", response_model=SessionOut, responses=responses(401, 422, 429, 503))
def sign_in(body: SignInBody, svc: Svc, tokens: Tokens, request: Request,
            client: ClientAddress, region: Region = None) -> SessionOut:
    """By username or email address, and password (MIN-6)."""
    person = svc.sign_in.with_password(body.login, body.password, region, client)
    return _session(request, tokens, person)


@router.post("/sign-in/section", response_model=SessionOut,
             responses=responses(401, 422, 429, 503))
def sign_in_to_section(body: SectionSignInBody, svc: Svc, tokens: Tokens, request: Request,
                       client: ClientAddress, region: Region = None) -> SessionOut:
    """A young section's students: the section's join code, a username and the secret words
    or picture their teacher handed out (MIN-6)."""
    person = svc.sign_in.with_secret(body.join_code, body.username, body.secret, region,
                                     client)
    return _session(request, tokens, person)


@router.post("/sign-out", status_code=204, responses=responses(401, 503))
def sign_out(who: Caller, tokens: Tokens) -> Response:
    """Revokes the token that made this request (and no other)."""
    tokens.revoke(str(who.id))
    log.info("signed out principal=%s", who.id)
    return Response(status_code=204)


@router.post("/password-reset/request", status_code=202,
             responses=responses(422, 429, 503))
def request_password_reset(body: ResetRequest, svc: Svc) -> Response:
    """Mail a one-time reset token to the address if it belongs to an account that signs in
    with a password. The answer is 202 whether or not it does (MIN-1: the address is looked up
    by its keyed hash and never stored)."""
    svc.password_resets.request(body.email)
    return Response(status_code=202)


@router.post("/password-reset", status_code=204, responses=responses(400, 422, 503))
def reset_password(body: PasswordReset, svc: Svc, tokens: Tokens) -> Response:
    """Set a new password with the mailed token; the token is spent, and every session of the
    account ends (whoever had the old password is signed out)."""
    person_id = svc.password_resets.complete(body.token, body.password)
    ended = tokens.forget_subject(person_id)
    log.info("password reset id=%s sessions_ended=%d", person_id, ended)
    return Response(status_code=204)


@router.post("/sign-up/student", status_code=201, response_model=AccountOut,
             responses=responses(409, 410, 422, 503))
def sign_up_student(body: StudentSignUp, svc: Svc, response: Response,
                    idempotency_key: IdempotencyKey = None) -> AccountOut:
    """A personal student account. The email is kept only as a keyed hash (MIN-1) and is never
    shown again; under 13, a parent's email is required. Then `POST /sign-in`."""
    route = "/sign-up/student"
    person_id = once(svc, idempotency_key, None, route, route, body, lambda: (
        svc.accounts.sign_up_student(body.display_name, body.age, body.email, body.password,
                                     parent_email=body.parent_email, gender=body.gender)),
        made)
    return _signed_up(svc, response, person_id)


@router.post("/sign-up/teacher", status_code=201, response_model=AccountOut,
             responses=responses(409, 410, 422, 503))
def sign_up_teacher(body: TeacherSignUp, svc: Svc, response: Response,
                    idempotency_key: IdempotencyKey = None) -> AccountOut:
    """A teacher's account: the email is kept sealed (MIN-2), to write to the teacher."""
    route = "/sign-up/teacher"
    person_id = once(svc, idempotency_key, None, route, route, body, lambda: (
        svc.accounts.sign_up_teacher(body.display_name, body.email, body.password,
                                     school_id=body.school_id, email_opt_in=body.email_opt_in,
                                     gender=body.gender)),
        made)
    return _signed_up(svc, response, person_id)


def _signed_up(svc: Services, response: Response, person_id: UUID) -> AccountOut:
    person: Person = svc.ledger.live(person_id)
    svc.settle()
    log.info("signed up %s id=%s", person.kind, person.id)
    response.headers["Location"] = "/me"
    return AccountOut(id=person.id, kind=person.kind,  # type: ignore[arg-type]
                      username=person.username)
