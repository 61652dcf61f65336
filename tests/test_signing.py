"""The ledger's signing key, as an operator and an auditor see it.

- A key file is created once, mode 0600, and every later load (or racing first load) gives the
  same key; a key from the environment signs the same as from the file.
- The private key never shows in repr or str, in raw, hex or base64.
- Signatures verify under the public key, published as text, and under no other key; any flipped
  bit fails; malformed input gives False (or a clear ValueError when parsing key text), not a crash.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import LedgerPublicKey, LedgerSigner

PROPERTY = settings(max_examples=100, deadline=None)
SIGNER = LedgerSigner.from_environment(base64.b64encode(bytes(range(32))).decode())
OTHER = LedgerSigner.from_environment(base64.b64encode(bytes(range(1, 33))).decode())


def private_raw(path: Path) -> bytes:
    return base64.b64decode(json.loads(path.read_text())["ed25519_private_key"])


def test_key_file_is_created_once_with_mode_0600_and_loads_to_the_same_key(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys" / "ledger-signing.json"
    first = LedgerSigner.from_file(str(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = LedgerSigner.from_file(str(path))
    assert again.public_key == first.public_key
    assert os.listdir(path.parent) == ["ledger-signing.json"]  # no temporary file left behind
    signature = again.sign(b"statement")
    assert first.public_key.verify(b"statement", signature)


def test_racing_first_starts_all_end_with_the_same_key(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger-signing.json")
    workers = 16
    barrier = threading.Barrier(workers)
    keys: list[LedgerPublicKey] = []
    lock = threading.Lock()

    def start() -> None:
        barrier.wait()
        key = LedgerSigner.from_file(path).public_key
        with lock:
            keys.append(key)

    threads = [threading.Thread(target=start) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == workers
    assert len(set(keys)) == 1
    assert keys[0] == LedgerSigner.from_file(path).public_key
    assert os.listdir(tmp_path) == ["ledger-signing.json"]


def test_the_environment_gives_the_same_key_as_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ledger-signing.json"
    from_file = LedgerSigner.from_file(str(path))
    value = base64.b64encode(private_raw(path)).decode()
    from_env = LedgerSigner.from_environment(value)
    assert from_env.public_key == from_file.public_key
    assert from_file.public_key.verify(b"m", from_env.sign(b"m"))


@pytest.mark.parametrize("value", ["", "not base64!", base64.b64encode(b"x" * 31).decode(),
                                   base64.b64encode(b"x" * 64).decode(), "\udcff"])
def test_a_bad_environment_value_is_refused_without_echoing_it(value: str) -> None:
    with pytest.raises(ValueError) as raised:
        LedgerSigner.from_environment(value)
    assert value == "" or value not in str(raised.value)


def test_a_malformed_key_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "ledger-signing.json"
    path.write_text('{"ed25519_private_key": "c2VjcmV0LWJ1dC1zaG9ydA=="}')
    with pytest.raises(ValueError) as raised:
        LedgerSigner.from_file(str(path))
    assert "c2VjcmV0" not in str(raised.value)


def test_the_private_key_never_appears_in_repr_or_str(tmp_path: Path) -> None:
    path = tmp_path / "ledger-signing.json"
    signer = LedgerSigner.from_file(str(path))
    raw = private_raw(path)
    for shown in (repr(signer), str(signer), f"{signer}", repr([signer])):
        for form in (raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode(),
                     base64.urlsafe_b64encode(raw).decode(), repr(raw), raw.decode("latin-1")):
            assert form not in shown
        assert signer.public_key.key_id in shown


def test_the_signer_cannot_be_pickled() -> None:
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(SIGNER)


def test_public_key_text_has_one_spelling() -> None:
    text = LedgerPublicKey(bytes(32)).to_text()
    assert text.endswith("A=")
    with pytest.raises(ValueError):
        LedgerPublicKey.from_text(text[:-2] + "B=")  # same bytes, spare bits set


def test_key_id_is_a_short_stable_fingerprint_of_the_public_key() -> None:
    key = SIGNER.public_key
    assert len(key.key_id) == 16
    assert int(key.key_id, 16) >= 0
    assert LedgerPublicKey(key.raw).key_id == key.key_id
    assert OTHER.public_key.key_id != key.key_id


@PROPERTY
@given(st.binary(max_size=256))
def test_a_signature_verifies_under_the_published_key_and_no_other(message: bytes) -> None:
    signature = SIGNER.sign(message)
    published = LedgerPublicKey.from_text(SIGNER.public_key.to_text())
    assert published == SIGNER.public_key
    assert published.verify(message, signature)
    assert not OTHER.public_key.verify(message, signature)
    assert not published.verify(message + b"\x00", signature)


@PROPERTY
@given(st.binary(max_size=64), st.integers(min_value=0, max_value=511))
def test_any_flipped_signature_bit_fails(message: bytes, bit: int) -> None:
    signature = bytearray(SIGNER.sign(message))
    signature[bit // 8] ^= 1 << (bit % 8)
    assert not SIGNER.public_key.verify(message, bytes(signature))


@PROPERTY
@given(st.one_of(st.binary(max_size=100), st.text(max_size=10), st.none(), st.integers()))
def test_garbage_signatures_give_false_not_an_exception(signature: object) -> None:
    assert SIGNER.public_key.verify(b"m", signature) is False  # type: ignore[arg-type]
    assert SIGNER.public_key.verify(signature, SIGNER.sign(b"m")) is False  # type: ignore[arg-type]


@PROPERTY
@given(st.one_of(st.text(max_size=80), st.binary(max_size=40).map(
    lambda b: base64.b64encode(b).decode())))
def test_public_key_text_is_parsed_or_refused_with_a_value_error(text: str) -> None:
    try:
        key = LedgerPublicKey.from_text(text)
    except ValueError as error:
        assert "public key" in str(error)
    else:
        assert len(key.raw) == 32
        assert key.to_text() == text.strip()
