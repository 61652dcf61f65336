"""`create_app(services)`: the HTTP face of the ledger.

The caller owns `services` (and starts its projections); the app only uses them.
"""

from __future__ import annotations

from fastapi import FastAPI

from api.http import health, people, problems
from api.http.context import RequestContext
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
    app.include_router(health.router)
    app.include_router(people.router)
    app.add_middleware(RequestContext)
    return app
