"""Who is asking (a bearer token) and whether their role allows the route's permission.

A route declares its permission with `Depends(require(Permission.X))`; every route that touches
personal data has one, and a role gets only what `api.tokens.PERMISSIONS` grants it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.http.problems import FORBIDDEN, UNAUTHENTICATED, ProblemError
from api.tokens import Permission, Principal, TokenStore

bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer lgr_...`")


def _unauthenticated(error: str | None) -> ProblemError:
    challenge = f'Bearer error="{error}"' if error else "Bearer"
    detail = ("The bearer token is unknown, expired or revoked." if error
              else "A bearer token is required.")
    return ProblemError(401, UNAUTHENTICATED, "Unauthenticated", detail,
                        {"WWW-Authenticate": challenge})


def require(permission: Permission) -> Callable[..., Principal]:
    """A dependency that answers the caller's `Principal`, or 401, or 403."""

    def principal(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        if credentials is None:
            raise _unauthenticated(None)
        tokens: TokenStore = request.app.state.tokens
        found = tokens.authenticate(credentials.credentials)
        if found is None:
            raise _unauthenticated("invalid_token")
        request.state.principal_id = str(found.id)
        if not found.may(permission):
            raise ProblemError(403, FORBIDDEN, "Forbidden",
                               "This token's role does not allow this request.")
        return found

    return principal
