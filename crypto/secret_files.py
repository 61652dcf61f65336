"""Key files (the KEK keyring, the signing key): written whole, mode 0600, atomically.

A file is written under a temporary name in the same directory, synced, then put in place in
one step, so a reader never sees half a key and a crash leaves the old file or the new one.
Creating (`replace=False`) links it into place, which fails if the file exists: of two
processes starting at once, one creates the file and the other reads that one.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any


def write_secret_json(path: str, body: dict[str, Any], *, replace: bool) -> bool:
    """Write `body` as JSON to `path` (mode 0600). With `replace=False`, only if no file is
    there yet: False (and nothing written) if one is."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".ledger-secret-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(body, f)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # atomic, and fails if the file exists
        except FileExistsError:
            return False
        return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
