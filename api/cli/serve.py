"""`ledger serve`: the HTTP API, with the read models followed in the background."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

import uvicorn

from api.cli.runtime import tune_after_start_up
from api.cli.seed import SEED_PASSWORD, seed_school, usernames
from api.cli.tokens import granted_at_the_console
from api.http.app import create_app
from api.services import Services
from api.tokens import Role, TokenStore
from ledger.settings import Settings
from projections.roster import SCHOOL_SCOPE


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
        services.start_purge_schedule()
        services.start_tree_keeping()
        tune_after_start_up()  # the bench does the same, so that it measures this process
        # uvicorn's access log prints raw paths; the app logs route patterns and ids instead.
        uvicorn.run(create_app(services), host=args.host, port=args.port, log_level="info",
                    access_log=False)
        return 0
    finally:
        services.close()


# Roles a first start hands a token to: staff and services. People sign in themselves, and
# an administrator's token names the seeded school.
STAFF_ROLES = (Role.OPERATOR, Role.SUPPORT, Role.SERVICE, Role.RESEARCHER, Role.AUDITOR)


def introduce(services: Services, base_url: str) -> None:
    school = seed_school(services.ledger)
    tokens = TokenStore(services.read_models)
    print(f"Loaded a synthetic school: {len(school['teachers'])} teachers, "
          f"{len(school['students'])} students (made-up names).")
    print(f"API docs: {base_url}/docs")
    print("A token for each staff role (valid one day; shown once, stored only as a hash; each"
          " recorded as a grant, AUD-5):")
    granted = granted_at_the_console(services.grants)
    for role in STAFF_ROLES:
        issued = tokens.issue(role, f"first-start-{role}", timedelta(days=1),
                              record_grant=granted)
        print(f"  {role:17} {issued.token}")
    for role in (Role.REGISTRAR, Role.SCHOOL_ADMIN, Role.RECORDS_CUSTODIAN):
        issued = tokens.issue(role, f"first-start-{role}", timedelta(days=1),
                              scope=f"{SCHOOL_SCOPE}:{school['schools'][0]}",
                              record_grant=granted)
        print(f"  {role:17} {issued.token}  (of the seeded school)")
    teachers = ", ".join(usernames(services.ledger, school["teachers"]))
    print(f"Teachers sign in as {teachers} with the password {SEED_PASSWORD!r}:")
    print(f"  curl -X POST {base_url}/sign-in -H 'Content-Type: application/json'"
          f""" -d '{{"login": "<username>", "password": "{SEED_PASSWORD}"}}'""")
    print(f'Try: curl -H "Authorization: Bearer <registrar token>" {base_url}/people')
