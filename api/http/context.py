"""Request ids, the access log and the last-resort error handler, as one ASGI middleware.

The access log names the route template (`/students/{person_id}`), never the raw path or query,
and the principal id, never a name. An unexpected exception is logged by type, place and
request id only (its message may hold personal values) and answered with a 500 problem.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
from typing import Any
from uuid import uuid4

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http.problems import INTERNAL, problem_response

log = logging.getLogger("api.http")

HEADER = "X-Request-ID"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _VALID_ID.match(text) else None
    return None


def _where(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "-"


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or uuid4().hex
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        status, started = 500, False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started, status = True, int(message["status"])
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        began = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as error:
            log.error("unhandled %s at %s request_id=%s", type(error).__name__, _where(error),
                      request_id)
            if started:
                raise
            response = problem_response(500, INTERNAL, "Internal error",
                                        "The request failed; quote the request id to support.",
                                        request_id=request_id)
            await response(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", "-")
            log.info("request_id=%s method=%s route=%s status=%d principal=%s ms=%.1f",
                     request_id, scope.get("method"), route, status,
                     state.get("principal_id", "-"), (time.perf_counter() - began) * 1000)
