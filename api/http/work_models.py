"""Request and response bodies of projects and coursework (PRG-2, PRG-3, PRG-4)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field

from api.http.models import FreeText, Text, _Request, unicode_text
from ledger.bounds import MAX_ITEMS, MAX_LEVEL, MAX_SOURCE_BYTES
from projections.projects import GalleryCard, ProjectSummary

ProjectKind = Literal["app", "animation", "story", "code_art"]
# A project's source: the domain counts its UTF-8 bytes; here its characters, which are fewer.
Source = Annotated[str, AfterValidator(unicode_text), Field(max_length=MAX_SOURCE_BYTES)]
Level = Annotated[str, AfterValidator(unicode_text), Field(max_length=MAX_LEVEL)]


class NewProject(_Request):
    kind: ProjectKind
    name: Text
    source: Source = ""


class ProjectRename(_Request):
    name: Text


class ProjectSource(_Request):
    source: Source


class Remix(_Request):
    name: Text | None = None


class SocialPost(_Request):
    network: Literal["facebook", "twitter", "instagram", "tiktok"]


class ProjectOut(BaseModel):
    id: UUID
    kind: str
    name: str
    source: str | None = Field(None, description="the owner's own view only")
    remixed_from: UUID | None
    shared: bool
    media: list[UUID] = Field(default_factory=list)


class ProjectItem(BaseModel):
    id: UUID
    kind: str
    name: str
    remixed_from: UUID | None
    shared_at: datetime | None

    @classmethod
    def of(cls, summary: ProjectSummary) -> ProjectItem:
        return cls(id=summary.id, kind=summary.kind, name=summary.name,
                   remixed_from=summary.remixed_from, shared_at=summary.shared_at)


class GalleryItem(BaseModel):
    """A shared project as anyone sees it: the owner by the first letter of their name only
    (AGE-3)."""

    id: UUID
    kind: str
    name: str
    owner_initial: str
    remixed_from: UUID | None
    shared_at: datetime

    @classmethod
    def of(cls, card: GalleryCard) -> GalleryItem:
        return cls(id=card.id, kind=card.kind, name=card.name, owner_initial=card.owner_initial,
                   remixed_from=card.remixed_from, shared_at=card.shared_at)


class MediaOut(BaseModel):
    id: UUID
    content_type: str
    size: int


class PromptAnswer(_Request):
    prompt: Level = Field(description='a course prompt id, as "csd/unit-1/reflection"')
    text: FreeText


class SurveyAnswers(_Request):
    survey: Level
    answers: dict[Annotated[str, Field(max_length=MAX_LEVEL)], FreeText] = Field(
        max_length=MAX_ITEMS)


class NewFeedback(_Request):
    level: Level
    comment: FreeText


class FeedbackOut(BaseModel):
    """A comment; who gave it and when are shown to teachers and the school, not the student
    (who sees the latest per level, PRG-4)."""

    level: str
    comment: str
    teacher_id: UUID | None = None
    given_at: datetime | None = None


class AnswerOut(BaseModel):
    prompt: str
    text: str
    answered_at: datetime


class SurveyTally(BaseModel):
    """A section's answers to one survey question, without who gave them (PRG-3)."""

    question: str
    answers: list[str]
