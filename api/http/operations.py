"""The read models' state for the operator (issue 18): where each projection stands, the events
it set aside, and applying them again or acknowledging them. The same as `ledger projections`.
Positions, error classes and digests only: a set-aside event is never shown, opened or quoted."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from api.http.auth import require
from api.http.deps import MAX_POSITION, Svc
from api.http.problems import NOT_FOUND as _NOT_FOUND
from api.http.problems import ProblemError, not_found, responses
from api.services import Services
from api.tokens import Permission, Principal
from projections.runner import NotSetAside, ProjectionRunner

router = APIRouter(tags=["operations"])

Operator = Annotated[Principal, Depends(require(Permission.PROJECTIONS_MANAGE))]
Name = Annotated[str, Path(max_length=64)]


class RetryIn(BaseModel):
    position: int | None = Field(default=None, ge=1, le=MAX_POSITION)


class SkipIn(BaseModel):
    position: int = Field(ge=1, le=MAX_POSITION)


def runner_named(svc: Services, name: str) -> ProjectionRunner:
    for runner in svc.runners:
        if runner.projection.name == name:
            return runner
    raise not_found("read model")


def _not_set_aside(position: int) -> ProblemError:
    return ProblemError(404, _NOT_FOUND, "Not found",
                        f"No event is set aside at position {position}.")


@router.get("/operations/projections", responses=responses(401, 403, 503))
def projections_status(svc: Svc, who: Operator) -> dict[str, Any]:
    """Each read model: position, the log's head, lag, events set aside, its thread's life."""
    return {"items": [runner.status() for runner in svc.runners]}


@router.post("/operations/projections/{name}/retry",
             responses=responses(401, 403, 404, 422, 503))
def retry_set_aside(svc: Svc, who: Operator, name: Name,
                    body: RetryIn | None = None) -> dict[str, Any]:
    """Apply the set-aside events again (all pending, or the one at `position`): those that
    apply now leave the list; the others stay, with the class of their error."""
    runner = runner_named(svc, name)
    position = body.position if body is not None else None
    try:
        outcomes = runner.retry(position)
    except NotSetAside:
        raise _not_set_aside(position or 0) from None
    return {"projection": name,
            "outcomes": [{"position": o.position, "applied": o.applied, "error": o.error}
                         for o in outcomes]}


@router.post("/operations/projections/{name}/skip", responses=responses(401, 403, 404, 422, 503))
def skip_set_aside(svc: Svc, who: Operator, name: Name, body: SkipIn) -> dict[str, Any]:
    """Acknowledge a set-aside event: it stays unapplied, recorded as skipped."""
    runner = runner_named(svc, name)
    try:
        runner.skip(body.position)
    except NotSetAside:
        raise _not_set_aside(body.position) from None
    return {"projection": name, "position": body.position, "status": "skipped"}
