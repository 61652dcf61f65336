"""The request body's size limit, enforced before anything reads or parses the body.

A `Content-Length` over the route's limit is answered 413 (problem `body-too-large`) without
reading a byte of the body; a body without one (chunked) is counted as it streams and cut off at
the limit, which the route then answers with the same 413. Limits per route (docs/architecture.md,
"Bounds"): uploads have the media store's own limit (`LEDGER_MAX_UPLOAD_BYTES`, problem
`upload-too-large`, counted by the upload route itself); a project's source and a batch of
attempts may be large (`LEDGER_MAX_LARGE_BODY_BYTES`); every other body is small
(`LEDGER_MAX_BODY_BYTES`).
"""

from __future__ import annotations

import re

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http.problems import (
    BODY_TOO_LARGE,
    MALFORMED_BODY,
    UPLOAD_TOO_LARGE,
    problem_response,
)
from ledger.settings import Settings

_UPLOAD = re.compile(r"^/me/projects/[^/]+/media/?$")
_LARGE = re.compile(r"^/me/(attempts|projects|projects/[^/]+/source)/?$")


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a streamed body passes its limit. An `HTTPException`, so
    that FastAPI's body reading lets it through as itself rather than as a 400."""

    def __init__(self) -> None:
        super().__init__(413)


def limit_of(settings: Settings, method: str, path: str) -> tuple[int, bool]:
    """The route's limit in bytes, and whether it is the upload route's."""
    if method == "POST" and _UPLOAD.match(path):
        return settings.max_upload_bytes, True
    if method in ("POST", "PUT") and _LARGE.match(path):
        return settings.max_large_body_bytes, False
    return settings.max_body_bytes, False


def _content_length(scope: Scope) -> int | str | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() and len(text) < 20 else "malformed"
    return None


class BodyLimit:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, upload = limit_of(self.settings, scope.get("method", ""), scope.get("path", ""))
        declared = _content_length(scope)
        if declared == "malformed":
            await problem_response(400, MALFORMED_BODY, "Malformed request body",
                                   "The Content-Length header is not a number."
                                   )(scope, receive, send)
            return
        if isinstance(declared, int) and declared > limit:
            if upload:
                response = problem_response(413, UPLOAD_TOO_LARGE, "Upload too large",
                                            f"An upload is at most {limit} bytes.")
            else:
                response = problem_response(413, BODY_TOO_LARGE, "Request body too large",
                                            f"This request's body is at most {limit} bytes.")
            await response(scope, receive, send)  # the body is never read
            return
        if upload:  # the upload route counts its own stream, answering `upload-too-large`
            await self.app(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge()
            return message

        await self.app(scope, counted, send)
