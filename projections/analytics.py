"""De-identified analytics (ANA-1, ANA-2, RGT-3, DEL-10, AGE-2): counts, never people.

Facts rest keyed by an analytics id: a `uuid4` drawn when a student first appears, kept in
`links`, never derived from the student's id, email or anything about them (ANA-1). Facts are
pseudonymous codes from fixed lists (age band, gender, race, a coarse region), level ids,
results and days; nothing free-text, nothing sealed is opened.

Restriction and objection (RGT-3) are followed here, from the rights file's own events, not
read from the rights view at query time: the view is another runner at another position, so a
rebuild would see a different restriction state than the live run saw, and rebuild == live
(ANA-3) would only hold by luck. A restricted student keeps their rows (the restriction is not
an erasure) with `restricted = 1`, and every output leaves them out until the lift.

Race (AGE-2): kept for a student only as the student gave it; every output counts race only for
students of 13 or over, so no under-13 race is ever attributed, whatever the age given later.
Sections' estimated distributions for classes of under-13s are their own table: a percentage
per race times the class size, counted as an estimate and never attributed to a student.

Erasure: `SubjectErased` (live) and the placeholders of a rebuild leave nothing: the link, the
facts and the enrolments go (`subject_columns`), and the purge's residue (ResiduePool, outside
the log) is counted in their place by the outputs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from uuid import UUID, uuid4

import orjson

from crypto.sql import Cursor, Database, delete_naming, insert_rows
from ledger.erasure import ErasureRecord
from ledger.people import Person, Student, Teacher, is_adult, is_under_13
from ledger.progress import RESULTS, Progress
from ledger.residue import Residue
from ledger.rights import RightsFile
from ledger.schools import School
from ledger.sealing import ErasedEvent
from ledger.sections import Section
from projections.runner import FoldingProjection, live_table, time_text

_RANK = {result: rank for rank, result in enumerate(RESULTS)}
_SOLVED, _OPTIMAL = _RANK["solved"], _RANK["optimal"]
_CHUNK = 500  # ids in one IN list (SQLite caps a statement's parameters)

DIMENSIONS = ("age_band", "gender", "race", "region", "school_type", "course", "unit", "week",
              "month")
MEASURES = ("students", "attempts", "solved", "optimal")
UNKNOWN = "not_given"


def age_band(age: str | None) -> str:
    """The bands the residue uses too, so that live rows and residues add up."""
    return "under_13" if is_under_13(age) else "18_plus" if is_adult(age) else "13_17"


STUDENT_COLUMNS = ("analytics_id", "age_band", "gender", "race", "region", "restricted")


class Tables:
    def __init__(self, prefix: str) -> None:
        self.links = f"{prefix}_links"  # student id -> analytics id; goes at erasure
        self.students = f"{prefix}_students"
        # A student's attempts, one row per month: {level: [best, {day: attempts}]}. A page
        # of the log rewrites a few such rows, not a row per attempt, so that a rebuild writes
        # little; a month bounds the row, so that a long history is not rewritten whole.
        self.activity = f"{prefix}_activity"
        self.sections = f"{prefix}_sections"
        self.enrolled = f"{prefix}_enrolled"
        self.teachers = f"{prefix}_teachers"  # a teacher's school, for the school type
        self.schools = f"{prefix}_schools"


class AnalyticsView(FoldingProjection):
    name = "analytics"
    consumes = (Student.Registered, Person.AgeGiven, Person.GenderGiven, Student.RaceGiven,
                Person.SignedIn, Progress.AttemptRecorded, RightsFile.Restricted,
                RightsFile.RestrictionLifted, Section.Created, Section.RaceEstimated,
                Section.StudentEnrolled, Section.StudentUnenrolled, Teacher.SchoolChosen,
                School.Registered, ErasureRecord.SubjectErased)

    def create_tables(self, cur: Cursor, table: str, blob: str) -> None:
        t = Tables(table)
        cur.execute(f"CREATE TABLE {t.links} (student_id TEXT PRIMARY KEY,"
                    " analytics_id TEXT NOT NULL UNIQUE)")
        cur.execute(f"CREATE TABLE {t.students} (analytics_id TEXT PRIMARY KEY,"
                    " age_band TEXT NOT NULL, gender TEXT, race TEXT, region TEXT,"
                    " restricted INTEGER NOT NULL)")
        cur.execute(f"CREATE TABLE {t.activity} (analytics_id TEXT NOT NULL,"
                    f" month TEXT NOT NULL, levels {blob} NOT NULL,"
                    " PRIMARY KEY (analytics_id, month))")
        cur.execute(f"CREATE TABLE {t.sections} (section_id TEXT PRIMARY KEY,"
                    " owner_id TEXT NOT NULL, estimate TEXT)")
        cur.execute(f"CREATE TABLE {t.enrolled} (section_id TEXT NOT NULL,"
                    " student_id TEXT NOT NULL, since TEXT NOT NULL,"
                    " PRIMARY KEY (section_id, student_id))")
        cur.execute(f"CREATE TABLE {t.teachers} (teacher_id TEXT PRIMARY KEY,"
                    " school_id TEXT NOT NULL)")
        cur.execute(f"CREATE TABLE {t.schools} (school_id TEXT PRIMARY KEY,"
                    " school_type TEXT NOT NULL)")

    def shape(self, table: str) -> dict[str, frozenset[str]]:
        t = Tables(table)
        return {t.links: frozenset({"student_id", "analytics_id"}),
                t.students: frozenset(STUDENT_COLUMNS),
                t.activity: frozenset({"analytics_id", "month", "levels"}),
                t.sections: frozenset({"section_id", "owner_id", "estimate"}),
                t.enrolled: frozenset({"section_id", "student_id", "since"}),
                t.teachers: frozenset({"teacher_id", "school_id"}),
                t.schools: frozenset({"school_id", "school_type"})}

    def subject_columns(self, table: str) -> list[tuple[str, tuple[str, ...]]]:
        t = Tables(table)
        # A teacher's erasure takes their sections (the section's stream is theirs: on a
        # rebuild its events are placeholders), so live and rebuilt tables agree.
        return [(t.enrolled, ("student_id", "section_id")),
                (t.sections, ("section_id", "owner_id")), (t.teachers, ("teacher_id",)),
                (t.links, ("student_id",))]

    def forget(self, cur: Cursor, table: str, subject_ids: Sequence[UUID]) -> Counter[UUID]:
        """The facts are keyed by analytics id: they go first, found through the links."""
        t = Tables(table)
        linked = linked_ids(cur, t, [str(subject_id) for subject_id in subject_ids])
        student_of = {analytics_id: UUID(student) for student, analytics_id in linked.items()}
        counts: Counter[UUID] = Counter()
        for name in (t.students, t.activity):
            for analytics_id, count in delete_naming(cur, name, ("analytics_id",),
                                                     list(student_of)).items():
                counts[student_of[analytics_id]] += count
        return counts + super().forget(cur, table, subject_ids)

    def fold(self, events: Sequence[Any]) -> list[Step]:
        """A page folded in memory: students' facts and attempts gathered by student, in
        order with the page's erasures and its section and school changes (rare, kept as
        statements)."""
        page = _Fold()
        for event in events:
            if isinstance(event, Progress.AttemptRecorded):  # nearly every event
                page.attempt(event.owner_id, event.level, _RANK[event.result],
                             event.attempted_at.date().isoformat())
            elif isinstance(event, Student.Registered):
                page.register(event.originator_id, age_band(event.age), event.gender)
            elif isinstance(event, Person.AgeGiven):
                page.set(event.originator_id, "age_band", age_band(event.age))
            elif isinstance(event, Person.GenderGiven):
                page.set(event.originator_id, "gender", event.gender)
            elif isinstance(event, Student.RaceGiven):
                page.set(event.originator_id, "race", event.race)
            elif isinstance(event, Person.SignedIn) and event.region is not None:
                page.set(event.originator_id, "region", event.region)
            elif isinstance(event, RightsFile.Restricted | RightsFile.RestrictionLifted):
                page.set(event.owner_id, "restricted",
                         1 if isinstance(event, RightsFile.Restricted) else 0)
            elif isinstance(event, ErasedEvent):
                # A rebuild: the erased student's own stream never made a row; a progress or
                # rights stream of theirs names no row either. A section's stream: its rows go.
                page.forget(UUID(str(event.originator_id)))
            elif isinstance(event, ErasureRecord.SubjectErased):
                page.forget(event.subject_id)
            else:
                page.statements(_school_statements(event))
        return page.done()

    def write(self, cur: Cursor, table: str, folded: list[Step]) -> None:
        """The folded page's steps, in order: the students' rows in one statement per table,
        erasures in one go per run of them."""
        t = Tables(table)
        for step in folded:
            if isinstance(step, Facts):
                _write_facts(cur, t, step)
            elif isinstance(step, Forget):
                self.forget(cur, table, step.subject_ids)
            else:
                name, values = step
                cur.execute(_SCHOOL_SQL[name].format(**vars(t)), values)


# Sections, enrolments, teachers' schools and schools: a few events a term each, written as
# they come, one statement each.
_SCHOOL_SQL = {
    "section": "INSERT INTO {sections} (section_id, owner_id) VALUES (?, ?)"
               " ON CONFLICT DO NOTHING",
    "estimate": "UPDATE {sections} SET estimate = ? WHERE section_id = ?",
    "enrol": "INSERT INTO {enrolled} (section_id, student_id, since) VALUES (?, ?, ?)"
             " ON CONFLICT DO NOTHING",
    "unenrol": "DELETE FROM {enrolled} WHERE section_id = ? AND student_id = ?",
    "teacher_left": "DELETE FROM {teachers} WHERE teacher_id = ?",
    "teacher_school": "INSERT INTO {teachers} (teacher_id, school_id) VALUES (?, ?)",
    "school": "INSERT INTO {schools} (school_id, school_type) VALUES (?, ?)"
              " ON CONFLICT DO NOTHING",
}
Statement = tuple[str, tuple[Any, ...]]  # a name in _SCHOOL_SQL, and its values


def _school_statements(event: Any) -> list[Statement]:
    if isinstance(event, Section.Created):
        return [("section", (str(event.originator_id), str(event.owner_id)))]
    if isinstance(event, Section.RaceEstimated):
        return [("estimate", (orjson.dumps(event.distribution,
                                           option=orjson.OPT_SORT_KEYS).decode(),
                              str(event.originator_id)))]
    if isinstance(event, Section.StudentEnrolled):
        return [("enrol", (str(event.originator_id), str(event.student_id),
                           time_text(event.timestamp)))]
    if isinstance(event, Section.StudentUnenrolled):
        return [("unenrol", (str(event.originator_id), str(event.student_id)))]
    if isinstance(event, Teacher.SchoolChosen):
        teacher = str(event.originator_id)
        return [("teacher_left", (teacher,))] + (
            [("teacher_school", (teacher, str(event.school_id)))]
            if event.school_id is not None else [])
    if isinstance(event, School.Registered):
        return [("school", (str(event.originator_id), event.school_type))]
    return []


def linked_ids(cur: Cursor, t: Tables, student_ids: Sequence[str]) -> dict[str, str]:
    """The analytics ids of those of `student_ids` that have one, in a query per 500."""
    found: dict[str, str] = {}
    for start in range(0, len(student_ids), _CHUNK):
        part = student_ids[start:start + _CHUNK]
        cur.execute(f"SELECT student_id, analytics_id FROM {t.links}"
                    f" WHERE student_id IN ({', '.join('?' * len(part))})", part)
        found.update((str(student), str(analytics)) for student, analytics in cur.fetchall())
    return found


# A month's activity as it rests: {level: [best rank, {day: attempts}]}.
Activity = dict[str, list[Any]]


def add_activity(into: Activity, more: Activity) -> Activity:
    """`more` folded into `into` (changed in place): best of the two, attempts added."""
    for level, (best, days) in more.items():
        mine = into.setdefault(level, [best, {}])
        mine[0] = max(mine[0], best)
        for day, attempts in days.items():
            mine[1][day] = mine[1].get(day, 0) + attempts
    return into


@dataclass
class Facts:
    """What a run of a page's events changes in students' rows, by student id (as text, as the
    links hold it: a worker's fold is sent back without a `UUID` to rebuild): written in one
    statement per table, once one query has found the students' analytics ids (those without
    one, teachers and erased students, are passed over)."""

    new: dict[str, dict[str, Any]] = field(default_factory=dict)  # registered: the row
    changed: dict[str, dict[str, Any]] = field(default_factory=dict)  # column -> value
    # month -> levels, in JSON as the activity table keeps them: a worker encodes them, so that
    # this process decodes only the months it must add to (`_write_activity`).
    activity: dict[str, dict[str, bytes]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.new or self.changed or self.activity)


@dataclass
class Forget:
    """A run of erased subjects, forgotten in one go."""

    subject_ids: list[UUID]


Step = Facts | Forget | Statement


class _Fold:
    """A page's steps as `AnalyticsView.fold` gathers them: facts pile up until an erasure or a
    school statement, which must come after them (an erasure takes what came before it)."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.facts = Facts()
        self.months: dict[str, dict[str, Activity]] = {}  # the facts' attempts, by student
        self.forgotten: dict[UUID, None] = {}  # in order, each once: a run of placeholders
        self._names: dict[UUID, str] = {}

    def register(self, student_id: UUID, band: str, gender: str | None) -> None:
        self._facts().new[self._name(student_id)] = {
            "age_band": band, "gender": gender, "race": None, "region": None, "restricted": 0}

    def set(self, subject_id: UUID, column: str, value: Any) -> None:
        facts, name = self._facts(), self._name(subject_id)
        row = facts.new.get(name)
        (row if row is not None else facts.changed.setdefault(name, {}))[column] = value

    def attempt(self, student_id: UUID, level: str, rank: int, day: str) -> None:
        if self.forgotten:
            self._facts()
        name = self._name(student_id)
        months = self.months.get(name)
        if months is None:
            months = self.months[name] = {}
        month = months.get(day[:7])
        if month is None:
            month = months[day[:7]] = {}
        if (seen := month.get(level)) is None:  # `add_activity` written out: once per attempt
            month[level] = [rank, {day: 1}]
        else:
            seen[0] = max(seen[0], rank)
            seen[1][day] = seen[1].get(day, 0) + 1

    def forget(self, subject_id: UUID) -> None:
        self._close_facts()
        self.forgotten[subject_id] = None

    def statements(self, statements: list[Statement]) -> None:
        if statements:
            self._flush()
            self.steps.extend(statements)

    def done(self) -> list[Step]:
        self._flush()
        return self.steps

    def _facts(self) -> Facts:
        if self.forgotten:  # facts after an erasure go after it
            self.steps.append(Forget(list(self.forgotten)))
            self.forgotten = {}
        return self.facts

    def _name(self, student_id: UUID) -> str:
        name = self._names.get(student_id)
        if name is None:
            name = self._names[student_id] = str(student_id)
        return name

    def _close_facts(self) -> None:
        """The facts gathered so far become a step."""
        if self.months:
            self.facts.activity = {student: {month: orjson.dumps(levels)
                                             for month, levels in months.items()}
                                   for student, months in self.months.items()}
            self.months = {}
        if self.facts:
            self.steps.append(self.facts)
            self.facts = Facts()

    def _flush(self) -> None:
        self._facts()
        self._close_facts()


