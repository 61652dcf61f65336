"""`ledger token issue|revoke|list`: API bearer tokens, kept (as hashes) in the read-models DB.

(`ledger tokens ...` is the same command.) Administrators and parents see people only within
their token's scope (api/access.py), so issuing one names it:

    ledger token issue --role school_admin --school <school id>
    ledger token issue --role district_admin --district <district id>
    ledger token issue --role records_custodian --school <school id>
    ledger token issue --role registrar --school <school id>
    ledger token issue --role parent --parent-email -      # the address is read from stdin

Each token issued is recorded as a permission grant in the ledger first (AUD-5): granted by the
command-line operator (`api.tokens.COMMAND_LINE_OPERATOR`), to the new principal, with role,
scope and expiry; never the token or its hash.

A parent's scope is "parent:<hex>", the blind-index token of the address (the key of the
parent links, MIN-2): the address itself is never printed, logged or stored.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from api.tokens import (
    COMMAND_LINE_OPERATOR,
    ROLES,
    AmbiguousToken,
    Role,
    TokenGrant,
    TokenStore,
)
from crypto.sql import Database
from ledger import people
from ledger.application import Ledger
from ledger.grants import TOKEN_ISSUED, Grant, Grants
from ledger.identity import PARENT_EMAIL, IdentityIndex
from ledger.persistence import open_database, open_subject_keys
from ledger.settings import Settings

DEFAULT_TTL_DAYS = 30


def register(commands: Any) -> None:
    token: argparse.ArgumentParser = commands.add_parser(
        "token", aliases=["tokens"], help="issue, revoke and list API bearer tokens")
    actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")

    issue = actions.add_parser("issue", help="issue a token (printed once, stored as a hash)")
    issue.add_argument("--role", required=True, choices=[str(r) for r in ROLES])
    issue.add_argument("--label", help="a name for the client, never a person's (default: role)")
    issue.add_argument("--ttl-days", type=float, default=DEFAULT_TTL_DAYS,
                       help=f"days until it expires (default {DEFAULT_TTL_DAYS})")
    scope = issue.add_mutually_exclusive_group()
    scope.add_argument("--school", metavar="SCHOOL_ID", help="a school_admin's school")
    scope.add_argument("--district", metavar="DISTRICT_ID",
                       help="a district_admin's district (GET /schools/{id} shows it)")
    scope.add_argument("--parent-email", metavar="ADDRESS",
                       help="a parent's address, or '-' to read it from stdin (kept out of"
                            " shell history); never printed or stored")
    issue.set_defaults(func=run_issue)

    revoke = actions.add_parser("revoke", help="revoke by principal id (or token-hash prefix)")
    revoke.add_argument("principal_id")
    revoke.set_defaults(func=run_revoke)

    listing = actions.add_parser("list", help="every token as JSON lines, without secrets")
    listing.set_defaults(func=run_list)


def _store() -> TokenStore:
    settings = Settings.from_env()
    return TokenStore(open_database(settings.read_models_url, settings.schema, settings))


# The scope option each scoped role needs; no other role takes one.
_SCOPE_OPTION = {Role.SCHOOL_ADMIN: "school", Role.DISTRICT_ADMIN: "district",
                 Role.RECORDS_CUSTODIAN: "school", Role.REGISTRAR: "school",
                 Role.PARENT: "parent_email"}


def _parent_scope(settings: Settings, db: Database, address: str) -> str:
    """ "parent:<hex>" of the address's blind-index token; the address goes no further."""
    if address == "-":
        address = sys.stdin.readline().strip()
    people.email("parent_email", address)  # InvalidRecord names the field, never the value
    keys = open_subject_keys(settings)
    try:
        return f"parent:{IdentityIndex(db, keys).token(PARENT_EMAIL, address).hex()}"
    finally:
        keys.close()


def _scope(args: argparse.Namespace, settings: Settings, db: Database) -> str | None:
    """The scope the role needs, from its option; ValueError for a missing or foreign one."""
    wanted = _SCOPE_OPTION.get(args.role)
    given = [name for name in ("school", "district", "parent_email")
             if getattr(args, name, None) is not None]
    if wanted is None:
        if given:
            raise ValueError(f"--{given[0].replace('_', '-')} is only for "
                             + ", ".join(str(role) for role in _SCOPE_OPTION))
        return None
    if given != [wanted]:
        raise ValueError(f"--role {args.role} needs --{wanted.replace('_', '-')}")
    if wanted == "parent_email":
        return _parent_scope(settings, db, args.parent_email)
    try:
        return f"{wanted}:{UUID(getattr(args, wanted))}"
    except ValueError:
        raise ValueError(f"--{wanted} must be a {wanted} id (a UUID)") from None


def granted_at_the_console(grants: Grants) -> Callable[[TokenGrant], object]:
    """AUD-5: a token issued at the console is granted by the command-line operator."""
    def record(grant: TokenGrant) -> object:
        return grants.record(Grant(
            TOKEN_ISSUED, COMMAND_LINE_OPERATOR.id, COMMAND_LINE_OPERATOR.role,
            grant.principal_id, grant.role, grant.scope, grant.subject_id, grant.expires_at))
    return record


def run_issue(args: argparse.Namespace) -> int:
    """Issues the token after its grant is in the ledger (AUD-5), granted by the command-line
    operator (`COMMAND_LINE_OPERATOR`); no grant, no token."""
    settings = Settings.from_env()
    ledger = Ledger(settings)
    grants = Grants(ledger, lambda: datetime.now(UTC))
    store = TokenStore(ledger.read_models)

    try:
        scope = _scope(args, settings, store.db)
        issued = store.issue(args.role, args.label or args.role, timedelta(days=args.ttl_days),
                             scope=scope, record_grant=granted_at_the_console(grants))
    except ValueError as error:  # InvalidRecord among them: field and rule, never the value
        print(f"ledger token issue: {error}", file=sys.stderr)
        return 2
    finally:
        ledger.close()
    print(json.dumps({"token": issued.token, "principal_id": str(issued.principal_id),
                      "role": issued.role, "label": issued.label,
                      "scope": scope.partition(":")[0] if scope else None,
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
            "acted_by": str(info.acted_by) if info.acted_by else None,
        }))
    return 0
