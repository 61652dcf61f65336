"""RGT-1: all of a student's data, decrypted, as machine-readable JSON, or one table as CSV.

An export is a list of `ExportSection`s, each a table: a name, its columns, and a function
that yields the subject's rows one at a time. The document is written as it is read, one row
at a time with orjson, so a student with a term of attempts is never held in memory whole:

    {"format": "ledger-export/1", "subject_id": ..., "kind": ..., "exported_at": ...,
     "sections": {"profile": [{"field": ..., "value": ..., "statements": [...]}, ...],
                  "progress": [...], ..., "disclosures": [...]}}

The profile is one row per field, with the statements attached to that field after a refused
rectification next to it (RGT-2, 34 CFR 99.21): they travel with the field in every export.

Disclosure records (AUD-2) come in through `disclosures_of` (api/audit_queries.py).

The caller checks who may export (`Access.may_export`) and saves the access record before the
first byte (api/http/rights.py, api/cli/rights.py).
"""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

from api import audit_queries
from api.http.models import RecordOut
from api.services import Services
from api.spreadsheet import guard
from ledger.people import Person
from ledger.progress import Progress, progress_id_for
from ledger.rights import Statement

FORMAT = "ledger-export/1"
Row = dict[str, Any]


@dataclass(frozen=True)
class ExportSection:
    name: str
    columns: tuple[str, ...]
    rows: Callable[[UUID], Iterable[Row]]


def disclosures_of(svc: Services, subject_id: UUID) -> Iterable[Row]:
    """AUD-2: the disclosures of the subject's records outside the school-official path,
    oldest first, each with the statements on contested fields that went with it (RGT-2)."""
    return audit_queries.disclosures_of(svc, subject_id)


DISCLOSURE_COLUMNS = ("disclosure_id", "recipient", "legal_basis", "legitimate_interest",
                      "redisclosure_parties", "threat", "disclosed_at", "disclosed_by",
                      "disclosed", "statements")


