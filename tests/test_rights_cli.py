"""`ledger requests ...` and `ledger export` (RGT-1, RGT-4) on the embedded default: the list
and the overdue report print ids, kinds, times and statuses (no personal value), extend /
fulfil / refuse act as the HTTP routes do with the same refusals, and the export writes the
JSON document or one CSV file per table, leaving an access record by the operator.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from api.cli.main import main
from api.exports import Exporter
from api.services import Services
from ledger.settings import Settings


def _requests(days_ago: float) -> tuple[UUID, UUID, UUID]:
    """A student "Quinn Quietly" with a rectification and an export request filed `days_ago`."""
    then = datetime.now(UTC) - timedelta(days=days_ago)
    services = Services.open(Settings.from_env(), clock=lambda: then)
    try:
        student = services.ledger.register_student("Quinn Quietly", "15")
        rectify = services.rights.file(student, "rectify", "subject", "s", "display_name",
                                       "Quinn Loudly")
        export = services.rights.file(student, "export", "subject", "s")
        return student, rectify, export
    finally:
        services.close()


def _lines(text: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in text.splitlines()]


def test_requests_list_overdue_extend_refuse_fulfil(
        var_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    student, rectify, export = _requests(days_ago=31)
    capsys.readouterr()
    assert main(["requests", "list"]) == 0
    listed = _lines(capsys.readouterr().out)
    assert {r["request_id"] for r in listed} == {str(rectify), str(export)}
    assert "Quinn" not in json.dumps(listed)
    assert main(["requests", "overdue"]) == 0
    assert {r["request_id"] for r in _lines(capsys.readouterr().out)} == {str(rectify),
                                                                         str(export)}
    earlier = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    assert main(["requests", "overdue", "--at", earlier]) == 0
    assert capsys.readouterr().out == ""

    # overdue already: too late to extend (and never past 45 days)
    later = (datetime.now(UTC) + timedelta(days=10)).isoformat()
    assert main(["requests", "extend", str(export), "--due", later, "--reason", "moving"]) == 2
    assert "due_at" in capsys.readouterr().err
    assert main(["requests", "refuse", str(export), "--reason", "a copy was sent"]) == 0
    assert _lines(capsys.readouterr().out)[0]["status"] == "refused"
    assert main(["requests", "fulfil", str(export)]) == 3
    assert main(["requests", "fulfil", str(rectify)]) == 0
    assert _lines(capsys.readouterr().out)[0]["status"] == "fulfilled"
    assert main(["requests", "fulfil", "00000000-0000-0000-0000-000000000001"]) == 2
    assert main(["requests", "list", "--status", "open"]) == 0
    assert "Quinn" not in capsys.readouterr().out

    services = Services.open(Settings.from_env())
    try:
        assert services.ledger.live(student).display_name == "Quinn Loudly"
    finally:
        services.close()


def test_export_as_json_and_csv(var_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    student, _, _ = _requests(days_ago=1)
    target = var_dir / "quinn.json"
    assert main(["export", str(student), "--out", str(target)]) == 0
    document = json.loads(target.read_bytes())
    profile = {row["field"]: row["value"] for row in document["sections"]["profile"]}
    assert profile["display_name"] == "Quinn Quietly"
    assert len(document["sections"]["rights_requests"]) == 2

    directory = var_dir / "quinn-csv"
    assert main(["export", str(student), "--format", "csv", "--out", str(directory)]) == 0
    services = Services.open(Settings.from_env())
    try:
        names = Exporter(services).names
        services.audit_view.catch_up()
        reads = services.audit_reader.of_student(student)
    finally:
        services.close()
    assert sorted(p.name for p in directory.iterdir()) == sorted(f"{n}.csv" for n in names)
    with (directory / "rights_requests.csv").open() as table:
        assert len(list(csv.reader(table))) == 3  # a header and two requests
    assert [r.actor_role for r in reads] == ["operator", "operator"]
    assert main(["export", "00000000-0000-0000-0000-000000000001"]) == 2
