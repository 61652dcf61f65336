"""A schema fuzz of the whole HTTP API with schemathesis (issue 17).

Every operation of the OpenAPI document is called with generated requests, valid and invalid
(schemathesis' positive and negative modes), over the app in-process, and every answer must:
not be a 5xx; have a status the operation documents; have the content type and body its
schema says; and, for every 4xx, be `application/problem+json` with `type`, `title`, `status`
and `detail`.

The ledger is a fresh SQLite one in a temporary directory, seeded with a small world (a school,
a teacher with a section, a student in it with a project, an upload and a rights request, a
student on legal hold) whose ids the fuzz puts in path parameters two times in three, so that
requests reach real code, not only the 404 of an unknown id. Each case is sent by one of four
callers, drawn with the case: the operator (every permission), the seeded teacher, the seeded
student (the `/me` and section routes answer 403 to staff), or no one (no token: every route
must answer its documented 401, or serve the public). Every case also carries an `X-Purpose`,
which support-only reads need.

This file runs on SQLite only: the PostgreSQL backend is covered by the other suites, and the
fuzz is about the HTTP contract, not the store. The fuzz itself is in the slow suite (CI runs
it; `make test-slow` here), the defects it found are pinned in the default run. Bounded in
time (about a minute here): 20
examples per operation and mode, derandomized (the same cases every run), no deadline.
`LEDGER_FUZZ_EXAMPLES=200 LEDGER_FUZZ_SEED=7` runs deeper, other cases, by hand.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case
from schemathesis.checks import (
    CheckContext,
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode

from api.http.app import create_app
from api.services import Services
from crypto import passwords
from tests.conftest import make_settings

PROBLEM = "application/problem+json"
# Per operation and mode, spread over the callers. LEDGER_FUZZ_EXAMPLES=200 for a deeper run
# by hand; LEDGER_FUZZ_SEED=<n> for other cases than CI's (derandomized by default).
EXAMPLES = int(os.environ.get("LEDGER_FUZZ_EXAMPLES", "20"))
SEED = os.environ.get("LEDGER_FUZZ_SEED")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


class World:
    """The seeded records whose ids the fuzz sends."""

    def __init__(self, services: Services) -> None:
        accounts, sections, ledger = services.accounts, services.sections, services.ledger
        self.school = accounts.register_school("Hill School", "North", "public")
        self.teacher = accounts.sign_up_teacher("Ms Frizzle", "friz@school.example",
                                                "pw pw pw pw")
        accounts.attest_parental_consent(self.teacher)
        self.section = sections.create(self.teacher, "Period 1", "csf", "3", "word")
        self.student = sections.create_student(self.teacher, self.section, "Kim", "14")
        self.project = services.projects.create(self.student, "app", "Clicker", "onClick()")
        self.media = services.projects.upload(self.student, self.project, PNG,
                                              "image/png").media_id
        self.other = ledger.register_student("Tess", "15")  # in no section; on hold
        self.hold = services.holds.place(self.other, "inspection request", "operator")
        self.request = services.rights.file(self.student, "rectify", "operator", "test",
                                            "display_name", "Mia Other")
        services.settle()

    def ids(self) -> dict[str, list[str]]:
        """Known values by path parameter name (the rest are generated only)."""
        people = [str(self.student), str(self.teacher), str(self.other)]
        return {
            "person_id": people, "student_id": [str(self.student)], "subject_id": people,
            "actor_id": people, "section_id": [str(self.section)],
            "school_id": [str(self.school)], "project_id": [str(self.project)],
            "media_id": [str(self.media)], "hold_id": [str(self.hold)],
            "request_id": [str(self.request)], "provider": ["google"],
            "partner": ["code-club"], "table": ["profile"], "measure": ["students"],
            "notification_id": ["1"],
        }


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Any, World, Any]]:
    """A fresh seeded ledger for each test (the fuzz erases and deletes what it finds)."""
    real, cheap = passwords.hash_password, passwords.ScryptCost(log2_n=4)
    passwords.hash_password = lambda pw, cost=cheap: real(pw, cost)  # type: ignore[assignment]
    services = Services.open(make_settings("sqlite", str(tmp_path)))
    try:
        seeded = World(services)
        app = create_app(services)
        yield app, seeded, app.state.tokens
    finally:
        passwords.hash_password = real  # type: ignore[assignment]
        services.close()


def _schema(app: Any, seeded: World) -> Any:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    known = seeded.ids()

    @schema.hook  # type: ignore[misc]
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
        """Mostly a seeded record's id (2 in 3) instead of the generated value."""
        if not path_parameters:
            return st.just(path_parameters)
        choices = {name: st.sampled_from([value, *known.get(name, []) * 2])
                   for name, value in path_parameters.items()}
        return st.fixed_dictionaries(choices)

    return schema


