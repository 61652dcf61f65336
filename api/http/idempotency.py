"""The `Idempotency-Key` request header: a retried write is answered as the first was and
records nothing twice (ledger/idempotency.py holds the mechanism and docs/architecture.md
tells how it works).

A route that takes the header runs its command through `once`, which returns what the command
returns (the id of what was made) whether it ran now or ran before; the route then answers from
the current state either way, so a retry gets the same status, Location and body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import Header
from pydantic import BaseModel

from api.services import Services
from api.tokens import Principal
from ledger.idempotency import KEY_PATTERN, MAX_KEY, Claim, Used

T = TypeVar("T")

IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=MAX_KEY, pattern=KEY_PATTERN,
    description="Optional. A key of the client's choosing, unique per request it means (a"
                " UUID): a retry with the same key and the same body is answered as the first"
                " request was and records nothing twice, also when the first committed but its"
                " answer was lost. The same key with another body: 422 idempotency-key-reused."
                " Keys are per caller and route, and remembered as long as the ledger.")]

ANONYMOUS = "anonymous"


def scope_of(who: Principal | None) -> str:
    """Whose keys these are: the person signed in as themself (their keys survive a new
    session), else the principal; anonymous callers (sign-up) share the route's."""
    if who is None:
        return ANONYMOUS
    if who.subject_id is not None and who.acted_by is None:
        return f"person:{who.subject_id}"
    return f"principal:{who.id}"


def made(used: Used) -> UUID:
    """What a creating route's first request made, as its key's record names it."""
    if used.result_id is None:  # every creating route's save creates or names something
        raise LookupError("an idempotency record of a creating route names no result")
    return used.result_id


def once(svc: Services, key: str | None, who: Principal | None, route: str, target: str,
         body: BaseModel | dict[str, Any], run: Callable[[], T], replay: Callable[[Used], T],
         *, owner_id: UUID | None = None, result_id: UUID | None = None,
         status: int = 201) -> T:
    """`run()` once per key: without one, just `run()` (no read, as before the header). With
    one, the key's record is read first, and either `replay(record)` answers a request that
    committed before, or `run()` saves the record with its own events.

    `route` is the route's template (the key's namespace); `target` the path as asked and
    `body` the request, which the record keeps as a keyed digest only. `owner_id` is whom the
    record concerns (None: the person the command creates); `result_id` what it names (None:
    the first aggregate the command creates)."""
    if key is None:
        return run()
    keys = svc.ledger.idempotency
    content = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    claim = Claim(record_id=keys.record_id(scope_of(who), route, key), route=route,
                  digest=keys.digest(target, content), status=status, owner_id=owner_id,
                  result_id=result_id)
    return keys.once(claim, run, replay)
