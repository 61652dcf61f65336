"""Uploaded media (PRG-2, AGE-4): images, sounds and video, in a store of their own, sealed.

Bytes do not go into the event log: they are large, and a project's owner may remove them. Each
object rests sealed under its owner's key, bound to its id, owner and type, in its own SQLite
file (or its own table on PostgreSQL), and goes when removed or when its owner is erased. The
type is read from the bytes themselves (a declared type that does not match them is refused)
and the size is capped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID, uuid4

from crypto import KeyErased, SubjectKeys
from crypto.sql import Database, SQLiteDatabase
from ledger.people import InvalidRecord

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
MEDIA_KINDS = {"image/png": "image", "image/jpeg": "image", "image/gif": "image",
               "audio/wav": "sound", "audio/mpeg": "sound", "video/mp4": "video",
               "video/webm": "video"}

_DDL = ("CREATE TABLE IF NOT EXISTS media_objects (media_id TEXT PRIMARY KEY,"
        " owner_id TEXT NOT NULL, content_type TEXT NOT NULL, size INTEGER NOT NULL,"
        " sealed {blob} NOT NULL, stored_at TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS media_objects_by_owner ON media_objects (owner_id)")


class MediaTooLarge(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"an upload is at most {limit} bytes")
        self.limit = limit


def sniff(data: bytes) -> str | None:
    """The content type the bytes themselves say, from their first bytes; None if unknown."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data.startswith(b"ID3") or data[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    if data[4:8] == b"ftyp":
        return "video/mp4"
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    return None


@dataclass(frozen=True)
class StoredMedia:
    media_id: UUID
    owner_id: UUID
    content_type: str
    size: int

    @property
    def kind(self) -> str:
        """image, sound or video"""
        return MEDIA_KINDS[self.content_type]


def _aad(media_id: UUID, owner_id: UUID, content_type: str) -> bytes:
    return f"media|{media_id}|{owner_id}|{content_type}".encode()


class MediaStore:
    def __init__(self, db: Database, keys: SubjectKeys, max_bytes: int = DEFAULT_MAX_BYTES
                 ) -> None:
        self.db = db
        self.keys = keys
        self.max_bytes = max_bytes
        with db.transaction() as cur:
            if db.backend == "postgres":
                cur.execute("SELECT pg_advisory_xact_lock(4247)")
            for statement in _DDL:
                cur.execute(statement.format(blob="BYTEA" if db.backend == "postgres"
                                             else "BLOB"))

    def check(self, data: bytes, content_type: str) -> str:
        """The media kind (image, sound, video) of valid bytes; else a clear refusal."""
        if len(data) > self.max_bytes:
            raise MediaTooLarge(self.max_bytes)
        if content_type not in MEDIA_KINDS:
            raise InvalidRecord("content_type", f"must be one of {', '.join(MEDIA_KINDS)}")
        if not data or sniff(data) != content_type:
            raise InvalidRecord("content_type", "does not match the uploaded bytes")
        return MEDIA_KINDS[content_type]

    def put(self, owner_id: UUID, data: bytes, content_type: str) -> StoredMedia:
        self.check(data, content_type)
        media_id = uuid4()
        sealed = self.keys.opener(owner_id).seal(data, _aad(media_id, owner_id, content_type))
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO media_objects (media_id, owner_id, content_type, size,"
                        " sealed, stored_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (str(media_id), str(owner_id), content_type, len(data), sealed,
                         datetime.now(UTC).isoformat()))
        return StoredMedia(media_id, owner_id, content_type, len(data))

    def get(self, media_id: UUID) -> tuple[StoredMedia, bytes] | None:
        """The object and its bytes; None if removed, unknown, or its owner erased."""
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT owner_id, content_type, size, sealed FROM media_objects"
                        " WHERE media_id = ?", (str(media_id),))
            row = cur.fetchone()
        if row is None:
            return None
        owner = UUID(row[0])
        try:
            aead = self.keys.opener(owner)
        except KeyErased:
            return None
        data = aead.open(bytes(row[3]), _aad(media_id, owner, row[1]))
        return StoredMedia(media_id, owner, row[1], int(row[2])), data

    def remove(self, media_ids: list[UUID]) -> None:
        with self.db.transaction() as cur:
            for media_id in media_ids:
                cur.execute("DELETE FROM media_objects WHERE media_id = ?", (str(media_id),))
        self._scrub()

    def forget_owner(self, owner_id: UUID) -> int:
        """At the owner's erasure: the bytes were unreadable already; now they are gone."""
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM media_objects WHERE owner_id = ?", (str(owner_id),))
            count = int(cur.rowcount)
        self._scrub()
        return count

    def _scrub(self) -> None:
        if isinstance(self.db, SQLiteDatabase):
            self.db.checkpoint()
