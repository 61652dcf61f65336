"""Operator commands: `ledger rebuild NAME`, `ledger project`, `ledger keys rotate-kek`,
`ledger release-orphan-claims`."""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
from datetime import timedelta
from typing import Any

from api.services import Services
from crypto.kek import KeyringReadOnly
from ledger.settings import Settings


def register(commands: Any) -> None:
    rebuild = commands.add_parser(
        "rebuild", help="replay the log into a fresh copy of a read model, then switch over")
    rebuild.add_argument("name", help="the read model, e.g. student_directory")
    rebuild.set_defaults(func=run_rebuild)

    project = commands.add_parser("project", help="bring every read model up to date")
    project.add_argument("--follow", action="store_true", help="keep following the log")
    project.set_defaults(func=run_project)

    keys = commands.add_parser("keys", help="key management")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    rotate = key_commands.add_parser(
        "rotate-kek", help="re-wrap every live data key under a new KEK and destroy the old KEK")
    rotate.set_defaults(func=run_rotate_kek)

    orphans = commands.add_parser(
        "release-orphan-claims",
        help="free usernames, emails and join codes claimed by saves that never happened"
             " (a crash between claiming and saving)")
    orphans.add_argument("--min-age-minutes", type=float, default=10.0,
                         help="only claims at least this old (default: 10)")
    orphans.set_defaults(func=run_release_orphan_claims)


def run_rebuild(args: argparse.Namespace) -> int:
    services = Services.open(Settings.from_env())
    try:
        runners = {runner.projection.name: runner for runner in services.runners}
        runner = runners.get(args.name)
        if runner is None:
            print(f"no read model {args.name!r}; known: {', '.join(sorted(runners))}")
            return 2
        generation = runner.rebuild()
        print(json.dumps({"read_model": args.name, "generation": generation,
                          "position": runner.position()}))
        return 0
    finally:
        services.close()


def run_project(args: argparse.Namespace) -> int:
    services = Services.open(Settings.from_env())
    try:
        if args.follow:
            stop = threading.Event()
            services.start_projections()
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
        else:
            services.catch_up()
        for runner in services.runners:
            print(json.dumps({"read_model": runner.projection.name,
                              "position": runner.position()}))
        return 0
    finally:
        services.close()


def run_rotate_kek(args: argparse.Namespace) -> int:
    services = Services.open(Settings.from_env())
    try:
        rotation = services.ledger.keys.rotate_kek()
    except KeyringReadOnly as error:
        print(f"cannot rotate: {error}")
        return 2
    finally:
        services.close()
    print(json.dumps({"new_kek_version": rotation.new_version,
                      "retired_kek_versions": rotation.retired_versions,
                      "rewrapped_data_keys": rotation.rewrapped}))
    return 0


def run_release_orphan_claims(args: argparse.Namespace) -> int:
    if args.min_age_minutes < 0:
        print("--min-age-minutes must not be negative")
        return 2
    services = Services.open(Settings.from_env())
    try:
        released = services.ledger.release_orphan_claims(timedelta(minutes=args.min_age_minutes))
    finally:
        services.close()
    print(json.dumps({"released_claims": released}))
    return 0
