"""What an operator reads when a command fails: one line naming what is wrong and what to do,
and an exit code (2: a setting or the usage; 1: anything met at run time). In one place, for
every command, so that no command prints a traceback unless `ledger --debug` asks for it.

A line never quotes a database URL (it may hold a password), a key or a person's data: only the
setting's name, the error's type and, for files, the path.
"""

from __future__ import annotations

from eventsourcing.persistence import InterfaceError, OperationalError

from crypto.errors import KeyFileRefused, KeyStoreUnavailable
from crypto.sql import DatabaseUnavailable
from ledger.retention import ScheduleInvalid
from ledger.settings import SettingsError

RUNTIME, SETTINGS = 1, 2

_RETRY = "check that the database is running and that the setting names it, then try again"


def explain(error: BaseException) -> tuple[str, int]:
    """The line and the exit code for `error` (without the "ledger: " prefix)."""
    if isinstance(error, SettingsError):
        return str(error), SETTINGS
    if isinstance(error, ScheduleInvalid):
        return f"LEDGER_RETENTION: {error}", SETTINGS
    if isinstance(error, KeyFileRefused):
        return str(error), RUNTIME
    if isinstance(error, KeyStoreUnavailable):
        return f"the key store (LEDGER_KEYSTORE_URL) cannot be reached: {_RETRY}", RUNTIME
    if isinstance(error, DatabaseUnavailable):
        return (f"a database (LEDGER_DATABASE_URL, LEDGER_READ_MODELS_URL or LEDGER_MEDIA_URL)"
                f" cannot be reached ({error}): {_RETRY}"), RUNTIME
    if isinstance(error, OperationalError | InterfaceError):
        return (f"the event store (LEDGER_DATABASE_URL) cannot be reached"
                f" ({type(error).__name__}): {_RETRY}"), RUNTIME
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or type(error).__name__}", RUNTIME
    # Unknown: its message might carry anything, so only its type, and where to see more.
    return (f"the command failed ({type(error).__name__}): run it again with --debug to see"
            " where"), RUNTIME
