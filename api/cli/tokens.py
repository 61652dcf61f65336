"""`ledger token issue|revoke|list`: API bearer tokens, kept (as hashes) in the read-models DB."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from api.tokens import ROLES, AmbiguousToken, TokenStore
from ledger.persistence import open_database
from ledger.settings import Settings

DEFAULT_TTL_DAYS = 30


def register(commands: Any) -> None:
    token: argparse.ArgumentParser = commands.add_parser(
        "token", help="issue, revoke and list API bearer tokens")
    actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")

    issue = actions.add_parser("issue", help="issue a token (printed once, stored as a hash)")
    issue.add_argument("--role", required=True, choices=[str(r) for r in ROLES])
    issue.add_argument("--label", help="a name for the client, never a person's (default: role)")
    issue.add_argument("--ttl-days", type=float, default=DEFAULT_TTL_DAYS,
                       help=f"days until it expires (default {DEFAULT_TTL_DAYS})")
    issue.set_defaults(func=run_issue)

    revoke = actions.add_parser("revoke", help="revoke by principal id (or token-hash prefix)")
    revoke.add_argument("principal_id")
    revoke.set_defaults(func=run_revoke)

    listing = actions.add_parser("list", help="every token as JSON lines, without secrets")
    listing.set_defaults(func=run_list)


def _store() -> TokenStore:
    settings = Settings.from_env()
    return TokenStore(open_database(settings.read_models_url, settings.schema))


def run_issue(args: argparse.Namespace) -> int:
    store = _store()
    try:
        issued = store.issue(args.role, args.label or args.role, timedelta(days=args.ttl_days))
    except ValueError as error:
        print(f"ledger token issue: {error}", file=sys.stderr)
        return 2
    finally:
        store.db.close()
    print(json.dumps({"token": issued.token, "principal_id": str(issued.principal_id),
                      "role": issued.role, "label": issued.label,
                      "expires_at": issued.expires_at.isoformat()}))
    print("The token is shown only this once; only its hash is stored.", file=sys.stderr)
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    store = _store()
    try:
        revoked = store.revoke(args.principal_id)
    except (ValueError, AmbiguousToken) as error:
        print(f"ledger token revoke: {error}", file=sys.stderr)
        return 2
    finally:
        store.db.close()
    if not revoked:
        print("ledger token revoke: no live token matched", file=sys.stderr)
        return 1
    print(json.dumps({"revoked": revoked}))
    return 0


def run_list(args: argparse.Namespace) -> int:
    store = _store()
    try:
        tokens = store.list()
    finally:
        store.db.close()
    now = datetime.now(UTC)
    for info in tokens:
        print(json.dumps({
            "principal_id": str(info.principal_id), "role": info.role, "label": info.label,
            "hash_prefix": info.hash_prefix, "status": info.status(now),
            "created_at": info.created_at.isoformat(), "expires_at": info.expires_at.isoformat(),
            "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None,
        }))
    return 0