def _write_facts(cur: Cursor, t: Tables, facts: Facts) -> None:
    ids = linked_ids(cur, t, list({**facts.new, **facts.changed, **facts.activity}))
    old = list(ids.values())
    # ANA-1: drawn, never derived. A student already linked keeps their id (a registration is
    # met once in a log; this keeps a replayed one from counting a student twice).
    new = {student: str(uuid4()) for student in facts.new if student not in ids}
    if new:
        ids.update(new)
        insert_rows(cur, t.links, ("student_id", "analytics_id"), list(new.items()))
        insert_rows(cur, t.students, STUDENT_COLUMNS,
                    [(new[student], *(row[column] for column in STUDENT_COLUMNS[1:]))
                     for student, row in facts.new.items() if student in new])
    by_column: dict[str, list[tuple[Any, str]]] = {}
    for student, columns in facts.changed.items():
        if (analytics_id := ids.get(student)) is not None:
            for column, value in columns.items():
                by_column.setdefault(column, []).append((value, analytics_id))
    for column, values in by_column.items():
        cur.executemany(f"UPDATE {t.students} SET {column} = ? WHERE analytics_id = ?", values)
    activity = {(ids[student], month): levels
                for student, months in facts.activity.items() if student in ids
                for month, levels in months.items()}
    if activity:
        _write_activity(cur, t, activity, old)


