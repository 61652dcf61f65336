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
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID, uuid4

import orjson

from crypto.sql import Cursor, Database
from ledger.erasure import ErasureRecord
from ledger.people import Person, Student, Teacher, is_adult, is_under_13
from ledger.progress import RESULTS, Progress
from ledger.residue import Residue
from ledger.rights import RightsFile
from ledger.schools import School
from ledger.sealing import ErasedEvent
from ledger.sections import Section
from projections.runner import Projection, live_table, time_text

_RANK = {result: rank for rank, result in enumerate(RESULTS)}
_SOLVED, _OPTIMAL = _RANK["solved"], _RANK["optimal"]

DIMENSIONS = ("age_band", "gender", "race", "region", "school_type", "course", "unit", "week",
              "month")
MEASURES = ("students", "attempts", "solved", "optimal")
UNKNOWN = "not_given"


def age_band(age: str | None) -> str:
    """The bands the residue uses too, so that live rows and residues add up."""
    return "under_13" if is_under_13(age) else "18_plus" if is_adult(age) else "13_17"


class Tables:
    def __init__(self, prefix: str) -> None:
        self.links = f"{prefix}_links"  # student id -> analytics id; goes at erasure
        self.students = f"{prefix}_students"
        self.levels = f"{prefix}_levels"
        self.days = f"{prefix}_days"
        self.sections = f"{prefix}_sections"
        self.enrolled = f"{prefix}_enrolled"
        self.teachers = f"{prefix}_teachers"  # a teacher's school, for the school type
        self.schools = f"{prefix}_schools"


