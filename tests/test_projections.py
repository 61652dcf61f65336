"""The projection runner: in order, exactly once, rebuildable; the student directory on it."""

from __future__ import annotations

import contextlib
from uuid import uuid4

import pytest

from api.services import Services
from crypto.sql import Cursor
from ledger.people import Person, Student
from ledger.persistence import open_database
from ledger.settings import Settings
from projections.runner import Projection, ProjectionRunner
from tests.test_leak_scan import haystack


def test_directory_lists_registered_people_with_sealed_names(services: Services) -> None:
    ana = services.ledger.register_student("Ana", "12")
    ben = services.ledger.register_teacher("Ben")
    services.ledger.rename(ana, "Ana B")
    services.catch_up()
    entries = {e.id: e for e in services.directory_reader.entries()}
    assert entries[ana].display_name == "Ana B" and entries[ana].kind == "student"
    assert entries[ana].age == "12"
    assert entries[ben].kind == "teacher"
    assert [e.id for e in services.directory_reader.entries(kind="teacher")] == [ben]


def test_many_entries_read_at_once_equal_one_by_one_and_leave_out_the_erased(
        services: Services) -> None:
    people = [services.ledger.register_student(f"S{i}", "12") for i in range(7)]
    services.ledger.erase_subject(people[3], "user_request")
    services.catch_up()
    services.ledger.keys.forget_cached_keys()  # the keys come back in one round trip

    many = services.directory_reader.entries_of([*people, uuid4()])

    assert set(many) == set(people) - {people[3]}
    assert all(many[p] == services.directory_reader.entry(p) for p in many)
    assert services.directory_reader.entries_of([]) == {}


def test_erased_person_row_goes_live_and_after_rebuild(services: Services) -> None:
    ana = services.ledger.register_student("Ana", "12")
    ben = services.ledger.register_student("Ben", "13")
    services.catch_up()
    services.ledger.erase_subject(ana, "user_request")
    services.catch_up()
    assert [e.id for e in services.directory_reader.entries()] == [ben]
    generation = services.directory.rebuild()
    assert generation == 2
    assert [e.id for e in services.directory_reader.entries()] == [ben]
    assert services.directory_reader.entry(ana) is None


def test_rebuild_equals_live_and_catch_up_is_idempotent(services: Services) -> None:
    ids = [services.ledger.register_student(f"S{i}", "10") for i in range(25)]
    for i in ids[:10]:
        services.ledger.rename(i, "Renamed")
    services.directory.batch_size = 7  # several batches, several transactions
    services.catch_up()
    live = services.directory_reader.entries(limit=1000)
    assert services.directory.run_once() == 0
    services.directory.rebuild()
    assert services.directory_reader.entries(limit=1000) == live
    assert services.directory.position() == services.ledger.recorder.max_notification_id()


class PowerCut(BaseException):
    """A crash: not an error of the event (which would be set aside), so nothing after it runs
    in this process; a BaseException, as a KeyboardInterrupt or SystemExit is."""


