"""The de-identified residue of a purged person (DEL-10), as the policy allows.

Before a purge destroys the key, a few coarse facts are kept: age band, gender, region and how
many levels of each course were completed. They go into a pool under a fresh random id (ANA-1:
never derived from the person), with no time and no position that could tie a row to the
erasure receipt written a moment later: the pool is a table beside the log, clustered on its
random id, never appended in order. The analytics views count it. It is on by default and
`LEDGER_RESIDUE=off` turns it off.

A residue is computed before the key goes and written after, so a crash in between loses it
(an undercount of one) and can never double it: the key is gone, nothing can compute it again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID, uuid4

import orjson

from crypto.sql import Database
from ledger.people import Person, is_adult, is_under_13
from ledger.progress import Progress

_COMPLETED = ("solved", "optimal")


@dataclass(frozen=True)
class Residue:
    kind: str  # student or teacher
    age_band: str  # under_13, 13_17, 18_plus
    gender: str | None
    region: str | None  # the coarse region of the last sign-in ("US-WA"), never finer
    completions: dict[str, int] = field(default_factory=dict)  # course -> levels completed


def residue_of(person: Person, progress: Progress | None) -> Residue:
    band = ("under_13" if is_under_13(person.age)
            else "18_plus" if is_adult(person.age) else "13_17")
    last = person.last_signed_in
    region = last[1] if isinstance(last, list | tuple) and len(last) == 2 else None
    completions: Counter[str] = Counter()
    if progress is not None:
        for level, (_tries, best, _at) in progress.summary.items():
            if best in _COMPLETED:
                completions[level.split("/", 1)[0]] += 1
    return Residue(person.kind, band, person.gender, region, dict(completions))


class ResiduePool:
    def __init__(self, db: Database) -> None:
        self.db = db
        with db.transaction() as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS residues (id TEXT PRIMARY KEY, kind TEXT NOT NULL,"
                " age_band TEXT NOT NULL, gender TEXT, region TEXT, completions TEXT NOT NULL)"
                + (" WITHOUT ROWID" if db.backend == "sqlite" else ""))

    def add(self, residue: Residue) -> UUID:
        return self.add_many([residue])[0]

    def add_many(self, residues: Sequence[Residue]) -> list[UUID]:
        """Each under a fresh random id (ANA-1), in one transaction."""
        ids = [uuid4() for _ in residues]
        with self.db.transaction() as cur:
            cur.executemany(
                "INSERT INTO residues (id, kind, age_band, gender, region, completions)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(str(residue_id), r.kind, r.age_band, r.gender, r.region,
                  orjson.dumps(r.completions, option=orjson.OPT_SORT_KEYS).decode())
                 for residue_id, r in zip(ids, residues, strict=True)])
        return ids

    def all(self) -> list[Residue]:
        with self.db.transaction(write=False) as cur:
            cur.execute("SELECT kind, age_band, gender, region, completions FROM residues"
                        " ORDER BY id")
            rows = cur.fetchall()
        return [Residue(r[0], r[1], r[2], r[3], orjson.loads(r[4])) for r in rows]
