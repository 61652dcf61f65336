"""`create_app(services)`: the HTTP face of the ledger.

The caller owns `services` (and starts its projections); the app only uses them. Routers, in
the order a newcomer meets them: health; signing up, in and out (sessions); one's own record
(me); a teacher's sections; schools and their rosters; reading people (people); progress
(attempts, the teacher's grid, the school report).
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from api.http import (
    analytics,
    audit,
    coursework,
    deletion,
    health,
    me,
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
                   projects, coursework, tree_heads, rights, audit, analytics):
        _document_body_limit(module.router)
        app.include_router(module.router)
    # Added last, so outermost: its headers go on every response, the body limit's 413 too.
    app.add_middleware(BodyLimit, settings=services.settings)
    app.add_middleware(RequestContext)
    return app


def _document_body_limit(router: APIRouter) -> None:
    """Every route that takes a body may answer 413 (api/http/limits.py), said once here."""
    for route in router.routes:
        if isinstance(route, APIRoute) and (route.methods or set()) & {"POST", "PUT", "PATCH"}:
            route.responses.setdefault(413, problems.responses(413)[413])
