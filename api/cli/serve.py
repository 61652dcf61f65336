"""`ledger serve`: the HTTP API, with the read models followed in the background."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

import uvicorn

from api.cli.seed import seed_school
from api.http.app import create_app
from api.services import Services
from api.tokens import ROLES, TokenStore
from ledger.settings import Settings


def register(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-seed", action="store_true",
                       help="do not load the synthetic school into an empty embedded ledger")
    serve.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    services = Services.open(settings)
    try:
        first_start = not services.ledger.recorder.max_notification_id()
        if first_start and settings.backend == "sqlite" and not args.no_seed:
            introduce(services, f"http://{args.host}:{args.port}")
        services.start_projections()
        # uvicorn's access log prints raw paths; the app logs route patterns and ids instead.
        uvicorn.run(create_app(services), host=args.host, port=args.port, log_level="info",
                    access_log=False)
        return 0
    finally:
        services.close()


def introduce(services: Services, base_url: str) -> None:
    school = seed_school(services.ledger)
    tokens = TokenStore(services.read_models)
    print(f"Loaded a synthetic school: {len(school['teachers'])} teachers, "
          f"{len(school['students'])} students (made-up names).")
    print(f"API docs: {base_url}/docs")
    print("A token for each role (valid one day; shown once, stored only as a hash):")
    for role in ROLES:
        issued = tokens.issue(role, f"first-start-{role}", timedelta(days=1))
        print(f"  {role:10} {issued.token}")
    print(f'Try: curl -H "Authorization: Bearer <registrar token>" {base_url}/people')
