"""A student's progress and coursework (PRG-1, PRG-3, PRG-4), in a stream of its own: every
attempt at a level, free-text answers to prompts, survey answers, and teachers' feedback.

Attempts are the hottest write in the product, so they do not go into the student's account
stream: each student has one progress stream, at an id derived from theirs, sealed under their
key (`sealed_for_owner`), so erasing the student erases it with everything else. The stream is
made on the first attempt. Tries and the best result per level are derived from the attempts,
never stored twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from ledger import bounds
from ledger.people import InvalidRecord, one_of

PROGRESS_NAMESPACE = UUID("0c7a5f7e-3b1d-4f3a-8e2c-6d9b1a4e5f21")
RESULTS = ("failed", "solved", "optimal")  # in order: a better result ranks higher
_RANK = {result: rank for rank, result in enumerate(RESULTS)}
MAX_CODE_BYTES = bounds.MAX_CODE_BYTES
MAX_ANSWERS = bounds.MAX_ITEMS
MAX_ANSWER_CHARS = bounds.MAX_FREE_TEXT
MAX_SECONDS = 24 * 3600
MAX_HINTS = 1_000
_LEVEL = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}(/[a-z0-9][a-z0-9_.-]{0,39}){0,4}$")


def progress_id_for(student_id: UUID) -> UUID:
    return uuid5(PROGRESS_NAMESPACE, str(student_id))


def level_id(value: str) -> str:
    """A level, as the curriculum names it: "csf-2024/unit-3/lesson-2/level-5"."""
    if not _LEVEL.match(value):
        raise InvalidRecord("level", "must be 1-5 path segments of lower-case letters, digits,"
                                     " '.', '_' or '-'")
    return value


@dataclass(frozen=True)
class Attempt:
    """One try at a level, as the client reports it; validated by `valid_attempt`."""

    level: str
    result: str
    attempted_at: datetime
    seconds: int | None = None  # time to completion
    hints: int = 0
    code: str = ""
    answers: dict[str, str] = field(default_factory=dict)  # assessment question -> answer


def valid_attempt(attempt: Attempt) -> Attempt:
    level_id(attempt.level)
    one_of("result", attempt.result, RESULTS)
    bounds.happened("attempted_at", attempt.attempted_at)
    if attempt.seconds is not None and not 0 <= attempt.seconds <= MAX_SECONDS:
        raise InvalidRecord("seconds", f"must be 0 to {MAX_SECONDS}")
    if not 0 <= attempt.hints <= MAX_HINTS:
        raise InvalidRecord("hints", f"must be 0 to {MAX_HINTS}")
    if len(attempt.code.encode("utf-8", "surrogatepass")) > MAX_CODE_BYTES:
        raise InvalidRecord("code", f"must be at most {MAX_CODE_BYTES} bytes")
    bounds.unicode_text("code", attempt.code)
    if len(attempt.answers) > MAX_ANSWERS or any(
            len(q) > 200 or len(a) > MAX_ANSWER_CHARS for q, a in attempt.answers.items()):
        raise InvalidRecord("answers", f"at most {MAX_ANSWERS}, each at most"
                                       f" {MAX_ANSWER_CHARS} characters")
    for question, answer in attempt.answers.items():
        bounds.free_text("answers", question, 200)
        bounds.free_text("answers", answer, MAX_ANSWER_CHARS, multiline=True)
    return attempt


class LevelProgress(NamedTuple):
    """Derived from the attempts: how many, the best result, the latest try. A named tuple,
    not a dataclass: a teacher's grid makes 3,000 of these a read, and a tuple is made in half
    the time of a frozen dataclass, with one allocation instead of two."""

    tries: int
    best: str
    last_at: datetime

    def add(self, result: str, at: datetime) -> LevelProgress:
        return LevelProgress(self.tries + 1, max(self.best, result, key=_RANK.__getitem__),
                             max(self.last_at, at))


class Progress(Aggregate):
    class Event(Aggregate.Event):
        sealed_for_owner = True
        owner_id: UUID

    class Started(Aggregate.Created, Event):
        pass

    class AttemptRecorded(Event):
        level: str
        result: str
        attempted_at: datetime
        seconds: int | None
        hints: int
        code: str
        answers: dict[str, str]

    @staticmethod
    def create_id(owner_id: UUID, **_: Any) -> UUID:
        return progress_id_for(owner_id)

    @event(Started)
    def __init__(self, owner_id: UUID) -> None:
        self.owner_id = owner_id
        # Plain values throughout, so that snapshots transcode them.
        # level -> [tries, best, last_at]
        self.summary: dict[str, list[Any]] = {}
        self.prompt_answers: dict[str, list[Any]] = {}  # prompt -> [text, answered_at]
        self.surveys: dict[str, dict[str, str]] = {}  # survey -> question -> answer
        self.feedback: dict[str, list[list[Any]]] = {}  # level -> [[teacher, comment, at]]

    @event(AttemptRecorded)
    def _record(self, owner_id: UUID, level: str, result: str, attempted_at: datetime,
                seconds: int | None, hints: int, code: str, answers: dict[str, str]) -> None:
        known = self.summary.get(level)
        now = (LevelProgress(*known).add(result, attempted_at) if known
               else LevelProgress(1, result, attempted_at))
        self.summary[level] = [now.tries, now.best, now.last_at]

    @property
    def levels(self) -> dict[str, LevelProgress]:
        return {level: LevelProgress(*row) for level, row in self.summary.items()}

    def record(self, attempt: Attempt) -> None:
        a = valid_attempt(attempt)
        self._record(self.owner_id, a.level, a.result, a.attempted_at, a.seconds, a.hints,
                     a.code, dict(a.answers))

    # -- coursework (PRG-3, PRG-4) ---------------------------------------------------------
    class PromptAnswered(Event):
        prompt: str
        text: str
        answered_at: datetime

    class SurveyAnswered(Event):
        survey: str
        answers: dict[str, str]
        answered_at: datetime

    class FeedbackGiven(Event):
        teacher_id: UUID
        level: str
        comment: str
        given_at: datetime

    @event(PromptAnswered)
    def _answer(self, owner_id: UUID, prompt: str, text: str, answered_at: datetime) -> None:
        self.prompt_answers[prompt] = [text, answered_at]

    def answer_prompt(self, prompt: str, text: str, at: datetime) -> None:
        """PRG-3: the latest answer to each prompt is the one the teachers see."""
        self._answer(self.owner_id, level_id(prompt), free_text("text", text), at)

    @event(SurveyAnswered)
    def _survey(self, owner_id: UUID, survey: str, answers: dict[str, str],
                answered_at: datetime) -> None:
        self.surveys[survey] = dict(answers)

    def answer_survey(self, survey: str, answers: dict[str, str], at: datetime) -> None:
        if not answers or len(answers) > MAX_ANSWERS:
            raise InvalidRecord("answers", f"1 to {MAX_ANSWERS} answers")
        self._survey(self.owner_id, level_id(survey),
                     {question_id(q): free_text("answers", a) for q, a in answers.items()}, at)

    @event(FeedbackGiven)
    def _feedback(self, owner_id: UUID, teacher_id: UUID, level: str, comment: str,
                  given_at: datetime) -> None:
        self.feedback.setdefault(level, []).append([teacher_id, comment, given_at])

    def give_feedback(self, teacher_id: UUID, level: str, comment: str, at: datetime) -> None:
        """PRG-4: every comment is kept; the student is shown the latest per level."""
        self._feedback(self.owner_id, teacher_id, level_id(level),
                       free_text("comment", comment), at)

    def latest_feedback(self) -> dict[str, str]:
        """What the student sees: the latest comment per level (PRG-4)."""
        return {level: comments[-1][1] for level, comments in self.feedback.items()}

    @property
    def student_id(self) -> UUID:
        return self.owner_id


def free_text(field: str, value: str) -> str:
    if len(value) > 4 * MAX_ANSWER_CHARS:  # before normalising: no work on a megabyte
        raise InvalidRecord(field, f"must be 1-{MAX_ANSWER_CHARS} characters")
    text = bounds.free_text(field, value, 4 * MAX_ANSWER_CHARS, multiline=True).strip()
    if not text or len(text) > MAX_ANSWER_CHARS:
        raise InvalidRecord(field, f"must be 1-{MAX_ANSWER_CHARS} characters")
    return text


def question_id(value: str) -> str:
    if not re.match(r"^[a-z0-9][a-z0-9_.-]{0,39}$", value):
        raise InvalidRecord("answers", "question ids are 1-40 lower-case letters, digits,"
                                       " '.', '_' or '-'")
    return value
