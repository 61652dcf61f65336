"""The roster: which sections a teacher has, who is in them, and which school each teacher is at.

Access rules (api/access.py) ask this read model who may see whom (ACC-1, ACC-2), so it answers
from the log's order, exactly once, like every projection. Only pseudonymous facts rest in
plaintext (ids, codes from fixed lists, timestamps); a section's name and join code are the
teacher's content and rest sealed under the teacher's key, bound to table, row and column.

Erasure: a teacher's rows (their school, their sections, those sections' members) and a
student's member rows go live on `ErasureRecord.SubjectErased`; on a rebuild the erased
subject's events arrive as `ErasedEvent` placeholders (a section's with the section as their
stream), which delete the same rows. Either way nothing of an erased person is left.

Soft delete (DEL-1): a person whose deletion is pending is a row of the `hidden` table, and
every reader leaves out what goes through them: a hidden student's memberships (so no teacher
or administrator is related to them, api/access.py), a hidden teacher's sections, school and
memberships. Nothing else changes, and enrolments, renames and school choices made meanwhile
are applied as usual, so withdrawing the deletion (DEL-2) shows the true current state at once,
without reading any sealed stream. The filter is part of each existing query (`NOT EXISTS` on
the hidden table's key), so a read costs the same number of queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from crypto import KeyErased, SubjectKeys
from crypto.sql import Cursor, Database
from ledger.erasure import ErasureRecord
from ledger.people import Person, Teacher
from ledger.schools import School, district_id_for
from ledger.sealing import ErasedEvent
from ledger.sections import Section
from projections.runner import Projection, hide, live_table

SCHOOL_SCOPE = "school"
DISTRICT_SCOPE = "district"


@dataclass(frozen=True)
class SectionView:
    id: UUID
    teacher_id: UUID
    name: str
    course: str
    grade: str
    login_type: str
    join_code: str
    student_count: int


def _aad(section_id: str, column: str) -> bytes:
    return f"roster_sections|{section_id}|{column}".encode()


def parse_scope(scope: str | None) -> tuple[str, UUID] | None:
    """`"school:<uuid>"` or `"district:<uuid>"` as (kind, id); None for anything else."""
    kind, _, value = (scope or "").partition(":")
    if kind not in (SCHOOL_SCOPE, DISTRICT_SCOPE):
        return None
    try:
        return kind, UUID(value)
    except ValueError:
        return None


class Tables:
    """The names of one generation's tables, from the runner's per-generation prefix."""

    def __init__(self, prefix: str) -> None:
        self.sections = f"{prefix}_sections"
        self.members = f"{prefix}_members"
        self.teachers = f"{prefix}_teachers"
        self.schools = f"{prefix}_schools"
        self.hidden = f"{prefix}_hidden"


def _shown(hidden: str, column: str) -> str:
    """A condition: the person in `column` is not soft-deleted (one look-up by primary key)."""
    return f"NOT EXISTS (SELECT 1 FROM {hidden} h WHERE h.person_id = {column})"


class Roster(Projection):
    name = "roster"

    def __init__(self, keys: SubjectKeys) -> None:
        self.keys = keys

    def create_tables(self, cur: Cursor, table: str, blob: str) -> None:
        t = Tables(table)
        cur.execute(
            f"CREATE TABLE {t.sections} (section_id TEXT PRIMARY KEY, teacher_id TEXT NOT NULL,"
            " course TEXT NOT NULL, grade TEXT NOT NULL, login_type TEXT NOT NULL,"
            f" sealed_name {blob} NOT NULL, sealed_join_code {blob} NOT NULL,"
            " created_at TEXT NOT NULL)"
        )
        cur.execute(f"CREATE INDEX {t.sections}_by_teacher ON {t.sections}"
                    " (teacher_id, created_at, section_id)")
        cur.execute(
            f"CREATE TABLE {t.members} (section_id TEXT NOT NULL, student_id TEXT NOT NULL,"
            " teacher_id TEXT NOT NULL, enrolled_at TEXT NOT NULL,"
            " PRIMARY KEY (section_id, student_id))"
        )
        cur.execute(f"CREATE INDEX {t.members}_by_student ON {t.members} (student_id)")
        cur.execute(f"CREATE INDEX {t.members}_by_teacher ON {t.members} (teacher_id)")
        cur.execute(
            f"CREATE TABLE {t.teachers} (teacher_id TEXT PRIMARY KEY, school_id TEXT NOT NULL,"
            " district_id TEXT)"
        )
        cur.execute(f"CREATE INDEX {t.teachers}_by_school ON {t.teachers} (school_id)")
        cur.execute(f"CREATE INDEX {t.teachers}_by_district ON {t.teachers} (district_id)")
        cur.execute(
            f"CREATE TABLE {t.schools} (school_id TEXT PRIMARY KEY, district_id TEXT NOT NULL,"
            " school_type TEXT NOT NULL)"
        )
        cur.execute(f"CREATE TABLE {t.hidden} (person_id TEXT PRIMARY KEY)")

    def shape(self, table: str) -> dict[str, frozenset[str]]:
        t = Tables(table)
        return {
            t.sections: frozenset({"section_id", "teacher_id", "course", "grade", "login_type",
                                   "sealed_name", "sealed_join_code", "created_at"}),
            t.members: frozenset({"section_id", "student_id", "teacher_id", "enrolled_at"}),
            t.teachers: frozenset({"teacher_id", "school_id", "district_id"}),
            t.schools: frozenset({"school_id", "district_id", "school_type"}),
            t.hidden: frozenset({"person_id"}),
        }

    # -- following the log --------------------------------------------------------------------
    def process(self, cur: Cursor, table: str, event: Any) -> None:
        t = Tables(table)
        if isinstance(event, ErasedEvent):
            self.forget(cur, table, [UUID(str(event.originator_id))])
        elif isinstance(event, ErasureRecord.SubjectErased):
            self.forget(cur, table, [event.subject_id])
        elif isinstance(event, Section.Event):
            self._section_event(cur, t, event)
        elif isinstance(event, Teacher.SchoolChosen):
            self._school_chosen(cur, t, event)
        elif isinstance(event, Person.DeletionRequested | Person.DeletionWithdrawn):
            hide(cur, t.hidden, event)
        elif isinstance(event, School.Registered):
            cur.execute(
                f"INSERT INTO {t.schools} (school_id, district_id, school_type) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (str(event.originator_id), str(district_id_for(event.district)),
                 event.school_type),
            )

    def _section_event(self, cur: Cursor, t: Tables, event: Any) -> None:
        section_id, teacher_id = str(event.originator_id), str(event.owner_id)
        if isinstance(event, Section.Created):
            sealed = self._seal(event.owner_id, section_id, name=event.name,
                                join_code=event.join_code)
            if sealed is None:
                return
            cur.execute(
                f"INSERT INTO {t.sections} (section_id, teacher_id, course, grade, login_type,"
                " sealed_name, sealed_join_code, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (section_id, teacher_id, event.course, event.grade, event.login_type,
                 sealed["name"], sealed["join_code"], event.timestamp.isoformat()),
            )
        elif isinstance(event, Section.Renamed):
            sealed = self._seal(event.owner_id, section_id, name=event.name)
            if sealed is not None:
                cur.execute(f"UPDATE {t.sections} SET sealed_name = ? WHERE section_id = ?",
                            (sealed["name"], section_id))
        elif isinstance(event, Section.CourseAssigned):
            cur.execute(f"UPDATE {t.sections} SET course = ?, grade = ? WHERE section_id = ?",
                        (event.course, event.grade, section_id))
        elif isinstance(event, Section.StudentEnrolled):
            # An enrolment saved while the student was being erased can land after the
            # erasure in the log; it must not bring their id back.
            if self.keys.is_erased(event.student_id):
                return
            cur.execute(
                f"INSERT INTO {t.members} (section_id, student_id, teacher_id, enrolled_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (section_id, str(event.student_id), teacher_id, event.timestamp.isoformat()),
            )
        elif isinstance(event, Section.StudentUnenrolled):
            cur.execute(f"DELETE FROM {t.members} WHERE section_id = ? AND student_id = ?",
                        (section_id, str(event.student_id)))
        # RaceEstimated: a class statistic, of no use for deciding who sees whom.

    def _school_chosen(self, cur: Cursor, t: Tables, event: Teacher.SchoolChosen) -> None:
        teacher_id = str(event.originator_id)
        cur.execute(f"DELETE FROM {t.teachers} WHERE teacher_id = ?", (teacher_id,))
        if event.school_id is None:
            return
        cur.execute(f"SELECT district_id FROM {t.schools} WHERE school_id = ?",
                    (str(event.school_id),))
        row = cur.fetchone()
        cur.execute(
            f"INSERT INTO {t.teachers} (teacher_id, school_id, district_id) VALUES (?, ?, ?)",
            (teacher_id, str(event.school_id), row[0] if row else None),
        )

    def subject_columns(self, table: str) -> list[tuple[str, tuple[str, ...]]]:
        """Every row naming a subject, whatever it is: a teacher, a student or a section."""
        t = Tables(table)
        return [(t.members, ("student_id", "section_id", "teacher_id")),
                (t.sections, ("section_id", "teacher_id")), (t.teachers, ("teacher_id",)),
                (t.hidden, ("person_id",))]

    def _seal(self, teacher_id: UUID, section_id: str, **fields: str) -> dict[str, bytes] | None:
        try:
            aead = self.keys.sealer(teacher_id)
        except KeyErased:
            return None  # the teacher was erased since the event was read: nothing to keep
        return {column: aead.seal(value.encode(), _aad(section_id, column))
                for column, value in fields.items()}


# A section's columns, with its count of members that are shown (a section is read only when
# its teacher is shown, so only the students need the filter here).
_SECTION_COLUMNS = (
    "s.section_id, s.teacher_id, s.sealed_name, s.course, s.grade, s.login_type,"
    " s.sealed_join_code, (SELECT count(*) FROM {members} m WHERE m.section_id = s.section_id"
    " AND " + _shown("{hidden}", "m.student_id") + ")"
)
# A membership is shown when neither its student nor its section's teacher is soft-deleted.
_MEMBER_SHOWN = (_shown("{hidden}", "m.student_id") + " AND "
                 + _shown("{hidden}", "m.teacher_id"))


def _scope_column(scope: str) -> tuple[str, UUID] | None:
    """The teachers' column a scope names, and its id; None for a malformed scope."""
    parsed = parse_scope(scope)
    if parsed is None:
        return None
    kind, scope_id = parsed
    return ("school_id" if kind == SCHOOL_SCOPE else "district_id"), scope_id


