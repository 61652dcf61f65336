"""The analytics outputs (ANA-2, ANA-4, ACC-3): HTTP tables and chart, `ledger analytics`,
every one suppressed; bad parameters answered with a problem; and no route of the API gives a
researcher a row about a student."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from api.analytics_tables import publish
from api.cli.main import main
from ledger.progress import Attempt
from ledger.settings import Settings
from tests.test_api_accounts import Client

AT = datetime(2026, 9, 7, 10, 0, tzinfo=UTC)
P = "https://ledger.invalid/problems/"
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def small_world(api: Client) -> list[UUID]:
    """12 girls and 3 boys of 15, 11 students of 9 (no gender): the boys are a small cell."""
    svc = api.svc
    people = []
    for age, gender, count in [("15", "female", 12), ("15", "male", 3), ("9", None, 11)]:
        for _ in range(count):
            person = svc.ledger.register_student("S", age)
            if gender:
                svc.accounts.give_gender(person, gender)
            svc.attempts.record_many(person, [Attempt("csf/unit-1/l-1", "solved", AT)])
            people.append(person)
    svc.catch_up()
    return people


def test_a_researcher_reads_a_suppressed_table(api: Client) -> None:
    small_world(api)
    answer = api.call("GET", "/analytics/tables/students?by=gender&by=age_band",
                      api.staff("researcher"))
    assert answer.status_code == 200
    table = answer.json()
    assert table["rows"] == ["female", "male", "not_given"]
    assert table["columns"] == ["13_17", "under_13"]
    published = [v for row in table["cells"] for v in row] + table["row_totals"] \
        + table["column_totals"] + [table["grand_total"]]
    assert all(v is None or v == 0 or v >= 10 for v in published)  # default threshold: 10
    male = table["rows"].index("male")
    assert table["cells"][male][0] is None and table["row_totals"][male] is None
    # the boys' 3 cannot be had from the girls' 12 and the 13-17 total either
    assert table["cells"][0][0] is None or table["column_totals"][0] is None


@pytest.mark.parametrize(("url", "status"), [
    ("/analytics/tables/visits?by=gender", 422),
    ("/analytics/tables/students?by=email", 422),
    ("/analytics/tables/students?by=gender&by=gender", 422),
    ("/analytics/tables/students?by=a&by=b&by=c", 422),
    ("/analytics/tables/solved?by=week", 422),
    ("/analytics/tables/students", 422),
])
def test_a_bad_breakdown_is_a_problem_not_a_failure(api: Client, url: str, status: int) -> None:
    answer = api.call("GET", url, api.staff("researcher"))
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["type"] in (P + "unknown-breakdown", P + "validation")


def test_the_chart_is_a_page_with_an_inline_svg_and_no_small_count(api: Client) -> None:
    small_world(api)
    answer = api.call("GET", "/analytics/chart", api.staff("operator"))
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    page = answer.text
    assert "<svg" in page and "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    assert not re.search(r">\s*[1-9]\s*<", page)  # no count from 1 to 9 shown anywhere


def test_only_researchers_and_the_privacy_officer_read_analytics(api: Client) -> None:
    student = api.svc.ledger.register_student("S", "15")
    for auth, status in [(None, 401), (api.session(student), 403),
                         (api.staff("registrar"), 403), (api.staff("support"), 403),
                         (api.staff("researcher"), 200), (api.staff("operator"), 200)]:
        answer = api.call("GET", "/analytics/tables/students?by=gender", auth)
        assert answer.status_code == status


def test_no_route_gives_a_researcher_a_row_about_a_student(api: Client) -> None:
    """ANA-4, ACC-3: every route of the OpenAPI document, called as a researcher, with every
    path parameter a real student's id: a researcher gets counts or a refusal, never an id of
    a person or a row about one."""
    people = small_world(api)
    target = str(people[0])
    researcher = api.staff("researcher")
    spec = api.call("GET", "/openapi.json").json()
    called = 0
    for path, operations in spec["paths"].items():
        for method in operations:
            url = re.sub(r"\{[^}]+\}", target, path)
            if path == "/analytics/tables/{measure}":
                url = "/analytics/tables/students?by=gender"
            answer = api.call(method.upper(), url, researcher,
                              body={} if method in ("post", "put", "patch") else None)
            called += 1
            assert answer.status_code < 500, (method, path)
            if answer.status_code >= 300:
                continue
            text = answer.text
            assert not [p for p in people if str(p) in text], (method, path)
            if path.startswith("/analytics"):
                assert not UUID_TEXT.search(text), (method, path)  # no analytics id either
    assert called > 50


def test_the_command_line_prints_the_same_suppressed_table(
        api: Client, settings: Settings, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    small_world(api)
    monkeypatch.setattr("api.cli.analytics.Settings.from_env", lambda: api.svc.settings)
    assert main(["analytics", "table", "students", "--by", "gender", "--by", "age_band"]) == 0
    printed: dict[str, Any] = json.loads(capsys.readouterr().out)
    http = api.call("GET", "/analytics/tables/students?by=gender&by=age_band",
                    api.staff("researcher")).json()
    assert printed == http
    assert main(["analytics", "table", "students", "--by", "gender", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "gender,all,total" and lines[-1].startswith("total,")
    assert main(["analytics", "chart"]) == 0
    assert "<svg" in capsys.readouterr().out


def test_race_estimates_are_published_as_whole_students_and_suppressed(api: Client) -> None:
    svc = api.svc
    teacher = svc.ledger.register_teacher("T")
    for _ in range(2):
        section = svc.sections.create(teacher, "P", "csf", "3", "email")
        code = svc.sections.section(section).join_code
        for _ in range(20):
            svc.sections.join(svc.ledger.register_student("S", "8"), code)
        svc.sections.estimate_race(teacher, section, {"hispanic": 60, "asian": 10})
    svc.catch_up()
    answer = api.call("GET", "/analytics/race-estimates", api.staff("researcher"))
    assert answer.status_code == 200
    table = answer.json()
    assert table["rows"] == ["asian", "hispanic"]  # 2 x 20 x 10% = 4; 2 x 20 x 60% = 24
    assert table["cells"] == [[None], [None]]  # the 4 withheld, and the 24 with it
    assert table["grand_total"] == 28


def test_the_threshold_is_a_setting_and_a_nonsense_one_is_refused() -> None:
    assert Settings.from_env({}).analytics_min_cell == 10
    assert Settings.from_env({"LEDGER_ANALYTICS_MIN_CELL": "5"}).analytics_min_cell == 5
    for bad in ("1", "0", "-3", "100000"):
        with pytest.raises(ValueError, match="LEDGER_ANALYTICS_MIN_CELL"):
            Settings.from_env({"LEDGER_ANALYTICS_MIN_CELL": bad})


def test_a_lower_threshold_shows_what_the_default_withholds(api: Client) -> None:
    small_world(api)
    crosstab = api.svc.analytics_reader.crosstab("students", ["gender"])
    assert publish(crosstab, 3)["cells"] == [[12], [3], [11]]
    withheld = publish(crosstab, 10)
    # the boys' 3, and one more row so that 26 minus the rest does not give it back
    assert withheld["cells"][1] == [None] and withheld["grand_total"] == 26
    assert sum(row == [None] for row in withheld["cells"]) == 2


def test_a_two_way_table_shows_its_margins_as_the_one_way_tables_do(api: Client) -> None:
    small_world(api)
    researcher = api.staff("researcher")
    two_way = api.call("GET", "/analytics/tables/students?by=gender&by=age_band",
                       researcher).json()
    by_gender = api.call("GET", "/analytics/tables/students?by=gender", researcher).json()
    by_age = api.call("GET", "/analytics/tables/students?by=age_band", researcher).json()
    assert by_gender["grand_total"] == by_age["grand_total"] == 26
    # Here the one-way tables show 11 under-13s, all of no given gender: the two-way table
    # cannot show a margin without giving back the boys' 3, so it is withheld whole.
    assert two_way["grand_total"] is None and not [
        v for row in two_way["cells"] for v in row if v is not None]
    # In a world where it can, its margins are the one-way tables' counts.
    for gender in ["male"] * 10 + ["female"] * 10:  # the 3 now on a cycle of counts >= 10
        child = api.svc.ledger.register_student("S", "9")
        api.svc.accounts.give_gender(child, gender)
    api.svc.catch_up()
    two_way = api.call("GET", "/analytics/tables/students?by=gender&by=age_band",
                       researcher).json()
    by_gender = api.call("GET", "/analytics/tables/students?by=gender", researcher).json()
    by_age = api.call("GET", "/analytics/tables/students?by=age_band", researcher).json()
    assert two_way["row_totals"] == [row[0] for row in by_gender["cells"]]
    assert two_way["column_totals"] == [row[0] for row in by_age["cells"]]
    assert two_way["grand_total"] == by_gender["grand_total"] == by_age["grand_total"] == 46
    assert two_way["cells"][1][0] is None  # the boys of 13-17: 3
