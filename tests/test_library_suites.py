"""The `eventsourcing` library's own test cases on the ledger's pieces: a peer's suite, not ours.

- `TranscoderTestCase` on `ledger.transcoder.OrjsonTranscoder`.
- `ApplicationTestCase` and `ExampleApplicationTestCase` on applications whose mapper is the
  ledger's `SealedMapper.bound_to(keys)` (keys from `open_subject_keys`), whose transcoder is the
  `OrjsonTranscoder`, and whose persistence is the ledger's (`eventsourcing_env(settings)`): a
  SQLite file, or PostgreSQL in a schema of its own.
- Recorder test cases on the recorders the ledger configures (the library's SQLite and
  PostgreSQL application recorder for events, aggregate recorder for snapshots), each with the
  ledger's append-only triggers installed by `enforce_append_only`. None of these library tests
  updates or deletes a stored event, so none had to be skipped for the triggers.

As upstream does, the imported base classes are deleted at the end so pytest does not collect them.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
from typing import Any, ClassVar
from unittest import TestCase
from uuid import uuid4

import pytest
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    InfrastructureFactory,
    TrackingRecorder,
    Transcoder,
    Transcoding,
)
from eventsourcing.tests.application import (
    ApplicationTestCase,
    EmailAddressAsStr,
    ExampleApplicationTestCase,
)
from eventsourcing.tests.persistence import (
    AggregateRecorderTestCase,
    ApplicationRecorderTestCase,
    CustomType1AsDict,
    CustomType2AsDict,
    Mydict,
    MyInt,
    MyList,
    MyStr,
    NonInterleavingNotificationIDsBaseCase,
    TrackingRecorderTestCase,
    TranscoderTestCase,
)
from eventsourcing.utils import Environment, get_topic, register_topic

from crypto import SubjectKeys
from ledger.persistence import enforce_append_only, eventsourcing_env, open_subject_keys
from ledger.sealing import SealedMapper
from ledger.settings import Settings
from ledger.transcoder import OrjsonTranscoder
from tests.conftest import drop_schemas, postgres_url

# -- transcoder -------------------------------------------------------------------------------


class MydictAsDict(Transcoding):
    type = Mydict
    name = "mydict"

    def encode(self, obj: Mydict[str, Any]) -> dict[str, Any]:
        return dict(obj)

    def decode(self, data: dict[str, Any]) -> Mydict[str, Any]:
        return Mydict(data)


class MyListAsList(Transcoding):
    type = MyList
    name = "mylist"

    def encode(self, obj: MyList[Any]) -> list[Any]:
        return list(obj)

    def decode(self, data: list[Any]) -> MyList[Any]:
        return MyList(data)


class MyStrAsStr(Transcoding):
    type = MyStr
    name = "mystr"

    def encode(self, obj: MyStr) -> str:
        return str(obj)

    def decode(self, data: str) -> MyStr:
        return MyStr(data)


class MyIntAsInt(Transcoding):
    type = MyInt
    name = "myint"

    def encode(self, obj: MyInt) -> int:
        return int(obj)

    def decode(self, data: int) -> MyInt:
        return MyInt(data)


class TestOrjsonTranscoder(TranscoderTestCase):
    """All 14 tests run. The builtin subclasses (dict, list, str, int) are tagged by the
    transcodings registered here, as upstream's own orjson transcoder test registers them: the
    `OrjsonTranscoder` refuses an unregistered subclass (`TranscodingNotRegisteredError`)
    rather than silently turning it into its base type as the stdlib `JSONTranscoder` does."""

    def construct_transcoder(self) -> Transcoder:
        transcoder = OrjsonTranscoder()
        for transcoding in (CustomType1AsDict(), CustomType2AsDict(), MydictAsDict(),
                            MyListAsList(), MyStrAsStr(), MyIntAsInt()):
            transcoder.register(transcoding)
        return transcoder

    def test_unregistered_builtin_subclass_is_refused_not_flattened(self) -> None:
        with self.assertRaises(TypeError):
            OrjsonTranscoder().encode({"a": Mydict({"b": 1})})


class BankAccountsTranscoder(OrjsonTranscoder):
    """`BankAccounts.register_transcodings()` is called by the library only for a
    `JSONTranscoder`; with the `OrjsonTranscoder` (named by `TRANSCODER_TOPIC`) the example
    application's value type is registered by the transcoder itself."""

    def __init__(self) -> None:
        super().__init__()
        self.register(EmailAddressAsStr())