def problem_json(ctx: CheckContext, response: Any, case: Case) -> bool | None:
    """Every 4xx is application/problem+json with type, title, status and detail."""
    if not 400 <= response.status_code < 500:
        return None
    media = response.headers.get("content-type", [""])[0].split(";")[0].strip()
    assert media == PROBLEM, f"a {response.status_code} answered {media!r}, not {PROBLEM}"
    body = response.json()
    assert isinstance(body, dict), "a problem is a JSON object"
    missing = {"type", "title", "status", "detail"} - set(body)
    assert not missing, f"the problem lacks {sorted(missing)}"
    assert body["status"] == response.status_code, "the problem's status is not the response's"
    return True


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, problem_json]


CALLERS = ("operator", "teacher", "student", None)  # None: no token at all
# Routes that end the caller's own account or session: each case gets a fresh one.
SELF_ENDING = {"DELETE /me", "POST /me/erasure", "POST /sign-out"}


def fuzz(schema: Any, token: Callable[[str | None, str], str | None],
         examples: int) -> list[str]:
    """Every operation, positive and negative, by each caller: the failures, one per
    operation and mode (hypothesis stops at the first failing case and shrinks it)."""
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)

            @given(case=strategy, caller=st.sampled_from(CALLERS))
            @settings(max_examples=examples, deadline=None, derandomize=SEED is None, database=None,
                      suppress_health_check=list(HealthCheck), phases=[Phase.generate])
            def run(case: Case, caller: str | None) -> None:
                headers = {"X-Purpose": "technical_issue"}
                bearer = token(caller, case.operation.label)
                if bearer is not None:
                    headers["Authorization"] = f"Bearer {bearer}"
                case.call_and_validate(headers=headers, checks=CHECKS)

            if SEED is not None:
                run = seed(int(SEED))(run)
            try:
                run()
            except Unsatisfiable:
                continue  # nothing to make invalid (no parameters, no body)
            except (Exception, FailureGroup) as error:
                failures.append(f"{operation.label} ({mode.value}): {error}")
    return failures


@pytest.mark.slow  # a minute: with the slow suites, which CI runs (`make test-slow`)
def test_every_operation_by_every_kind_of_caller(world: tuple[Any, World, Any]) -> None:
    app, seeded, tokens = world
    services: Services = app.state.services
    people = {"teacher": seeded.teacher, "student": seeded.student}

    def token(caller: str | None, label: str) -> str | None:
        """A fresh token each case (a case may sign out); for a route that ends the caller's
        account, a fresh person of the caller's kind, so the seeded ones stay."""
        if caller is None:
            return None
        if caller == "operator":
            return str(tokens.issue("operator", "fuzz", timedelta(hours=1)).token)
        person = people[caller]
        if label in SELF_ENDING:
            ledger = services.ledger
            person = (ledger.register_student("Fresh", "15") if caller == "student" else
                      ledger.register_teacher("Fresh"))
        return str(tokens.issue(caller, "session", timedelta(hours=1),
                                subject_id=person).token)

    failures = fuzz(_schema(app, seeded), token, EXAMPLES)
    assert not failures, f"{len(failures)} operations failed:\n\n" + "\n\n".join(failures)


def test_what_the_fuzz_found(world: tuple[Any, World, Any]) -> None:
    """The defects the fuzz found, each pinned by its own case (a seed may not find it again)."""
    app, seeded, tokens = world
    operator = {"Authorization": "Bearer " + tokens.issue(
        "operator", "fuzz", timedelta(hours=1)).token}
    student = {"Authorization": "Bearer " + tokens.issue(
        "student", "session", timedelta(hours=1), subject_id=seeded.student).token}
    spec = app.openapi()
    with TestClient(app, raise_server_exceptions=False) as http:
        # A cursor past the stores' 64-bit integers overflowed in the driver: a 500.
        huge = http.get(f"/erasure-receipts?after={2**70}", headers=operator)
        assert huge.status_code == 422, huge.text
        assert huge.json()["errors"] == [{"field": "after", "rule": f"must be at most {2**63 - 1}"}]
        # A body that is not JSON answers 400, which no route listed.
        malformed = http.post("/sign-in", content=b"{",
                              headers={"Content-Type": "application/json"})
        assert malformed.status_code == 400
        assert malformed.json()["type"].endswith("/malformed-body")
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                if "application/json" in operation.get("requestBody", {}).get("content", {}):
                    assert {"400", "422"} <= set(operation["responses"]), (method, path)
        assert "HTTPValidationError" not in str(spec)
        # A download is its bytes, not JSON; the document said application/json.
        media = http.get(f"/me/media/{seeded.media}", headers=student)
        assert media.status_code == 200 and media.headers["content-type"] == "image/png"
        documented = spec["paths"]["/me/media/{media_id}"]["get"]["responses"]["200"]["content"]
        assert "image/png" in documented and "application/json" not in documented
