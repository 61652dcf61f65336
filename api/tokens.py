"""Bearer tokens for the HTTP API: only a token's SHA-256 rests, in the read-models database.

A token is `lgr_` + 32 random bytes (URL-safe base64), shown once when issued. It names a
principal (a random id), a role from a fixed list and a label that is not personal data
("registrar-1"). Roles map to permissions; anything not granted is denied.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from uuid import UUID, uuid4

from crypto.sql import Cursor, Database, delete_naming

TOKEN_PREFIX = "lgr_"  # noqa: S105 (a prefix, not a secret)
MAX_TOKEN_LENGTH = 100
_LABEL = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_HASH_PREFIX = re.compile(r"^[0-9a-f]{8,64}$")


class Role(StrEnum):
    OPERATOR = "operator"  # the privacy officer: everything, erasure included
    REGISTRAR = "registrar"  # scope: "school:<school id>"; its people: create, rename, list
    SUPPORT = "support"  # reads one person at a time, never the directory
    SERVICE = "service"  # health and metrics: no personal data
    # People, each scoped by `Principal.subject_id` or `Principal.scope` (see api/access.py):
    STUDENT = "student"  # subject_id: themself
    TEACHER = "teacher"  # subject_id: themself; sees students of their own sections
    SCHOOL_ADMIN = "school_admin"  # scope: "school:<school id>"
    DISTRICT_ADMIN = "district_admin"  # scope: "district:<district id>"
    PARENT = "parent"  # scope: "parent:<hex blind-index token of the parent's email>"
    RESEARCHER = "researcher"  # de-identified aggregates only (ACC-3)
    # The FERPA audit trail and rights requests (AUD-3, RGT):
    RECORDS_CUSTODIAN = "records_custodian"  # scope: "school:<school id>"; its students only
    AUDITOR = "auditor"  # reads the audit trail (who read what, when, why), never the records


class Permission(StrEnum):
    PEOPLE_CREATE = "people:create"
    PEOPLE_READ = "people:read"  # one record at a time; api/access.py says whose
    PEOPLE_RENAME = "people:rename"
    PEOPLE_ERASE = "people:erase"
    DIRECTORY_READ = "directory:read"
    HEALTH_READ = "health:read"
    # A person signed in, acting on their own record (`Principal.subject_id`):
    ME_READ = "me:read"
    ME_WRITE = "me:write"
    ME_STUDENT = "me:student"  # parent email, study contact, joining and leaving sections
    ME_TEACHER = "me:teacher"  # attestation (AGE-1), school, email opt-in
    SECTIONS_MANAGE = "sections:manage"  # a teacher's own sections only
    SCHOOLS_READ = "schools:read"  # a school's name, district and type: no personal data
    SCHOOLS_CREATE = "schools:create"
    SCHOOL_ROSTER_READ = "schools:roster"  # within the administrator's scope only (ACC-2)
    PROGRESS_RECORD = "progress:record"  # a student's own attempts (PRG-1)
    PROGRESS_READ = "progress:read"  # one student's progress; api/access.py says whose
    SCHOOL_PROGRESS_READ = "schools:progress"  # the report, in the admin's scope (ACC-2)
    PROJECTS_WRITE = "projects:write"  # one's own projects and uploads (PRG-2)
    PEOPLE_RECOVER = "people:recover"  # withdraw a pending deletion (DEL-2)
    HOLDS_MANAGE = "holds:manage"  # legal holds (DEL-7)
    RECEIPTS_READ = "receipts:read"  # erasure receipts (DEL-8): ids and counts only
    AUDIT_READ = "audit:read"  # access and disclosure records (AUD-3); api/access.py says whose
    DISCLOSURES_RECORD = "disclosures:record"  # disclosures outside the school (AUD-2)
    RIGHTS_REQUEST = "rights:request"  # file a rights request for oneself or one's child (RGT)
    RIGHTS_MANAGE = "rights:manage"  # extend, fulfil or refuse requests; the overdue report
    RECORDS_EXPORT = "records:export"  # all of a student's data (RGT-1); api/access.py: whose
    LEDGER_PROVE = "ledger:prove"  # inclusion proofs: they carry stored (sealed) events (LED-2)
    TREE_HEADS_SIGN = "ledger:sign"  # sign a tree head now, off the schedule (LED-2)
    ANALYTICS_READ = "analytics:read"  # de-identified, suppressed counts only (ANA, ACC-3)
    SUPPORT_SESSIONS = "support:sessions"  # act as a user, with a stated purpose (AUD-5)
    PROJECTIONS_MANAGE = "projections:manage"  # read models' set-aside events (issue 18)


ROLES: tuple[Role, ...] = tuple(Role)

_SIGNED_IN = frozenset({Permission.ME_READ, Permission.ME_WRITE, Permission.PEOPLE_READ,
                        Permission.SCHOOLS_READ})
PERMISSIONS: dict[str, frozenset[Permission]] = {
    Role.OPERATOR: frozenset(Permission),
    Role.REGISTRAR: frozenset({Permission.PEOPLE_CREATE, Permission.PEOPLE_READ,
                               Permission.PEOPLE_RENAME, Permission.DIRECTORY_READ,
                               Permission.SCHOOLS_READ, Permission.SCHOOLS_CREATE}),
    Role.SUPPORT: frozenset({Permission.PEOPLE_READ, Permission.SCHOOLS_READ,
                             Permission.PROGRESS_READ, Permission.PEOPLE_ERASE,
                             Permission.PEOPLE_RECOVER, Permission.RECEIPTS_READ,
                             Permission.SUPPORT_SESSIONS}),
    Role.SERVICE: frozenset({Permission.HEALTH_READ}),
    Role.STUDENT: _SIGNED_IN | {Permission.ME_STUDENT, Permission.PROGRESS_RECORD,
                                Permission.PROGRESS_READ, Permission.PROJECTS_WRITE,
                                Permission.AUDIT_READ, Permission.RIGHTS_REQUEST,
                                Permission.RECORDS_EXPORT},
    Role.TEACHER: _SIGNED_IN | {Permission.ME_TEACHER, Permission.SECTIONS_MANAGE,
                                Permission.PROGRESS_READ, Permission.PROJECTS_WRITE,
                                Permission.PEOPLE_ERASE},
    Role.SCHOOL_ADMIN: frozenset({Permission.PEOPLE_READ, Permission.SCHOOLS_READ,
                                  Permission.SCHOOL_ROSTER_READ, Permission.PROGRESS_READ,
                                  Permission.SCHOOL_PROGRESS_READ, Permission.PEOPLE_ERASE}),
    Role.DISTRICT_ADMIN: frozenset({Permission.PEOPLE_READ, Permission.SCHOOLS_READ,
                                    Permission.SCHOOL_ROSTER_READ, Permission.PROGRESS_READ,
                                    Permission.SCHOOL_PROGRESS_READ, Permission.PEOPLE_ERASE}),
    Role.PARENT: frozenset({Permission.PEOPLE_READ, Permission.SCHOOLS_READ,
                            Permission.PROGRESS_READ, Permission.PEOPLE_ERASE,
                            Permission.AUDIT_READ, Permission.RIGHTS_REQUEST,
                            Permission.RECORDS_EXPORT}),
    Role.RESEARCHER: frozenset({Permission.SCHOOLS_READ, Permission.ANALYTICS_READ}),  # ACC-3
    Role.RECORDS_CUSTODIAN: frozenset({Permission.SCHOOLS_READ, Permission.AUDIT_READ,
                                       Permission.DISCLOSURES_RECORD, Permission.RIGHTS_REQUEST,
                                       Permission.RIGHTS_MANAGE, Permission.RECORDS_EXPORT}),
    Role.AUDITOR: frozenset({Permission.AUDIT_READ, Permission.LEDGER_PROVE}),
}


def allows(role: str, permission: str) -> bool:
    """Deny by default: an unknown role or an unknown permission is never allowed."""
    return permission in PERMISSIONS.get(role, frozenset())


@dataclass(frozen=True)
class Principal:
    id: UUID
    role: str
    label: str
    subject_id: UUID | None = None  # the person signed in (student, teacher)
    scope: str | None = None  # what an administrator or parent is confined to
    # AUD-5: a support session acting as this user: the support principal behind it. Reads and
    # changes made in it are recorded with both identities (never as the user's own).
    acted_by: UUID | None = None

    def may(self, permission: str) -> bool:
        return allows(self.role, permission)


# The principal of the command line (`ledger audit`, `ledger token issue`): one fixed id, so
# that the audit trail names the operator at the console as the one who asked or granted.
COMMAND_LINE_OPERATOR = Principal(UUID("00000000-0000-4000-8000-00000000c11e"), Role.OPERATOR,
                                  "command-line")


@dataclass(frozen=True)
class TokenGrant:
    """What a permission grant records (AUD-5): never the token nor its hash."""

    principal_id: UUID
    role: str
    scope: str | None
    subject_id: UUID | None
    acted_by: UUID | None
    expires_at: datetime


@dataclass(frozen=True)
class IssuedToken:
    token: str = field(repr=False)  # shown once, never logged
    principal_id: UUID
    role: str
    label: str
    expires_at: datetime


@dataclass(frozen=True)
class TokenInfo:
    """What `list` shows: no secret, and only a prefix of the hash."""

    principal_id: UUID
    role: str
    label: str
    hash_prefix: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    acted_by: UUID | None = None  # a support session's support principal (AUD-5)

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= now else "active"


class AmbiguousToken(LookupError):
    """A hash prefix that matches more than one token."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


