"""Liveness (`GET /livez`), readiness (`GET /readyz`, and `GET /healthz` as before) and the
metrics (`GET /metrics`, Prometheus text, for the service role and the operator).

Liveness touches no store: the process answers. Readiness asks each store, each read model's
lag behind the log (`LEDGER_READY_MAX_LAG`; judged where this process follows the log, i.e.
`start_projections` ran), and each supervised background loop's state
(api/supervision.py); it answers 503 while any of them is not well. Neither carries personal
data: check names, states, counts and error classes only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse

from api.http.auth import require
from api.http.problems import (
    KEY_STORE_UNAVAILABLE,
    NOT_READY,
    SERVICE_UNAVAILABLE,
    ProblemError,
    request_id,
    responses,
)
from api.metrics import CONTENT_TYPE, family
from api.services import Services
from api.supervision import Loop
from api.tokens import Permission, Principal
from crypto.sql import Database
from projections.runner import PENDING

log = logging.getLogger("api.http")
router = APIRouter(tags=["health"])


def _ping(db: Database) -> None:
    with db.transaction(write=False) as cur:
        cur.execute("SELECT 1")
        cur.fetchone()


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    state: str
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, **self.detail}


def _store(name: str, probe: Callable[[], object], request: Request) -> Check:
    try:
        probe()
    except Exception as error:
        log.warning("readiness: %s unreachable (%s) request_id=%s", name, type(error).__name__,
                    request_id(request))
        return Check(name, False, "unreachable", {})
    return Check(name, True, "ok", {})


def _loop(loop: Loop) -> Check:
    state = loop.current_state
    detail: dict[str, Any] = {"restarts": loop.restarts, "failures": loop.failures}
    if loop.last_error is not None:
        detail["last_error"] = loop.last_error  # a class name, never a message
    return Check(f"loop:{loop.name}", loop.healthy, str(state), detail)


def readiness(svc: Services, request: Request) -> list[Check]:
    """Every check of `/readyz`, in a stable order."""
    checks = [
        _store("key_store", lambda: _ping(svc.ledger.keys.store.db), request),
        _store("event_store", svc.ledger.recorder.max_notification_id, request),
        _store("read_models", lambda: _ping(svc.read_models), request),
    ]
    if all(check.ok for check in checks):
        end = svc.ledger.recorder.max_notification_id() or 0
        limit = svc.settings.ready_max_lag
        for runner in svc.runners:
            name = runner.projection.name
            lag = max(0, end - runner.position())
            # Judged only where this process follows the log: a process that does not (a
            # command, a test that settles by hand) is not made unready by work it never does.
            followed = f"projection-{name}" in svc.supervision.loops
            ok = lag <= limit or not followed
            checks.append(Check(f"projection:{name}", ok,
                                "ok" if lag <= limit else "behind" if followed else "not_followed",
                                {"lag": lag}))
    checks += [_loop(loop) for loop in svc.supervision.loops.values()]
    return checks


@router.get("/livez")
def livez() -> dict[str, str]:
    """The process answers; no store is asked (a restart would not bring a store back)."""
    return {"status": "ok"}


@router.get("/readyz", responses=responses(503))
def readyz(request: Request) -> dict[str, Any]:
    svc: Services = request.app.state.services
    checks = readiness(svc, request)
    named = {check.name: check.to_dict() for check in checks}
    failing = [check.name for check in checks if not check.ok]
    if failing:
        raise ProblemError(503, NOT_READY, "Not ready",
                           f"Not ready: {', '.join(failing)}.", {"Retry-After": "2"},
                           checks=named)
    return {"status": "ready", "checks": named}


@router.get("/healthz", responses=responses(503))
def healthz(request: Request) -> dict[str, str]:
    """Readiness, in the shape it has always had: `ok` and the backend, or a 503 problem
    (key-store-unavailable first, as before; service-unavailable for anything else)."""
    svc: Services = request.app.state.services
    failing = [check for check in readiness(svc, request) if not check.ok]
    if failing:
        key_store = failing[0].name == "key_store"
        raise ProblemError(503, KEY_STORE_UNAVAILABLE if key_store else SERVICE_UNAVAILABLE,
                           "Service unavailable",
                           "The key store cannot be reached." if key_store else
                           f"Not ready: {', '.join(check.name for check in failing)}.",
                           {"Retry-After": "2"})
    return {"status": "ok", "backend": svc.settings.backend}


MetricsReader = Annotated[Principal, Depends(require(Permission.HEALTH_READ))]


@router.get("/metrics", response_class=PlainTextResponse, responses=responses(401, 403))
def metrics(request: Request, principal: MetricsReader) -> PlainTextResponse:
    """Prometheus text exposition: request latency by route template, read-model lag,
    background loops, erasures, purge runs, sealer lag, the key cache. A store that cannot be
    reached leaves its series out (and `ledger_up{store=...}` says 0) rather than failing."""
    svc: Services = request.app.state.services
    lines = svc.request_metrics.lines()
    loops = list(svc.supervision.loops.values())
    states = ("starting", "running", "backing_off", "dead", "stopped")
    lines += family("ledger_background_loop_state", "gauge",
                    "1 for the state each supervised loop is in.",
                    [({"loop": lp.name, "state": s}, int(str(lp.current_state) == s))
                     for lp in loops for s in states])
    lines += family("ledger_background_loop_restarts_total", "counter",
                    "Threads of a supervised loop started again after they died.",
                    [({"loop": lp.name}, lp.restarts) for lp in loops])
    lines += family("ledger_background_loop_failures_total", "counter",
                    "Failed runs of a supervised loop's body.",
                    [({"loop": lp.name}, lp.failures) for lp in loops])
    lines += family("ledger_background_loop_last_success_timestamp_seconds", "gauge",
                    "When a supervised loop's body last succeeded (Unix time).",
                    [({"loop": lp.name}, lp.last_success) for lp in loops
                     if lp.last_success is not None])
    lines += svc.purge_metrics.lines()
    keys = svc.ledger.keys
    lines += family("ledger_key_cache_lookups_total", "counter",
                    "Subject-key lookups answered from memory (hit) or the key store (miss).",
                    [({"result": "hit"}, keys.cache_hits), ({"result": "miss"}, keys.cache_misses)])
    up: dict[str, int] = {}
    try:
        end = svc.ledger.recorder.max_notification_id() or 0
        lines += family("ledger_sealer_lag_events", "gauge",
                        "Stored events not yet sealed into the Merkle log.",
                        [({}, max(0, end - svc.merkle_log.sealed_through()))])
        up["event_store"] = 1
        lags = [({"projection": r.projection.name}, max(0, end - r.position()))
                for r in svc.runners]
        lines += family("ledger_projection_lag_events", "gauge",
                        "Events of the log a read model has not yet applied.", lags)
        set_aside = [({"projection": r.projection.name},
                      len(r.set_aside(status=PENDING))) for r in svc.runners]
        lines += family("ledger_projection_set_aside_events", "gauge",
                        "Events a read model could not apply and set aside, not yet retried"
                        " or skipped (`ledger projections status`).", set_aside)
        up["read_models"] = 1
    except Exception as error:
        log.warning("metrics: a store unreachable (%s)", type(error).__name__)
        up.setdefault("event_store", 0)
        up.setdefault("read_models", 0)
    try:
        erased = keys.store.erased_count()
        lines += family("ledger_erasures", "gauge",
                        "Subjects whose key was erased (people, and the keys they owned).",
                        [({}, erased)])
        up["key_store"] = 1
    except Exception as error:
        log.warning("metrics: key store unreachable (%s)", type(error).__name__)
        up["key_store"] = 0
    lines += family("ledger_up", "gauge", "1 if the store answered this scrape.",
                    [({"store": store}, value) for store, value in sorted(up.items())])
    return PlainTextResponse("\n".join(lines) + "\n", media_type=CONTENT_TYPE)
