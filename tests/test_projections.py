"""The projection runner: in order, exactly once, rebuildable; the student directory on it."""

from __future__ import annotations

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
