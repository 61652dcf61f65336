"""`ledger projections status|retry|skip`: the read models' set-aside events (issue 18).

Each prints JSON lines; a read model or position that is not there is one line on stderr and
exit 2 (usage) or 1 (nothing set aside there). A retry whose events fail again exits 1."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from api.services import Services
from ledger.settings import Settings
from projections.runner import NotSetAside, ProjectionRunner


def register(commands: Any) -> None:
    parser = commands.add_parser("projections", help="read models: status, set-aside events")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    status = actions.add_parser("status", help="position, lag and set-aside events of each")
    status.set_defaults(func=run_status)
    retry = actions.add_parser("retry", help="apply set-aside events again")
    retry.add_argument("projection", nargs="?", help="one read model (default: all)")
    retry.add_argument("--position", type=int, help="only the event at this position")
    retry.set_defaults(func=run_retry)
    skip = actions.add_parser("skip", help="acknowledge a set-aside event: it stays skipped")
    skip.add_argument("projection")
    skip.add_argument("--position", type=int, required=True)
    skip.set_defaults(func=run_skip)


def run_status(args: argparse.Namespace) -> int:
    services = Services.open(Settings.from_env())
    try:
        for runner in services.runners:
            print(json.dumps(runner.status()))
        return 0
    finally:
        services.close()


def run_retry(args: argparse.Namespace) -> int:
    services = Services.open(Settings.from_env())
    try:
        runners = _chosen(services, args.projection)
        if runners is None:
            return 2
        if args.position is not None and len(runners) != 1:
            print("ledger: --position needs a read model", file=sys.stderr)
            return 2
        still_failing = False
        for runner in runners:
            try:
                outcomes = runner.retry(args.position)
            except NotSetAside:
                print(f"ledger: nothing set aside at position {args.position} of"
                      f" {runner.projection.name}", file=sys.stderr)
                return 1
            for outcome in outcomes:
                still_failing |= not outcome.applied
                print(json.dumps({"projection": runner.projection.name,
                                  "position": outcome.position, "applied": outcome.applied,
                                  "error": outcome.error}))
        return 1 if still_failing else 0
    finally:
        services.close()


def run_skip(args: argparse.Namespace) -> int:
    services = Services.open(Settings.from_env())
    try:
        runners = _chosen(services, args.projection)
        if runners is None:
            return 2
        (runner,) = runners
        try:
            runner.skip(args.position)
        except NotSetAside:
            print(f"ledger: nothing set aside at position {args.position} of"
                  f" {runner.projection.name}", file=sys.stderr)
            return 1
        print(json.dumps({"projection": runner.projection.name, "position": args.position,
                          "status": "skipped"}))
        return 0
    finally:
        services.close()


def _chosen(services: Services, name: str | None) -> list[ProjectionRunner] | None:
    runners = {runner.projection.name: runner for runner in services.runners}
    if name is None:
        return list(runners.values())
    if name not in runners:
        print(f"ledger: no read model {name!r}; known: {', '.join(sorted(runners))}",
              file=sys.stderr)
        return None
    return [runners[name]]