def test_a_crash_mid_batch_neither_loses_nor_repeats_events(services: Services) -> None:
    ids = [services.ledger.register_student(f"S{i}", "11") for i in range(12)]
    runner = services.directory
    runner.batch_size = 5
    real_process = runner.projection.process
    calls = 0

    def crash_on_the_eighth(cur: object, table: str, event: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 8:
            raise PowerCut("power cut")
        real_process(cur, table, event)  # type: ignore[arg-type]

    runner.projection.process = crash_on_the_eighth  # type: ignore[method-assign]
    with pytest.raises(PowerCut, match="power cut"):
        runner.catch_up()
    assert runner.position() == 5  # the first batch committed, the second rolled back whole
    runner.projection.process = real_process  # type: ignore[method-assign]
    runner.catch_up()  # a duplicate insert would raise here: each event applied once
    assert sorted(e.id for e in services.directory_reader.entries()) == sorted(ids)


def test_two_runners_racing_apply_each_event_once(services: Services) -> None:
    import threading

    from projections.directory import StudentDirectory
    from projections.runner import ProjectionRunner

    for i in range(40):
        services.ledger.register_student(f"S{i}", "11")
    other = ProjectionRunner(services.ledger, services.read_models,
                             StudentDirectory(services.ledger.keys), batch_size=3)
    services.directory.batch_size = 4
    errors: list[BaseException] = []

    def follow(runner: ProjectionRunner) -> None:
        try:
            runner.catch_up()
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=follow, args=(r,)) for r in (services.directory, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(services.directory_reader.entries(limit=1000)) == 40


def test_aggregate_cache_forgets_an_erased_subject(settings: object) -> None:
    from ledger.application import ErasedPerson, Ledger

    app = Ledger(settings, env={"AGGREGATE_CACHE_MAXSIZE": "100"})  # type: ignore[arg-type]
    try:
        ana = app.register_student("Ana", "12")
        assert app.person(ana).display_name == "Ana"  # type: ignore[union-attr]
        assert app.repository.cache is not None and app.repository.cache.get(ana) is not None
        app.erase_subject(ana, "user_request")
        try:
            app.repository.cache.get(ana)
            cached = True
        except KeyError:
            cached = False
        assert not cached
        assert isinstance(app.person(ana), ErasedPerson)
    finally:
        app.close()


# -- the directory's account fields (MIN-3, MIN-6, MIN-7) -------------------------------------
def test_directory_holds_username_login_type_and_a_young_sections_secret(
        services: Services) -> None:
    teacher = services.ledger.register_teacher("Ms Rivera")
    services.accounts.attest_parental_consent(teacher)
    words = services.sections.create(teacher, "Room 4", "csf", "2", "word")
    kim = services.sections.create_student(teacher, words, "Kim")  # no age given
    roster_kid = services.ledger.register_student("Lou", "9")
    services.settle()
    entry = services.directory_reader.entry(kim)
    student = services.ledger.person(kim)
    assert entry is not None and isinstance(student, Student)
    assert entry.age is None  # none given: counts as under 13 (MIN-3)
    assert entry.username == student.username and entry.username
    assert (entry.login_type, entry.secret_kind) == ("teacher_managed", "word")
    assert entry.secret == student.secret and entry.secret
    lou = services.directory_reader.entry(roster_kid)
    assert lou is not None and (lou.login_type, lou.secret_kind, lou.secret) == \
        ("roster_managed", None, None)

    new_secret = services.sections.reset_secret(teacher, words, kim)
    services.accounts.give_age(kim, "8")
    services.settle()
    entry = services.directory_reader.entry(kim)
    assert entry is not None and (entry.secret, entry.age) == (new_secret, "8")
    found = haystack(services.settings).find({"secret": new_secret.encode(),
                                              "username": entry.username.encode()})
    assert found == []


def test_directory_rebuild_equals_live_with_the_account_fields(services: Services) -> None:
    teacher = services.ledger.register_teacher("Ms Rivera")
    services.accounts.attest_parental_consent(teacher)
    pictures = services.sections.create(teacher, "Room 5", "csf", "K", "picture")
    kids = [services.sections.create_student(teacher, pictures, f"Kid {i}") for i in range(4)]
    services.accounts.give_age(kids[0], None)
    services.accounts.give_age(kids[1], "7")
    services.sections.reset_secret(teacher, pictures, kids[2])
    services.ledger.erase_subject(kids[3], "user_request")
    services.settle()
    live = services.directory_reader.entries(limit=100)
    assert kids[3] not in {e.id for e in live}
    services.directory.rebuild()
    assert services.directory_reader.entries(limit=100) == live


def test_a_directory_made_before_the_account_fields_is_rebuilt_on_open(
        settings: Settings) -> None:
    first = Services.open(settings)
    ana = first.ledger.register_student("Ana", "12")
    with first.read_models.transaction() as cur:  # the shape of the previous version
        cur.execute("DROP TABLE student_directory_g1")
        cur.execute("CREATE TABLE student_directory_g1 (person_id TEXT PRIMARY KEY,"
                    " kind TEXT NOT NULL, sealed_name BLOB, sealed_age BLOB,"
                    " registered_at TEXT NOT NULL)"
                    .replace("BLOB", "BYTEA" if settings.backend == "postgres" else "BLOB"))
    first.close()
    reopened = Services.open(settings)
    try:
        assert reopened.directory.live_generation() == 2
        entry = reopened.directory_reader.entry(ana)
        assert entry is not None and entry.username and entry.login_type == "roster_managed"
    finally:
        reopened.close()


def test_a_batch_reads_its_own_row_counts_on_either_backend(settings: Settings) -> None:
    """Runners send a batch's statements in one PostgreSQL pipeline; a projection may still
    read `rowcount` after a write (e.g. "was this new?") and get the right answer."""
    db = open_database(settings.read_models_url, settings.schema)
    try:
        with db.transaction() as cur:
            cur.execute("CREATE TABLE pipeline_probe (id TEXT PRIMARY KEY)")
            pipelined = getattr(cur, "pipelined", None)
            counts = []
            with pipelined() if pipelined is not None else contextlib.nullcontext():
                for key in ("a", "b", "a"):
                    cur.execute("INSERT INTO pipeline_probe (id) VALUES (?)"
                                " ON CONFLICT (id) DO NOTHING", (key,))
                    counts.append(cur.rowcount)
        assert counts == [1, 1, 0]
    finally:
        db.close()


@pytest.mark.slow  # a race: 300 pages of 2,000 upserts, about 15 s
@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_fetch_after_a_pipelined_executemany_gets_its_own_result(settings: Settings) -> None:
    """Seen in a rebuild under load: psycopg handed a fetch in a pipeline the result of an
    earlier executemany (about one page in 70). A projection writes a page with executemany
    and then reads (an erasure's look-up), so every such read must get its own rows."""
    db = open_database(settings.read_models_url, settings.schema)
    try:
        with db.transaction() as cur:
            cur.execute("CREATE TABLE many_probe (a TEXT, level TEXT, n INTEGER,"
                        " PRIMARY KEY (a, level))")
            cur.execute("CREATE TABLE one_probe (p TEXT PRIMARY KEY)")
        for page in range(300):
            with db.transaction() as cur:
                pipelined = getattr(cur, "pipelined", None)
                with pipelined() if pipelined is not None else contextlib.nullcontext():
                    cur.executemany("INSERT INTO one_probe (p) VALUES (?)", [(f"p{page}",)])
                    cur.executemany("INSERT INTO many_probe AS m (a, level, n) VALUES (?, ?, ?)"
                                    " ON CONFLICT (a, level) DO UPDATE SET n = m.n + 1",
                                    [(str(uuid4()), f"level-{i}", i) for i in range(2_000)])
                    cur.execute("SELECT count(*) FROM one_probe")
                    assert cur.fetchone()[0] == page + 1
    finally:
        db.close()


class Renames(Projection):
    """Counts renames: it reads `Person.Renamed` only."""

    name = "renames"
    consumes = (Person.Renamed,)

    def __init__(self) -> None:
        self.seen: list[object] = []

    def create_tables(self, cur: Cursor, table: str, blob: str) -> None:
        cur.execute(f"CREATE TABLE {table} (person_id TEXT NOT NULL)")

    def process(self, cur: Cursor, table: str, event: object) -> None:
        self.seen.append(event)
        cur.execute(f"INSERT INTO {table} (person_id) VALUES (?)",
                    (str(event.originator_id),))  # type: ignore[attr-defined]

    def subject_columns(self, table: str) -> list[tuple[str, tuple[str, ...]]]:
        return [(table, ("person_id",))]


def test_a_projection_is_handed_only_what_it_reads_and_passes_over_the_rest(
        services: Services) -> None:
    """Pages holding none of its events still move its position, live and rebuilt."""
    people = [services.ledger.register_student(f"S{i}", "12") for i in range(12)]
    for person in people[9:]:
        services.ledger.rename(person, "Renamed")
    renames = Renames()
    runner = ProjectionRunner(services.ledger, services.read_models, renames, batch_size=4,
                              rebuild_batch_size=5)
    end = services.ledger.recorder.max_notification_id()
    assert runner.catch_up() == end and runner.position() == end
    assert [type(e) for e in renames.seen] == [Person.Renamed] * 3
    renames.seen.clear()
    runner.rebuild()
    assert [e.originator_id for e in renames.seen] == people[9:]  # type: ignore[attr-defined]
    assert runner.position() == end
