"""`GET /healthz`: no token, no personal data; 503 while a store cannot be reached."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter, Request

from api.http.problems import (
    KEY_STORE_UNAVAILABLE,
    SERVICE_UNAVAILABLE,
    ProblemError,
    request_id,
    responses,
)
from api.services import Services
from crypto.sql import Database

log = logging.getLogger("api.http")
router = APIRouter(tags=["health"])


def _ping(db: Database) -> None:
    with db.transaction(write=False) as cur:
        cur.execute("SELECT 1")
        cur.fetchone()


def _check(request: Request, probe: Callable[[], object], what: str, type_: str) -> None:
    try:
        probe()
    except Exception as error:
        log.warning("healthz: %s unreachable (%s) request_id=%s", what, type(error).__name__,
                    request_id(request))
        raise ProblemError(503, type_, "Service unavailable", f"The {what} cannot be reached.",
                           {"Retry-After": "2"}) from None


@router.get("/healthz", responses=responses(503))
def healthz(request: Request) -> dict[str, str]:
    svc: Services = request.app.state.services
    _check(request, lambda: _ping(svc.ledger.keys.store.db), "key store", KEY_STORE_UNAVAILABLE)
    _check(request, svc.ledger.recorder.max_notification_id, "event store", SERVICE_UNAVAILABLE)
    _check(request, lambda: _ping(svc.read_models), "read-model database", SERVICE_UNAVAILABLE)
    return {"status": "ok", "backend": svc.settings.backend}
