"""Erasing one project for good (DEL-4), both backends: a project is sealed under a key of its
own, owned by its owner, so destroying that key erases the project alone (its events, its view
row, its uploads), while its owner, their other projects and remixes of it by others stay; and
erasing the owner destroys every one of their project keys with theirs, in one transaction.
Projects stored before per-project keys (under the owner's key, header 0x03) still open."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from api.services import Services
from crypto import KeyErased
from ledger.application import ErasedPerson, Ledger, PersonNotFound
from ledger.media import MediaStore
from ledger.persistence import open_database
from ledger.project_service import ProjectNotFound, Projects
from ledger.projects import Project
from ledger.sealing import SEALED_FOR_OWNER, SEALED_FOR_STREAM, ErasedEvent
from tests.test_accounts import stored_events
from tests.test_leak_scan import haystack

PROPERTY = hypothesis_settings(max_examples=12, deadline=None,
                               suppress_health_check=[HealthCheck.function_scoped_fixture])


def png(marker: bytes) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + marker + b"\x00" * 16


@dataclass
class Class:
    teacher: UUID
    student: UUID
    classmate: UUID


def a_class(svc: Services) -> Class:
    teacher = svc.accounts.sign_up_teacher("Ms Erasmus", f"{uuid4().hex[:8]}@school.example",
                                           "pw pw pw pw")
    svc.accounts.attest_parental_consent(teacher)
    section = svc.sections.create(teacher, "Period 2", "csf", "5", "word")
    student = svc.sections.create_student(teacher, section, "Sunny", "14")
    classmate = svc.sections.create_student(teacher, section, "Remy", "14")
    svc.catch_up()
    return Class(teacher, student, classmate)


def _state_headers(ledger: Ledger, stream: UUID) -> set[bytes]:
    return {row.state[:1] for row in ledger.recorder.select_events(stream)}


def test_a_teacher_erases_one_project_of_their_student_and_nothing_else(
        services: Services) -> None:
    svc, ledger = services, services.ledger
    c = a_class(svc)
    marker = uuid4().hex
    name, source, upload = f"Gone {marker[:8]}", f"erase_me('{marker}')", png(marker.encode())
    gone = svc.projects.create(c.student, "app", name, source)
    media = svc.projects.upload(c.student, gone, upload, "image/png").media_id
    svc.projects.share_to_gallery(c.student, gone)
    kept = svc.projects.create(c.student, "story", "Kept story", "kept()")
    remix = svc.projects.remix(c.classmate, gone, "Remy's remix")
    svc.catch_up()
    assert _state_headers(ledger, gone) == {SEALED_FOR_STREAM}  # under its own key
    assert ledger.keys.owner_of(gone) == c.student
    stored = ledger.keys.store.load(gone)
    assert stored is not None
    key_material = {"wrapped project key": stored.wrapped,
                    "project key": ledger.keys.keyring.unwrap(stored.wrapped, gone,
                                                              stored.key_id,
                                                              stored.kek_version)}

    receipt = svc.projects.erase(gone, f"teacher:{c.teacher}", "teacher_request")
    svc.catch_up()

    assert receipt.verify(ledger.signer.public_key)
    assert (receipt.receipt.subject_id, receipt.receipt.reason) == (gone, "teacher_request")
    assert receipt.receipt.destroyed["uploads"] == 1
    assert receipt.receipt.destroyed["read_model_projects"] >= 1
    history = ledger.history(gone)
    assert len(history) == 3 and all(isinstance(e, ErasedEvent) for e in history)
    assert all(isinstance(e, ErasedEvent) for e in stored_events(ledger, gone))
    with pytest.raises(ProjectNotFound):
        svc.projects.project(gone)
    with pytest.raises(ProjectNotFound):
        svc.projects.erasable(gone)
    assert svc.projects.media.get(media) is None
    with svc.projects.media.db.transaction(write=False) as cur:
        cur.execute("SELECT count(*) FROM media_objects WHERE media_id = ?", (str(media),))
        assert cur.fetchone()[0] == 0
    assert [p.id for p in svc.projects_reader.of_owner(c.student)] == [kept]
    assert gone not in {card.id for card in svc.projects_reader.gallery()}

    # Everyone and everything else is whole: the student, their other project, the remix.
    assert ledger.live(c.student).display_name == "Sunny"
    assert svc.projects.project(kept, c.student).source == "kept()"
    kept_remix = svc.projects.project(remix, c.classmate)
    assert (kept_remix.remixed_from, kept_remix.source) == (gone, source)  # an opaque id now
    assert [p.id for p in svc.projects_reader.of_owner(c.classmate)] == [remix]

    # Nothing of it at rest, in any form; and a rebuild brings no row of it back.
    assert haystack(svc.settings).find({"name": name.encode(), "source": source.encode(),
                                        "upload": upload, **key_material}) == []
    svc.projects_view.rebuild()
    assert [p.id for p in svc.projects_reader.of_owner(c.student)] == [kept]
    assert [p.id for p in svc.projects_reader.of_owner(c.classmate)] == [remix]
    # Again: the same receipt, nothing more written.
    assert ledger.erase_subject(gone, "teacher_request", f"teacher:{c.teacher}") == receipt


def test_erasing_the_owner_destroys_every_project_key_in_one_transaction(
        services: Services) -> None:
    svc, ledger = services, services.ledger
    c = a_class(svc)
    projects = [svc.projects.create(c.student, "app", f"P{i}", f"src{i}") for i in range(3)]
    media = svc.projects.upload(c.student, projects[0], png(b"owner"), "image/png").media_id
    theirs = svc.projects.create(c.classmate, "app", "Classmate's")
    svc.catch_up()

    ledger.erase_subject(c.student, "user_request")

    owner = ledger.keys.erasure_of(c.student)
    assert owner is not None
    erased = [ledger.keys.erasure_of(p) for p in projects]
    assert all(e is not None and e.key_id is not None for e in erased)
    # One erasing transaction: the owner's tombstone and its projects' are consecutive.
    seqs = sorted(t.seq for t in ledger.keys.store.tombstones_for([c.student, *projects]))
    assert seqs == list(range(seqs[0], seqs[0] + 4))
    for project in projects:
        assert all(isinstance(e, ErasedEvent) for e in ledger.history(project))
        with pytest.raises(ProjectNotFound):
            svc.projects.project(project)
    assert svc.projects.media.get(media) is None
    assert isinstance(ledger.person(c.student), ErasedPerson)
    assert svc.projects_reader.of_owner(c.student) == []
    assert svc.projects.project(theirs, c.classmate).name == "Classmate's"
    with pytest.raises(KeyErased):  # no project (or key) is made for them again
        ledger.keys.sealer(uuid4(), owner=c.student)


def test_an_id_that_is_neither_a_person_nor_an_owned_key_is_not_erased(ledger: Ledger) -> None:
    """The ledger's own key is never erased through `erase_subject`, nor a stranger's id."""
    from ledger.sealing import LEDGER_SUBJECT
    before = ledger.recorder.max_notification_id()
    for subject in (uuid4(), LEDGER_SUBJECT):
        with pytest.raises(PersonNotFound):
            ledger.erase_subject(subject, "user_request")
    assert ledger.keys.erasure_of(LEDGER_SUBJECT) is None
    assert ledger.recorder.max_notification_id() == before


@pytest.fixture
def projects(ledger: Ledger) -> Iterator[Projects]:
    media = MediaStore(open_database(ledger.settings.media_url, ledger.settings.schema),
                       ledger.keys)
    ledger.on_erase("uploads", media.forget_owners, media.count_owners)
    yield Projects(ledger, media, lambda s: True)
    media.db.close()


def _old_format_project(ledger: Ledger, projects: Projects, owner: UUID,
                        monkeypatch: pytest.MonkeyPatch) -> UUID:
    """A project as stored before per-project keys: every event under the owner's key."""
    monkeypatch.setattr(Project.Event, "sealed_under_own_key_for_owner", False)
    monkeypatch.setattr(Project.Event, "sealed_for_owner", True, raising=False)
    old = projects.create(owner, "app", "Old app", "old()")
    projects.rename(owner, old, "Old app v2")
    monkeypatch.undo()
    assert _state_headers(ledger, old) == {SEALED_FOR_OWNER}
    assert ledger.keys.store.load(old) is None  # no key of its own
    return old


