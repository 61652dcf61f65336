"""Request and response bodies of the rights requests (RGT-1..4). Shapes only: the rules (which
fields may be rectified, the bounds of an extension, the length of a statement) are
`ledger.rights`'s, whose `InvalidRecord` becomes a 422 problem naming the field and the rule.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from api.http.models import Ahead, Text
from ledger.rights import Restriction, RightsRequest, Statement
from projections.rights import RequestEntry

RequestKind = Literal["access", "export", "rectify", "erase", "restrict", "object"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewRightsRequest(_Request):
    kind: RequestKind
    field: Text | None = Field(None, max_length=40, description="rectify only: the field to"
                              " correct (display_name, age, gender, race, parent_email)")
    proposed_value: Text | None = Field(None, max_length=320,
                                       description="rectify only: the value proposed")


class ExtensionIn(_Request):
    due_at: Ahead = Field(description="the new due date: later than the current one, at"
                                         " most 45 days after receipt")
    reason: Text = Field(max_length=500, description="told to the requester")


class Reason(_Request):
    reason: Text = Field(max_length=500)


class StatementIn(_Request):
    text: Text = Field(max_length=2_000, description="the student's or parent's statement on"
                                                    " the contested field (34 CFR 99.21)")


class ExtensionOut(BaseModel):
    due_at: datetime
    reason: str
    at: datetime
    notice: str = Field(description='"mailed" to the requester, or "recorded" (this event is'
                                    ' the notice)')


class RightsRequestOut(BaseModel):
    id: UUID
    subject_id: UUID
    kind: str
    filed_by: str
    received_at: datetime
    due_at: datetime
    status: str
    field: str | None
    proposed_value: str | None
    extensions: list[ExtensionOut]
    closed_at: datetime | None
    outcome: str | None = Field(description="a refusal's reason")

    @classmethod
    def of(cls, r: RightsRequest) -> RightsRequestOut:
        return cls(id=r.id, subject_id=r.subject_id, kind=r.kind, filed_by=r.filed_by,
                   received_at=r.received_at, due_at=r.due_at, status=r.status, field=r.field,
                   proposed_value=r.proposed, closed_at=r.closed_at, outcome=r.outcome,
                   extensions=[ExtensionOut(due_at=x.due_at, reason=x.reason, at=x.at,
                                            notice=x.notice) for x in r.extensions])


class StatementOut(BaseModel):
    id: UUID
    request_id: UUID
    field: str
    text: str
    by: str
    at: datetime

    @classmethod
    def of(cls, s: Statement) -> StatementOut:
        return cls(id=s.id, request_id=s.request_id, field=s.field, text=s.text, by=s.by,
                   at=s.at)


class RestrictionOut(BaseModel):
    since: datetime
    requests: list[UUID]

    @classmethod
    def of(cls, restriction: Restriction | None) -> RestrictionOut | None:
        if restriction is None:
            return None
        return cls(since=restriction.since, requests=list(restriction.requests))


class RightsFileOut(BaseModel):
    """A student's requests (oldest first), statements and restriction."""

    requests: list[RightsRequestOut]
    statements: list[StatementOut]
    restriction: RestrictionOut | None


class LiftOut(BaseModel):
    lifted: bool = Field(description="false: there was no restriction to lift")


class RequestEntryOut(BaseModel):
    """Pseudonymous: ids, a kind, times and a status."""

    request_id: UUID
    subject_id: UUID
    kind: str
    received_at: datetime
    due_at: datetime
    status: str

    @classmethod
    def of(cls, e: RequestEntry) -> RequestEntryOut:
        return cls(request_id=e.request_id, subject_id=e.subject_id, kind=e.kind,
                   received_at=e.received_at, due_at=e.due_at, status=e.status)
