"""MIN-7: usernames are generated from the display name, and unique (a clash gets a suffix)."""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Iterator

MAX_BASE = 16
FALLBACK = "coder"
SEQUENTIAL_SUFFIXES = 9  # ana, ana1 .. ana9; then random digits, so a popular name stays cheap
MAX_ATTEMPTS = 60


def base_of(display_name: str) -> str:
    """Lower-case ASCII letters and digits of the name (accents folded), or a fallback."""
    folded = unicodedata.normalize("NFKD", display_name).encode("ascii", "ignore").decode()
    base = "".join(c for c in folded.lower() if c.isascii() and c.isalnum())[:MAX_BASE]
    return base if len(base) >= 2 else FALLBACK


def candidates(display_name: str) -> Iterator[str]:
    base = base_of(display_name)
    yield base
    for n in range(1, SEQUENTIAL_SUFFIXES + 1):
        yield f"{base}{n}"
    for attempt in range(MAX_ATTEMPTS - SEQUENTIAL_SUFFIXES - 1):
        digits = 2 + attempt // 10  # widen as the short suffixes fill up
        yield f"{base}{secrets.randbelow(10 ** digits):0{digits}d}"
