"""Password hashes (MIN-6) and blind-index tokens (MIN-1): crypto primitives for sign-in."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.blind_index import BlindIndex, normalise_email
from crypto.passwords import (
    MAX_PASSWORD_BYTES,
    PasswordTooLong,
    ScryptCost,
    hash_password,
    needs_rehash,
    verify_password,
)

FAST = ScryptCost(log2_n=4, r=1, p=1)  # the same code path, cheap enough for property tests


@settings(max_examples=60, deadline=None)
@given(password=st.text(max_size=64), other=st.text(max_size=64))
def test_a_password_verifies_and_any_other_does_not(password: str, other: str) -> None:
    encoded = hash_password(password, FAST)
    assert verify_password(password, encoded)
    assert verify_password(other, encoded) == (other == password)


def test_the_same_password_hashes_differently_each_time_and_is_not_in_the_hash() -> None:
    first, second = hash_password("correct horse", FAST), hash_password("correct horse", FAST)
    assert first != second
    assert "correct horse" not in first


def test_the_default_cost_is_slow_scrypt_and_older_costs_need_a_rehash() -> None:
    encoded = hash_password("correct horse")
    assert encoded.startswith("scrypt$15$8$1$")
    assert verify_password("correct horse", encoded)
    assert not needs_rehash(encoded)
    assert needs_rehash(hash_password("correct horse", FAST))


@pytest.mark.parametrize("stored", [
    "", "plain", "scrypt$15$8$1$$", "scrypt$x$8$1$AAAA$AAAA", "bcrypt$2b$12$abc",
    "scrypt$30$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAA",  # a cost that would exhaust the machine
    "scrypt$4$1$1$not base64!$AAAA",
])
def test_a_malformed_or_foreign_hash_is_no_match_not_an_error(stored: str) -> None:
    assert verify_password("anything", stored) is False
    assert needs_rehash(stored)


def test_an_overlong_password_is_refused_when_set_and_never_matches() -> None:
    with pytest.raises(PasswordTooLong):
        hash_password("x" * (MAX_PASSWORD_BYTES + 1), FAST)
    assert not verify_password("x" * (MAX_PASSWORD_BYTES + 1), hash_password("x", FAST))


SECRET_1, SECRET_2 = os.urandom(32), os.urandom(32)


@settings(max_examples=100, deadline=None)
@given(value=st.text(max_size=80), other=st.text(max_size=80))
def test_tokens_are_equal_exactly_for_equal_values(value: str, other: str) -> None:
    index = BlindIndex({1: SECRET_1})
    same = index.token("email", value) == index.token("email", other)
    assert same == (value == other)
    assert index.matches(index.token("email", value), "email", value)


def test_tokens_differ_by_purpose_and_by_secret() -> None:
    index = BlindIndex({1: SECRET_1})
    assert index.token("email", "ana") != index.token("username", "ana")
    assert BlindIndex({1: SECRET_2}).token("email", "ana") != index.token("email", "ana")
    assert b"ana" not in index.token("email", "ana")


def test_rotation_keeps_old_tokens_findable_and_new_ones_current() -> None:
    old = BlindIndex({1: SECRET_1})
    rotated = BlindIndex({1: SECRET_1, 2: SECRET_2})
    stored = old.token("email", "ana@example.org")
    assert stored in rotated.lookup_tokens("email", "ana@example.org")
    assert rotated.matches(stored, "email", "ana@example.org")
    assert rotated.token("email", "ana@example.org")[:2] == b"\x00\x02"
    retired = BlindIndex({2: SECRET_2})
    assert not retired.matches(stored, "email", "ana@example.org")


def test_emails_are_trimmed_and_lower_cased_before_hashing() -> None:
    index = BlindIndex({1: SECRET_1})
    assert normalise_email("  Ana@Example.ORG ") == "ana@example.org"
    assert (index.token("email", normalise_email(" Ana@Example.org"))
            == index.token("email", normalise_email("ana@example.org")))


def test_weak_or_missing_secrets_are_refused_and_never_shown() -> None:
    for secrets in ({}, {1: b"short"}, {0: SECRET_1}):
        with pytest.raises(ValueError):
            BlindIndex(secrets)
    assert SECRET_1.hex() not in repr(BlindIndex({1: SECRET_1}))