def _write_activity(cur: Cursor, t: Tables, activity: dict[tuple[str, str], bytes],
                    old: list[str]) -> None:
    """Each month touched: read as it rests (for students met before this page), the page's
    attempts added, written back."""
    stored: dict[tuple[str, str], Activity] = {}
    for start in range(0, len(old), _CHUNK):
        part = old[start:start + _CHUNK]
        cur.execute(f"SELECT analytics_id, month, levels FROM {t.activity}"
                    f" WHERE analytics_id IN ({', '.join('?' * len(part))})", part)
        for analytics_id, month, levels in cur.fetchall():
            if (key := (str(analytics_id), str(month))) in activity:
                stored[key] = orjson.loads(levels)
    insert_rows(cur, t.activity, ("analytics_id", "month", "levels"),
                [(analytics_id, month,
                  orjson.dumps(add_activity(rested, orjson.loads(more)))
                  if (rested := stored.get((analytics_id, month))) else more)
                 for (analytics_id, month), more in activity.items()],
                "ON CONFLICT (analytics_id, month) DO UPDATE SET levels = excluded.levels")


@dataclass(frozen=True)
class Crosstab:
    """Counts of a measure by one or two dimensions: rows x columns (one column, "all",
    when only one dimension is asked for). Not yet suppressed."""

    measure: str
    by: tuple[str, ...]
    rows: list[str]
    columns: list[str]
    counts: list[list[int]]


