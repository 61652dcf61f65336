"""Operator commands: `ledger rebuild NAME`, `ledger project`, `ledger keys rotate-kek`,
`ledger release-orphan-claims`."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta
from typing import Any, TextIO

from api.services import Services
from crypto.kek import KeyringReadOnly
from ledger.settings import Settings
from projections.runner import ProjectionRunner


def register(commands: Any) -> None:
    rebuild = commands.add_parser(
        "rebuild", help="replay the log into a fresh copy of a read model, then switch over")
    rebuild.add_argument("name", help="the read model, e.g. student_directory; stopped"
                         " (Ctrl-C, SIGTERM), it resumes where it stopped when run again")
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


class RebuildBar:
    """A one-line bar with events per second on a terminal; nothing on a file or a pipe.
    Redrawn at most a few times a second, since a rebuild reports every batch."""

    def __init__(self, out: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self.out = out
        self.on = out.isatty()
        self.clock = clock
        self.started = clock()
        self.first: int | None = None  # where this run began: a resumed rebuild starts late
        self.drawn = 0.0

    def __call__(self, done: int, total: int) -> None:
        if not self.on or total == 0:
            return
        now = self.clock()
        if self.first is None:
            self.first = done
        if done < total and now - self.drawn < 0.2:
            return
        self.drawn = now
        rate = (done - self.first) / max(now - self.started, 1e-9)
        filled = 30 * done // total
        self.out.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total}"
                       f" {rate:,.0f} events/s")
        if done >= total:
            self.out.write("\n")
        self.out.flush()


def run_rebuild(args: argparse.Namespace) -> int:
    services = Services.open(Settings.from_env().for_a_job())
    # SIGTERM stops it as Ctrl-C does: the batch under way rolls back, the rest is kept.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        runners = {runner.projection.name: runner for runner in services.runners}
        runner = runners.get(args.name)
        if runner is None:
            print(f"no read model {args.name!r}; known: {', '.join(sorted(runners))}")
            return 2
        try:
            generation = runner.rebuild(on_progress=RebuildBar(sys.stderr))
        except KeyboardInterrupt:
            _say_where_it_stopped(runner, args.name, "stopped")
            return 130
        except BrokenProcessPool:  # a worker killed (out of memory, say): resumable as well
            _say_where_it_stopped(runner, args.name, "a worker of the rebuild died")
            return 1
        # Events the projection could not open or apply were set aside, not a failure:
        # said here so the operator looks at them (`ledger projections status`).
        print(json.dumps({"read_model": args.name, "generation": generation,
                          "position": runner.position(),
                          "set_aside": len(runner.set_aside(generation))}))
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        services.close()


def _say_where_it_stopped(runner: ProjectionRunner, name: str, why: str) -> None:
    unfinished = runner.unfinished_generation()
    print(json.dumps({"read_model": name, "stopped": True, "generation": unfinished,
                      "position": runner.position(unfinished) if unfinished else None,
                      "serving": runner.live_generation()}))
    print(f"{why}; run `ledger rebuild {name}` again to resume", file=sys.stderr)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


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
