"""What every router shares: the services, ids in paths, and the client's address.

An id in a path that is malformed answers the same 404 as one that does not exist, or one the
caller may not see (ACC-5), so the route parameter is a string and `path_id` parses it.

The client's address (`ClientAddress`) is what the throttles count failures by (a keyed token
of it; the address itself is never stored nor logged, MIN-5): the peer of the connection, or,
only when that peer is one of `LEDGER_TRUSTED_PROXIES`, the right-most entry of
`X-Forwarded-For` that is not one of them. Entries further left were written by whoever sent
the request, so anyone could put anything there; a header from an untrusted peer is ignored.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
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


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)


def client_address(request: Request) -> str:
    peer = request.client.host if request.client is not None else "unknown"
    svc: Services = request.app.state.services
    networks = _networks(svc.settings.trusted_proxies)
    if not _trusted(peer, networks):
        return peer
    forwarded = ",".join(request.headers.getlist("x-forwarded-for")).split(",")
    for entry in reversed(forwarded):
        candidate = entry.strip()
        if candidate and not _trusted(candidate, networks):
            return candidate
    return peer  # every hop is a proxy of ours: the nearest is all that is known


ClientAddress = Annotated[str, Depends(client_address)]
