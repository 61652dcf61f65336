"""Projects and uploads through the service (PRG-2, AGE-3, AGE-4), both backends."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from uuid import UUID, uuid4

import pytest

from crypto import KeyErased
from ledger.application import Ledger
from ledger.media import MediaStore, MediaTooLarge
from ledger.people import InvalidRecord
from ledger.persistence import open_database
from ledger.project_service import ProjectNotFound, Projects
from ledger.projects import Project
from tests.test_leak_scan import haystack

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 32


@dataclass
class Studio:
    ledger: Ledger
    projects: Projects
    in_a_section: set[UUID]


@pytest.fixture
def studio(ledger: Ledger) -> Iterator[Studio]:
    media = MediaStore(open_database(ledger.settings.media_url, ledger.settings.schema),
                       ledger.keys, max_bytes=1024)
    ledger.on_erase("uploads", media.forget_owners, media.count_owners)
    enrolled: set[UUID] = set()
    yield Studio(ledger, Projects(ledger, media, lambda s: s in enrolled), enrolled)
    media.db.close()


def test_PRG_2_a_project_keeps_its_source_sealed_under_the_owners_key(studio: Studio) -> None:
    sam = studio.ledger.register_student("Sam", "14")
    source = f"drawCircle(); // {uuid4().hex}"
    project = studio.projects.create(sam, "code_art", "Circles", source)
    studio.projects.save_source(sam, project, source + "\nfill('red');")
    studio.projects.rename(sam, project, "Red circles")

    found = studio.projects.project(project, sam)
    assert (found.name, found.source.endswith("fill('red');"), found.kind) == (
        "Red circles", True, "code_art")
    assert haystack(studio.ledger.settings).find({"source": source.encode()}) == []


def test_PRG_2_a_remix_points_at_its_origin_and_survives_its_deletion(studio: Studio) -> None:
    sam, ana = (studio.ledger.register_student(n, "14") for n in ("Sam", "Ana"))
    origin = studio.projects.create(sam, "app", "Clicker", "onClick(score++)")
    with pytest.raises(ProjectNotFound):  # not shared: Ana may not see it, let alone remix it
        studio.projects.remix(ana, origin)
    studio.projects.share_to_gallery(sam, origin)
    remix = studio.projects.remix(ana, origin)

    studio.projects.delete(sam, origin)

    kept = studio.projects.project(remix, ana)
    assert (kept.remixed_from, kept.source, kept.owner_id) == (origin, "onClick(score++)", ana)
    with pytest.raises(ProjectNotFound):
        studio.projects.project(origin)


def test_a_project_that_is_not_yours_answers_as_if_it_did_not_exist(studio: Studio) -> None:
    sam, ana = (studio.ledger.register_student(n, "14") for n in ("Sam", "Ana"))
    project = studio.projects.create(sam, "story", "Mine")
    for call in (lambda: studio.projects.rename(ana, project, "Hers"),
                 lambda: studio.projects.save_source(ana, project, "x"),
                 lambda: studio.projects.delete(ana, project),
                 lambda: studio.projects.rename(ana, uuid4(), "Nothing")):
        with pytest.raises(ProjectNotFound):
            call()


def test_AGE_4_uploads_for_13_plus_or_under_13_in_a_teachers_section(studio: Studio) -> None:
    teen, child = studio.ledger.register_student("Teen", "13"), \
        studio.ledger.register_student("Kid", "9")
    teen_project = studio.projects.create(teen, "animation", "Walk")
    child_project = studio.projects.create(child, "animation", "Hop")

    assert studio.projects.upload(teen, teen_project, PNG, "image/png").size == len(PNG)
    with pytest.raises(InvalidRecord) as refused:
        studio.projects.upload(child, child_project, PNG, "image/png")
    assert refused.value.field == "upload"
    studio.in_a_section.add(child)
    studio.projects.upload(child, child_project, WAV, "audio/wav")
    assert len(studio.projects.project(child_project).media) == 1


def test_uploads_are_checked_for_size_and_type_and_sealed_at_rest(studio: Studio) -> None:
    teen = studio.ledger.register_student("Teen", "15")
    project = studio.projects.create(teen, "animation", "Walk")
    with pytest.raises(MediaTooLarge):
        studio.projects.upload(teen, project, PNG + b"\x00" * 2048, "image/png")
    with pytest.raises(InvalidRecord):  # the bytes say WAV
        studio.projects.upload(teen, project, WAV, "image/png")
    with pytest.raises(InvalidRecord):
        studio.projects.upload(teen, project, b"#!/bin/sh\nrm -rf /", "application/x-sh")
    assert studio.projects.project(project).media == []

    marker = uuid4().hex.encode()
    stored = studio.projects.upload(teen, project, PNG + marker, "image/png")
    assert studio.projects.media.get(stored.media_id)[1] == PNG + marker  # type: ignore[index]
    assert haystack(studio.ledger.settings).find({"upload": marker}) == []


def test_AGE_3_under_13_no_gallery_with_uploads_and_no_social_posts(studio: Studio) -> None:
    child = studio.ledger.register_student("Kid", "9")
    studio.in_a_section.add(child)
    plain = studio.projects.create(child, "app", "Plain")
    with_media = studio.projects.create(child, "app", "Pictures")
    studio.projects.upload(child, with_media, PNG, "image/png")

    studio.projects.share_to_gallery(child, plain)
    with pytest.raises(InvalidRecord):
        studio.projects.share_to_gallery(child, with_media)
    with pytest.raises(InvalidRecord):  # a shared project takes no upload from an under-13
        studio.projects.upload(child, plain, PNG, "image/png")
    with pytest.raises(InvalidRecord):
        studio.projects.post_to_social(child, plain, "twitter")

    teen = studio.ledger.register_student("Teen", "16")
    teens = studio.projects.create(teen, "app", "Mine")
    studio.projects.upload(teen, teens, PNG, "image/png")
    studio.projects.share_to_gallery(teen, teens)
    studio.projects.post_to_social(teen, teens, "twitter")


def test_AGE_3_the_gallery_shows_only_the_first_letter_of_the_name(studio: Studio) -> None:
    sam = studio.ledger.register_student("samantha", "14")
    project = studio.projects.create(sam, "app", "Clicker")
    with pytest.raises(ProjectNotFound):
        studio.projects.gallery_card(project)
    studio.projects.share_to_gallery(sam, project)
    card, owner = studio.projects.gallery_card(project)
    assert (card.name, owner) == ("Clicker", "S")


def test_deleting_a_project_removes_its_uploads_and_erasure_removes_every_one(
        studio: Studio) -> None:
    teen = studio.ledger.register_student("Teen", "15")
    gone, kept = (studio.projects.create(teen, "app", n) for n in ("Gone", "Kept"))
    first = studio.projects.upload(teen, gone, PNG, "image/png")
    second = studio.projects.upload(teen, kept, PNG, "image/png")
    studio.projects.delete(teen, gone)
    assert studio.projects.media.get(first.media_id) is None
    assert studio.projects.media.get(second.media_id) is not None

    studio.ledger.erase_subject(teen, "user_request")
    assert studio.projects.media.get(second.media_id) is None
    with studio.projects.media.db.transaction(write=False) as cur:
        cur.execute("SELECT count(*) FROM media_objects WHERE owner_id = ?", (str(teen),))
        assert cur.fetchone()[0] == 0
    assert studio.ledger.aggregate(kept, Project) is None
    with pytest.raises(KeyErased):
        studio.projects.create(teen, "app", "After")
