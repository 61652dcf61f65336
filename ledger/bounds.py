"""The bounds on everything the ledger accepts: lengths, counts, time ranges, and which characters.

One place for them, so that every door (HTTP models, the command line, imports, tests) refuses
what the domain refuses, and an event that is stored can always be read back and applied
(docs/architecture.md, "Bounds"). The HTTP request models take their `max_length`s from here;
the domain's checks below raise `InvalidRecord`, which names the field and the rule, never the
value (messages end up in logs). This module imports nothing else of the ledger.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime, timedelta

# -- lengths, in characters (after normalisation) unless named _BYTES ------------------------
MAX_EMAIL = 254  # RFC 5321's path limit
MAX_LOGIN = MAX_EMAIL  # a username or an email
MAX_USERNAME = 64  # generated ones are far shorter (ledger/usernames.py)
MAX_JOIN_CODE = 16  # codes are 6 letters; a little slack for what people type
MAX_SECRET = 100  # generated secret words or a picture's name
MAX_TOKEN = 128  # a one-time reset token
MAX_PROVIDER_SUBJECT = 255
MAX_POLICY_VERSION = 64
MAX_CODE_WORD = 40  # a value from a fixed list (gender, race, school type, login type, ...)
MAX_DISPLAY_NAME = 100
MAX_NAME = 200  # the name of a thing: a school, a district, a section, a project, a party
MAX_LEVEL = 240  # a level id: up to 5 segments of 40
MAX_REASON = 500
MAX_FREE_TEXT = 2_000  # answers, comments, statements
MAX_SOURCE_BYTES = 256 * 1024  # a project's source (UTF-8)
MAX_CODE_BYTES = 64 * 1024  # an attempt's code (UTF-8)
MAX_ITEMS = 50  # entries of a list or mapping in one request (answers, disclosed fields)
MAX_LEVELS_QUERY = 20_000

# -- times ------------------------------------------------------------------------------------
# Nothing the ledger records happened before the platform could have existed, and a time that
# something happened is at most a day ahead of the server's clock (time zones, skewed clocks).
EARLIEST = datetime(2013, 1, 1, tzinfo=UTC)
EARLIEST_DAY = EARLIEST.date()
AHEAD = timedelta(days=1)
# A date set for the future (a due date) is at most this far ahead.
FURTHEST_AHEAD = timedelta(days=366)

# Characters that show nothing but are not in category C: Hangul fillers, the braille blank,
# the Mongolian vowel separator. In an identifier they make a second spelling of one address.
_INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")
# Bidirectional overrides and isolates reorder what a reader sees (Trojan Source).
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


class InvalidRecord(ValueError):
    """A value that the policy does not allow. `field` says which, `rule` says why."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


def unicode_text(field: str, value: str) -> str:
    """A lone surrogate passes as `str` and would fail only when the event is written."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRecord(field, "must be valid Unicode text") from None
    return value


def identifier(field: str, value: str, max_chars: int, *, lower: bool = False,
               spaces: bool = False) -> str:
    """An email, a username, a login, a join code, a secret: NFKC (so that full-width and
    compatibility spellings are one), trimmed, lower-cased if `lower`, and free of anything
    invisible: control and format characters (zero-width space and joiner, BOM, bidi
    controls), separators other than the plain space (and that only if `spaces`)."""
    text = unicodedata.normalize("NFKC", unicode_text(field, value)).strip()
    if lower:
        text = text.lower()
    if len(text) > max_chars:
        raise InvalidRecord(field, f"must be at most {max_chars} characters")
    for char in text:
        category = unicodedata.category(char)
        if category[0] == "C" or char in _INVISIBLE or (
                category[0] == "Z" and not (spaces and char == " ")):
            raise InvalidRecord(field, "must not contain invisible, control or format"
                                       " characters")
    return text


def is_identifier(value: str, max_chars: int, *, spaces: bool = False) -> bool:
    try:
        identifier("value", value, max_chars, spaces=spaces)
    except InvalidRecord:
        return False
    return True


def free_text(field: str, value: str, max_chars: int, *, multiline: bool = False) -> str:
    """Text a person writes: NFC, and no control characters (newline and tab allowed in
    multi-line text), no bidi overrides, no unpaired surrogates. Blank is the caller's rule."""
    text = unicodedata.normalize("NFC", unicode_text(field, value))
    if len(text) > max_chars:
        raise InvalidRecord(field, f"must be at most {max_chars} characters")
    for char in text:
        if char in _BIDI or (unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp")
                             and not (multiline and char in "\n\t")):
            raise InvalidRecord(field, "must not contain control characters or bidi overrides")
    return text


def utf8_bytes(field: str, value: str, max_bytes: int) -> str:
    if len(unicode_text(field, value).encode("utf-8")) > max_bytes:
        raise InvalidRecord(field, f"must be at most {max_bytes} bytes")
    return value


# -- times ------------------------------------------------------------------------------------
def storable(value: datetime) -> bool:
    """True if `value` reads back exactly from its ISO form and has a place in UTC: year 1
    with a positive offset, or 9999-12-31 late with a negative one, has none."""
    if value.tzinfo is None:
        return True
    try:
        value.astimezone(UTC)
        back = datetime.fromisoformat(value.isoformat())
    except (OverflowError, ValueError):
        return False
    return back == value and back.utcoffset() == value.utcoffset()


def happened(field: str, value: datetime, now: datetime | None = None) -> datetime:
    """A time something happened: with a time zone, not before 2013, at most a day ahead."""
    if not isinstance(value, datetime) or value.tzinfo is None \
            or value.tzinfo.utcoffset(value) is None:
        raise InvalidRecord(field, "must be a date and time with a time zone")
    if not storable(value):
        raise InvalidRecord(field, f"must be from {EARLIEST_DAY.isoformat()} to tomorrow")
    latest = (now or datetime.now(UTC)) + AHEAD
    if not EARLIEST <= value <= latest:
        raise InvalidRecord(field, f"must be from {EARLIEST_DAY.isoformat()} to tomorrow")
    return value


def day_happened(field: str, value: date, today: date | None = None) -> date:
    """A day something happened: not before 2013, at most a day ahead (time zones)."""
    day = value.date() if isinstance(value, datetime) else value
    if not isinstance(day, date):
        raise InvalidRecord(field, "must be a date")
    latest = (today or datetime.now(UTC).date()) + AHEAD
    if not EARLIEST_DAY <= day <= latest:
        raise InvalidRecord(field, f"must be from {EARLIEST_DAY.isoformat()} to tomorrow")
    return day


def ahead(field: str, value: datetime, now: datetime | None = None) -> datetime:
    """A time set for the future (a due date): with a time zone, within a year ahead."""
    if not isinstance(value, datetime) or value.tzinfo is None \
            or value.tzinfo.utcoffset(value) is None:
        raise InvalidRecord(field, "must be a date and time with a time zone")
    latest = (now or datetime.now(UTC)) + FURTHEST_AHEAD
    if not storable(value) or not EARLIEST <= value <= latest:
        raise InvalidRecord(field, f"must be from {EARLIEST_DAY.isoformat()} to a year ahead")
    return value
