"""Project commands (PRG-2) and the age rules on them (AGE-3, AGE-4), for any door.

Whether an under-13 student is in a teacher's section (AGE-4) is known to the roster read
model, which the domain does not import: the caller passes `in_a_section(student_id)`.
A project that is not the caller's, or deleted, answers `ProjectNotFound` (ACC-5).

Erasing one project (DEL-4) destroys its own key through `Ledger.erase_subject`, so it gets a
signed receipt and the erasure hooks (its view row and uploads go); its owner, their other
projects and every remix of it (their own projects, under their own keys) stay.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from ledger.application import Ledger
from ledger.media import MediaStore, StoredMedia
from ledger.people import InvalidRecord, Person, Student
from ledger.projects import Project, new_project
from ledger.receipts import SignedReceipt
from ledger.sealing import SEALED_FOR_STREAM


class ProjectNotFound(LookupError):
    def __init__(self, project_id: UUID | None = None) -> None:
        super().__init__("no such project")


class Projects:
    def __init__(self, ledger: Ledger, media: MediaStore,
                 in_a_section: Callable[[UUID], bool]) -> None:
        self.ledger = ledger
        self.media = media
        self.in_a_section = in_a_section

    def create(self, owner_id: UUID, kind: str, name: str, source: str = "") -> UUID:
        self.ledger.live(owner_id)
        project = new_project(owner_id, kind, name, source)
        self.ledger.save(project)
        return project.id

    def remix(self, owner_id: UUID, origin_id: UUID, name: str | None = None) -> UUID:
        """A copy of a project the remixer may see (their own, or one in the gallery), that
        keeps pointing at its origin. Uploads stay with the origin's owner."""
        self.ledger.live(owner_id)
        origin = self._visible(origin_id, owner_id)
        remix = new_project(owner_id, origin.kind, name or f"Remix of {origin.name}"[:100],
                            origin.source, remixed_from=origin.id)
        self.ledger.save(remix)
        return remix.id

    def project(self, project_id: UUID, owner_id: UUID | None = None) -> Project:
        """The live project; if `owner_id` is given, only if it is theirs."""
        found: Project | None = self.ledger.aggregate(project_id, Project)
        if found is None or found.deleted or (owner_id is not None
                                              and found.owner_id != owner_id):
            raise ProjectNotFound(project_id)
        return found

    def save_source(self, owner_id: UUID, project_id: UUID, source: str) -> None:
        project = self.project(project_id, owner_id)
        project.save_source(source)
        self.ledger.save(project)

    def rename(self, owner_id: UUID, project_id: UUID, name: str) -> None:
        project = self.project(project_id, owner_id)
        project.rename(name)
        self.ledger.save(project)

    def upload(self, owner_id: UUID, project_id: UUID, data: bytes,
               content_type: str) -> StoredMedia:
        """AGE-4: uploads for 13 or older, or under 13 in a teacher's section."""
        project = self.project(project_id, owner_id)
        owner: Person = self.ledger.live(owner_id)
        under_13 = isinstance(owner, Student) and owner.under_13
        if under_13 and not self.in_a_section(owner_id):
            raise InvalidRecord("upload", "students under 13 upload only when they are in a"
                                          " teacher's section (AGE-4)")
        # checks size and type first
        stored = self.media.put(owner_id, data, content_type, project_id)
        try:
            project.attach(stored.media_id, stored.kind, content_type, stored.size, under_13)
            self.ledger.save(project)
        except BaseException:
            self.media.remove([stored.media_id])  # nothing half-written
            raise
        return stored

    def share_to_gallery(self, owner_id: UUID, project_id: UUID) -> None:
        project = self.project(project_id, owner_id)
        project.share_to_gallery(self._under_13(owner_id))
        self.ledger.save(project)

    def unshare(self, owner_id: UUID, project_id: UUID) -> None:
        project = self.project(project_id, owner_id)
        project.unshare()
        self.ledger.save(project)

    def post_to_social(self, owner_id: UUID, project_id: UUID, network: str) -> None:
        project = self.project(project_id, owner_id)
        project.post_to_social(network, self._under_13(owner_id))
        self.ledger.save(project)

    def delete(self, owner_id: UUID, project_id: UUID) -> None:
        """Hidden from then on, its uploads removed; remixes of it stay as they are."""
        project = self.project(project_id, owner_id)
        uploads = project.delete(datetime.now(UTC))
        self.ledger.save(project)
        self.media.remove(uploads)

    def erasable(self, project_id: UUID) -> Project:
        """A project that may still be erased: live or deleted, not erased; else
        `ProjectNotFound`. For a caller to check who may erase it (its `owner_id`)."""
        found: Project | None = self.ledger.aggregate(project_id, Project)
        if found is None:
            raise ProjectNotFound(project_id)
        return found

    def erase(self, project_id: UUID, requester: str, reason: str = "user_request"
              ) -> SignedReceipt:
        """DEL-4: erase one project for good, now: its key is destroyed (its events read as
        `ErasedEvent` placeholders from then on), its uploads and its view row deleted, and
        the signed receipt returned. Its owner, their other projects and remixes of it stay.
        `ProjectNotFound` if there is no such project (or it is erased already)."""
        project = self.erasable(project_id)
        # Uploads stored before per-project keys carry no project id, so the erasure hook
        # (which deletes the project's rows, and counts them for the receipt) misses them.
        self.media.remove_old_format([UUID(str(m[0])) for m in project.media])
        self._seal_latest_under_own_key(project)
        return self.ledger.erase_subject(project_id, reason, requester)

    def _seal_latest_under_own_key(self, project: Project) -> None:
        """A project stored before per-project keys has its latest event under its owner's
        key, so destroying its own key would leave it readable: such a live project is first
        deleted, an event sealed under its own key (made now, owned by the owner), so that
        once that key is gone the project reads as erased. Its older events stay sealed under
        the owner's key until the owner is erased (the log is append-only)."""
        (latest,) = self.ledger.recorder.select_events(project.id, desc=True, limit=1)
        if latest.state[:1] == SEALED_FOR_STREAM:
            return
        self.ledger.keys.sealer(project.id, owner=project.owner_id)
        if not project.deleted:
            project.delete(datetime.now(UTC))
            self.ledger.save(project)

    def gallery_card(self, project_id: UUID) -> tuple[Project, str]:
        """A shared project and what the gallery shows of its owner: the first letter of the
        display name, nothing more (AGE-3)."""
        project = self.project(project_id)
        if not project.shared:
            raise ProjectNotFound(project_id)
        owner: Person = self.ledger.live(project.owner_id)
        return project, owner.display_name[:1].upper()

    def _visible(self, project_id: UUID, viewer_id: UUID) -> Project:
        project = self.project(project_id)
        if project.owner_id != viewer_id and not project.shared:
            raise ProjectNotFound(project_id)
        return project

    def _under_13(self, owner_id: UUID) -> bool:
        owner: Person = self.ledger.live(owner_id)
        return isinstance(owner, Student) and owner.under_13
