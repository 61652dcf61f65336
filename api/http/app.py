"""`create_app(services)`: the HTTP face of the ledger.

The caller owns `services` (and starts its projections); the app only uses them. Routers, in
the order a newcomer meets them: health; signing up, in and out (sessions); one's own record
(me); a teacher's sections; schools and their rosters; reading people (people); progress
(attempts, the teacher's grid, the school report).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from api.http import (
    analytics,
    audit,
    coursework,
    deletion,
    health,
    me,
    operations,
    people,
    problems,
    progress,
    projects,
    rights,
    schools,
    sections,
    sessions,
    tree_heads,
)
from api.http.context import RequestContext
from api.http.limits import BodyLimit
from api.services import Services
from api.tokens import TokenStore


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="Student-records ledger",
        version="0.1.0",
        description="Each person's records are sealed under their own key; erasing a person"
                    " destroys it. Errors are application/problem+json.",
    )
    app.state.services = services
    app.state.tokens = TokenStore(services.read_models)
    problems.install(app)
    for module in (health, sessions, me, sections, schools, people, deletion, progress,
                   projects, coursework, tree_heads, rights, audit, analytics, operations):
        app.include_router(module.router)
    app.add_middleware(BodyLimit, settings=services.settings)
    # Added last, so outermost: its headers go on every response, the body limit's 413 too.
    app.add_middleware(RequestContext, metrics=services.request_metrics)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problems.document_problems(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app