class Exporter:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.sections: list[ExportSection] = [
            ExportSection("profile", ("field", "value", "statements"), self._profile),
            ExportSection("sections", ("section_id", "teacher_id", "name", "course", "grade"),
                          self._sections),
            ExportSection("progress", ("level", "tries", "best", "last_at"), self._progress),
            ExportSection("attempts", ("level", "result", "attempted_at", "seconds", "hints",
                                       "code", "answers"), self._attempts),
            ExportSection("answers", ("prompt", "text", "answered_at"), self._answers),
            ExportSection("survey_answers", ("survey", "question", "answer", "answered_at"),
                          self._survey_answers),
            ExportSection("feedback", ("level", "teacher_id", "comment", "given_at"),
                          self._feedback),
            ExportSection("projects", ("project_id", "kind", "name", "source", "remixed_from",
                                       "shared_at", "media"), self._projects),
            ExportSection("uploads", ("media_id", "project_id", "content_type", "size",
                                      "data_base64"), self._uploads),
            ExportSection("consents", ("consent", "before", "after", "at"), self._consents),
            ExportSection("access_records", ("record_id", "read_at", "actor_id", "actor_role",
                                             "on_behalf_of", "purpose", "resource", "fields",
                                             "request_id"), self._access_records),
            ExportSection("disclosures", DISCLOSURE_COLUMNS,
                          lambda subject: disclosures_of(self.svc, subject)),
            ExportSection("rights_requests", ("request_id", "kind", "filed_by", "received_at",
                                              "due_at", "status", "field", "proposed_value",
                                              "extensions", "closed_at", "outcome"),
                          self._requests),
            ExportSection("statements", ("statement_id", "request_id", "field", "text", "by",
                                         "at"), self._statements),
            ExportSection("restriction", ("since", "requests"), self._restriction),
        ]

    @property
    def names(self) -> list[str]:
        return [section.name for section in self.sections]

    def section(self, name: str) -> ExportSection | None:
        return next((s for s in self.sections if s.name == name), None)

    # -- the documents ----------------------------------------------------------------------
    def json(self, person: Person, at: datetime | None = None) -> Iterator[bytes]:
        head = {"format": FORMAT, "subject_id": person.id, "kind": person.kind,
                "exported_at": at or datetime.now(UTC)}
        yield orjson.dumps(head)[:-1] + b', "sections": {'
        for number, section in enumerate(self.sections):
            yield (b", " if number else b"") + orjson.dumps(section.name) + b": ["
            for index, row in enumerate(section.rows(person.id)):
                yield (b", " if index else b"") + orjson.dumps(row)
            yield b"]"
        yield b"}}\n"

    def csv(self, person: Person, section: ExportSection) -> Iterator[bytes]:
        """One table; a value that is not text (a list, a mapping) is a JSON text in its cell."""
        yield _csv_line(section.columns)
        for row in section.rows(person.id):
            yield _csv_line([_cell(row.get(column)) for column in section.columns])

    # -- the sections -----------------------------------------------------------------------
    def _profile(self, subject_id: UUID) -> Iterator[Row]:
        person = self.svc.ledger.person(subject_id)
        if not isinstance(person, Person):
            return
        by_field: dict[str, list[Statement]] = {}
        for statement in self.svc.rights.statements_of(subject_id):
            by_field.setdefault(statement.field, []).append(statement)
        record = RecordOut.of(person).model_dump(mode="json", exclude_unset=True)
        contested = set(by_field) - set(record)  # a field now empty keeps its statements
        for field in [*record, *sorted(contested)]:
            yield {"field": field, "value": record.get(field), "statements": [
                {"statement_id": s.id, "request_id": s.request_id, "text": s.text,
                 "by": s.by, "at": s.at} for s in by_field.get(field, [])]}

    def _sections(self, subject_id: UUID) -> Iterator[Row]:
        roster = self.svc.roster_reader
        for section_id in roster.sections_of_student(subject_id):
            view = roster.section(section_id)
            if view is not None:
                yield {"section_id": view.id, "teacher_id": view.teacher_id, "name": view.name,
                       "course": view.course, "grade": view.grade}

    def _progress(self, subject_id: UUID) -> Iterator[Row]:
        levels = self.svc.progress_reader.of_student(subject_id)
        for level, p in sorted(levels.items()):
            yield {"level": level, "tries": p.tries, "best": p.best, "last_at": p.last_at}

    def _progress_events(self, subject_id: UUID, kind: type) -> Iterator[Any]:
        """The events of the student's progress stream, read as they come (not a list)."""
        for stored in self.svc.ledger.events.get(progress_id_for(subject_id)):
            if isinstance(stored, kind):
                yield stored

    def _attempts(self, subject_id: UUID) -> Iterator[Row]:
        for e in self._progress_events(subject_id, Progress.AttemptRecorded):
            yield {"level": e.level, "result": e.result, "attempted_at": e.attempted_at,
                   "seconds": e.seconds, "hints": e.hints, "code": e.code,
                   "answers": dict(e.answers)}

    def _answers(self, subject_id: UUID) -> Iterator[Row]:
        for e in self._progress_events(subject_id, Progress.PromptAnswered):
            yield {"prompt": e.prompt, "text": e.text, "answered_at": e.answered_at}

    def _survey_answers(self, subject_id: UUID) -> Iterator[Row]:
        for e in self._progress_events(subject_id, Progress.SurveyAnswered):
            for question, answer in sorted(e.answers.items()):
                yield {"survey": e.survey, "question": question, "answer": answer,
                       "answered_at": e.answered_at}

    def _feedback(self, subject_id: UUID) -> Iterator[Row]:
        for e in self._progress_events(subject_id, Progress.FeedbackGiven):
            yield {"level": e.level, "teacher_id": e.teacher_id, "comment": e.comment,
                   "given_at": e.given_at}

    def _projects(self, subject_id: UUID) -> Iterator[Row]:
        for summary in self.svc.projects_reader.of_owner(subject_id):
            project = self.svc.projects.project(summary.id, subject_id)
            yield {"project_id": project.id, "kind": project.kind, "name": project.name,
                   "source": project.source, "remixed_from": project.remixed_from,
                   "shared_at": summary.shared_at,
                   "media": [{"media_id": m[0], "kind": m[1], "content_type": m[2],
                              "size": m[3]} for m in project.media]}

    def _uploads(self, subject_id: UUID) -> Iterator[Row]:
        """The files the student uploaded to their projects, one at a time (each is bounded by
        the upload limit)."""
        for summary in self.svc.projects_reader.of_owner(subject_id):
            project = self.svc.projects.project(summary.id, subject_id)
            for media_id, *_ in project.media:
                found = self.svc.media.get(UUID(str(media_id)))
                if found is not None and found[0].owner_id == subject_id:
                    stored, data = found
                    yield {"media_id": media_id, "project_id": project.id,
                           "content_type": stored.content_type, "size": len(data),
                           "data_base64": base64.b64encode(data).decode()}

    def _consents(self, subject_id: UUID) -> Iterator[Row]:
        for e in self.svc.ledger.events.get(subject_id):
            if isinstance(e, Person.ConsentChanged):
                yield {"consent": e.consent, "before": e.before, "after": e.after,
                       "at": e.timestamp}

    def _access_records(self, subject_id: UUID) -> Iterator[Row]:
        self.svc.audit_view.catch_up()
        after: tuple[datetime, UUID] | None = None
        while page := self.svc.audit_reader.of_student(subject_id, limit=500, after=after):
            for entry in page:
                record = self.svc.audit.record(entry.record_id)
                yield {"record_id": entry.record_id, "read_at": entry.read_at,
                       "actor_id": entry.actor_id, "actor_role": entry.actor_role,
                       "on_behalf_of": record.on_behalf_of if record else None,
                       "purpose": entry.purpose, "resource": record.resource if record else None,
                       "fields": record.fields if record else None,
                       "request_id": record.request_id if record else None}
            after = (page[-1].read_at, page[-1].record_id)

    def _requests(self, subject_id: UUID) -> Iterator[Row]:
        for r in self.svc.rights.requests_of(subject_id):
            yield {"request_id": r.id, "kind": r.kind, "filed_by": r.filed_by,
                   "received_at": r.received_at, "due_at": r.due_at, "status": r.status,
                   "field": r.field, "proposed_value": r.proposed,
                   "extensions": [{"due_at": x.due_at, "reason": x.reason, "at": x.at,
                                   "notice": x.notice} for x in r.extensions],
                   "closed_at": r.closed_at, "outcome": r.outcome}

    def _statements(self, subject_id: UUID) -> Iterator[Row]:
        for s in self.svc.rights.statements_of(subject_id):
            yield {"statement_id": s.id, "request_id": s.request_id, "field": s.field,
                   "text": s.text, "by": s.by, "at": s.at}

    def _restriction(self, subject_id: UUID) -> Iterator[Row]:
        restriction = self.svc.rights.restriction(subject_id)
        if restriction is not None:
            yield {"since": restriction.since, "requests": list(restriction.requests)}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return guard(value)
    text = orjson.dumps(value).decode()
    return text[1:-1] if text.startswith('"') else text  # a UUID or a time: no quotes


def _csv_line(values: Iterable[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(list(values))
    return buffer.getvalue().encode()
