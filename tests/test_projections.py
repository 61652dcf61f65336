"""The projection runner: in order, exactly once, rebuildable; the student directory on it."""

from __future__ import annotations

import pytest

from api.services import Services


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
            raise RuntimeError("power cut")
        real_process(cur, table, event)  # type: ignore[arg-type]

    runner.projection.process = crash_on_the_eighth  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="power cut"):
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
