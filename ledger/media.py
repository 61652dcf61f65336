"""Uploaded media (PRG-2, AGE-4): images, sounds and video, in a store of their own, sealed.

Bytes do not go into the event log: they are large, and a project's owner may remove them. Each
object of a project rests sealed under the project's own key (owned by its owner), bound to its
id, owner, type and project, in its own SQLite file (or its own table on PostgreSQL), and goes
when removed, when its project is erased, or when its owner is erased: so erasing a project
alone (DEL-4) makes its uploads unreadable at once and deletes their rows. Objects stored before
per-project keys (no project id) rest under their owner's key and still open. The type is read
from the bytes themselves (a declared type that does not match them is refused) and the size is
capped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID, uuid4

from crypto import Aead, KeyErased, SubjectKeys
from crypto.sql import Cursor, Database, SQLiteDatabase, count_naming, delete_naming
from ledger.people import InvalidRecord

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
MEDIA_KINDS = {"image/png": "image", "image/jpeg": "image", "image/gif": "image",
               "audio/wav": "sound", "audio/mpeg": "sound", "video/mp4": "video",
               "video/webm": "video"}

_DDL = ("CREATE TABLE IF NOT EXISTS media_objects (media_id TEXT PRIMARY KEY,"
        " owner_id TEXT NOT NULL, content_type TEXT NOT NULL, size INTEGER NOT NULL,"
        " sealed {blob} NOT NULL, stored_at TEXT NOT NULL, project_id TEXT)",
        "CREATE INDEX IF NOT EXISTS media_objects_by_owner ON media_objects (owner_id)")
# Made after the upgrade of a store from before per-project keys, which lacks the column.
_PROJECT_INDEX = ("CREATE INDEX IF NOT EXISTS media_objects_by_project"
                  " ON media_objects (project_id)")


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
    project_id: UUID | None = None  # None: stored before per-project keys, under the owner's

    @property
    def kind(self) -> str:
        """image, sound or video"""
        return MEDIA_KINDS[self.content_type]


def _aad(media_id: UUID, owner_id: UUID, content_type: str, project_id: UUID | None) -> bytes:
    if project_id is None:  # as objects were sealed before per-project keys
        return f"media|{media_id}|{owner_id}|{content_type}".encode()
    return f"media|{media_id}|{owner_id}|{content_type}|{project_id}".encode()


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
            self._add_project_column(cur)
            cur.execute(_PROJECT_INDEX)

    def _add_project_column(self, cur: Cursor) -> None:
        """Upgrade a store from before per-project keys: its objects keep no project id."""
        if self.db.backend == "postgres":
            cur.execute("ALTER TABLE media_objects ADD COLUMN IF NOT EXISTS project_id TEXT")
            return
        cur.execute("PRAGMA table_info(media_objects)")
        if "project_id" not in {row[1] for row in cur.fetchall()}:
            cur.execute("ALTER TABLE media_objects ADD COLUMN project_id TEXT")

    def check(self, data: bytes, content_type: str) -> str:
        """The media kind (image, sound, video) of valid bytes; else a clear refusal."""
        if len(data) > self.max_bytes:
            raise MediaTooLarge(self.max_bytes)
        if content_type not in MEDIA_KINDS:
            raise InvalidRecord("content_type", f"must be one of {', '.join(MEDIA_KINDS)}")
        if not data or sniff(data) != content_type:
            raise InvalidRecord("content_type", "does not match the uploaded bytes")
        return MEDIA_KINDS[content_type]

    def put(self, owner_id: UUID, data: bytes, content_type: str, project_id: UUID
            ) -> StoredMedia:
        """Seal and keep an upload of `owner_id`'s project `project_id`, under the project's
        key (made as the owner's if the project was stored before per-project keys)."""
        self.check(data, content_type)
        media_id = uuid4()
        aead = self.keys.sealer(project_id, owner=owner_id)
        sealed = aead.seal(data, _aad(media_id, owner_id, content_type, project_id))
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO media_objects (media_id, owner_id, content_type, size,"
                        " sealed, stored_at, project_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (str(media_id), str(owner_id), content_type, len(data), sealed,
                         datetime.now(UTC).isoformat(), str(project_id)))
        return StoredMedia(media_id, owner_id, content_type, len(data), project_id)

    def get(self, media_id: UUID) -> tuple[StoredMedia, bytes] | None:
        """The object and its bytes; None if removed, unknown, or its project or owner
        erased."""
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT owner_id, content_type, size, sealed, project_id"
                        " FROM media_objects WHERE media_id = ?", (str(media_id),))
            row = cur.fetchone()
        if row is None:
            return None
        owner, project = UUID(row[0]), UUID(row[4]) if row[4] else None
        aead = self._opener(project or owner)
        if aead is None:
            return None
        data = aead.open(bytes(row[3]), _aad(media_id, owner, row[1], project))
        return StoredMedia(media_id, owner, row[1], int(row[2]), project), data

    def _opener(self, subject_id: UUID) -> Aead | None:
        try:
            return self.keys.opener(subject_id)
        except KeyErased:
            return None

    def remove(self, media_ids: list[UUID]) -> None:
        with self.db.transaction() as cur:
            for media_id in media_ids:
                cur.execute("DELETE FROM media_objects WHERE media_id = ?", (str(media_id),))
        self._scrub()

    def remove_old_format(self, media_ids: list[UUID]) -> int:
        """Remove those of `media_ids` stored before per-project keys (no project id, so an
        erasure of their project alone would not find them); returns how many went."""
        with self.db.transaction() as cur:
            count = 0
            for media_id in media_ids:
                cur.execute("DELETE FROM media_objects WHERE media_id = ? AND project_id IS NULL",
                            (str(media_id),))
                count += int(cur.rowcount)
        if count:
            self._scrub()
        return count

    def count_owners(self, subject_ids: Sequence[UUID]) -> Counter[UUID]:
        """How many objects `forget_owners` would delete for each subject, deleting nothing."""
        with self.db.transaction(write=False) as cur:
            counts = count_naming(cur, "media_objects", ("owner_id", "project_id"),
                                  [str(s) for s in subject_ids])
        return Counter({s: counts[str(s)] for s in subject_ids})

    def forget_owners(self, subject_ids: Sequence[UUID]) -> Counter[UUID]:
        """At erasures: every object of the subjects, as their owner or as their project.
        The bytes were unreadable already (the keys are gone); now the rows are gone too.
        How many went for each."""
        with self.db.transaction() as cur:
            counts = delete_naming(cur, "media_objects", ("owner_id", "project_id"),
                                   [str(s) for s in subject_ids])
        self._scrub()
        return Counter({s: counts[str(s)] for s in subject_ids})

    def _scrub(self) -> None:
        """Leave no deleted object's (sealed) bytes in the SQLite files: secure_delete has
        zeroed the rows, the checkpoint empties the write-ahead log. PostgreSQL keeps dead
        rows until autovacuum; they are ciphertext under a key already destroyed (what makes
        them unreadable), so an erasure does not wait for a vacuum of its own here (the key
        table's, which holds key bytes, it does)."""
        if isinstance(self.db, SQLiteDatabase):
            self.db.checkpoint()
