"""Request and response bodies. Requests refuse unknown fields (a birth date among them, MIN-3).

Only shapes here: the rules on names and ages are the ledger's (`ledger.people`), whose
`InvalidRecord` becomes a 422 problem naming the field and the rule.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from crypto import DestroyedKey
from ledger.people import Person
from projections.directory import DirectoryEntry


def _unicode_text(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def _age_as_text(value: Any) -> Any:
    """Accept 12 as well as "12"; the ledger decides which ages exist."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Text = Annotated[str, AfterValidator(_unicode_text)]
Age = Annotated[str, BeforeValidator(_age_as_text), AfterValidator(_unicode_text),
                Field(description='a whole number from 4 to 20, or "21+"; never a birth date',
                      examples=["12", "21+"])]
Kind = Literal["student", "teacher"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewStudent(_Request):
    display_name: Text = Field(description="free text; first names only are recommended")
    age: Age
    age_given_on: date | None = Field(None, description="when the age was given (default: today)")


class NewTeacher(_Request):
    display_name: Text
    age: Age = "21+"
    age_given_on: date | None = None


class Rename(_Request):
    display_name: Text


class PersonOut(BaseModel):
    id: UUID
    kind: Kind
    display_name: str
    age: str | None = Field(description="none given counts as under 13 (MIN-3)")
    age_given_on: date | None

    @classmethod
    def of(cls, person: Person) -> PersonOut:
        return cls(id=person.id, kind=person.kind,  # type: ignore[arg-type]
                   display_name=person.display_name, age=person.age,
                   age_given_on=person.age_given_on)


class ErasureOut(BaseModel):
    """What was destroyed: facts for a receipt, never key material."""

    subject_id: UUID
    key_id: UUID | None
    kek_version: int | None
    erased_at: datetime

    @classmethod
    def of(cls, destroyed: DestroyedKey) -> ErasureOut:
        return cls(subject_id=destroyed.subject_id, key_id=destroyed.key_id,
                   kek_version=destroyed.kek_version, erased_at=destroyed.erased_at)


class DirectoryItem(BaseModel):
    id: UUID
    kind: Kind
    display_name: str
    age: str
    registered_at: datetime

    @classmethod
    def of(cls, entry: DirectoryEntry) -> DirectoryItem:
        return cls(id=entry.id, kind=entry.kind,  # type: ignore[arg-type]
                   display_name=entry.display_name, age=entry.age,
                   registered_at=entry.registered_at)


class DirectoryPage(BaseModel):
    items: list[DirectoryItem]
    next_after: UUID | None = Field(
        description="pass as `after` for the next page; null when this page is empty")
