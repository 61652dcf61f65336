"""One guard for every CSV the ledger writes (exports, the audit CLI, analytics tables).

A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` as a formula, and some also
after a leading tab or carriage return (OWASP, "CSV Injection"): a student's display name
`=HYPERLINK(...)` would run on the machine of whoever opens their export. Such a cell is
prefixed with a single quote, which spreadsheets show as text. Only text is guarded: a number
the ledger itself wrote (a count, a negative offset) is never a formula.
"""

from __future__ import annotations

from typing import Any

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def guard(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def guard_any(value: Any) -> Any:
    """`guard` for text, and for each text in a list; anything else as it is."""
    if isinstance(value, str):
        return guard(value)
    if isinstance(value, list):
        return [guard_any(v) for v in value]
    return value
