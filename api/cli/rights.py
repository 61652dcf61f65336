"""The privacy officer's commands for rights requests (RGT-1..4): `ledger requests ...` and
`ledger export STUDENT`.

    ledger requests list [--status open|fulfilled|refused|withdrawn]
    ledger requests overdue [--at TIME]
    ledger requests extend REQUEST --due TIME --reason TEXT
    ledger requests fulfil REQUEST
    ledger requests refuse REQUEST --reason TEXT
    ledger export STUDENT [--format json|csv] [--out PATH]

The request commands print JSON lines of ids, kinds, times and statuses, never a personal value,
so their output can go to a log. The export is the student's data, decrypted: JSON to standard
output (or `--out FILE`), or CSV, one file per table, in the directory `--out` (default
`export-STUDENT`). The command line acts as the operator, and the export leaves an access record
like any export by someone other than the student (AUD-1).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4, uuid5

from api.exports import Exporter
from api.services import Services
from api.tokens import Principal, Role
from crypto import KeyErased
from ledger.application import PersonNotFound
from ledger.people import InvalidRecord, Student
from ledger.rights import STATUSES, RequestNotFound, RequestStateConflict
from ledger.settings import Settings
from projections.rights import RequestEntry

CLI_NAMESPACE = UUID("9b8f6c1e-2d4a-4f3b-a7e5-0c1d2e3f4a5b")
CLI_OPERATOR = Principal(id=uuid5(CLI_NAMESPACE, "operator"), role=Role.OPERATOR,
                         label="command-line")
BY = "command-line operator"


def register(commands: Any) -> None:
    requests = commands.add_parser("requests", help="rights requests (RGT-4): list, the"
                                                    " overdue report, extend, fulfil, refuse")
    actions = requests.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every request, oldest first")
    listing.add_argument("--status", choices=STATUSES)
    listing.set_defaults(func=run_list)
    overdue = actions.add_parser("overdue", help="open requests past their due date")
    overdue.add_argument("--at", type=_time, default=None,
                         help="the time to judge at (ISO 8601 with a zone; default: now)")
    overdue.set_defaults(func=run_overdue)
    extend = actions.add_parser("extend", help="a later due date, with a reason the requester"
                                               " is told (at most 45 days after receipt)")
    extend.add_argument("request", type=UUID)
    extend.add_argument("--due", type=_time, required=True)
    extend.add_argument("--reason", required=True)
    extend.set_defaults(func=run_extend)
    fulfil = actions.add_parser("fulfil", help="grant (a rectification is applied, a"
                                               " restriction takes effect)")
    fulfil.add_argument("request", type=UUID)
    fulfil.set_defaults(func=run_fulfil)
    refuse = actions.add_parser("refuse", help="refuse, with a reason")
    refuse.add_argument("request", type=UUID)
    refuse.add_argument("--reason", required=True)
    refuse.set_defaults(func=run_refuse)

    export = commands.add_parser("export", help="all of a student's data (RGT-1)")
    export.add_argument("student", type=UUID)
    export.add_argument("--format", choices=("json", "csv"), default="json")
    export.add_argument("--out", type=Path, default=None,
                        help="json: a file (default: standard output); csv: a directory")
    export.set_defaults(func=run_export)


def _time(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time zone, e.g. 2026-10-01T00:00:00+00:00")
    return at


def _print(entry: RequestEntry) -> None:
    print(json.dumps({"request_id": str(entry.request_id), "subject_id": str(entry.subject_id),
                      "kind": entry.kind, "received_at": entry.received_at.isoformat(),
                      "due_at": entry.due_at.isoformat(), "status": entry.status}))


def _open() -> Services:
    services = Services.open(Settings.from_env())
    services.rights_view.catch_up()
    return services


def run_list(args: argparse.Namespace) -> int:
    services = _open()
    try:
        for entry in services.rights_reader.requests(args.status, limit=1_000_000):
            _print(entry)
        return 0
    finally:
        services.close()


def run_overdue(args: argparse.Namespace) -> int:
    services = _open()
    try:
        for entry in services.rights_reader.overdue(args.at or datetime.now(UTC), 1_000_000):
            _print(entry)
        return 0
    finally:
        services.close()


def _act(args: argparse.Namespace, act: Any) -> int:
    """Find the request's subject, act on it, print the outcome; 2 for a refused input, 3 for
    a request in the wrong state."""
    services = _open()
    try:
        subject = services.rights_reader.subject_of(args.request)
        if subject is None:
            print("no such rights request", file=sys.stderr)
            return 2
        try:
            act(services, subject)
        except InvalidRecord as refused:
            print(f"{refused.field}: {refused.rule}", file=sys.stderr)
            return 2
        except RequestNotFound:
            print("no such rights request", file=sys.stderr)
            return 2
        except RequestStateConflict as conflict:
            print(str(conflict), file=sys.stderr)
            return 3
        services.rights_view.catch_up()
        request = services.rights.request(subject, args.request)
        print(json.dumps({"request_id": str(request.id), "subject_id": str(subject),
                          "kind": request.kind, "due_at": request.due_at.isoformat(),
                          "status": request.status}))
        return 0
    finally:
        services.close()


def run_extend(args: argparse.Namespace) -> int:
    return _act(args, lambda s, subject: s.rights.extend(subject, args.request, args.due,
                                                         args.reason, BY))


def run_fulfil(args: argparse.Namespace) -> int:
    return _act(args, lambda s, subject: s.rights.fulfil(subject, args.request, BY))


def run_refuse(args: argparse.Namespace) -> int:
    return _act(args, lambda s, subject: s.rights.refuse(subject, args.request, args.reason,
                                                         BY))


def run_export(args: argparse.Namespace) -> int:
    services = Services.open(Settings.from_env())
    try:
        try:
            student = services.ledger.live(args.student, Student)
        except (PersonNotFound, KeyErased):
            print("no such student (or erased)", file=sys.stderr)
            return 2
        exporter = Exporter(services)
        resource = "/students/{person_id}/export"
        if args.format == "csv":
            resource += "/{table}.csv"
        services.record_access(CLI_OPERATOR, student.id, resource, exporter.names, None,
                               f"cli-{uuid4()}")
        if args.format == "json":
            out = args.out.open("wb") if args.out else sys.stdout.buffer
            try:
                for chunk in exporter.json(student):
                    out.write(chunk)
            finally:
                if args.out:
                    out.close()
            return 0
        directory: Path = args.out or Path(f"export-{student.id}")
        directory.mkdir(parents=True, exist_ok=True)
        for section in exporter.sections:
            with (directory / f"{section.name}.csv").open("wb") as out:
                for chunk in exporter.csv(student, section):
                    out.write(chunk)
        print(json.dumps({"student_id": str(student.id), "directory": str(directory),
                          "tables": exporter.names}))
        return 0
    finally:
        services.close()
