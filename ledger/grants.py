"""Permission grants (AUD-5): every token issued by an operator or a support session, recorded
with both identities.

A grant names who granted (an opaque principal and its role: the command-line operator for
`ledger token issue`, the support principal for a support session), the principal granted, its
role, scope and expiry, the person it names if any, and for a support session acting as a user,
the support principal behind it and the stated purpose (ACC-4). Never the token nor its hash.

A grant that names a person (a support session acting as a student) is that person's data: it
is sealed under their key and goes with their erasure. A staff token names no one: its grant is
sealed under the ledger's own key and stays. Each grant is a stream of its own (a fresh id).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate, event

from ledger.application import Ledger
from ledger.sealing import LEDGER_SUBJECT

TOKEN_ISSUED = "token_issued"  # noqa: S105 (a kind of grant, not a secret)
SUPPORT_SESSION_STARTED = "support_session_started"


@dataclass(frozen=True)
class Grant:
    kind: str  # TOKEN_ISSUED or SUPPORT_SESSION_STARTED
    grantor_id: UUID
    grantor_role: str
    grantee_id: UUID  # the principal granted
    role: str
    scope: str | None
    subject_id: UUID | None  # the person the grantee acts as, if any
    expires_at: datetime
    purpose: str | None = None  # a support session's stated purpose (ACC-4)


class PermissionGrant(Aggregate):
    class Event(Aggregate.Event):
        sealed_for_owner = True
        owner_id: UUID  # the person named, or the ledger for a staff token

    class Granted(Aggregate.Created, Event):
        kind: str
        grantor_id: UUID
        grantor_role: str
        grantee_id: UUID
        role: str
        scope: str | None
        subject_id: UUID | None
        expires_at: datetime
        purpose: str | None
        granted_at: datetime

    @event(Granted)
    def __init__(self, owner_id: UUID, kind: str, grantor_id: UUID, grantor_role: str,
                 grantee_id: UUID, role: str, scope: str | None, subject_id: UUID | None,
                 expires_at: datetime, purpose: str | None, granted_at: datetime) -> None:
        self.owner_id = owner_id
        self.kind = kind
        self.grantor_id = grantor_id
        self.grantor_role = grantor_role
        self.grantee_id = grantee_id
        self.role = role
        self.scope = scope
        self.subject_id = subject_id
        self.expires_at = expires_at
        self.purpose = purpose
        self.granted_at = granted_at

    @staticmethod
    def create_id(**_: Any) -> UUID:
        return uuid4()


class Grants:
    def __init__(self, ledger: Ledger, clock: Callable[[], datetime]) -> None:
        self.ledger = ledger
        self.clock = clock

    def record(self, grant: Grant) -> UUID:
        """Save the grant (committed before this returns). The caller issues the token only
        after, so that no token exists without its grant."""
        record = PermissionGrant(
            owner_id=grant.subject_id or LEDGER_SUBJECT, kind=grant.kind,
            grantor_id=grant.grantor_id, grantor_role=grant.grantor_role,
            grantee_id=grant.grantee_id, role=grant.role, scope=grant.scope,
            subject_id=grant.subject_id, expires_at=grant.expires_at, purpose=grant.purpose,
            granted_at=self.clock())
        self.ledger.save(record)
        return record.id

    def grant(self, grant_id: UUID) -> PermissionGrant | None:
        found: PermissionGrant | None = self.ledger.aggregate(grant_id, PermissionGrant)
        return found