class RosterReader:
    """Answers who is in which section and which teacher is where; opens sealed columns.

    Soft-deleted people (DEL-1) are left out of every answer: a hidden student is in no section
    and has no teacher; a hidden teacher has no sections, no school and no students, and their
    sections are not found by id. Withdrawal (DEL-2) brings all of it back as it now stands."""

    def __init__(self, db: Database, keys: SubjectKeys, projection: Roster) -> None:
        self.db = db
        self.keys = keys
        self.projection = projection

    def _tables(self, cur: Cursor) -> Tables:
        return Tables(live_table(cur, self.projection))

    def _ids(self, sql: str, params: tuple[Any, ...]) -> list[UUID]:
        """Run `sql` (with `{sections}`, `{members}`, `{teachers}`, `{hidden}` for the live
        tables, and `{member_shown}` for `_MEMBER_SHOWN`)."""
        with self.db.transaction(write=False) as cur:
            t = self._tables(cur)
            cur.execute(sql.format(member_shown=_MEMBER_SHOWN.format(hidden=t.hidden),
                                   sections=t.sections, members=t.members,
                                   teachers=t.teachers, hidden=t.hidden), params)
            return [UUID(row[0]) for row in cur.fetchall()]

    def _section_rows(self, where: str, params: tuple[Any, ...]) -> list[Any]:
        """Sections matching `where` (on `s`) whose teacher is shown, oldest first."""
        with self.db.transaction(write=False) as cur:
            t = self._tables(cur)
            columns = _SECTION_COLUMNS.format(members=t.members, hidden=t.hidden)
            cur.execute(f"SELECT {columns} FROM {t.sections} s WHERE {where}"
                        f" AND {_shown(t.hidden, 's.teacher_id')}"
                        " ORDER BY s.created_at, s.section_id", params)
            rows: list[Any] = cur.fetchall()
        return rows

    # -- sections -----------------------------------------------------------------------------
    def sections_of_teacher(self, teacher_id: UUID) -> list[SectionView]:
        """Oldest first; none for a soft-deleted teacher."""
        rows = self._section_rows("s.teacher_id = ?", (str(teacher_id),))
        return [view for row in rows if (view := self._open(row)) is not None]

    def section(self, section_id: UUID) -> SectionView | None:
        """None also when its teacher is soft-deleted. `student_count` counts shown students."""
        rows = self._section_rows("s.section_id = ?", (str(section_id),))
        return self._open(rows[0]) if rows else None

    def students_of_section(self, section_id: UUID) -> list[UUID]:
        """In enrolment order; soft-deleted students (or a soft-deleted teacher's) left out."""
        return self._ids("SELECT m.student_id FROM {members} m WHERE m.section_id = ?"
                         " AND {member_shown} ORDER BY m.enrolled_at, m.student_id",
                         (str(section_id),))

    # -- students -----------------------------------------------------------------------------
    def sections_of_student(self, student_id: UUID) -> list[UUID]:
        """In enrolment order; none for a soft-deleted student, and no soft-deleted teacher's."""
        return self._ids("SELECT m.section_id FROM {members} m WHERE m.student_id = ?"
                         " AND {member_shown} ORDER BY m.enrolled_at, m.section_id",
                         (str(student_id),))

    def students_of_teacher(self, teacher_id: UUID) -> list[UUID]:
        """Every student in any of the teacher's sections, once; soft-deleted ones left out."""
        return self._ids("SELECT DISTINCT m.student_id FROM {members} m WHERE m.teacher_id = ?"
                         " AND {member_shown} ORDER BY m.student_id", (str(teacher_id),))

    def teachers_of_student(self, student_id: UUID) -> set[UUID]:
        """None for a soft-deleted student; soft-deleted teachers left out."""
        return set(self._ids("SELECT DISTINCT m.teacher_id FROM {members} m"
                             " WHERE m.student_id = ? AND {member_shown}", (str(student_id),)))

    # -- schools and districts (ACC-2) --------------------------------------------------------
    def school_of_teacher(self, teacher_id: UUID) -> tuple[UUID, UUID] | None:
        """(school id, district id), or None for a teacher with no school (or an unknown one),
        or soft-deleted (in no administrator's scope)."""
        with self.db.transaction(write=False) as cur:
            t = self._tables(cur)
            cur.execute(f"SELECT school_id, district_id FROM {t.teachers} x"
                        f" WHERE x.teacher_id = ? AND {_shown(t.hidden, 'x.teacher_id')}",
                        (str(teacher_id),))
            row = cur.fetchone()
        if row is None or row[1] is None:
            return None
        return UUID(row[0]), UUID(row[1])

    def teachers_in_scope(self, scope: str) -> set[UUID]:
        """Shown teachers at the school or district of `scope`; nobody for a malformed scope."""
        where = _scope_column(scope)
        if where is None:
            return set()
        column, scope_id = where
        return set(self._ids(f"SELECT x.teacher_id FROM {{teachers}} x WHERE x.{column} = ?"
                             " AND " + _shown("{hidden}", "x.teacher_id"), (str(scope_id),)))

    def students_in_scope(self, scope: str) -> set[UUID]:
        """Shown students in sections of shown teachers at the school or district of `scope`."""
        where = _scope_column(scope)
        if where is None:
            return set()
        column, scope_id = where
        return set(self._ids(
            "SELECT DISTINCT m.student_id FROM {members} m JOIN {teachers} t"
            f" ON t.teacher_id = m.teacher_id WHERE t.{column} = ? AND {{member_shown}}",
            (str(scope_id),)))

    # -- opening ------------------------------------------------------------------------------
    def _open(self, row: Any) -> SectionView | None:
        section_id, teacher_id = str(row[0]), UUID(row[1])
        try:
            aead = self.keys.opener(teacher_id)
        except KeyErased:
            return None  # erased; the projection deletes the row on the erasure record
        return SectionView(
            id=UUID(section_id),
            teacher_id=teacher_id,
            name=aead.open(bytes(row[2]), _aad(section_id, "name")).decode(),
            course=row[3],
            grade=row[4],
            login_type=row[5],
            join_code=aead.open(bytes(row[6]), _aad(section_id, "join_code")).decode(),
            student_count=int(row[7]),
        )
