"""`ledger audit student ID | actor ID | party NAME [--since T] [--until T] [--format json|csv]`:
the audit trail's queries (AUD-3) from the command line, the same data as the HTTP routes.

Every page is streamed to stdout as it is read (JSON lines, or CSV with a header row), so a
trail of any length runs in constant memory. The command line asks as the operator at the
console: `api.tokens.COMMAND_LINE_OPERATOR`, a fixed principal id
(00000000-0000-4000-8000-00000000c11e), and each page's query is itself recorded as an access
of each student it returns, under that id, with the purpose `records_administration`.

The output holds the trail's personal data (a disclosure's recipient, the threat described):
it is meant for a file the operator keeps, not for a shared log.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TextIO
from uuid import UUID, uuid4

from api.audit_queries import AuditQueries, TrailItem, TrailPage
from api.services import Services
from api.spreadsheet import guard, guard_any
from api.tokens import COMMAND_LINE_OPERATOR
from crypto import KeyErased
from ledger.application import ErasedPerson, PersonNotFound
from ledger.disclosures import MAX_PARTY
from ledger.people import InvalidRecord, short_text
from ledger.settings import Settings
from projections.audit import PageAfter

PAGE = 500
COLUMNS = ("kind", "record_id", "at", "student_id", "actor_id", "actor_role", "purpose",
           "on_behalf_of", "resource", "fields", "recipient", "disclosed_on", "legal_basis",
           "legal_basis_label", "legitimate_interest", "redisclosure_parties", "disclosed",
           "threat", "statements")
# The resource each query is recorded under (a route-like pattern, as AUD-1 wants).
_RESOURCE = {"student": "/cli/audit/student", "actor": "/cli/audit/actor",
             "party": "/cli/audit/party"}


def register(commands: Any) -> None:
    audit: argparse.ArgumentParser = commands.add_parser(
        "audit", help="who read or received a student's records; what an actor read; every"
                      " disclosure to a party (AUD-3)")
    audit.add_argument("by", choices=("student", "actor", "party"))
    audit.add_argument("key", help="a student id, an actor (principal) id, or a party's name")
    audit.add_argument("--since", type=_time, help="from this time (ISO 8601, with a zone)")
    audit.add_argument("--until", type=_time, help="before this time (ISO 8601, with a zone)")
    audit.add_argument("--format", choices=("json", "csv"), default="json")
    audit.set_defaults(func=run_audit)


def _time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("a time zone is required")
    return value


def row(item: TrailItem) -> dict[str, Any]:
    """One record as the output names its columns (those of the HTTP API)."""
    access = item.kind == "access"
    return {
        "kind": item.kind, "record_id": str(item.record_id), "at": item.at.isoformat(),
        "student_id": str(item.student_id), "actor_id": str(item.actor_id),
        "actor_role": item.actor_role, "purpose": item.code if access else None,
        "on_behalf_of": str(item.on_behalf_of) if item.on_behalf_of else None,
        "resource": item.resource, "fields": item.fields, "recipient": item.recipient,
        "disclosed_on": item.disclosed_on.isoformat() if item.disclosed_on else None,
        "legal_basis": None if access else item.code,
        "legal_basis_label": item.legal_basis_label,
        "legitimate_interest": item.legitimate_interest,
        "redisclosure_parties": item.redisclosure_parties, "disclosed": item.disclosed,
        "threat": item.threat,
        "statements": [f"{s['field']}: {s['text']}" for s in item.statements],
    }


def pages(svc: Services, by: str, key: str, since: datetime | None,
          until: datetime | None) -> Iterator[TrailPage]:
    """Every page of the query, in order; each page's query recorded for its students."""
    queries = AuditQueries(svc)
    who, resource = COMMAND_LINE_OPERATOR, _RESOURCE[by]
    ask: Callable[[PageAfter | None], TrailPage]
    if by == "student":
        student = UUID(key)
        ask = lambda after: queries.of_student(  # noqa: E731
            who, student, _request_id(), since, until, PAGE, after, resource=resource)
    elif by == "actor":
        actor = UUID(key)
        ask = lambda after: queries.of_actor(  # noqa: E731
            who, actor, _request_id(), since, until, PAGE, after, resource)
    else:
        party = short_text("party", key, MAX_PARTY)
        ask = lambda after: queries.to_party(  # noqa: E731
            who, party, _request_id(), since, until, PAGE, after, resource)
    after: PageAfter | None = None
    while True:
        page = ask(after)
        yield page
        if page.next_after is None:
            return
        after = page.next_after


def _request_id() -> str:
    return f"cli-{uuid4().hex}"


def write(out: TextIO, form: str, items: Iterator[TrailItem]) -> int:
    """Stream the items to `out`; how many were written."""
    count = 0
    writer = csv.DictWriter(out, COLUMNS) if form == "csv" else None
    if writer is not None:
        writer.writeheader()
    for item in items:
        values = row(item)
        if writer is not None:
            writer.writerow({k: guard(";".join(v)) if isinstance(v, list) else guard_any(v)
                             for k, v in values.items()})
        else:
            out.write(json.dumps(values) + "\n")
        count += 1
    return count


def run_audit(args: argparse.Namespace) -> int:
    if args.by in ("student", "actor"):
        try:
            UUID(args.key)
        except ValueError:
            print(f"ledger audit: the {args.by} must be an id (a UUID)", file=sys.stderr)
            return 2
    services = Services.open(Settings.from_env())
    try:
        if args.by == "student":
            # as the route does: a student's trail is asked only of a student that exists
            # (asking is recorded, sealed under their key)
            person = services.ledger.person(UUID(args.key))
            if isinstance(person, ErasedPerson):
                raise KeyErased(person.id)
            if person.kind != "student":
                raise PersonNotFound(person.id)
        items = (item for page in pages(services, args.by, args.key, args.since, args.until)
                 for item in page.items)
        count = write(sys.stdout, args.format, items)
    except InvalidRecord as error:  # names the field and the rule, never the value
        print(f"ledger audit: {error.field} {error.rule}", file=sys.stderr)
        return 2
    except PersonNotFound:
        print("ledger audit: there is no such student", file=sys.stderr)
        return 1
    except KeyErased:
        print("ledger audit: this student was erased; their trail went with them (AUD-4)",
              file=sys.stderr)
        return 1
    finally:
        services.close()
    print(json.dumps({"records": count}), file=sys.stderr)
    return 0
