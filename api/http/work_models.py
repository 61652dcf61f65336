"""Request and response bodies of projects and coursework (PRG-2, PRG-3, PRG-4)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from api.http.models import Text, _Request
from projections.projects import GalleryCard, ProjectSummary

ProjectKind = Literal["app", "animation", "story", "code_art"]
LongText = Text


class NewProject(_Request):
    kind: ProjectKind
    name: Text
    source: LongText = ""


class ProjectRename(_Request):
    name: Text


class ProjectSource(_Request):
    source: LongText


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
    prompt: Text = Field(description='a course prompt id, as "csd/unit-1/reflection"')
    text: LongText


class SurveyAnswers(_Request):
    survey: Text
    answers: dict[str, LongText]


class NewFeedback(_Request):
    level: Text
    comment: LongText


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