def test_a_project_stored_under_its_owners_key_still_opens_and_goes_with_the_owner(
        ledger: Ledger, projects: Projects, monkeypatch: pytest.MonkeyPatch) -> None:
    owner = ledger.register_student("Olga", "15")
    old = _old_format_project(ledger, projects, owner, monkeypatch)

    ledger.repository.cache = None  # read it from the log, as a new process would
    found = projects.project(old, owner)
    assert (found.name, found.source) == ("Old app v2", "old()")
    projects.save_source(owner, old, "newer()")  # its later events go under a key of its own
    assert _state_headers(ledger, old) == {SEALED_FOR_OWNER, SEALED_FOR_STREAM}
    assert ledger.keys.owner_of(old) == owner
    assert projects.project(old, owner).source == "newer()"

    ledger.erase_subject(owner, "user_request")
    assert all(isinstance(e, ErasedEvent) for e in ledger.history(old))
    with pytest.raises(ProjectNotFound):
        projects.project(old)


def _old_format_upload(ledger: Ledger, projects: Projects, owner: UUID, project: UUID,
                       data: bytes, monkeypatch: pytest.MonkeyPatch) -> UUID:
    """An upload as stored before per-project keys: under the owner's key, no project id."""
    media_id = uuid4()
    sealed = ledger.keys.opener(owner).seal(data, f"media|{media_id}|{owner}|image/png"
                                            .encode())
    with projects.media.db.transaction() as cur:
        cur.execute("INSERT INTO media_objects (media_id, owner_id, content_type, size,"
                    " sealed, stored_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (str(media_id), str(owner), "image/png", len(data), sealed,
                     "2026-01-01T00:00:00+00:00"))
    monkeypatch.setattr(Project.Event, "sealed_under_own_key_for_owner", False)
    monkeypatch.setattr(Project.Event, "sealed_for_owner", True, raising=False)
    found = projects.project(project, owner)
    found.attach(media_id, "image", "image/png", len(data), owner_under_13=False)
    ledger.save(found)
    monkeypatch.undo()
    return media_id


