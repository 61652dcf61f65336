"""Request ids, security headers, the access log and the last-resort error handler, as one
ASGI middleware.

Every response, errors included (the 500 below, Starlette's 404 and 405, the body limit's 413),
leaves with the security headers: `nosniff`, no framing, no referrer, a CSP that allows nothing
(the API serves JSON, never a page), and `Cache-Control: no-store`, because nearly every answer
carries personal data or a token and a shared cache must keep none of them. Two exceptions,
both without personal data: the ledger's public key may be cached (it changes only when the
signing key does), and the `/docs` and `/redoc` pages get a CSP that lets them load Swagger UI
and ReDoc from their CDN (jsDelivr) and run their inline start-up script.

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
from api.metrics import RequestMetrics

log = logging.getLogger("api.http")

HEADER = "X-Request-ID"
API_CSP = "default-src 'none'; frame-ancestors 'none'"
DOCS_CSP = ("default-src 'none'; script-src 'unsafe-inline' https://cdn.jsdelivr.net;"
            " style-src 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com;"
            " font-src https://fonts.gstatic.com; img-src 'self' data: https:;"
            " connect-src 'self'; worker-src blob:; frame-ancestors 'none'")
_DOCS_PAGES = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
_CACHEABLE = {"/ledger/public-key": "public, max-age=300"}
_ALWAYS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
           "Referrer-Policy": "no-referrer"}


def secure(headers: MutableHeaders, path: str, status: int) -> None:
    """Set the security headers of a response to `path` (see the module's docstring)."""
    for name, value in _ALWAYS.items():
        headers[name] = value
    headers["Content-Security-Policy"] = DOCS_CSP if path in _DOCS_PAGES else API_CSP
    cacheable = _CACHEABLE.get(path) if status == 200 else None
    headers["Cache-Control"] = cacheable or "no-store"
    if cacheable is None:
        headers["Pragma"] = "no-cache"  # HTTP/1.0 caches know no Cache-Control
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
    def __init__(self, app: ASGIApp, metrics: RequestMetrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

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
                headers = MutableHeaders(scope=message)
                headers[HEADER] = request_id
                secure(headers, str(scope.get("path", "")), status)
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
            seconds = time.perf_counter() - began
            log.info("request_id=%s method=%s route=%s status=%d principal=%s ms=%.1f",
                     request_id, scope.get("method"), route, status,
                     state.get("principal_id", "-"), seconds * 1000)
            if self.metrics is not None:
                # A path no route matched is one series, never the raw path (it may hold ids).
                self.metrics.observe(str(scope.get("method")),
                                     route if route != "-" else "(unmatched)", status, seconds)
