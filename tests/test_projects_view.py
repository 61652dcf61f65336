"""The projects read model and the gallery (PRG-2, AGE-3), both backends: listings follow the
log, the gallery shows an owner's initial only, erased owners vanish live and after a rebuild,
and their remixed projects' remixes stay; soft-deleted owners (DEL-1) are hidden until their
deletion is withdrawn (DEL-2)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from ledger.application import Ledger
from ledger.media import MediaStore
from ledger.people import Person
from ledger.persistence import open_database
from ledger.project_service import Projects
from ledger.projects import Project
from projections.projects import ProjectsReader, ProjectsView
from projections.runner import ProjectionRunner, live_table
from tests.test_leak_scan import haystack


@dataclass
class World:
    ledger: Ledger
    projects: Projects
    runner: ProjectionRunner
    reader: ProjectsReader


@pytest.fixture
def world(ledger: Ledger) -> Iterator[World]:
    media = MediaStore(open_database(ledger.settings.media_url, ledger.settings.schema),
                       ledger.keys)
    view = ProjectsView(ledger.keys)
    yield World(ledger, Projects(ledger, media, lambda s: True),
                ProjectionRunner(ledger, ledger.read_models, view),
                ProjectsReader(ledger.read_models, ledger.keys, view))
    media.db.close()


def test_listings_and_the_gallery_follow_the_log(world: World) -> None:
    sam = world.ledger.register_student("samantha", "14")
    ana = world.ledger.register_student("Ana", "15")
    name = f"Clicker {uuid4().hex[:8]}"
    clicker = world.projects.create(sam, "app", name)
    story = world.projects.create(sam, "story", "Draft")
    world.projects.share_to_gallery(sam, clicker)
    remix = world.projects.remix(ana, clicker, "My clicker")
    world.projects.share_to_gallery(ana, remix)
    world.projects.delete(sam, story)
    world.ledger.rename(sam, "Tam")
    world.runner.catch_up()

    assert {(p.name, p.shared_at is not None) for p in world.reader.of_owner(sam)} == {
        (name, True)}
    cards = world.reader.gallery()
    assert [(c.name, c.owner_initial, c.remixed_from) for c in cards] == [
        ("My clicker", "A", clicker), (name, "T", None)]
    assert not hasattr(cards[0], "owner_id")
    assert haystack(world.ledger.settings).find({"name": name.encode()}) == []


def test_an_erased_owner_vanishes_live_and_after_a_rebuild_and_remixes_stay(
        world: World) -> None:
    sam = world.ledger.register_student("Sam", "14")
    ana = world.ledger.register_student("Ana", "15")
    clicker = world.projects.create(sam, "app", "Clicker")
    world.projects.share_to_gallery(sam, clicker)
    remix = world.projects.remix(ana, clicker)
    world.projects.share_to_gallery(ana, remix)
    world.runner.catch_up()

    world.ledger.erase_subject(sam, "user_request")
    world.runner.catch_up()
    live = [(c.id, c.owner_initial) for c in world.reader.gallery()]
    world.runner.rebuild()
    assert [(c.id, c.owner_initial) for c in world.reader.gallery()] == live == [(remix, "A")]
    assert world.reader.of_owner(sam) == []


def test_a_soft_deleted_owner_is_hidden_live_and_after_a_rebuild_and_back_on_withdrawal(
        world: World) -> None:
    """DEL-1, DEL-2 (the rest of what a soft delete hides: tests/test_views_hide_deleted.py)."""
    sam = world.ledger.register_student("Sam", "14")
    ana = world.ledger.register_student("Ana", "15")
    for owner in (sam, ana):
        world.projects.share_to_gallery(owner, world.projects.create(owner, "app", "Game"))
    world.runner.catch_up()
    before = ([(c.id, c.owner_initial) for c in world.reader.gallery()],
              world.reader.of_owner(sam))

    person = world.ledger.person(sam)
    assert isinstance(person, Person)
    person.request_deletion("user_request", f"student:{uuid4()}", datetime.now(UTC))
    world.ledger.save(person)
    world.runner.catch_up()
    hidden = ([(c.id, c.owner_initial) for c in world.reader.gallery()],
              world.reader.of_owner(sam))
    assert hidden == ([card for card in before[0] if card[1] == "A"], [])
    world.runner.rebuild()
    assert ([(c.id, c.owner_initial) for c in world.reader.gallery()],
            world.reader.of_owner(sam)) == hidden

    person.withdraw_deletion(f"support:{uuid4()}")
    world.ledger.save(person)
    world.runner.catch_up()
    assert ([(c.id, c.owner_initial) for c in world.reader.gallery()],
            world.reader.of_owner(sam)) == before


def _name_keys(world: World) -> dict[str, str]:
    with world.ledger.read_models.transaction(write=False) as cur:
        cur.execute(f"SELECT project_id, name_key FROM {live_table(cur, world.runner.projection)}")
        return {r[0]: r[1] for r in cur.fetchall()}


def test_an_erased_project_vanishes_live_and_after_a_rebuild_and_its_remix_stays(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """DEL-4. A project's name rests under the project's own key (`name_key`); one stored
    before per-project keys, under its owner's, and lists as before."""
    sam = world.ledger.register_student("Sam", "14")
    ana = world.ledger.register_student("Ana", "15")
    gone = world.projects.create(sam, "app", "Gone")
    kept = world.projects.create(sam, "story", "Kept")
    monkeypatch.setattr(Project.Event, "sealed_under_own_key_for_owner", False)
    monkeypatch.setattr(Project.Event, "sealed_for_owner", True, raising=False)
    old = world.projects.create(sam, "app", "Old")  # as stored before per-project keys
    monkeypatch.undo()
    world.projects.share_to_gallery(sam, gone)
    remix = world.projects.remix(ana, gone, "Ana's")
    world.projects.share_to_gallery(ana, remix)
    world.runner.catch_up()
    assert _name_keys(world) == {str(gone): str(gone), str(kept): str(kept),
                                 str(old): str(sam), str(remix): str(remix)}
    assert {p.name for p in world.reader.of_owner(sam)} == {"Gone", "Kept", "Old"}

    world.projects.erase(gone, "operator", "support_request")
    world.runner.catch_up()
    live = ([(c.id, c.remixed_from) for c in world.reader.gallery()],
            {p.name for p in world.reader.of_owner(sam)})
    assert live == ([(remix, gone)], {"Kept", "Old"})
    world.runner.rebuild()
    assert ([(c.id, c.remixed_from) for c in world.reader.gallery()],
            {p.name for p in world.reader.of_owner(sam)}) == live
    assert str(gone) not in _name_keys(world)
