"""Finding a person by an identifying value without storing the value: keyed blind indexes.

Usernames, student email hashes (MIN-1), teacher emails, parent emails, third-party sign-in ids
and join codes are looked up here by their HMAC-SHA256 token under a versioned server secret;
the table never holds the value itself. Unique purposes (a username, a join code) are claimed
with an insert that the database refuses on a clash, so uniqueness holds across processes.

Claims are made before the events that use them are saved, and released if the save fails; a
crash in between leaves a claim pointing at an id with no events, which lookups treat as
absent (the caller checks the person exists). Erasing a subject deletes every row of theirs.

The secrets are data keys of reserved subjects in the key store: wrapped under the KEK, rotated
with it, and backed up with the keys rather than with the events.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID, uuid5

from crypto import SubjectKeys
from crypto.blind_index import BlindIndex, normalise_email
from crypto.sql import Cursor, Database, delete_naming

SECRET_NAMESPACE = UUID("8b0e4f3a-91d2-4c6b-a0f7-3c5d2e1b4a90")

USERNAME = "username"
STUDENT_EMAIL = "student_email"
TEACHER_EMAIL = "teacher_email"
PARENT_EMAIL = "parent_email"  # not unique: one parent, several children
PROVIDER = "provider"
JOIN_CODE = "join_code"
CLAIMED, ALREADY_THEIRS, TAKEN = "claimed", "already_theirs", "taken"
def _username(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip().lower()


_NORMALISE = {USERNAME: _username, STUDENT_EMAIL: normalise_email,
              TEACHER_EMAIL: normalise_email, PARENT_EMAIL: normalise_email}

_DDL = (
    "CREATE TABLE IF NOT EXISTS identity_index (purpose TEXT NOT NULL, token {blob} NOT NULL,"
    " subject_id TEXT NOT NULL, owner_id TEXT, claimed_at TEXT,"
    " PRIMARY KEY (purpose, token))",
    "CREATE INDEX IF NOT EXISTS identity_index_by_subject ON identity_index (subject_id)",
    "CREATE TABLE IF NOT EXISTS parent_links (token {blob} NOT NULL, student_id TEXT NOT NULL,"
    " PRIMARY KEY (token, student_id))",
    "CREATE INDEX IF NOT EXISTS parent_links_by_student ON parent_links (student_id)",
)


def secret_subject(version: int) -> UUID:
    """The key-store subject whose data key is blind-index secret `version`."""
    return uuid5(SECRET_NAMESPACE, f"blind-index/{version}")


class IdentityIndex:
    def __init__(self, db: Database, keys: SubjectKeys, version: int = 1) -> None:
        self.db = db
        self.blind = BlindIndex({v: keys.server_secret(secret_subject(v))
                                 for v in range(1, version + 1)})
        blob = "BYTEA" if db.backend == "postgres" else "BLOB"
        with db.transaction() as cur:
            if db.backend == "postgres":  # replicas starting together create the tables once
                cur.execute("SELECT pg_advisory_xact_lock(4244)")
            for statement in _DDL:
                cur.execute(statement.format(blob=blob))
            cur.execute("SELECT * FROM identity_index WHERE 1 = 0")
            present = {str(column[0]) for column in cur.description or ()}
            for column in ("owner_id", "claimed_at"):  # tables made before these columns
                if column not in present:
                    cur.execute(f"ALTER TABLE identity_index ADD COLUMN {column} TEXT")
            cur.execute("CREATE INDEX IF NOT EXISTS identity_index_by_owner"
                        " ON identity_index (owner_id)")

    def _tokens(self, purpose: str, value: str) -> list[bytes]:
        return self.blind.lookup_tokens(purpose, _NORMALISE.get(purpose, str)(value))

    def token(self, purpose: str, value: str) -> bytes:
        """The current token of `value` (what a record keeps, as MIN-1's keyed hash)."""
        return self._tokens(purpose, value)[0]

    # -- unique values ----------------------------------------------------------------------
    def claim(self, purpose: str, value: str, subject_id: UUID,
              owner_id: UUID | None = None) -> str:
        """Claim `value` for `subject_id`: CLAIMED, ALREADY_THEIRS, or TAKEN by someone else.

        `owner_id` names the person a non-person subject belongs to (a section's teacher), so
        that the row goes when they are erased."""
        existing = self.find(purpose, value)
        if existing is not None:
            return ALREADY_THEIRS if existing == subject_id else TAKEN
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO identity_index (purpose, token, subject_id, owner_id,"
                        " claimed_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        (purpose, self.token(purpose, value), str(subject_id),
                         str(owner_id) if owner_id else None,
                         datetime.now(UTC).isoformat(timespec="microseconds")))
            return CLAIMED if cur.rowcount == 1 else TAKEN

    def find(self, purpose: str, value: str) -> UUID | None:
        tokens = self._tokens(purpose, value)
        marks = ", ".join("?" for _ in tokens)
        with self.db.transaction(write=False) as cur:
            cur.execute(f"SELECT subject_id FROM identity_index WHERE purpose = ?"
                        f" AND token IN ({marks})", (purpose, *tokens))
            row = cur.fetchone()
        return UUID(row[0]) if row else None

    def release(self, purpose: str, value: str, subject_id: UUID) -> None:
        with self.db.transaction() as cur:
            for token in self._tokens(purpose, value):
                cur.execute("DELETE FROM identity_index WHERE purpose = ? AND token = ?"
                            " AND subject_id = ?", (purpose, token, str(subject_id)))

    def release_token(self, purpose: str, token: bytes, subject_id: UUID) -> None:
        """Release by the token a record kept (a student's email hash: the address is gone)."""
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM identity_index WHERE purpose = ? AND token = ?"
                        " AND subject_id = ?", (purpose, token, str(subject_id)))

    def claims_older_than(self, cutoff: datetime) -> list[tuple[str, bytes, UUID]]:
        """(purpose, token, subject) of the claims made before `cutoff` (and of those made
        before claims were dated): candidates for `Ledger.release_orphan_claims`."""
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT purpose, token, subject_id FROM identity_index"
                        " WHERE claimed_at IS NULL OR claimed_at < ?",
                        (cutoff.astimezone(UTC).isoformat(timespec="microseconds"),))
            return [(str(row[0]), bytes(row[1]), UUID(row[2])) for row in cur.fetchall()]

    # -- parents: one address, several children --------------------------------------------
    def link_parent(self, address: str, student_id: UUID) -> None:
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO parent_links (token, student_id) VALUES (?, ?)"
                        " ON CONFLICT DO NOTHING",
                        (self.token(PARENT_EMAIL, address), str(student_id)))

    def unlink_parent(self, address: str, student_id: UUID) -> None:
        with self.db.transaction() as cur:
            for token in self._tokens(PARENT_EMAIL, address):
                cur.execute("DELETE FROM parent_links WHERE token = ? AND student_id = ?",
                            (token, str(student_id)))

    def children_of(self, parent_token: bytes) -> set[UUID]:
        """The students linked to a parent, given the parent's token (as a parent's session
        holds it: `token(PARENT_EMAIL, address)`)."""
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT student_id FROM parent_links WHERE token = ?", (parent_token,))
            return {UUID(row[0]) for row in cur.fetchall()}

    # -- erasure ----------------------------------------------------------------------------
    def forget(self, cur: Cursor, subject_ids: Sequence[UUID]) -> Counter[UUID]:
        """Delete every row of the subjects, and of what they own (a teacher's sections' join
        codes), at erasure, in the erasure's transaction. How many went for each."""
        ids = [str(s) for s in subject_ids]
        counts = delete_naming(cur, "identity_index", ("subject_id", "owner_id"), ids)
        counts += delete_naming(cur, "parent_links", ("student_id",), ids)
        return Counter({s: counts[str(s)] for s in subject_ids})
