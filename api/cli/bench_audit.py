"""The audit workload of `ledger bench` (issue 6): what an access record costs a read, and the
query by student over a large trail.

The read (`read_ratio`): what `GET /students/{id}` does through the service layer for a
teacher, on the 30 students of their section in turn: the fields the teacher may see
(`Access.student_fields`, a roster query), the person (`Ledger.live`: the stream opened with
the student's key), and, on the recorded side, the access record saved before the data would
leave (`Services.record_access`: sealed under the student's key, one transaction shared with
the other readers' records by the group commit). `READERS` threads read at once; the two sides
take turns to go first, round after round, and the ratio is the median of the per-round ratios
(recorded / unrecorded reads per second).

The query (`fill`, `query_ms`): a trail of `records` access records, made through the ledger
(`AccessRecord`s sealed under each student's key, saved `FILL_BATCH` a transaction) over
`OTHER_STUDENTS` students and a school year, of which one student has a realistic few thousand
(`QUERIED_RECORDS`: some 15 reads of them a school day), then the audit index caught up. Timed,
as `GET /students/{id}/access-records` does it: the index caught up (nothing new), a page of
`PAGE` entries of the student from a random point of the year (`AuditReader.of_student`), and
the details of those records opened: one at a time (`AuditTrail.record`, the route's way so
far), and in bulk (`AuditTrail.records`: one query for the page's events, one for their keys).
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from api.cli.bench_accounts import AccountFixture
from api.services import Services
from api.tokens import Principal
from ledger.audit import AccessRecord, RecordsAccess, access_record
from ledger.people import Student

READERS = 8
OTHER_STUDENTS = 1_000
QUERIED_RECORDS = 3_000
FILL_BATCH = 500
PAGE = 100
YEAR_START = datetime(2025, 9, 1, 8, 0, tzinfo=UTC)
YEAR = timedelta(days=300)
RESOURCE = "/students/{person_id}"


@dataclass(frozen=True)
class ReadRates:
    recorded: list[float]  # reads/s per round, with the access record
    unrecorded: list[float]

    @property
    def ratio(self) -> float:
        return statistics.median(r / u for r, u in zip(self.recorded, self.unrecorded,
                                                       strict=True))


def student_ids(services: Services, fixture: AccountFixture) -> list[UUID]:
    return services.roster_reader.students_of_section(fixture.section_id)


def _read(services: Services, principal: Principal, students: list[UUID], record: bool
          ) -> Callable[[int], None]:
    def read(i: int) -> None:
        student = students[i % len(students)]
        fields = services.access.student_fields(principal, student)
        person = services.ledger.live(student, Student)
        if not fields or person.id != student:
            raise RuntimeError("the teacher cannot read their own student")
        if record:
            services.record_access(principal, student, RESOURCE, fields, None, f"bench-{i}")

    return read


def concurrent_rate(read: Callable[[int], None], reads: int, readers: int = READERS) -> float:
    """Reads per second of `readers` threads doing `reads` reads between them."""
    start = threading.Barrier(readers + 1)
    failures: list[BaseException] = []

    def reader(k: int) -> None:
        start.wait()
        try:
            for i in range(k, reads, readers):
                read(i)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=reader, args=(k,), name=f"bench-reader-{k}")
               for k in range(readers)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    if failures:
        raise failures[0]
    return reads / seconds


def read_ratio(services: Services, fixture: AccountFixture, reads: int, rounds: int
               ) -> ReadRates:
    students = student_ids(services, fixture)
    recorded = _read(services, fixture.principal, students, record=True)
    unrecorded = _read(services, fixture.principal, students, record=False)
    for read in (recorded, unrecorded):  # warm-up, untimed: keys, pools, statements
        concurrent_rate(read, READERS * 4)
    with_record: list[float] = []
    without: list[float] = []
    per_round = max(READERS, reads // rounds)
    for r in range(rounds):
        if r % 2 == 0:
            without.append(concurrent_rate(unrecorded, per_round))
            with_record.append(concurrent_rate(recorded, per_round))
        else:
            with_record.append(concurrent_rate(recorded, per_round))
            without.append(concurrent_rate(unrecorded, per_round))
    return ReadRates(with_record, without)


@dataclass(frozen=True)
class Trail:
    student: UUID  # the one queried
    records: int
    student_records: int
    fill_seconds: float
    catch_up_seconds: float


def fill(services: Services, records: int) -> Trail:
    """`records` access records through the ledger, `FILL_BATCH` a save, then the index."""
    ledger = services.ledger
    queried = ledger.register_student("Audited Student", "12")
    others = [ledger.register_student(f"Trail Student {n}", "12")
              for n in range(min(OTHER_STUDENTS, max(1, records // 10)))]
    mine = min(QUERIED_RECORDS, max(PAGE * 2, records // 4))
    every = max(1, records // mine)
    rng = random.Random(6)  # noqa: S311 (a spread of times, not a secret)
    actors = [uuid4() for _ in range(50)]
    began = time.perf_counter()
    batch: list[AccessRecord] = []
    made = 0
    for n in range(records):
        student = queried if n % every == 0 and made < mine else others[n % len(others)]
        made += student == queried
        at = YEAR_START + YEAR * (n / records) + timedelta(seconds=rng.randrange(60))
        batch.append(access_record(RecordsAccess(
            actor_id=actors[n % len(actors)], actor_role="teacher", student_id=student,
            resource=RESOURCE, fields=["display_name", "id", "login_type", "username"],
            purpose="school_official", request_id=uuid4().hex), at))
        if len(batch) == FILL_BATCH:
            ledger.save(*batch)
            batch = []
    if batch:
        ledger.save(*batch)
    filled = time.perf_counter() - began
    began = time.perf_counter()
    services.audit_view.catch_up()
    return Trail(queried, records, made, filled, time.perf_counter() - began)


def query_ms(services: Services, trail: Trail, queries: int, bulk: bool) -> list[float]:
    """`queries` pages of the student's trail from random points of the year, each timed as
    the route runs it (index caught up, the page, the records' details opened)."""
    rng = random.Random(7 if bulk else 8)  # noqa: S311 (query points, not a secret)
    latencies = []
    for _ in range(queries):
        since = YEAR_START + YEAR * rng.random() * 0.9
        began = time.perf_counter()
        services.audit_view.catch_up()
        entries = services.audit_reader.of_student(trail.student, since, None, PAGE)
        if bulk:
            opened = services.audit.records(e.record_id for e in entries)
            details = [opened.get(e.record_id) for e in entries]
        else:
            details = [services.audit.record(e.record_id) for e in entries]
        latencies.append((time.perf_counter() - began) * 1000)
        if len(entries) < min(PAGE, trail.student_records // 10) or None in details:
            raise RuntimeError(f"a page of {len(entries)} entries, some unopened")
    return latencies
