"""Password hashes (MIN-6): scrypt, salted, slow on purpose, verified in constant time.

A hash is kept as one self-describing string, `scrypt$<log2 n>$<r>$<p>$<salt>$<hash>` (base64
without padding), so that cost parameters can rise later: `needs_rehash` tells when a stored
hash is older than today's parameters, and the next successful sign-in can replace it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

SALT_BYTES = 16
HASH_BYTES = 32
MAX_PASSWORD_BYTES = 1024  # a longer "password" is a denial-of-service attempt, not a secret


@dataclass(frozen=True)
class ScryptCost:
    log2_n: int = 15  # n = 32768: about 32 MB and tens of milliseconds per hash
    r: int = 8
    p: int = 1

    @property
    def maxmem(self) -> int:
        return 256 * self.r * (1 << self.log2_n)  # twice what scrypt needs


DEFAULT_COST = ScryptCost()


class PasswordTooLong(ValueError):
    def __init__(self) -> None:
        super().__init__(f"a password is at most {MAX_PASSWORD_BYTES} bytes")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _derive(password: str, salt: bytes, cost: ScryptCost) -> bytes:
    secret = password.encode()
    if len(secret) > MAX_PASSWORD_BYTES:
        raise PasswordTooLong()
    return hashlib.scrypt(secret, salt=salt, n=2 ** cost.log2_n, r=cost.r, p=cost.p,
                          maxmem=cost.maxmem, dklen=HASH_BYTES)


def hash_password(password: str, cost: ScryptCost = DEFAULT_COST) -> str:
    salt = os.urandom(SALT_BYTES)
    derived = _derive(password, salt, cost)
    return f"scrypt${cost.log2_n}${cost.r}${cost.p}${_b64(salt)}${_b64(derived)}"


def _parse(encoded: str) -> tuple[ScryptCost, bytes, bytes] | None:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    try:
        cost = ScryptCost(int(parts[1]), int(parts[2]), int(parts[3]))
        salt, derived = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        return None
    if not (1 <= cost.log2_n <= 20 and 1 <= cost.r <= 32 and 1 <= cost.p <= 16):
        return None  # refuse parameters that would let a stored value exhaust the machine
    if len(salt) < SALT_BYTES or len(derived) != HASH_BYTES:
        return None
    return cost, salt, derived


def verify_password(password: str, encoded: str) -> bool:
    """True only if `password` matches; a malformed or foreign hash is simply no match."""
    parsed = _parse(encoded)
    if parsed is None:
        return False
    cost, salt, expected = parsed
    try:
        derived = _derive(password, salt, cost)
    except PasswordTooLong:
        return False
    return hmac.compare_digest(derived, expected)


def needs_rehash(encoded: str, cost: ScryptCost = DEFAULT_COST) -> bool:
    parsed = _parse(encoded)
    return parsed is None or parsed[0] != cost
