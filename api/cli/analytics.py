"""`ledger analytics ...`: the de-identified tables on the command line (ANA-2).

    ledger analytics table MEASURE --by DIM [--by DIM] [--format json|csv]
    ledger analytics chart > chart.html
    ledger analytics race-estimates [--format json|csv]

The same suppressed tables as `GET /analytics/...`: counts only, small cells and their
complements withheld (LEDGER_ANALYTICS_MIN_CELL), never a row about a student.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from api.analytics_tables import HEADLINE, as_csv, chart_html, publish, published
from api.services import Services
from ledger.settings import Settings
from projections.analytics import DIMENSIONS, MEASURES, UnknownBreakdown


def register(commands: Any) -> None:
    analytics = commands.add_parser("analytics", help="de-identified, suppressed tables of"
                                                      " counts (ANA-2)")
    actions = analytics.add_subparsers(dest="action", required=True, metavar="ACTION")
    table = actions.add_parser("table", help="counts of a measure by one or two dimensions")
    table.add_argument("measure", choices=MEASURES)
    table.add_argument("--by", action="append", choices=DIMENSIONS, required=True)
    table.add_argument("--format", choices=("json", "csv"), default="json")
    table.set_defaults(func=run_table)
    chart = actions.add_parser("chart", help="the headline table as an HTML page with a chart")
    chart.set_defaults(func=run_chart)
    estimates = actions.add_parser("race-estimates", help="sections' estimated race"
                                                          " distributions (AGE-2), as students")
    estimates.add_argument("--format", choices=("json", "csv"), default="json")
    estimates.set_defaults(func=run_race_estimates)


def _table(measure: str, by: list[str]) -> dict[str, Any] | None:
    services = Services.open(Settings.from_env())
    try:
        services.analytics_view.catch_up()
        return published(services.analytics_reader, measure, by,
                         services.settings.analytics_min_cell)
    except UnknownBreakdown as error:
        print(f"ledger analytics: {error}", file=sys.stderr)
        return None
    finally:
        services.close()


def run_table(args: argparse.Namespace) -> int:
    table = _table(args.measure, args.by)
    if table is None:
        return 2
    sys.stdout.write(as_csv(table) if args.format == "csv" else json.dumps(table) + "\n")
    return 0


def run_chart(args: argparse.Namespace) -> int:
    table = _table(HEADLINE[0], list(HEADLINE[1]))
    if table is None:
        return 2
    sys.stdout.write(chart_html(table) + "\n")
    return 0


def run_race_estimates(args: argparse.Namespace) -> int:
    services = Services.open(Settings.from_env())
    try:
        services.analytics_view.catch_up()
        table = publish(services.analytics_reader.section_race_estimates_table(),
                        services.settings.analytics_min_cell)
    finally:
        services.close()
    sys.stdout.write(as_csv(table) if args.format == "csv" else json.dumps(table) + "\n")
    return 0