def test_erasing_an_old_format_project_alone_hides_it_for_good(
        ledger: Ledger, projects: Projects, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its early events stay under the owner's key (the log is append-only); a last event
    under its own key, now destroyed, makes it read as erased. Its old uploads go."""
    owner = ledger.register_student("Olga", "15")
    old = _old_format_project(ledger, projects, owner, monkeypatch)
    upload = png(b"old-upload")
    media = _old_format_upload(ledger, projects, owner, old, upload, monkeypatch)
    assert _state_headers(ledger, old) == {SEALED_FOR_OWNER}
    got = projects.media.get(media)
    assert got is not None and (got[1], got[0].project_id) == (upload, None)  # still opens
    other = projects.create(owner, "story", "Other")

    receipt = projects.erase(old, "student:" + str(owner))

    assert receipt.verify(ledger.signer.public_key)
    assert isinstance(ledger.history(old)[-1], ErasedEvent)
    with pytest.raises(ProjectNotFound):
        projects.project(old)
    assert projects.media.get(media) is None
    assert projects.project(other, owner).name == "Other"
    assert ledger.live(owner).display_name == "Olga"
    assert haystack(ledger.settings).find({"upload": upload}) == []


def test_a_media_store_from_before_project_keys_is_upgraded_in_place(ledger: Ledger) -> None:
    db = open_database(ledger.settings.media_url, ledger.settings.schema)
    blob = "BYTEA" if db.backend == "postgres" else "BLOB"
    with db.transaction() as cur:  # the table as the code before project keys made it
        cur.execute("CREATE TABLE media_objects (media_id TEXT PRIMARY KEY,"
                    " owner_id TEXT NOT NULL, content_type TEXT NOT NULL, size INTEGER NOT NULL,"
                    f" sealed {blob} NOT NULL, stored_at TEXT NOT NULL)")
    db.close()
    media = MediaStore(open_database(ledger.settings.media_url, ledger.settings.schema),
                       ledger.keys)
    projects = Projects(ledger, media, lambda s: True)
    owner = ledger.register_student("Una", "15")
    project = projects.create(owner, "app", "New")
    stored = projects.upload(owner, project, png(b"new"), "image/png")
    assert stored.project_id == project
    got = media.get(stored.media_id)
    assert got is not None and got[1] == png(b"new")
    MediaStore(media.db, ledger.keys)  # opening again changes nothing
    media.db.close()


# -- any interleaving -------------------------------------------------------------------------
Step = tuple[str, int]  # ("create", owner) | ("erase_project", nth project) | ("erase_owner", i)
STEPS = st.lists(st.one_of(st.tuples(st.just("create"), st.integers(0, 2)),
                           st.tuples(st.just("erase_project"), st.integers(0, 9)),
                           st.tuples(st.just("erase_owner"), st.integers(0, 2))),
                 min_size=1, max_size=12)


@PROPERTY
@given(steps=STEPS)
def test_any_interleaving_leaves_exactly_the_expected_projects_readable(
        ledger: Ledger, projects: Projects, steps: list[Step]) -> None:
    owners = [ledger.register_student(f"Owner {i}", "14") for i in range(3)]
    made: list[tuple[UUID, int]] = []
    erased_projects: set[UUID] = set()
    erased_owners: set[int] = set()
    for action, n in steps:
        if action == "create":
            if n in erased_owners:
                with pytest.raises(KeyErased):
                    projects.create(owners[n], "app", "Never")
                continue
            made.append((projects.create(owners[n], "app", f"Of {n}", f"src {n}"), n))
        elif action == "erase_project" and made:
            project, owner = made[n % len(made)]
            if project in erased_projects or owner in erased_owners:
                with pytest.raises(ProjectNotFound):
                    projects.erase(project, "operator", "support_request")
            else:
                projects.erase(project, "operator", "support_request")
                erased_projects.add(project)
        elif action == "erase_owner":
            ledger.erase_subject(owners[n], "user_request")
            erased_owners.add(n)

    ledger.repository.cache = None  # read from the log, not from what this process holds
    for project, owner in made:
        readable = project not in erased_projects and owner not in erased_owners
        if readable:
            assert projects.project(project, owners[owner]).name == f"Of {owner}"
        else:
            with pytest.raises(ProjectNotFound):
                projects.project(project)
            assert all(isinstance(e, ErasedEvent) for e in ledger.history(project))
            assert ledger.keys.erasure_of(project) is not None
