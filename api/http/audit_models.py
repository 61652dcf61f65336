"""Bodies of the audit trail's routes (AUD-2, AUD-3, AUD-5). Shapes only: the rules on a
disclosure (the 99.31 paragraphs, the threat of a health or safety emergency) are
`ledger.disclosures.validated`'s, whose `InvalidRecord` becomes a 422 naming field and rule."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal, get_args
from uuid import UUID

from pydantic import BaseModel, Field

from api.audit_queries import TrailItem, TrailPage
from api.http.auth import SUPPORT_PURPOSES
from api.http.models import DayHappened, ShortText, Text, _Request
from ledger.bounds import MAX_ITEMS, MAX_NAME
from ledger.disclosures import LEGAL_BASES, MAX_THREAT

SupportPurpose = Literal["account_recovery", "technical_issue", "legal_request",
                         "parent_request", "data_correction", "erasure_request"]
assert set(get_args(SupportPurpose)) == set(SUPPORT_PURPOSES)  # one list of codes (ACC-4)


class NewDisclosure(_Request):
    recipient: ShortText = Field(description="the party disclosed to: an organisation or a"
                                             " person (at most 200 characters)")
    disclosed_on: DayHappened
    legal_basis: str = Field(max_length=20, description="the 34 CFR 99.31 paragraph, one of "
                                                        + ", ".join(LEGAL_BASES))
    legitimate_interest: Text = Field(max_length=500)
    redisclosure_parties: list[ShortText] = Field(default_factory=list, max_length=20,
                                                  description="parties allowed to re-disclose")
    disclosed: list[Annotated[str, Field(max_length=MAX_NAME)]] = Field(
        min_length=1, max_length=MAX_ITEMS,
                                 description="the fields or resources disclosed")
    threat: Text | None = Field(default=None, max_length=MAX_THREAT,
                                description="required for a health or safety emergency"
                                            " (99.31(a)(10)); refused otherwise")


class StatementOut(BaseModel):
    """RGT-2: the student's statement on a contested field, to send with that field."""

    id: UUID
    field: str
    text: str


class DisclosureCreated(BaseModel):
    record_id: UUID
    student_id: UUID
    statements: list[StatementOut] = Field(
        default_factory=list, description="statements on contested fields disclosed (RGT-2):"
                                          " they go with the fields to the recipient")


class TrailItemOut(BaseModel):
    kind: Literal["access", "disclosure"]
    record_id: UUID
    at: datetime = Field(description="when the record was made")
    student_id: UUID
    actor_id: UUID = Field(description="the principal (a session or a staff token), never a name")
    actor_role: str
    purpose: str | None = Field(description="an access's purpose code")
    on_behalf_of: UUID | None = None
    resource: str | None = None
    fields: list[str] = Field(default_factory=list)
    recipient: str | None = None
    disclosed_on: date | None = None
    legal_basis: str | None = None
    legal_basis_label: str | None = None
    legitimate_interest: str | None = None
    redisclosure_parties: list[str] = Field(default_factory=list)
    disclosed: list[str] = Field(default_factory=list)
    threat: str | None = None
    statements: list[StatementOut] = Field(default_factory=list)

    @classmethod
    def of(cls, item: TrailItem) -> TrailItemOut:
        access = item.kind == "access"
        return cls(kind="access" if access else "disclosure", record_id=item.record_id,
                   at=item.at, student_id=item.student_id, actor_id=item.actor_id,
                   actor_role=item.actor_role, purpose=item.code if access else None,
                   on_behalf_of=item.on_behalf_of, resource=item.resource, fields=item.fields,
                   recipient=item.recipient, disclosed_on=item.disclosed_on,
                   legal_basis=None if access else item.code,
                   legal_basis_label=item.legal_basis_label,
                   legitimate_interest=item.legitimate_interest,
                   redisclosure_parties=item.redisclosure_parties, disclosed=item.disclosed,
                   threat=item.threat,
                   statements=[StatementOut.model_validate(s) for s in item.statements])


class TrailPageOut(BaseModel):
    items: list[TrailItemOut]
    next_after: str | None = Field(description="pass as `after` for the next page")

    @classmethod
    def of(cls, page: TrailPage) -> TrailPageOut:
        return cls(items=[TrailItemOut.of(item) for item in page.items],
                   next_after=page_cursor_text(page.next_after))


def page_cursor_text(after: tuple[datetime, UUID] | None) -> str | None:
    return f"{after[0].isoformat()},{after[1]}" if after else None


class NewSupportSession(_Request):
    person_id: UUID
    purpose: SupportPurpose = Field(description="why (ACC-4): one of "
                                                + ", ".join(SUPPORT_PURPOSES))


class SupportSessionOut(BaseModel):
    token: str = Field(description="shown once; acts as the person, recorded as the support"
                                   " principal behind it")
    principal_id: UUID
    person_id: UUID
    role: str
    acted_by: UUID
    expires_at: datetime
