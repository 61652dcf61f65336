"""What every router shares: the services, and ids in paths.

An id in a path that is malformed answers the same 404 as one that does not exist, or one the
caller may not see (ACC-5), so the route parameter is a string and `path_id` parses it.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request

from api.http.problems import not_found
from api.services import Services
from api.tokens import TokenStore


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


Svc = Annotated[Services, Depends(services)]


def token_store(request: Request) -> TokenStore:
    found: TokenStore = request.app.state.tokens
    return found


Tokens = Annotated[TokenStore, Depends(token_store)]


# The largest position (a notification id, a tree size, a page cursor) the stores' 64-bit
# integers hold: a larger one in a query is a 422, not an overflow in the database driver.
MAX_POSITION = 2**63 - 1


def path_id(text: str, what: str = "person") -> UUID:
    """The UUID in a path segment, or the 404 of a `what` that does not exist."""
    try:
        return UUID(text)
    except ValueError:
        raise not_found(what) from None
