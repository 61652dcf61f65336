"""Coursework (PRG-3, PRG-4): answers to prompts and surveys, and teachers' feedback, kept in
the student's progress stream under the student's key.

Who teaches whom is known to the roster read model, which the domain does not import: the
caller passes `teaches(teacher_id, student_id)`. A teacher who does not teach the student gets
`PersonNotFound`, exactly as for a student who does not exist (ACC-5).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from ledger.application import Ledger, PersonNotFound
from ledger.attempts import progress_of
from ledger.people import Student, Teacher
from ledger.progress import Progress, progress_id_for


class Coursework:
    def __init__(self, ledger: Ledger, teaches: Callable[[UUID, UUID], bool]) -> None:
        self.ledger = ledger
        self.teaches = teaches

    def answer_prompt(self, student_id: UUID, prompt: str, text: str) -> None:
        progress = progress_of(self.ledger, student_id)
        progress.answer_prompt(prompt, text, datetime.now(UTC))
        self.ledger.save(progress)

    def answer_survey(self, student_id: UUID, survey: str, answers: dict[str, str]) -> None:
        progress = progress_of(self.ledger, student_id)
        progress.answer_survey(survey, answers, datetime.now(UTC))
        self.ledger.save(progress)

    def give_feedback(self, teacher_id: UUID, student_id: UUID, level: str,
                      comment: str) -> None:
        self.ledger.live(teacher_id, Teacher)
        if not self.teaches(teacher_id, student_id):
            raise PersonNotFound(student_id)
        progress = progress_of(self.ledger, student_id)
        progress.give_feedback(teacher_id, level, comment, datetime.now(UTC))
        self.ledger.save(progress)

    # -- reads ------------------------------------------------------------------------------
    def latest_feedback(self, student_id: UUID) -> dict[str, str]:
        """What the student sees: the latest comment per level (PRG-4)."""
        progress = self._existing(student_id)
        return progress.latest_feedback() if progress else {}

    def feedback_history(self, student_id: UUID) -> dict[str, list[tuple[UUID, str, datetime]]]:
        """What the teachers and the school see: every comment, oldest first (PRG-4)."""
        progress = self._existing(student_id)
        if progress is None:
            return {}
        return {level: [(UUID(str(t)), c, at) for t, c, at in comments]
                for level, comments in progress.feedback.items()}

    def prompt_answers(self, student_id: UUID) -> dict[str, tuple[str, datetime]]:
        progress = self._existing(student_id)
        if progress is None:
            return {}
        return {prompt: (text, at) for prompt, (text, at) in progress.prompt_answers.items()}

    def survey_answers(self, student_id: UUID) -> dict[str, dict[str, str]]:
        progress = self._existing(student_id)
        return dict(progress.surveys) if progress else {}

    def _existing(self, student_id: UUID) -> Progress | None:
        """The student's progress stream; None if they have none yet; `KeyErased` or
        `PersonNotFound` for an erased or unknown student."""
        found: Progress | None = self.ledger.aggregate(progress_id_for(student_id), Progress)
        if found is None:
            self.ledger.live(student_id, Student)
        return found
