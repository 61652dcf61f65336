"""The tamper-evident log (ledger/merkle_log.py) on both backends.

Tampering is done as the database owner would: straight in a copy of the stored events, past
the append-only guard (a copy has no triggers), then `verify` must name the first failing
position and how, every time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from uuid import uuid4

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.merkle import leaf_hash, verify_consistency, verify_inclusion
from crypto.sql import Database
from ledger.application import Ledger
from ledger.merkle_log import MerkleLog, TreeHead, event_leaf
from ledger.persistence import open_database
from ledger.settings import Settings, sqlite_path
from tests.conftest import drop_schemas, postgres_url

AT = datetime(2026, 11, 1, 12, tzinfo=UTC)


def merkle_log(ledger: Ledger, settings: Settings) -> MerkleLog:
    return MerkleLog(open_database(settings.database_url, settings.schema),
                     ledger.recorder.events_table_name, signer=ledger.signer)


def history(ledger: Ledger, people: int = 6) -> list[object]:
    ids = [ledger.register_student(f"Student {i}", "12") for i in range(people)]
    for person in ids[::2]:
        ledger.rename(person, "Renamed Person")
    return ids


def test_a_sealed_log_verifies_and_its_heads_chain(ledger: Ledger, settings: Settings) -> None:
    log = merkle_log(ledger, settings)
    history(ledger)
    first = log.sign_head(AT)
    assert first.tree_size == ledger.recorder.max_notification_id()
    assert first.verify(ledger.signer.public_key)
    history(ledger, 3)
    second = log.sign_head(AT)
    assert second.tree_size > first.tree_size
    report = log.verify(ledger.signer.public_key)
    assert report.ok and report.head == second and report.events == second.tree_size
    tree = log.tree()
    # each head extends the one before it (RFC 6962 consistency), as an auditor checks it
    assert verify_consistency(first.tree_size, first.root_hash, second.tree_size,
                              second.root_hash,
                              tree.consistency_proof(first.tree_size, second.tree_size))
    # and every event is in the tree, provably, from its stored row alone
    for notification_id in (1, second.tree_size):
        position = log.position_of(notification_id)
        assert position == notification_id - 1
        assert verify_inclusion(tree.leaf(position), position, second.tree_size,
                                tree.inclusion_proof(position, second.tree_size),
                                second.root_hash)
    assert log.seal() == 0  # nothing twice
    assert TreeHead.from_dict(second.to_dict()) == second


def test_unsealed_events_are_reported_not_failed(ledger: Ledger, settings: Settings) -> None:
    log = merkle_log(ledger, settings)
    history(ledger, 2)
    log.sign_head(AT)
    ledger.register_student("Late", "12")
    report = log.verify(ledger.signer.public_key)
    assert report.ok and report.unsealed == 1


def test_verify_passes_after_erasure_and_kek_rotation(ledger: Ledger, settings: Settings) -> None:
    log = merkle_log(ledger, settings)
    people = history(ledger)
    head = log.sign_head(AT)
    ledger.erase_subject(people[0], "user_request")  # type: ignore[arg-type]
    ledger.keys.rotate_kek()
    report = log.verify(ledger.signer.public_key, head)
    assert report.ok and report.unsealed > 0  # the receipt's events, not yet sealed
    assert log.sign_head(AT).tree_size == report.events
    assert log.verify(ledger.signer.public_key).ok


def test_a_head_not_signed_by_the_ledger_or_of_another_history_fails(
        ledger: Ledger, settings: Settings, tmp_path: object) -> None:
    log = merkle_log(ledger, settings)
    history(ledger)
    head = log.sign_head(AT)
    forged = TreeHead(head.tree_size, head.root_hash, head.signed_at, b"\x00" * 64)
    failed = log.verify(ledger.signer.public_key, forged).discrepancy
    assert failed is not None and failed.how == "unsigned"
    # A head the ledger's key signed over another history (a fork): same size, other root.
    other = TreeHead(head.tree_size, bytes(32), AT)
    fork = TreeHead(other.tree_size, other.root_hash, other.signed_at,
                    ledger.signer.sign(other.message()))
    failed = log.verify(ledger.signer.public_key, fork).discrepancy
    assert failed is not None and failed.how == "forked"


def test_each_leaf_is_the_documented_hash_of_its_stored_row(ledger: Ledger,
                                                           settings: Settings) -> None:
    log = merkle_log(ledger, settings)
    history(ledger, 3)
    log.seal()
    tree = log.tree()
    rows = ledger.recorder.select_notifications(start=None, limit=100)
    assert len(tree) == len(rows)
    for position, row in enumerate(rows):
        assert tree.leaf(position) == leaf_hash(event_leaf(
            "ledger", row.id, row.originator_id.bytes, row.originator_version, row.topic,
            row.state))


def test_the_leaf_layout_is_the_documented_one() -> None:
    stream = bytes(range(16))
    leaf = event_leaf("ledger", 7, stream, 2, "t:T", b"\x01\x02")
    assert leaf == (b"\x06ledger" + (7).to_bytes(8, "big") + stream + (2).to_bytes(8, "big")
                    + b"\x00\x03t:T" + b"\x00\x00\x00\x02\x01\x02")


# -- tampering ---------------------------------------------------------------------------------
class Copy:
    """A copy of a sealed ledger's events and leaves, with no append-only guard."""

    def __init__(self, db: Database, table: str, id_column: str, execute: object) -> None:
        self.log = MerkleLog(db, table)
        self.table, self.id = table, id_column
        self.execute = execute

    def run(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        return self.execute(sql, params)  # type: ignore[operator, no-any-return]

    def change(self, nid: int, offset: int) -> None:
        (state,) = self.run(f"SELECT state FROM {self.table} WHERE {self.id} = ?", (nid,))[0]
        state = bytes(state)
        at = offset % len(state)
        self.run(f"UPDATE {self.table} SET state = ? WHERE {self.id} = ?",
                 (state[:at] + bytes([state[at] ^ 1]) + state[at + 1:], nid))

    def delete(self, nid: int) -> None:
        self.run(f"DELETE FROM {self.table} WHERE {self.id} = ?", (nid,))

    def swap(self, a: int, b: int) -> None:
        for old, new in ((a, -1), (b, a), (-1, b)):
            self.run(f"UPDATE {self.table} SET {self.id} = ? WHERE {self.id} = ?", (new, old))

    def insert(self, nid: int) -> None:
        """A forged event slipped in at `nid`, the later ones renumbered to make room."""
        (last,) = self.run(f"SELECT MAX({self.id}) FROM {self.table}")[0]
        for moving in range(int(last), nid - 1, -1):  # type: ignore[call-overload]
            self.run(f"UPDATE {self.table} SET {self.id} = ? WHERE {self.id} = ?",
                     (moving + 1, moving))
        (version, topic, state) = self.run(f"SELECT originator_version, topic, state FROM"
                                           f" {self.table} WHERE {self.id} = ?", (nid + 1,))[0]
        self.run(f"INSERT INTO {self.table} ({self.id}, originator_id, originator_version,"
                 " topic, state) VALUES (?, ?, ?, ?, ?)",
                 (nid, str(uuid4()), version, topic, state))


@pytest.fixture
def sealed(ledger: Ledger, settings: Settings) -> Iterator[tuple[Ledger, Settings, int]]:
    log = merkle_log(ledger, settings)
    people = history(ledger, 8)
    ledger.erase_subject(people[1], "user_request")  # type: ignore[arg-type]
    size = log.sign_head(AT).tree_size
    yield ledger, settings, size


def _copy(settings: Settings, table: str) -> Iterator[Copy]:
    if settings.backend == "sqlite":
        source = sqlite3.connect(sqlite_path(settings.database_url))
        path = sqlite_path(settings.database_url) + f".{uuid4().hex[:8]}.copy"
        target = sqlite3.connect(path, isolation_level=None)
        source.backup(target)
        source.close()
        for (trigger,) in target.execute("SELECT name FROM sqlite_master WHERE type ="
                                         " 'trigger'").fetchall():
            target.execute(f"DROP TRIGGER {trigger}")

        def run_sqlite(sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
            return target.execute(sql, params).fetchall()
        yield Copy(open_database(f"sqlite:///{path}", "ledger"), table, "rowid", run_sqlite)
        target.close()
        return
    schema = f"c_{uuid4().hex[:12]}"
    with psycopg.connect(postgres_url(), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        for copied in (table, "merkle_leaf_runs", "merkle_tree_heads"):
            conn.execute(f"CREATE TABLE {schema}.{copied} AS TABLE {settings.schema}.{copied}")

        conn.execute(f"SET search_path = {schema}")

        def run_pg(sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
            cur = conn.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []
        try:
            yield Copy(open_database(postgres_url(), schema), table, "notification_id", run_pg)
        finally:
            drop_schemas(schema)


def _tamper(copy: Copy, how: str, position: int, other: int, offset: int) -> None:
    nid = position + 1  # no gaps in these logs
    if how == "changed":
        copy.change(nid, offset)
    elif how == "missing":
        copy.delete(nid)
    elif how == "reordered":
        copy.swap(nid, other + 1)
    else:
        copy.insert(nid)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(how=st.sampled_from(["changed", "missing", "reordered", "inserted"]),
       data=st.data())
def test_any_tampering_is_named_by_position_and_kind(
        sealed: tuple[Ledger, Settings, int], how: str, data: st.DataObject) -> None:
    ledger, settings_, size = sealed
    position = data.draw(st.integers(0, size - 2), label="position")
    other = data.draw(st.integers(position + 1, size - 1), label="other")
    offset = data.draw(st.integers(0, 10_000), label="offset")
    for copy in _copy(settings_, ledger.recorder.events_table_name):
        assert copy.log.verify(ledger.signer.public_key).ok
        _tamper(copy, how, position, other, offset)
        report = copy.log.verify(ledger.signer.public_key)
        assert report.discrepancy is not None, how
        assert (report.discrepancy.position, report.discrepancy.how) == (position, how)


def as_owner(ledger: Ledger, settings: Settings, statement: str) -> None:
    """Run `statement` on the live store as its owner, past every guard (SQLite: triggers
    dropped; PostgreSQL: triggers off for the session). `{events}`, `{id}`: the events table
    and its notification id column."""
    table = ledger.recorder.events_table_name
    if settings.backend == "sqlite":
        owner = sqlite3.connect(sqlite_path(settings.database_url), isolation_level=None)
        for verb in ("update", "delete"):
            owner.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
        owner.execute(statement.format(events=table, id="rowid"))
        owner.close()
        return
    with psycopg.connect(postgres_url(), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(statement.format(events=f"{settings.schema}.{table}",
                                      id="notification_id"))


def test_leaves_and_heads_are_append_only_and_the_live_store_is_checked(
        ledger: Ledger, settings: Settings) -> None:
    """The database refuses to change a leaf or a head; the owner, bypassing every guard,
    changes a stored event in place, and verify names it."""
    log = merkle_log(ledger, settings)
    history(ledger, 3)
    log.sign_head(AT)
    for statement in ("UPDATE merkle_leaf_runs SET leaves = leaves WHERE first_position = 0",
                      "DELETE FROM merkle_tree_heads"):
        with pytest.raises(Exception, match="append-only"), log.db.transaction() as cur:
            cur.execute(statement)
    as_owner(ledger, settings, "UPDATE {events} SET topic = topic || 'x' WHERE {id} = 2")
    failure = log.verify(ledger.signer.public_key).discrepancy
    assert failure is not None and (failure.position, failure.how) == (1, "changed")


def test_gaps_in_the_ids_are_no_leaves_and_positions_skip_them(ledger: Ledger,
                                                               settings: Settings) -> None:
    """Ids a failed insert took and never used (made here by the owner deleting rows before
    any seal): no leaf, the positions after them shift down, and verify is content."""
    log = merkle_log(ledger, settings)
    history(ledger, 5)
    as_owner(ledger, settings, "DELETE FROM {events} WHERE {id} IN (2, 3)")
    head = log.sign_head(AT)
    assert [log.position_of(i) for i in (1, 2, 3, 4, 5)] == [0, None, None, 1, 2]
    assert log.position_of(head.tree_size + 2) == head.tree_size - 1
    assert log.position_of(head.tree_size + 3) is None
    assert log.verify(ledger.signer.public_key).ok
