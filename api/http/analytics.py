"""De-identified analytics over HTTP (ANA-2, ACC-3): suppressed tables and the headline chart.

Researchers and the privacy officer only (`analytics:read`). Every answer is a table of counts
that went through `api.analytics_tables.publish`: no route here returns a row about a student,
and no analytics id ever leaves the read model. No access record is written (AUD-1 is for
reads of a student's personal data; these are counts over many, with small cells withheld).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from api.analytics_tables import HEADLINE, chart_html, publish, published
from api.http.auth import require
from api.http.deps import Svc
from api.http.problems import BASE, ProblemError, responses
from api.tokens import Permission, Principal
from projections.analytics import DIMENSIONS, MEASURES, UnknownBreakdown

router = APIRouter(tags=["analytics"])
UNKNOWN_BREAKDOWN = BASE + "unknown-breakdown"

Reader = Annotated[Principal, Depends(require(Permission.ANALYTICS_READ))]


def _table(svc: Svc, measure: str, by: list[str]) -> dict[str, Any]:
    try:
        return published(svc.analytics_reader, measure, by, svc.settings.analytics_min_cell)
    except UnknownBreakdown as error:
        raise ProblemError(422, UNKNOWN_BREAKDOWN, "Unknown breakdown", str(error),
                           measures=list(MEASURES), dimensions=list(DIMENSIONS)) from None


@router.get("/analytics/tables/{measure}", responses=responses(401, 403, 422, 503))
def analytics_table(svc: Svc, who: Reader, measure: str,
                    by: Annotated[list[str], Query(max_length=40)]) -> dict[str, Any]:
    """Counts of `measure` (students, attempts, solved, optimal) by one or two dimensions
    (`by=age_band&by=gender`), with totals; withheld counts are null."""
    return _table(svc, measure, by)


@router.get("/analytics/chart", response_class=HTMLResponse,
            responses=responses(401, 403, 503))
def analytics_chart(svc: Svc, who: Reader) -> HTMLResponse:
    """The headline table (students by age band and gender) as a page with a bar chart."""
    return HTMLResponse(chart_html(_table(svc, HEADLINE[0], list(HEADLINE[1]))))


@router.get("/analytics/race-estimates", responses=responses(401, 403, 503))
def race_estimates(svc: Svc, who: Reader) -> dict[str, Any]:
    """AGE-2: teachers' estimated racial distributions of classes of under-13s, as whole
    students (share x class size, summed over sections, rounded): never attributed to a
    student, and suppressed like every table."""
    return publish(svc.analytics_reader.section_race_estimates_table(),
                   svc.settings.analytics_min_cell)
