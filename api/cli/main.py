"""`ledger COMMAND ...`: every command module adds its own sub-parser with `register`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from api.cli import (
    analytics,
    audit,
    bench,
    demo,
    lifecycle,
    maintenance,
    projections,
    proofs,
    rights,
    serve,
    tokens,
)
from api.cli.errors import explain


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ledger",
        description="The student-records ledger: sealed per person, erasable by key destruction.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="on a failure, show the traceback, not just the one-line reason")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (serve, demo, bench, tokens, maintenance, lifecycle, proofs, rights, audit,
                   analytics, projections):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except Exception as error:
        if args.debug:
            raise
        line, code = explain(error)
        print(f"ledger: {line}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
