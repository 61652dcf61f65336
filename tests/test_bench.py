"""Smoke tests of `ledger bench`: it runs end to end and reports every figure. No timing checks."""

from __future__ import annotations

import argparse
import gc
import json
import math
from pathlib import Path
from typing import Any

import psycopg
import pytest

from api.cli import bench, bench_accounts, runtime
from api.services import Services
from ledger.settings import Settings
from tests.conftest import postgres_url

NUMERIC_KEYS = (
    "events",
    "append_ratio",
    "append_single_ratio",
    "replay_ratio",
    "erase_p50_ms",
    "erase_p99_ms",
    "replay_peak_rss_mb",
    "plain_append_eps",
    "ledger_append_eps",
    "plain_append_single_eps",
    "ledger_append_single_eps",
    "plain_replay_eps",
    "ledger_replay_eps",
    "replayed_events",
    # sign-in through the service layer, the hash apart
    "sign_in_password_per_s",
    "sign_in_password_ms",
    "sign_in_hash_ms",
    "scrypt_alone_ms",
    "sign_in_minus_hash_ms",
    "sign_in_minus_hash_ratio",
    "sign_in_secret_per_s",
    "sign_in_secret_ms",
    "sign_in_secret_ratio",
    "plain_append_get_per_s",
    "plain_append_get_ms",
    # the teacher's roster of a 30-student section, through the service layer and HTTP
    "roster_service_per_s",
    "roster_service_p50_ms",
    "roster_service_p99_ms",
    "roster_service_ratio",
    "roster_http_per_s",
    "roster_http_p50_ms",
    "roster_http_p99_ms",
    "roster_http_ratio",
    "plain_read_section_per_s",
    "plain_read_section_ms",
    # attempts through the service layer, 1 and 10 per save, against plain get-record-save
    "attempt_single_ratio",
    "plain_attempt_single_per_s",
    "ledger_attempt_single_per_s",
    "attempt_batch_ratio",
    "plain_attempt_batch_per_s",
    "ledger_attempt_batch_per_s",
    # the teacher's progress grid of a 30-student section over 100 levels
    "grid_attempts",
    "grid_cells",
    "grid_fill_attempts_per_s",
    "grid_catch_up_s",
    "grid_service_p50_ms",
    "grid_service_p99_ms",
    "grid_reader_p50_ms",
    "grid_reader_p99_ms",
    # the purge job and erasure at once
    "purges",
    "purge_per_s",
    "purge_10k_s",
    "purge_rss_start_mb",
    "purge_rss_peak_mb",
    "plain_one_event_per_s",
    "purge_ratio",
    "erasures_now",
    "erase_now_p50_ms",
    "erase_now_p99_ms",
    # the access record on a teacher's read, and the query by student
    "audit_recorded_reads_per_s",
    "audit_unrecorded_reads_per_s",
    "audit_read_ratio",
    "audit_fill_records_per_s",
    "audit_catch_up_s",
    "audit_query_p50_ms",
    "audit_query_p95_ms",
    "audit_query_p99_ms",
    "audit_query_one_by_one_p50_ms",
    "audit_query_one_by_one_p95_ms",
    "audit_query_one_by_one_p99_ms",
    "merkle_events",
    "merkle_verify_per_s",
    "merkle_plain_replay_per_s",
    "merkle_verify_ratio",
    "merkle_proof_p50_ms",
    "merkle_proof_p99_ms",
    "merkle_append_ratio",
)
SMALL = ["--events", "400", "--sign-ins", "2", "--roster-reads", "6", "--attempts", "40",
         "--grid-attempts", "6000", "--grid-reads", "5", "--purges", "12", "--erasures-now", "3",
         "--audit-reads", "40", "--audit-records", "2000", "--audit-queries", "5",
         "--merkle-proofs", "20", "--rebuild-events", "1000"]


def run_bench(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="ledger")
    bench.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *argv])
    code: int = args.func(args)
    return code, capsys.readouterr().out