_DDL = (
    "CREATE TABLE IF NOT EXISTS api_tokens (token_hash TEXT PRIMARY KEY,"
    " principal_id TEXT NOT NULL, role TEXT NOT NULL, label TEXT NOT NULL,"
    " created_at TEXT NOT NULL, expires_at TEXT NOT NULL, revoked_at TEXT,"
    " subject_id TEXT, scope TEXT, acted_by TEXT)",
    "CREATE INDEX IF NOT EXISTS api_tokens_by_principal ON api_tokens (principal_id)",
)
_COLUMNS = ("token_hash, principal_id, role, label, created_at, expires_at, revoked_at,"
            " subject_id, scope, acted_by")


class TokenStore:
    def __init__(self, db: Database, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.clock = clock or (lambda: datetime.now(UTC))
        with db.transaction() as cur:
            if db.backend == "postgres":  # replicas starting together create the table once
                cur.execute("SELECT pg_advisory_xact_lock(4243)")
            for statement in _DDL:
                cur.execute(statement)
            cur.execute("SELECT * FROM api_tokens WHERE 1 = 0")
            present = {str(column[0]) for column in cur.description or ()}
            # tables made before people signed in, and before support sessions (AUD-5)
            for column in ("subject_id", "scope", "acted_by"):
                if column not in present:
                    cur.execute(f"ALTER TABLE api_tokens ADD COLUMN {column} TEXT")

    def issue(self, role: str, label: str, ttl: timedelta, *, subject_id: UUID | None = None,
              scope: str | None = None, acted_by: UUID | None = None,
              record_grant: Callable[[TokenGrant], object] | None = None) -> IssuedToken:
        """A new token. `acted_by`: the support principal of a session acting as the person
        `subject_id` (AUD-5). `record_grant` saves the grant (AUD-5) before the token exists:
        if it raises, no token is issued."""
        if role not in PERMISSIONS:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if not _LABEL.match(label):
            raise ValueError("a label is 1-64 lower-case letters, digits, '.', '_' or '-'"
                             " (a name for the client, never a person's name)")
        if ttl <= timedelta(0):
            raise ValueError("ttl must be positive")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        principal_id, now = uuid4(), self.clock()
        expires_at = now + ttl
        if record_grant is not None:
            record_grant(TokenGrant(principal_id, str(role), scope, subject_id, acted_by,
                                    expires_at))
        with self.db.transaction() as cur:
            cur.execute(
                f"INSERT INTO api_tokens ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
                (token_hash(token), str(principal_id), str(role), label, now.isoformat(),
                 expires_at.isoformat(), str(subject_id) if subject_id else None, scope,
                 str(acted_by) if acted_by else None),
            )
        return IssuedToken(token, principal_id, str(role), label, expires_at)

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a live token; None for an unknown, expired or revoked one."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN_LENGTH:
            return None
        computed = token_hash(token)
        with self.db.transaction(write=False) as cur:
            cur.execute(f"SELECT {_COLUMNS} FROM api_tokens WHERE token_hash = ?", (computed,))
            row = cur.fetchone()
        if row is None or not hmac.compare_digest(str(row[0]), computed):
            return None
        if row[6] is not None or datetime.fromisoformat(row[5]) <= self.clock():
            return None
        return Principal(UUID(row[1]), row[2], row[3], UUID(row[7]) if row[7] else None,
                         row[8], UUID(row[9]) if row[9] else None)

    def revoke(self, principal_or_hash_prefix: str) -> int:
        """Revoke by principal id, or by a prefix (8+ hex digits) of the token hash.

        Returns how many tokens were newly revoked; `AmbiguousToken` if a prefix matches several.
        """
        key = principal_or_hash_prefix.strip().lower()
        try:
            where, param = "principal_id = ?", str(UUID(key))
        except ValueError:
            if not _HASH_PREFIX.match(key):
                raise ValueError("give a principal id or 8+ hex digits of a token hash") from None
            where, param = "token_hash LIKE ?", key + "%"
        with self.db.transaction() as cur:
            cur.execute(f"SELECT token_hash FROM api_tokens WHERE {where}", (param,))
            hashes = [str(row[0]) for row in cur.fetchall()]
            if len(hashes) > 1 and where.startswith("token_hash"):
                raise AmbiguousToken("the hash prefix matches several tokens; give more digits")
            cur.execute(
                f"UPDATE api_tokens SET revoked_at = ? WHERE {where} AND revoked_at IS NULL",
                (self.clock().isoformat(), param),
            )
            return int(cur.rowcount)

    def forget_subject(self, subject_id: UUID) -> int:
        """Delete every token of a person (at their erasure): their sessions end, and no row
        names them any more. Returns how many went."""
        with self.db.transaction() as cur:
            return self.forget_rows(cur, [subject_id])[subject_id]

    def forget_rows(self, cur: Cursor, subject_ids: Sequence[UUID]) -> Counter[UUID]:
        """`forget_subject` for several, inside a transaction of the caller's (an erasure's)."""
        counts = delete_naming(cur, "api_tokens", ("subject_id",), [str(s) for s in subject_ids])
        return Counter({s: counts[str(s)] for s in subject_ids})

    def list(self) -> list[TokenInfo]:
        with self.db.transaction(write=False) as cur:
            cur.execute(f"SELECT {_COLUMNS} FROM api_tokens ORDER BY created_at, principal_id")
            rows = cur.fetchall()
        return [
            TokenInfo(
                principal_id=UUID(row[1]), role=row[2], label=row[3], hash_prefix=row[0][:12],
                created_at=datetime.fromisoformat(row[4]),
                expires_at=datetime.fromisoformat(row[5]),
                revoked_at=datetime.fromisoformat(row[6]) if row[6] else None,
                acted_by=UUID(row[9]) if row[9] else None,
            )
            for row in rows
        ]
