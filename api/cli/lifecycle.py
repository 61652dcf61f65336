"""Operator commands of the deletion lifecycle: `ledger purge`, `ledger receipts`,
`ledger review-queue`.

`ledger purge [--dry-run] [--limit N] [--over-cap]` runs the purge job once (DEL-9): the dry run
lists what it would destroy and changes nothing; a run larger than the cap is refused unless
`--over-cap`; a progress bar goes to a terminal. Output is JSON lines of ids and statuses, never
a personal value, so it can go to a log. A store that cannot be reached stops the run at its
first failure: one line on stderr names it, exit code 1, and the rest stay due for the next
run. `ledger receipts` prints every erasure receipt with
whether it verifies under the ledger's public key (DEL-8).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from api.services import Services
from ledger.purge import DEFAULT_CAP, PurgeCapExceeded, StoreDown, store_down
from ledger.settings import Settings


def register(commands: Any) -> None:
    purge = commands.add_parser("purge", help="purge the accounts whose grace window is over"
                                              " (and soft-delete the inactive ones)")
    purge.add_argument("--dry-run", action="store_true",
                       help="list what would be destroyed; change nothing")
    purge.add_argument("--limit", type=int, default=None,
                       help="purge at most N accounts this run (run again for the rest)")
    purge.add_argument("--cap", type=int, default=DEFAULT_CAP,
                       help=f"refuse a run larger than this (default: {DEFAULT_CAP})")
    purge.add_argument("--over-cap", action="store_true",
                       help="confirm a run larger than the cap")
    purge.set_defaults(func=run_purge)

    receipts = commands.add_parser("receipts", help="list erasure receipts and verify each")
    receipts.set_defaults(func=run_receipts)

    review = commands.add_parser("review-queue", help="purges that failed, for a person to see")
    review.set_defaults(func=run_review_queue)


class ProgressBar:
    """A one-line bar on a terminal; nothing when the output is a file or a pipe."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.on = out.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.on or total == 0:
            return
        filled = 30 * done // total
        self.out.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
        if done == total:
            self.out.write("\n")
        self.out.flush()


def run_purge(args: argparse.Namespace) -> int:
    if (args.limit is not None and args.limit < 1) or args.cap < 1:
        print("--limit and --cap must be at least 1", file=sys.stderr)
        return 2
    try:
        services = Services.open(Settings.from_env().for_a_job())
    except Exception as error:
        if (down := store_down(error)) is None:
            raise
        return _stopped(down)
    try:
        services.purge_job.cap = args.cap
        try:
            report = services.purge_job.run(dry_run=args.dry_run, limit=args.limit,
                                            over_cap=args.over_cap,
                                            on_progress=ProgressBar(sys.stderr))
        except PurgeCapExceeded as refused:
            print(str(refused), file=sys.stderr)
            return 3
        except StoreDown as down:
            return _stopped(down)
        for subject_id in report.soft_deleted_for_inactivity:
            print(json.dumps({"subject_id": str(subject_id), "status": "soft_deleted",
                              "reason": "inactivity"}))
        for outcome in report.outcomes:
            print(json.dumps({"subject_id": str(outcome.subject_id), "status": outcome.status,
                              "reason": outcome.reason, "error": outcome.error}))
        counts = {status: report.count(status) for status in
                  sorted({o.status for o in report.outcomes})}
        print(json.dumps({"dry_run": report.dry_run, **counts,
                          "soft_deleted_for_inactivity": len(
                              report.soft_deleted_for_inactivity)}), file=sys.stderr)
        if report.stopped is not None:
            return _stopped(report.stopped)
        return 1 if report.count("failed") else 0
    finally:
        services.close()


def _stopped(down: StoreDown) -> int:
    """One line for the operator, not a traceback: what was down, and what to do."""
    print(f"{down}; nothing more was purged; run again when it is back", file=sys.stderr)
    return 1


def run_receipts(args: argparse.Namespace) -> int:
    services = Services.open(Settings.from_env())
    try:
        services.lifecycle_view.catch_up()
        key = services.ledger.signer.public_key
        print(json.dumps({"public_key": key.to_text(), "key_id": key.key_id}))
        after, bad = 0, 0
        while page := services.lifecycle_reader.erased(after, 500):
            for position, subject_id in page:
                receipt = services.ledger.receipt_of(subject_id)
                ok = receipt is not None and receipt.verify(key)
                bad += not ok
                print(json.dumps({**(receipt.to_dict() if receipt else {
                    "subject_id": str(subject_id)}), "position": position, "verified": ok}))
            after = page[-1][0]
        return 1 if bad else 0
    finally:
        services.close()


def run_review_queue(args: argparse.Namespace) -> int:
    services = Services.open(Settings.from_env())
    try:
        for subject_id, failed_at, error, attempts in services.purge_job.review.items():
            print(json.dumps({"subject_id": str(subject_id), "failed_at": failed_at.isoformat(),
                              "error": error, "attempts": attempts}))
        return 0
    finally:
        services.close()
