"""Placeholder: being written."""

import argparse
from typing import Any


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser("bench", help="(not yet)")
    parser.set_defaults(func=lambda args: 1)
