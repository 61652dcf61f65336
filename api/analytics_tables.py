"""Published analytics tables (ANA-2): the one place counts leave the ledger, always suppressed.

Every output (HTTP, `ledger analytics`, the chart) goes through `publish`, which withholds
small cells and their complements (projections/suppression.py); no output takes a `Crosstab`
as it is. A table is counts of a measure by one or two dimensions, with its totals; a withheld
count is `null` in JSON and empty in CSV.
"""

from __future__ import annotations

import csv
import io
from html import escape
from typing import Any

from api.spreadsheet import guard
from projections.analytics import AnalyticsReader, Crosstab
from projections.suppression import suppress

HEADLINE = ("students", ("age_band", "gender"))  # the chart's table


def publish(crosstab: Crosstab, min_cell: int,
            linked: tuple[list[int | None] | None, list[int | None] | None] = (None, None)
            ) -> dict[str, Any]:
    """`linked`: how the rows' and the columns' own one-way tables publish the margins (see
    `suppress`), where they are the same counts."""
    table = suppress(crosstab.counts, min_cell, *linked) if crosstab.rows else None
    return {
        "measure": crosstab.measure,
        "by": list(crosstab.by),
        "min_cell": min_cell,
        "rows": crosstab.rows,
        "columns": crosstab.columns,
        "cells": table.cells if table else [],
        "row_totals": table.row_totals if table else [],
        "column_totals": table.column_totals if table else [],
        "grand_total": table.grand_total if table else 0,
    }


def published(reader: AnalyticsReader, measure: str, by: list[str], min_cell: int
              ) -> dict[str, Any]:
    """`UnknownBreakdown` for a measure or dimension not in the lists. A two-way table is
    linked to the one-way tables of its dimensions wherever its margins are their counts, so
    that reading them together gives away no withheld count (ANA-2)."""
    crosstab = reader.crosstab(measure, by)
    if len(crosstab.by) < 2 or not crosstab.rows:
        return publish(crosstab, min_cell)
    row_sums = [sum(row) for row in crosstab.counts]
    column_sums = [sum(row[j] for row in crosstab.counts) for j in range(len(crosstab.columns))]
    linked = (_one_way(reader, measure, crosstab.by[0], crosstab.rows, row_sums, min_cell),
              _one_way(reader, measure, crosstab.by[1], crosstab.columns, column_sums,
                       min_cell))
    return publish(crosstab, min_cell, linked)


def _one_way(reader: AnalyticsReader, measure: str, dimension: str, labels: list[str],
             sums: list[int], min_cell: int) -> list[int | None] | None:
    """The dimension's own table as published, if it counts what these margins count."""
    alone = reader.crosstab(measure, [dimension])
    if alone.rows != labels or [row[0] for row in alone.counts] != sums:
        return None  # another quantity (students per course and gender are not students)
    return [row[0] for row in suppress(alone.counts, min_cell).cells]  # as `publish` does


def as_csv(table: dict[str, Any]) -> str:
    """Rows with their total, then a row of column totals; a withheld count is empty."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    first = table["by"][0]
    writer.writerow([guard(str(first)), *(guard(str(c)) for c in table["columns"]), "total"])
    for label, cells, total in zip(table["rows"], table["cells"], table["row_totals"],
                                   strict=True):
        writer.writerow([guard(str(label)), *(_cell(c) for c in cells), _cell(total)])
    writer.writerow(["total", *(_cell(c) for c in table["column_totals"]),
                     _cell(table["grand_total"])])
    return out.getvalue()


def _cell(value: int | None) -> str:
    return "" if value is None else str(value)


def chart_html(table: dict[str, Any]) -> str:
    """A page with an inline SVG bar chart of the row totals (withheld: a labelled gap), and
    the table itself below it. No script, no outside resource."""
    bars = [(str(label), total) for label, total in zip(table["rows"], table["row_totals"],
                                                         strict=True)]
    top = max([total for _, total in bars if total is not None] or [1]) or 1
    bar_width, gap, height = 60, 20, 200
    width = max(1, len(bars)) * (bar_width + gap) + gap
    parts = []
    for i, (label, total) in enumerate(bars):
        x = gap + i * (bar_width + gap)
        if total is None:
            parts.append(f'<text x="{x + bar_width // 2}" y="{height - 4}" text-anchor="middle"'
                         ' font-size="11">withheld</text>')
        else:
            h = round(total / top * (height - 30))
            parts.append(f'<rect x="{x}" y="{height - h}" width="{bar_width}" height="{h}"'
                         f' fill="#3b6ea5"><title>{escape(label)}: {total}</title></rect>'
                         f'<text x="{x + bar_width // 2}" y="{height - h - 4}"'
                         f' text-anchor="middle" font-size="11">{total}</text>')
        parts.append(f'<text x="{x + bar_width // 2}" y="{height + 16}" text-anchor="middle"'
                     f' font-size="11">{escape(label)}</text>')
    title = escape(f"{table['measure']} by {' and '.join(table['by'])}")
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 24}"'
           f' role="img" aria-label="{title}">{"".join(parts)}</svg>')
    head = "".join(f"<th>{escape(str(c))}</th>" for c in [table["by"][0], *table["columns"],
                                                          "total"])
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(c) if not isinstance(c, str) else c)}</td>"
                         for c in [label, *cells, total]) + "</tr>"
        for label, cells, total in zip(table["rows"], table["cells"], table["row_totals"],
                                       strict=True))
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><title>" + title
            + "</title></head><body><h1>" + title + "</h1>" + svg
            + f"<p>Counts under {table['min_cell']} and the counts that would reveal them are"
              " withheld (blank).</p><table border=\"1\"><tr>" + head + "</tr>" + body
            + "</table></body></html>")