class AnalyticsView(Projection):
    name = "analytics"

    def create_tables(self, cur: Cursor, table: str, blob: str) -> None:
        t = Tables(table)
        cur.execute(f"CREATE TABLE {t.links} (student_id TEXT PRIMARY KEY,"
                    " analytics_id TEXT NOT NULL UNIQUE)")
        cur.execute(f"CREATE TABLE {t.students} (analytics_id TEXT PRIMARY KEY,"
                    " age_band TEXT NOT NULL, gender TEXT, race TEXT, region TEXT,"
                    " restricted INTEGER NOT NULL)")
        cur.execute(f"CREATE TABLE {t.levels} (analytics_id TEXT NOT NULL, level TEXT NOT NULL,"
                    " best INTEGER NOT NULL, PRIMARY KEY (analytics_id, level))")
        cur.execute(f"CREATE TABLE {t.days} (analytics_id TEXT NOT NULL, level TEXT NOT NULL,"
                    " day TEXT NOT NULL, attempts INTEGER NOT NULL,"
                    " PRIMARY KEY (analytics_id, level, day))")
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
                t.students: frozenset({"analytics_id", "age_band", "gender", "race", "region",
                                       "restricted"}),
                t.levels: frozenset({"analytics_id", "level", "best"}),
                t.days: frozenset({"analytics_id", "level", "day", "attempts"}),
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

    def forget(self, cur: Cursor, table: str, subject_ids: Any) -> Counter[UUID]:
        """The facts are keyed by analytics id: they go first, found through the links."""
        t = Tables(table)
        for subject_id in subject_ids:
            analytics_id = self._analytics_id(cur, t, subject_id)
            if analytics_id is not None:
                for name in (t.students, t.levels, t.days):
                    cur.execute(f"DELETE FROM {name} WHERE analytics_id = ?", (analytics_id,))
        return super().forget(cur, table, subject_ids)

    def process(self, cur: Cursor, table: str, event: Any) -> None:
        t = Tables(table)
        if isinstance(event, Student.Registered):
            analytics_id = str(uuid4())  # ANA-1: drawn, never derived
            # RETURNING, not rowcount: in a PostgreSQL pipeline the count is not there yet
            cur.execute(f"INSERT INTO {t.links} (student_id, analytics_id) VALUES (?, ?)"
                        " ON CONFLICT (student_id) DO NOTHING RETURNING analytics_id",
                        (str(event.originator_id), analytics_id))
            if cur.fetchone() is not None:
                cur.execute(f"INSERT INTO {t.students} (analytics_id, age_band, gender,"
                            " restricted) VALUES (?, ?, ?, 0)",
                            (analytics_id, age_band(event.age), event.gender))
        elif isinstance(event, Person.AgeGiven):
            self._set(cur, t, event.originator_id, "age_band", age_band(event.age))
        elif isinstance(event, Person.GenderGiven):
            self._set(cur, t, event.originator_id, "gender", event.gender)
        elif isinstance(event, Student.RaceGiven):
            self._set(cur, t, event.originator_id, "race", event.race)
        elif isinstance(event, Person.SignedIn) and event.region is not None:
            self._set(cur, t, event.originator_id, "region", event.region)
        elif isinstance(event, Progress.AttemptRecorded):
            self._attempt(cur, t, event)
        elif isinstance(event, RightsFile.Restricted | RightsFile.RestrictionLifted):
            self._set(cur, t, event.owner_id, "restricted",
                      1 if isinstance(event, RightsFile.Restricted) else 0)
        elif isinstance(event, Section.Created):
            cur.execute(f"INSERT INTO {t.sections} (section_id, owner_id) VALUES (?, ?)"
                        " ON CONFLICT DO NOTHING",
                        (str(event.originator_id), str(event.owner_id)))
        elif isinstance(event, Section.RaceEstimated):
            cur.execute(f"UPDATE {t.sections} SET estimate = ? WHERE section_id = ?",
                        (orjson.dumps(event.distribution, option=orjson.OPT_SORT_KEYS).decode(),
                         str(event.originator_id)))
        elif isinstance(event, Section.StudentEnrolled):
            cur.execute(f"INSERT INTO {t.enrolled} (section_id, student_id, since)"
                        " VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                        (str(event.originator_id), str(event.student_id),
                         time_text(event.timestamp)))
        elif isinstance(event, Section.StudentUnenrolled):
            cur.execute(f"DELETE FROM {t.enrolled} WHERE section_id = ? AND student_id = ?",
                        (str(event.originator_id), str(event.student_id)))
        elif isinstance(event, Teacher.SchoolChosen):
            cur.execute(f"DELETE FROM {t.teachers} WHERE teacher_id = ?",
                        (str(event.originator_id),))
            if event.school_id is not None:
                cur.execute(f"INSERT INTO {t.teachers} (teacher_id, school_id) VALUES (?, ?)",
                            (str(event.originator_id), str(event.school_id)))
        elif isinstance(event, School.Registered):
            cur.execute(f"INSERT INTO {t.schools} (school_id, school_type) VALUES (?, ?)"
                        " ON CONFLICT DO NOTHING", (str(event.originator_id), event.school_type))
        elif isinstance(event, ErasedEvent):
            # A rebuild: the erased student's own stream never made a row; a progress or
            # rights stream of theirs names no row either. A section's stream: its rows go.
            self.forget(cur, table, [event.originator_id])
        elif isinstance(event, ErasureRecord.SubjectErased):
            self.forget(cur, table, [event.subject_id])

    def _attempt(self, cur: Cursor, t: Tables, event: Progress.AttemptRecorded) -> None:
        analytics_id = self._analytics_id(cur, t, event.owner_id)
        if analytics_id is None:
            return
        cur.execute(f"INSERT INTO {t.levels} AS l (analytics_id, level, best) VALUES (?, ?, ?)"
                    " ON CONFLICT (analytics_id, level) DO UPDATE SET"
                    " best = CASE WHEN excluded.best > l.best THEN excluded.best ELSE l.best END",
                    (analytics_id, event.level, _RANK[event.result]))
        cur.execute(f"INSERT INTO {t.days} AS d (analytics_id, level, day, attempts)"
                    " VALUES (?, ?, ?, 1) ON CONFLICT (analytics_id, level, day) DO UPDATE SET"
                    " attempts = d.attempts + 1",
                    (analytics_id, event.level, event.attempted_at.date().isoformat()))

    def _set(self, cur: Cursor, t: Tables, subject_id: UUID, column: str, value: Any) -> None:
        analytics_id = self._analytics_id(cur, t, subject_id)
        if analytics_id is not None:  # a teacher, or a student erased: nothing to count
            cur.execute(f"UPDATE {t.students} SET {column} = ? WHERE analytics_id = ?",
                        (value, analytics_id))

    @staticmethod
    def _analytics_id(cur: Cursor, t: Tables, subject_id: UUID) -> str | None:
        cur.execute(f"SELECT analytics_id FROM {t.links} WHERE student_id = ?",
                    (str(subject_id),))
        row = cur.fetchone()
        return str(row[0]) if row else None


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
            levels: dict[str, list[tuple[str, int]]] = {}
            cur.execute(f"SELECT analytics_id, level, best FROM {t.levels}")
            for analytics_id, level, best in cur.fetchall():
                levels.setdefault(str(analytics_id), []).append((str(level), int(best)))
            days: dict[str, list[tuple[str, str, int]]] = {}
            cur.execute(f"SELECT analytics_id, level, day, attempts FROM {t.days}")
            for analytics_id, level, day, attempts in cur.fetchall():
                days.setdefault(str(analytics_id), []).append((str(level), str(day),
                                                               int(attempts)))
        return people, levels, days