def check_report(out: str, backend: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(out)
    assert result["backend"] == backend
    assert result["events"] == 400
    for key in NUMERIC_KEYS:
        value = result[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), key
        assert math.isfinite(value) and value > 0, (key, value)
    # Both logs hold the appended events, the single-event saves and the warm-up.
    assert result["replayed_events"] >= 400
    assert result["sign_ins"] == 2
    assert result["secret_sign_ins"] == 2 * bench.SECRET_SIGN_INS_PER_PASSWORD
    # The hash is inside the sign-in, so the sign-in without it is the smaller part.
    assert result["sign_in_minus_hash_ms"] < result["sign_in_password_ms"]
    assert result["scrypt_cost"] == "n=2^15, r=8, p=1"
    assert (result["roster_reads"], result["roster_section_size"]) == (6, 30)
    assert result["roster_service_p50_ms"] <= result["roster_service_p99_ms"]
    assert result["roster_http_p50_ms"] <= result["roster_http_p99_ms"]
    assert (result["attempts"], result["attempt_batch"]) == (40, 10)
    # 6,000 attempts: 100 each for the section's 30 students (a cell per level), the rest to
    # others; the grid is read whole.
    assert (result["grid_attempts"], result["grid_students"], result["grid_levels"]) == (
        6000, 30, 100)
    assert (result["grid_cells"], result["grid_reads"]) == (3000, 5)
    assert result["grid_service_p50_ms"] <= result["grid_service_p99_ms"]
    # every due account purged; the erasures at once, each timed
    assert (result["purges"], result["erasures_now"]) == (12, 3)
    assert result["erase_now_p50_ms"] <= result["erase_now_p99_ms"]
    # 8 readers; 2,000 records in the store, 500 of them the queried student's; 5 pages
    assert (result["audit_reads"], result["audit_readers"]) == (40, 8)
    assert (result["audit_records"], result["audit_student_records"]) == (2000, 500)
    assert result["audit_queries"] == 5
    assert result["audit_query_p50_ms"] <= result["audit_query_p95_ms"] <= result[
        "audit_query_p99_ms"]
    # the Merkle log covers every event the bench stored (the audit trail's 2,000 and more),
    # each proof is a path of log2(n) hashes at most
    assert result["merkle_events"] == result["merkle_head_size"] == result[
        "merkle_proof_leaves"] > 2000
    assert result["merkle_proofs"] == 20
    assert result["merkle_proof_max_hashes"] <= math.ceil(math.log2(result["merkle_events"]))
    assert result["merkle_proof_p50_ms"] <= result["merkle_proof_p99_ms"]
    # 10 students of 100 progress events, one erased; the log also holds their own records
    assert (result["rebuild_projection"], result["rebuild_students"]) == ("analytics", 10)
    assert result["rebuild_events"] > 1000
    for key in ("rebuild_eps", "plain_rebuild_replay_eps", "rebuild_ratio",
                "rebuild_peak_rss_mb", "rebuild_baseline_rss_mb"):
        assert math.isfinite(result[key]) and result[key] > 0, key
    return result


def test_bench_sqlite_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_bench(["--backend", "sqlite", *SMALL, "--json"], capsys)
    assert code == 0
    check_report(out, "sqlite")


def test_bench_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_bench(["--events", "200", "--rounds", "2", "--erasures", "5",
                           "--sign-ins", "1", "--roster-reads", "3", "--attempts", "20",
                           "--grid-attempts", "300", "--grid-reads", "2", "--purges", "5",
                           "--erasures-now", "2", "--audit-reads", "16", "--audit-records",
                           "800", "--audit-queries", "2", "--rebuild-events", "200"], capsys)
    assert code == 0
    for label in ("append, 10 events/save", "append, 1 event/save", "replay", "erase of 5",
                  "sign-in, service layer: 1 by password", "password (hash included)",
                  "its scrypt hash", "password minus its hash", "secret words (no hash)",
                  "scrypt alone (n=2^15, r=8, p=1)",
                  "roster of a 30-student section, 3 reads a door", "service layer",
                  "HTTP in-process", "plain (median)",
                  "attempts, service layer: 20 a row", "attempt, 1 per save",
                  "attempts, 10 per save",
                  "progress grid of a 30-student section x 100 levels (150 cells), 300",
                  "ProgressReader.grid alone", "purge job over 5 due accounts",
                  "erase at once, 2 accounts",
                  "access record on a teacher's read of a student (service layer, 8 readers",
                  "read, record saved", "query by student over 800 access records (200 of",
                  "records opened in bulk", "records opened one by one",
                  "Merkle log over the whole store", "verify (plain: replay)",
                  "inclusion proofs at", "appends with a sealer following / without",
                  "rebuild of analytics from", "rebuild events/s", "rebuild peak RSS"):
        assert label in out


def test_bench_refuses_too_few_events(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_bench(["--events", "50", "--json"], capsys)
    assert code == 2
    assert out == ""


@pytest.mark.parametrize(("flag", "value"), [("--sign-ins", "0"), ("--roster-reads", "0"),
                                             ("--attempts", "9"), ("--grid-attempts", "29"),
                                             ("--grid-reads", "0"), ("--purges", "0"),
                                             ("--erasures-now", "0"), ("--audit-reads", "7"),
                                             ("--audit-records", "799"),
                                             ("--audit-queries", "0"),
                                             ("--merkle-proofs", "0")])
def test_bench_refuses_too_few_of_a_kind(
        flag: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_bench(["--events", "400", flag, value, "--json"], capsys)
    assert code == 2
    assert out == ""


def test_roster_read_shows_a_teacher_names_and_sign_in_details_only(tmp_path: Path) -> None:
    """What the roster rows hold, through both doors: the fields of ACC-1, the same rows."""
    services = Services.open(Settings.build(var_dir=str(tmp_path)))
    try:
        fixture = bench_accounts.set_up(services, teachers=1)
        by_service = bench_accounts.roster_rows(services, fixture.principal, fixture.section_id)
        http = bench_accounts.HttpRoster(services, fixture)
        try:
            by_http = http.read()
        finally:
            http.close()
        assert len(by_service) == len(by_http) == bench_accounts.SECTION_SIZE
        assert {row["username"] for row in by_service} == {
            username for username, _ in fixture.students}
        assert {row["username"] for row in by_http} == {row["username"] for row in by_service}
        for row in (*by_service, *by_http):
            assert row["display_name"].startswith("Bench Student ")
            assert not {"email", "email_hash", "parent_email", "race", "gender"} & set(row)
    finally:
        services.close()


def bench_schemas(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT schema_name FROM information_schema.schemata"
            " WHERE schema_name LIKE 'bench\\_%'"
        ).fetchall()
    return {row[0] for row in rows}


@pytest.mark.postgres
def test_bench_postgres_json(capsys: pytest.CaptureFixture[str]) -> None:
    url = postgres_url()
    before = bench_schemas(url)
    code, out = run_bench(
        ["--backend", "postgres", "--postgres-url", url, *SMALL, "--json"], capsys
    )
    assert code == 0
    check_report(out, "postgres")
    assert bench_schemas(url) - before == set(), "the bench left its schemas behind"


def test_attempt_workload_is_the_same_on_both_sides(tmp_path: Path) -> None:
    """The plain aggregate derives what `Progress` derives, from the same attempts; the
    payload is a realistic attempt (about 300 bytes of code, two answers)."""
    from api.cli import bench_progress
    from ledger.attempts import Attempts
    from ledger.progress import valid_attempt

    made = bench_progress.attempt(7)
    assert valid_attempt(made) is made
    assert 250 <= len(made.code.encode()) <= 400 and len(made.answers) == 2
    services = Services.open(Settings.build(var_dir=str(tmp_path)))
    plain = bench_progress.PlainProgressBench(
        env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    try:
        fixture = bench_progress.set_up(services.ledger, plain, students=3)
        for per_save in (1, bench_progress.BATCH):
            bench_progress.ledger_attempts(services.ledger, fixture.students, 60, per_save, 3)
            bench_progress.plain_attempts(plain, fixture.plain, 60, per_save, 3)
        attempts = Attempts(services.ledger)
        for student, plain_id in zip(fixture.students, fixture.plain, strict=True):
            ledger_side = attempts.progress(student)
            plain_side = plain.repository.get(plain_id).summary
            assert {level: [p.tries, p.best, p.last_at] for level, p in ledger_side.items()
                    } == plain_side
        assert sum(p.tries for s in fixture.students
                   for p in attempts.progress(s).values()) == 3 + 2 * 60
    finally:
        plain.close()
        services.close()


def test_the_bench_runs_under_the_servers_collector_settings_and_gives_them_back() -> None:
    """`ledger serve` and `ledger bench` share one start-up tuning (`api.cli.runtime`); the
    bench, which also runs inside the tests, undoes it when done."""
    before = gc.get_threshold()
    with runtime.tuned_after_start_up():
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == runtime.YOUNG_THRESHOLD
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