# -- applications on the ledger's mapper, transcoder and persistence --------------------------


class WithLedgerInfrastructure(TestCase):
    """Sets the environment from which the library's test applications take their persistence,
    mapper and transcoder, as upstream's `WithSQLite`/`WithPostgres` do."""

    backend: ClassVar[str] = "sqlite"
    expected_factory_topic = "eventsourcing.sqlite:SQLiteFactory"
    _env_keys: ClassVar[tuple[str, ...]] = (
        "PERSISTENCE_MODULE", "CREATE_TABLE", "SQLITE_DBNAME", "POSTGRES_DBNAME",
        "POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_USER", "POSTGRES_PASSWORD",
        "POSTGRES_SCHEMA", "MAPPER_TOPIC", "TRANSCODER_TOPIC",
    )

    def setUp(self) -> None:
        super().setUp()
        self._tmp = tempfile.TemporaryDirectory()
        if self.backend == "postgres":
            self.settings = Settings.build(database_url=postgres_url(),
                                           schema=f"t_{uuid4().hex[:12]}",
                                           var_dir=self._tmp.name, key_sync_seconds=0.2)
        else:
            self.settings = Settings.build(var_dir=self._tmp.name, key_sync_seconds=0.2)
        self.keys: SubjectKeys = open_subject_keys(self.settings)
        mapper_topic = f"tests.peer_suites:SealedMapper_{uuid4().hex}"
        register_topic(mapper_topic, SealedMapper.bound_to(self.keys))
        library_env = eventsourcing_env(self.settings)
        # Every key set here is put back after: one left behind would steer the next ledger.
        self._saved_env = {k: os.environ.get(k) for k in (*self._env_keys, *library_env)}
        os.environ.update(library_env)
        os.environ["CREATE_TABLE"] = "y"
        os.environ["MAPPER_TOPIC"] = mapper_topic
        os.environ["TRANSCODER_TOPIC"] = get_topic(BankAccountsTranscoder)
        if self.backend == "sqlite":
            self._install_sqlite_triggers()

    def _install_sqlite_triggers(self) -> None:
        # On SQLite every application shares the file's `stored_events`/`stored_snapshots`
        # tables, so the ledger's append-only triggers apply to the peer's applications too.
        factory = InfrastructureFactory.construct(
            Environment("Application", {**os.environ, "IS_SNAPSHOTTING_ENABLED": "y"})
        )
        factory.aggregate_recorder("snapshots")
        enforce_append_only(factory.application_recorder(), "sqlite")
        factory.close()

    def tearDown(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self.keys.close()
        if self.backend == "postgres":
            drop_schemas(self.settings.schema, self.settings.keystore_schema)
        self._tmp.cleanup()
        super().tearDown()


class WithLedgerPostgres(WithLedgerInfrastructure):
    backend = "postgres"
    expected_factory_topic = "eventsourcing.postgres:PostgresFactory"


class TestApplicationOnLedgerSQLite(WithLedgerInfrastructure, ApplicationTestCase):
    pass


class TestExampleApplicationOnLedgerSQLite(WithLedgerInfrastructure, ExampleApplicationTestCase):
    pass


@pytest.mark.postgres
class TestApplicationOnLedgerPostgres(WithLedgerPostgres, ApplicationTestCase):
    pass


@pytest.mark.postgres
class TestExampleApplicationOnLedgerPostgres(WithLedgerPostgres, ExampleApplicationTestCase):
    pass


class TestPeerApplicationsAreSealed(WithLedgerInfrastructure):
    """The suites above really ran on the sealed mapper: what they stored is ciphertext."""

    def test_stored_state_is_sealed_under_the_aggregate_key(self) -> None:
        from eventsourcing.tests.application import BankAccounts

        app = BankAccounts()
        account_id = app.open_account("Alice Peer", "alice@example.com")
        stored = app.recorder.select_events(account_id)
        assert stored and all(b"Alice Peer" not in s.state for s in stored)
        assert stored[0].state[:1] == b"\x01"  # sealed under the stream's own subject
        assert self.keys.store.load(account_id) is not None
        with (pytest.raises(sqlite3.IntegrityError, match="append-only"),
              sqlite3.connect(os.environ["SQLITE_DBNAME"]) as conn):
            conn.execute("UPDATE stored_events SET state = x'00'")
        app.close()


# -- recorders the ledger configures, with its append-only triggers ---------------------------


class LedgerRecorders:
    """Builds the recorders exactly as `Ledger` does: the factory from `eventsourcing_env`,
    application name "Ledger", snapshots on, then `enforce_append_only`."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self._tmp = tempfile.TemporaryDirectory()
        self._factories: list[InfrastructureFactory[Any]] = []
        self._schemas: list[str] = []

    def _settings(self) -> Settings:
        if self.backend == "postgres":
            schema = f"t_{uuid4().hex[:12]}"
            self._schemas.append(schema)
            return Settings.build(database_url=postgres_url(), schema=schema,
                                  var_dir=self._tmp.name)
        return Settings.build(var_dir=os.path.join(self._tmp.name, uuid4().hex))

    def factory(self) -> InfrastructureFactory[Any]:
        env = {**eventsourcing_env(self._settings()), "IS_SNAPSHOTTING_ENABLED": "y"}
        factory = InfrastructureFactory.construct(Environment("Ledger", env))
        self._factories.append(factory)
        return factory

    def events_and_snapshots(self) -> tuple[ApplicationRecorder, AggregateRecorder]:
        factory = self.factory()
        snapshots = factory.aggregate_recorder("snapshots")
        events = factory.application_recorder()
        enforce_append_only(events, self.backend)
        return events, snapshots

    def close(self) -> None:
        for factory in self._factories:
            factory.close()
        if self._schemas:
            drop_schemas(*self._schemas)
        self._tmp.cleanup()


class WithLedgerRecorders(TestCase):
    backend: ClassVar[str] = "sqlite"

    def setUp(self) -> None:
        super().setUp()
        self._threads_before = set(threading.enumerate())
        self.recorders = LedgerRecorders(self.backend)

    def tearDown(self) -> None:
        # The library's concurrency tests signal their reader threads to stop but do not join
        # them: closing the datastore under a reader still in a query crashes sqlite3.
        for thread in set(threading.enumerate()) - self._threads_before:
            if "read_continuously" in thread.name:
                thread.join(timeout=10)
        self.recorders.close()
        super().tearDown()


class WithLedgerApplicationRecorder(WithLedgerRecorders):
    def create_recorder(self) -> ApplicationRecorder:
        return self.recorders.events_and_snapshots()[0]


class WithLedgerSnapshotRecorder(WithLedgerRecorders):
    def create_recorder(self) -> AggregateRecorder:
        return self.recorders.events_and_snapshots()[1]


class WithLedgerTrackingRecorder(WithLedgerRecorders):
    """The ledger's runners keep their own positions; this is the library's tracking recorder
    made by the ledger's factory, beside the append-only tables, for completeness."""

    def create_recorder(self) -> TrackingRecorder:
        return self.recorders.factory().tracking_recorder()


class TestLedgerSQLiteEventRecorder(WithLedgerApplicationRecorder, ApplicationRecorderTestCase):
    pass


class TestLedgerSQLiteSnapshotRecorder(WithLedgerSnapshotRecorder, AggregateRecorderTestCase):
    pass


class TestLedgerSQLiteNonInterleaving(WithLedgerApplicationRecorder,
                                      NonInterleavingNotificationIDsBaseCase):
    pass


class TestLedgerSQLiteTrackingRecorder(WithLedgerTrackingRecorder, TrackingRecorderTestCase):
    pass


@pytest.mark.postgres
class TestLedgerPostgresEventRecorder(WithLedgerApplicationRecorder,
                                      ApplicationRecorderTestCase):
    """The SQLite recorder has no subscriptions (the ledger's runners poll on both)."""

    backend = "postgres"

    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()


@pytest.mark.postgres
class TestLedgerPostgresSnapshotRecorder(WithLedgerSnapshotRecorder, AggregateRecorderTestCase):
    backend = "postgres"


@pytest.mark.postgres
class TestLedgerPostgresNonInterleaving(WithLedgerApplicationRecorder,
                                        NonInterleavingNotificationIDsBaseCase):
    backend = "postgres"


@pytest.mark.postgres
class TestLedgerPostgresTrackingRecorder(WithLedgerTrackingRecorder, TrackingRecorderTestCase):
    backend = "postgres"


del AggregateRecorderTestCase
del ApplicationRecorderTestCase
del ApplicationTestCase
del ExampleApplicationTestCase
del NonInterleavingNotificationIDsBaseCase
del TrackingRecorderTestCase
del TranscoderTestCase
del WithLedgerInfrastructure
del WithLedgerPostgres
del WithLedgerRecorders
del WithLedgerApplicationRecorder
del WithLedgerSnapshotRecorder
del WithLedgerTrackingRecorder
