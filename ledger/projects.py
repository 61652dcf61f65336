"""Projects (PRG-2): apps, animations, stories and code art, with their source, remixes and
uploaded media; sharing gated by age (AGE-3).

A project's stream is sealed under a key of its own, owned by the project's owner
(`sealed_under_own_key_for_owner`): erasing the project destroys that key alone (DEL-4), and
erasing the owner destroys it with the owner's. Projects stored before that were sealed under
the owner's key (header 0x03) and still open under it. A remix starts from a copy of its
origin's source and keeps a pointer to the origin, nothing more: deleting or erasing the origin
leaves the remix as it is. Deleting a project hides it and removes its uploaded bytes; erasing
it destroys its key, so its events can never be read again (the log is append-only).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.people import InvalidRecord, one_of, short_text

PROJECT_KINDS = ("app", "animation", "story", "code_art")
MAX_SOURCE_BYTES = 256 * 1024
MAX_NAME = 100
MAX_MEDIA = 50


def project_name(value: str) -> str:
    return short_text("name", value, MAX_NAME)


def source_code(value: str) -> str:
    if len(value.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        raise InvalidRecord("source", f"must be at most {MAX_SOURCE_BYTES} bytes")
    return value


class ProjectDeleted(LookupError):
    """A deleted project answers as one that does not exist."""


class Project(Aggregate):
    class Event(Aggregate.Event):
        # The mapper seals it under the project's own key, made as owned by `owner_id`.
        sealed_under_own_key_for_owner = True
        owner_id: UUID

    class Created(Aggregate.Created, Event):
        kind: str
        name: str
        source: str
        remixed_from: UUID | None

    class SourceSaved(Event):
        source: str

    class Renamed(Event):
        name: str

    class MediaAttached(Event):
        media_id: UUID
        media_kind: str
        content_type: str
        size: int

    class SharedToGallery(Event):
        pass

    class UnsharedFromGallery(Event):
        pass

    class PostedToSocial(Event):
        network: str

    class Deleted(Event):
        at: datetime

    @event(Created)
    def __init__(self, owner_id: UUID, kind: str, name: str, source: str,
                 remixed_from: UUID | None) -> None:
        self.owner_id = owner_id
        self.kind = kind
        self.name = name
        self.source = source
        self.remixed_from = remixed_from
        self.media: list[list[object]] = []  # [media_id, media kind, content type, size]
        self.shared = False
        self.deleted = False

    @property
    def has_media(self) -> bool:
        return bool(self.media)

    def _live(self) -> None:
        if self.deleted:
            raise ProjectDeleted(str(self.id))

    @event(SourceSaved)
    def _save(self, owner_id: UUID, source: str) -> None:
        self.source = source

    def save_source(self, source: str) -> None:
        self._live()
        self._save(self.owner_id, source_code(source))

    @event(Renamed)
    def _rename(self, owner_id: UUID, name: str) -> None:
        self.name = name

    def rename(self, name: str) -> None:
        self._live()
        self._rename(self.owner_id, project_name(name))

    @event(MediaAttached)
    def _attach(self, owner_id: UUID, media_id: UUID, media_kind: str, content_type: str,
                size: int) -> None:
        self.media.append([media_id, media_kind, content_type, size])

    def attach(self, media_id: UUID, media_kind: str, content_type: str, size: int,
               owner_under_13: bool) -> None:
        self._live()
        if len(self.media) >= MAX_MEDIA:
            raise InvalidRecord("media", f"a project holds at most {MAX_MEDIA} uploads")
        if self.shared and owner_under_13:
            raise InvalidRecord("media", "a project shared in the gallery cannot take uploads"
                                         " from a student under 13 (AGE-3)")
        self._attach(self.owner_id, media_id, media_kind, content_type, size)

    @event(SharedToGallery)
    def _share(self, owner_id: UUID) -> None:
        self.shared = True

    def share_to_gallery(self, owner_under_13: bool) -> None:
        """AGE-3: under 13, not a project with uploaded media."""
        self._live()
        if owner_under_13 and self.has_media:
            raise InvalidRecord("gallery", "students under 13 cannot share a project with"
                                           " uploaded media (AGE-3)")
        if not self.shared:
            self._share(self.owner_id)

    @event(UnsharedFromGallery)
    def _unshare(self, owner_id: UUID) -> None:
        self.shared = False

    def unshare(self) -> None:
        self._live()
        if self.shared:
            self._unshare(self.owner_id)

    @event(PostedToSocial)
    def _post(self, owner_id: UUID, network: str) -> None:
        pass

    def post_to_social(self, network: str, owner_under_13: bool) -> None:
        """AGE-3: nobody under 13 posts anything to social media."""
        self._live()
        if owner_under_13:
            raise InvalidRecord("social", "students under 13 cannot post to social media"
                                          " (AGE-3)")
        self._post(self.owner_id, str(one_of("network", network, SOCIAL_NETWORKS)))

    @event(Deleted)
    def _delete(self, owner_id: UUID, at: datetime) -> None:
        self.deleted = True
        self.shared = False

    def delete(self, at: datetime) -> list[UUID]:
        """Hide the project; returns the uploads to remove from the media store."""
        self._live()
        self._delete(self.owner_id, at)
        return [UUID(str(m[0])) for m in self.media]


SOCIAL_NETWORKS = ("facebook", "twitter", "instagram", "tiktok")


def new_project(owner_id: UUID, kind: str, name: str, source: str = "",
                remixed_from: UUID | None = None) -> Project:
    one_of("kind", kind, PROJECT_KINDS)
    return Project(owner_id, kind, project_name(name), source_code(source), remixed_from)