class UnknownBreakdown(ValueError):
    """A measure or dimension not in the lists: a client's mistake, said as such."""


def _period(day: str, dimension: str) -> str:
    d = date.fromisoformat(day)
    if dimension == "month":
        return d.strftime("%Y-%m")
    year, week, _ = d.isocalendar()
    return f"{year}-W{week:02d}"


class AnalyticsReader:
    """Tables of counts from the live generation and the residue pool; never a row about one
    student. Restricted students are left out (RGT-3)."""

    def __init__(self, db: Database, projection: AnalyticsView,
                 residues: Any | None = None) -> None:
        self.db = db
        self.projection = projection
        self.residues = residues  # a ResiduePool, or None when residues are off

    def crosstab(self, measure: str, by: Iterable[str]) -> Crosstab:
        dims = tuple(by)
        if measure not in MEASURES:
            raise UnknownBreakdown(f"measure must be one of {', '.join(MEASURES)}")
        if not 1 <= len(dims) <= 2 or any(d not in DIMENSIONS for d in dims) \
                or len(set(dims)) != len(dims):
            raise UnknownBreakdown("by: one or two different dimensions from "
                                   + ", ".join(DIMENSIONS))
        if measure in ("solved", "optimal") and {"week", "month"} & set(dims):
            raise UnknownBreakdown("solved and optimal levels are not kept by week or month")
        counts: Counter[tuple[str, str]] = Counter()
        for key, weight in self._contributions(measure, dims):
            counts[key] += weight
        rows = sorted({k[0] for k in counts})
        columns = sorted({k[1] for k in counts})
        return Crosstab(measure, dims, rows, columns,
                        [[counts[(r, c)] for c in columns] for r in rows])

    def section_race_estimates(self) -> dict[str, float]:
        """AGE-2: the estimated number of students of each race in sections with an estimate
        (share x class size), summed over sections; never attributed to a student."""
        totals: dict[str, float] = {}
        with self.db.transaction(write=False) as cur:
            t = Tables(live_table(cur, self.projection))
            cur.execute(f"SELECT s.estimate, count(e.student_id) FROM {t.sections} s"
                        f" LEFT JOIN {t.enrolled} e ON e.section_id = s.section_id"
                        " WHERE s.estimate IS NOT NULL GROUP BY s.section_id, s.estimate")
            for estimate, size in cur.fetchall():
                for race, percent in orjson.loads(estimate).items():
                    totals[race] = totals.get(race, 0.0) + percent * int(size) / 100
        return {race: round(value, 1) for race, value in sorted(totals.items())}

    def section_race_estimates_table(self) -> Crosstab:
        """The estimates as a table of whole students by race (rounded), for publishing."""
        estimates = {race: round(value) for race, value in self.section_race_estimates().items()
                     if round(value) > 0}
        return Crosstab("estimated_students", ("race",), list(estimates), ["all"],
                        [[count] for count in estimates.values()])

    # -- internals --------------------------------------------------------------------------
    def _contributions(self, measure: str, dims: tuple[str, ...]
                       ) -> Iterable[tuple[tuple[str, str], int]]:
        people, levels, days = self._facts()
        students_only = not ({"course", "unit", "week", "month"} & set(dims))
        seen: set[tuple[str, str, str]] = set()

        def key(person: dict[str, str], level: str = "", day: str = "") -> tuple[str, str] | None:
            values = []
            for d in dims:
                if d in person:
                    values.append(person[d])
                elif d in ("course", "unit"):
                    parts = level.split("/")
                    values.append(parts[0] if d == "course" else "/".join(parts[:2]))
                else:
                    values.append(_period(day, d))
            if "race" in dims and person["age_band"] == "under_13":
                return None  # AGE-2: no per-student race under 13; see the section estimates
            return (values[0], values[1] if len(values) > 1 else "all")

        for analytics_id, person in people.items():
            if measure == "students" and students_only:
                if (k := key(person)) is not None:
                    yield k, 1
                continue
            if measure == "attempts" or (measure == "students" and {"week", "month"} & set(dims)):
                for level, day, attempts in days.get(analytics_id, []):
                    if (k := key(person, level, day)) is None:
                        continue
                    if measure == "attempts":
                        yield k, attempts
                    elif (analytics_id, *k) not in seen:
                        seen.add((analytics_id, *k))
                        yield k, 1
                continue
            for level, best in levels.get(analytics_id, []):
                if (k := key(person, level)) is None:
                    continue
                if measure == "students":
                    if (analytics_id, *k) not in seen:
                        seen.add((analytics_id, *k))
                        yield k, 1
                elif best >= (_SOLVED if measure == "solved" else _OPTIMAL):
                    yield k, 1
        yield from self._residue_contributions(measure, dims)

    def _residue_contributions(self, measure: str, dims: tuple[str, ...]
                               ) -> Iterable[tuple[tuple[str, str], int]]:
        """DEL-10: a purged student's residue counts where it has the facts asked for: as a
        student by age band, gender and region; as solved levels by course."""
        if self.residues is None or measure in ("attempts", "optimal") \
                or not set(dims) <= {"age_band", "gender", "region", "course"}:
            return
        residue: Residue
        for residue in self.residues.all():
            if residue.kind != "student":
                continue
            facts = {"age_band": residue.age_band, "gender": residue.gender or UNKNOWN,
                     "region": residue.region or UNKNOWN}
            if "course" not in dims:
                if measure == "students":
                    values = [facts[d] for d in dims]
                    yield (values[0], values[1] if len(values) > 1 else "all"), 1
                continue
            for course, completed in residue.completions.items():
                if measure == "solved" or completed > 0:
                    values = [course if d == "course" else facts[d] for d in dims]
                    yield ((values[0], values[1] if len(values) > 1 else "all"),
                           completed if measure == "solved" else 1)

    def _facts(self) -> tuple[dict[str, dict[str, str]], dict[str, list[tuple[str, int]]],
                              dict[str, list[tuple[str, str, int]]]]:
        with self.db.transaction(write=False) as cur:
            t = Tables(live_table(cur, self.projection))
            cur.execute(f"SELECT analytics_id, age_band, gender, race, region FROM {t.students}"
                        " WHERE restricted = 0")
            people = {str(r[0]): {"age_band": str(r[1]), "gender": r[2] or UNKNOWN,
                                  "race": r[3] or UNKNOWN, "region": r[4] or UNKNOWN,
                                  "school_type": UNKNOWN}
                      for r in cur.fetchall()}
            # A student's school type: that of the first section they joined whose teacher
            # has chosen a school (a student counts once, whatever the number of sections).
            cur.execute(f"SELECT l.analytics_id, k.school_type FROM {t.enrolled} e"
                        f" JOIN {t.links} l ON l.student_id = e.student_id"
                        f" JOIN {t.sections} s ON s.section_id = e.section_id"
                        f" JOIN {t.teachers} r ON r.teacher_id = s.owner_id"
                        f" JOIN {t.schools} k ON k.school_id = r.school_id"
                        " ORDER BY e.since DESC, e.section_id DESC")
            for analytics_id, school_type in cur.fetchall():  # the first joined: last here
                if str(analytics_id) in people:
                    people[str(analytics_id)]["school_type"] = str(school_type)
            levels: dict[str, dict[str, int]] = {}
            days: dict[str, list[tuple[str, str, int]]] = {}
            cur.execute(f"SELECT analytics_id, levels FROM {t.activity}")
            for analytics_id, month in cur.fetchall():
                best_of = levels.setdefault(str(analytics_id), {})
                attempts_of = days.setdefault(str(analytics_id), [])
                for level, (best, by_day) in orjson.loads(month).items():
                    best_of[level] = max(best, best_of.get(level, best))
                    attempts_of.extend((level, day, n) for day, n in by_day.items())
        return people, {a: list(b.items()) for a, b in levels.items()}, days
