"""Who is asking (a bearer token) and whether their role allows the route's permission.

A route declares its permission with `Depends(require(Permission.X))`; every route that touches
personal data has one, and a role gets only what `api.tokens.PERMISSIONS` grants it. Routes
about "my own record" take `Depends(signed_in(Permission.X))` instead, which also needs the
token to name a person (a session from `POST /sign-in`); a staff token names nobody and is
refused there. Which records a caller may see beyond their role is `api.access.Access`'s
question, asked by the routes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.http.problems import FORBIDDEN, PURPOSE_REQUIRED, UNAUTHENTICATED, ProblemError
from api.tokens import Permission, Principal, Role, TokenStore

bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer lgr_...`")

# ACC-4: why support staff open a record. A code from this fixed list, never free text (free
# text invites personal values into the audit trail).
SUPPORT_PURPOSES = ("account_recovery", "technical_issue", "legal_request", "parent_request",
                    "data_correction", "erasure_request")


def _unauthenticated(error: str | None) -> ProblemError:
    challenge = f'Bearer error="{error}"' if error else "Bearer"
    detail = ("The bearer token is unknown, expired or revoked." if error
              else "A bearer token is required.")
    return ProblemError(401, UNAUTHENTICATED, "Unauthenticated", detail,
                        {"WWW-Authenticate": challenge})


def _forbidden(detail: str = "This token's role does not allow this request.") -> ProblemError:
    return ProblemError(403, FORBIDDEN, "Forbidden", detail)


def _authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None
                  ) -> Principal:
    if credentials is None:
        raise _unauthenticated(None)
    tokens: TokenStore = request.app.state.tokens
    found = tokens.authenticate(credentials.credentials)
    if found is None:
        raise _unauthenticated("invalid_token")
    request.state.principal_id = str(found.id)
    return found


def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """Any live token, whatever its role: for `POST /sign-out`, which touches no record."""
    return _authenticate(request, credentials)


def require(permission: Permission) -> Callable[..., Principal]:
    """A dependency that answers the caller's `Principal`, or 401, or 403."""

    def principal(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        found = _authenticate(request, credentials)
        if not found.may(permission):
            raise _forbidden()
        return found

    return principal


@dataclass(frozen=True)
class Session:
    """A person signed in: the token's principal and the person it names."""

    principal: Principal
    person_id: UUID


def signed_in(permission: Permission) -> Callable[..., Session]:
    """Like `require`, and the token must name a person (a student's or teacher's session)."""
    allowed = require(permission)

    # A default rather than `Annotated[...]`: postponed annotations cannot name a local.
    def session(principal: Principal = Depends(allowed)) -> Session:  # noqa: B008
        if principal.subject_id is None:
            raise _forbidden("This request is for a person signed in; this token names nobody.")
        return Session(principal, principal.subject_id)

    return session


PurposeHeader = Annotated[str | None, Header(
    alias="X-Purpose",
    description="support staff only (ACC-4): why the record is opened, one of "
                + ", ".join(SUPPORT_PURPOSES))]


def stated_purpose(principal: Principal, purpose: str | None) -> str | None:
    """ACC-4: support staff open a record only with a purpose from the fixed list; 403 else.
    Other roles need none (and any they send is ignored)."""
    if principal.role != Role.SUPPORT:
        return None
    if purpose not in SUPPORT_PURPOSES:
        raise ProblemError(403, PURPOSE_REQUIRED, "Purpose required",
                           "Support staff open a record only with a stated purpose (ACC-4):"
                           " send X-Purpose, one of " + ", ".join(SUPPORT_PURPOSES) + ".")
    return purpose
