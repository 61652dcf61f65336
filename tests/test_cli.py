"""The `ledger` command line, as an operator would use it, on the embedded default."""

from __future__ import annotations

import io
import json
import random
from collections import Counter
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.cli.main import main
from api.cli.maintenance import RebuildBar
from api.cli.seed import (
    COURSES,
    SEED_PASSWORD,
    TERM_WEEKS,
    course_levels,
    seed_progress,
    seed_school,
    usernames,
)
from api.services import Services
from crypto import KeyStoreUnavailable
from crypto.keystore import KeyStore
from ledger.application import ErasedPerson
from ledger.attempts import Attempts
from ledger.people import Student, Teacher
from ledger.policy import CURRENT_POLICY_VERSION
from ledger.progress import Progress, progress_id_for
from ledger.settings import Settings
from projections.runner import ProjectionRunner
from tests.conftest import BACKENDS, drop_schemas, make_settings, point_the_command_line_at


def test_demo_narrates_an_erasure(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "Does any display name appear in the stored bytes? False" in out
    assert "ErasedPerson(" in out and "ErasedEvent(" in out
    assert "Ada is readable" in out and "Alan is readable" in out
    assert "has 2 rows" in out


def test_demo_shows_the_account_and_age_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out.split("-- Accounts, sections and the age rules --")[1]
    assert "username 'msrivera'" in out
    assert "refused: record an attestation of parental consent (AGE-1) first" in out  # AGE-1
    # MIN-7: usernames generated from the names, a clash gets a suffix, accents folded.
    assert "username 'mia'" in out and "username 'mia1'" in out and "username 'leo'" in out
    assert out.count("secret words '") == 3  # MIN-6: generated for a word section
    assert "a wrong secret: SignInFailed('sign-in failed')" in out
    assert "the event keeps method='secret_word', region='US-WA' and its time" in out  # MIN-5
    assert "refused: race: is recorded only for students 13 or older (AGE-2)" in out
    assert "{'asian': 30, 'hispanic': 30, 'white': 40}" in out  # the section's estimate
    # MIN-1: the address is nowhere on disk, and still signs him in.
    assert "a keyed hash, " in out
    assert "(events, read models, keys)? False" in out
    assert "found through the hash): True" in out
    assert "(AGE-6)" in out
    # AGE-5: the attestation and the opt-in and back, each with before and after.
    # ACC-1: the roster rows hold names and sign-in details; ACC-5: another teacher sees none.
    roster = out.split("\n14. ")[1].split("\n15. ")[0]
    rows = [line for line in roster.splitlines() if line.strip().startswith("{")]
    assert len(rows) == 4 and "'username': 'sam'" in rows[3]
    assert all("'display_name'" in row and "'username'" in row for row in rows)
    private = ("race", "gender", "age", "email_on_file", "parent_email")
    assert not any(f"'{key}'" in row for row in rows for key in private)
    assert "SectionNotFound, as for one that does not exist (ACC-5)" in roster
    assert "he may see []" in roster
    changes = [line.split()[1:] for line in out.splitlines() if line.endswith(("True", "False"))
               and "->" in line]
    assert changes == [[f"parental_consent:{CURRENT_POLICY_VERSION}", "None", "->", "True"],
                       ["email_opt_in", "None", "->", "True"],
                       ["email_opt_in", "True", "->", "False"]]
    # The teacher's erasure takes the section (sealed under her key) and its sign-in with it.
    assert "reading the section: SectionNotFound" in out
    assert "6 of them ErasedEvent placeholders" in out
    assert "the roster read model has dropped it: None" in out
    assert "secret-word sign-in is gone with it" in out
    assert out.count(": Student") == 3
    assert "?!" not in out  # no rule let through what it should refuse


def test_rotate_kek_keeps_live_people_and_retires_the_old_version(
        var_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    services = Services.open(Settings.from_env())
    ana = services.ledger.register_student("Ana", "12")
    ben = services.ledger.register_student("Ben", "12")
    services.ledger.erase_subject(ben, "user_request")
    live_keys = services.ledger.keys.store.count_live()  # Ana's, the ledger's, ids made ahead
    services.close()

    assert main(["keys", "rotate-kek"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {"new_kek_version": 2, "retired_kek_versions": [1],
                      "rewrapped_data_keys": live_keys}  # every one but Ben's
    keyring = json.loads((var_dir / "kek.json").read_text())
    assert keyring["kek"]["1"] is None and keyring["kek"]["2"]

    services = Services.open(Settings.from_env())
    try:
        assert services.ledger.person(ana).display_name == "Ana"  # type: ignore[union-attr]
        assert isinstance(services.ledger.person(ben), ErasedPerson)
    finally:
        services.close()


def test_rotate_kek_refuses_a_keyring_given_by_environment(
        var_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEDGER_KEK", "1:" + "A" * 43 + "=")
    assert main(["keys", "rotate-kek"]) == 2
    assert "LEDGER_KEK" in capsys.readouterr().out


def test_project_and_rebuild(var_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    services = Services.open(Settings.from_env())
    services.ledger.register_student("Ana", "12")
    services.close()
    assert main(["project"]) == 0
    reports = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    positions = {r["read_model"]: r["position"] for r in reports}
    # Every read model (the directory, the roster, and any added since) at the one event.
    assert {"student_directory", "roster"} <= set(positions)
    assert set(positions.values()) == {1}
    assert main(["rebuild", "student_directory"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "read_model": "student_directory", "generation": 2, "position": 1, "set_aside": 0}
    assert main(["rebuild", "no_such_model"]) == 2


def test_seed_school_has_sections_consent_and_sign_ups(tmp_path: Path) -> None:
    services = Services.open(Settings.build(var_dir=str(tmp_path)))
    try:
        school = seed_school(services.ledger, students=20)
        ledger, sections = services.ledger, services.sections
        assert len(school["teachers"]) == 2 and len(school["students"]) == 20
        rivera, okafor = school["teachers"]
        young, older = (sections.section(s) for s in school["sections"])
        assert (young.owner_id, young.login_type) == (rivera, "word")
        assert (older.owner_id, older.login_type) == (okafor, "email")
        assert sorted(young.students + older.students) == sorted(school["students"])
        assert ledger.live(rivera, Teacher).has_attested(CURRENT_POLICY_VERSION)  # AGE-1
        assert not ledger.live(okafor, Teacher).has_attested(CURRENT_POLICY_VERSION)
        for student_id in young.students:  # teacher-created, with secret words (MIN-6)
            student = ledger.live(student_id, Student)
            assert student.under_13 and student.login_type == "teacher_managed"
            assert student.secret_kind == "word" and student.secret
        older_students = [ledger.live(s, Student) for s in older.students]
        signed_up = [s for s in older_students if s.login_type == "personal"]
        assert len(signed_up) == 3 and all(s.email_hash for s in signed_up)  # MIN-1
        assert all(not s.under_13 for s in signed_up)
        teacher_login = usernames(ledger, [rivera])[0]
        assert services.sign_in.with_password(teacher_login, SEED_PASSWORD).id == rivera
        services.catch_up()
        assert len(services.directory_reader.entries(limit=1000)) == 22
    finally:
        services.close()


def test_seed_school_has_a_term_of_progress(tmp_path: Path) -> None:
    """PRG-1 in the synthetic school: every student has attempts over their section's course,
    thousands in all, a plausible mix of results, in the 12 weeks before the seed."""
    services = Services.open(Settings.build(var_dir=str(tmp_path)))
    try:
        before = datetime.now(UTC)
        school = seed_school(services.ledger, students=20)
        attempts, sections = Attempts(services.ledger), services.sections
        young, older = (sections.section(s) for s in school["sections"])
        tries: Counter[str] = Counter()
        best: Counter[str] = Counter()
        for section, course in ((young, "csf"), (older, "csd")):
            levels = course_levels(course)
            for student_id in section.students:
                progress = attempts.progress(student_id)
                assert levels[0] in progress and len(progress) >= len(levels) // 3
                assert set(progress) <= set(levels)
                for level in progress.values():
                    assert 1 <= level.tries <= 5
                    assert before - timedelta(weeks=TERM_WEEKS, days=1) <= level.last_at
                    assert level.last_at <= before + timedelta(days=1)
                tries.update({course: sum(level.tries for level in progress.values())})
                best.update(level.best for level in progress.values())
        assert course_levels("csf")[0] == f"{COURSES['csf']}/unit-1/lesson-1/level-1"
        assert 1_000 <= sum(tries.values()) <= 10_000  # thousands, in a few saves each
        assert set(best) == {"failed", "solved", "optimal"}
        assert best["solved"] + best["optimal"] > 10 * best["failed"]  # most levels get done
        # Each attempt is recorded whole: code at the levels, answers at each lesson's quiz.
        events = [e for e in services.ledger.history(progress_id_for(young.students[0]))
                  if isinstance(e, Progress.AttemptRecorded)]
        assert len(events) == sum(
            level.tries for level in attempts.progress(young.students[0]).values())
        assert {e.result for e in events} >= {"failed", "solved"}
        assert any(e.code for e in events) and any(e.answers for e in events)
        assert all(e.seconds and e.seconds > 0 for e in events)
    finally:
        services.close()


def test_seed_progress_is_reproducible(tmp_path: Path) -> None:
    services = Services.open(Settings.build(var_dir=str(tmp_path)))
    try:
        ledger = services.ledger
        ana, ben = (ledger.register_student(name, "12") for name in ("Ana", "Ben"))
        end = datetime(2026, 11, 27, 15, tzinfo=UTC)
        first = seed_progress(ledger, [ana], "csd", random.Random(7), term_end=end)
        assert first == seed_progress(ledger, [ben], "csd", random.Random(7), term_end=end)
        progress = Attempts(ledger)
        assert progress.progress(ana) == progress.progress(ben)
        assert sum(level.tries for level in progress.progress(ana).values()) == first
    finally:
        services.close()


def test_first_start_hands_out_staff_tokens_and_teacher_sign_ins(
        var_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fastapi.testclient import TestClient

    from api.cli.serve import STAFF_ROLES, introduce
    from api.http.app import create_app
    from api.tokens import COMMAND_LINE_OPERATOR
    from tests.test_support_sessions import grants

    services = Services.open(Settings.from_env())
    try:
        introduce(services, "http://127.0.0.1:8000")
        out = capsys.readouterr().out
        tokens = dict(line.split()[:2] for line in out.splitlines()
                      if line.startswith("  ") and "lgr_" in line)
        assert set(tokens) == {*STAFF_ROLES, "registrar", "school_admin", "records_custodian"}
        # each recorded as a permission grant first (AUD-5), by the command-line operator
        granted = grants(services)
        assert {g.role for g in granted} == set(tokens)
        assert {g.grantor_id for g in granted} == {COMMAND_LINE_OPERATOR.id}
        services.settle()
        with TestClient(create_app(services)) as http:
            admin = {"Authorization": f"Bearer {tokens['school_admin']}"}
            teacher = out.split("Teachers sign in as ")[1].split(",")[0]
            session = http.post("/sign-in", json={"login": teacher, "password": SEED_PASSWORD})
            assert session.status_code == 200, session.text
            me = {"Authorization": f"Bearer {session.json()['token']}"}
            school_id = http.get("/me", headers=me).json()["school_id"]
            roster = http.get(f"/schools/{school_id}/roster", headers=admin)
            assert roster.status_code == 200 and roster.json()["sections"]
            # The registrar's token is the seeded school's: its directory lists its people.
            registrar = {"Authorization": f"Bearer {tokens['registrar']}"}
            people = http.get("/people?kind=student", headers=registrar)
            assert people.status_code == 200 and people.json()["items"]
    finally:
        services.close()


def _deleted_long_ago(var_dir: Path, count: int) -> list[str]:
    """`count` students who asked to be deleted 30 days ago (the window is 28)."""
    long_ago = datetime.now(UTC) - timedelta(days=30)
    services = Services.open(Settings.from_env(), clock=lambda: long_ago)
    try:
        ids = [services.ledger.register_student(f"Gone {n}", "12") for n in range(count)]
        for student in ids:
            services.lifecycle.request_deletion(student, "student:self")
        return sorted(str(s) for s in ids)
    finally:
        services.close()


def test_purge_dry_run_cap_limit_and_receipts(var_dir: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """DEL-9 from the command line: the dry run lists and changes nothing, a run over the cap
    is refused, `--limit` purges part and a second run the rest, and every receipt verifies."""
    due = _deleted_long_ago(var_dir, 3)
    capsys.readouterr()

    assert main(["purge", "--dry-run"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(o["subject_id"] for o in listed) == due
    assert {o["status"] for o in listed} == {"would_purge"}

    assert main(["purge", "--cap", "2"]) == 3  # refused: 3 due, the cap is 2
    assert "cap" in capsys.readouterr().err
    assert main(["purge", "--limit", "2"]) == 0
    first = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["status"] for o in first] == ["purged", "purged"]
    assert main(["purge"]) == 0
    second = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["status"] for o in second] == ["purged"]
    assert sorted(o["subject_id"] for o in first + second) == due

    assert main(["receipts"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    receipts = lines[1:]
    assert sorted(r["receipt"]["subject_id"] for r in receipts) == due
    assert all(r["verified"] for r in receipts)
    assert {r["receipt"]["reason"] for r in receipts} == {"expired_window"}
    assert "Gone" not in json.dumps(lines)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_rebuild_bar_shows_events_per_second_on_a_terminal_only() -> None:
    ticks = iter([0.0, 1.0, 2.0, 2.1, 3.0])
    out = Terminal()
    bar = RebuildBar(out, clock=lambda: next(ticks))
    bar(1_000, 4_000)  # resumed at 1,000: the rate counts this run's events only
    bar(3_000, 4_000)
    bar(3_500, 4_000)  # too soon after the last to redraw
    bar(4_000, 4_000)
    lines = out.getvalue().split("\r")
    assert lines[-2].endswith("] 3000/4000 1,000 events/s")
    assert lines[-1].endswith("] 4000/4000 1,000 events/s\n")
    piped = io.StringIO()
    RebuildBar(piped)(1, 2)
    assert piped.getvalue() == ""


@pytest.mark.parametrize(("stop", "code", "said"), [
    (KeyboardInterrupt(), 130, "stopped;"),  # Ctrl-C, or SIGTERM
    (BrokenProcessPool("terminated abruptly"), 1, "a worker of the rebuild died;")])
def test_a_stopped_rebuild_says_where_and_resumes(
        var_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        stop: BaseException, code: int, said: str) -> None:
    services = Services.open(Settings.from_env())
    services.ledger.register_student("Ana", "12")
    services.close()
    assert main(["project"]) == 0
    capsys.readouterr()

    def stopped_part_way(self: object, *args: object, **kwargs: object) -> int:
        raise stop

    with monkeypatch.context() as patch:
        patch.setattr(ProjectionRunner, "_replay", stopped_part_way)
        assert main(["rebuild", "student_directory"]) == code
    out, err = capsys.readouterr()
    assert json.loads(out) == {"read_model": "student_directory", "stopped": True,
                               "generation": 2, "position": 0, "serving": 1}
    assert err.startswith(said) and "Traceback" not in err
    assert main(["rebuild", "student_directory"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "read_model": "student_directory", "generation": 2, "position": 1, "set_aside": 0}


@pytest.mark.parametrize(("name", "value"), [
    ("LEDGER_ANALYTICS_MIN_CELL", "1"), ("LEDGER_ANALYTICS_MIN_CELL", "ten"),
    ("LEDGER_SEAL_EVERY_SECONDS", "abc"), ("LEDGER_KEY_SYNC_SECONDS", "1s"),
    ("LEDGER_SCHEMA", "ledger; DROP TABLE x"), ("LEDGER_RESIDUE", "maybe")])
def test_a_setting_that_cannot_be_used_is_named_plainly_and_changes_nothing(
        var_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    assert main(["analytics", "table", "students", "--by", "age_band"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ledger: {name}") and "Traceback" not in err
    assert not list(var_dir.iterdir())  # refused before any store was opened


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_purge_during_a_key_store_outage_says_so_in_one_line(
        backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 18, finding 6: one clear line and exit code 1, not a traceback; nothing purged."""
    settings = make_settings(backend, str(tmp_path))
    point_the_command_line_at(settings, monkeypatch)
    try:
        due = _deleted_long_ago(tmp_path, 3)
        capsys.readouterr()
        calls: list[str] = []

        def down(*_: object, **__: object) -> None:
            calls.append("call")
            raise KeyStoreUnavailable("key store unreachable")

        with monkeypatch.context() as patch:
            for name in ("load", "load_many", "tombstone", "tombstones_for", "erase_subjects"):
                patch.setattr(KeyStore, name, down)
            assert main(["purge"]) == 1
        out, err = capsys.readouterr()
        assert len(calls) == 1
        assert out == ""
        assert err.strip().splitlines()[-1] == (
            "key store unreachable: KeyStoreUnavailable; nothing more was purged;"
            " run again when it is back")
        assert "Traceback" not in err

        assert main(["purge"]) == 0
        purged = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert sorted(o["subject_id"] for o in purged) == due
    finally:
        if backend == "postgres":
            drop_schemas(settings.schema, settings.keystore_schema)
