"""Process metrics and their Prometheus text exposition (format 0.0.4), written by hand.

Labels only ever carry route templates, methods, statuses, loop and projection names and
outcome words: never a raw path, a query, an id or a value of a person.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Seconds; the usual spread of a web service's latencies.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class _Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    count: int = 0
    total: float = 0.0


class RequestMetrics:
    """Request latency by (method, route template, status); filled by `RequestContext`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str, str], _Histogram] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        with self._lock:
            histogram = self._series.setdefault(key, _Histogram())
            histogram.count += 1
            histogram.total += seconds
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    histogram.buckets[i] += 1

    def lines(self) -> list[str]:
        name = "ledger_http_request_duration_seconds"
        out = [f"# HELP {name} Time to answer a request, by route template and status.",
               f"# TYPE {name} histogram"]
        with self._lock:
            series = sorted(self._series.items())
            for (method, route, status), h in series:
                labels = {"method": method, "route": route, "status": status}
                for bound, count in zip(BUCKETS, h.buckets, strict=True):
                    out.append(sample(f"{name}_bucket", {**labels, "le": _number(bound)}, count))
                out.append(sample(f"{name}_bucket", {**labels, "le": "+Inf"}, h.count))
                out.append(sample(f"{name}_sum", labels, h.total))
                out.append(sample(f"{name}_count", labels, h.count))
        return out


class PurgeMetrics:
    """The scheduled purge's runs by outcome (ok, refused, failed) and what they did."""

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()
        self.subjects: Counter[str] = Counter()  # purged, held, failed, soft_deleted

    def lines(self) -> list[str]:
        return [*family("ledger_purge_runs_total", "counter",
                        "Scheduled purge runs by outcome.",
                        [({"outcome": o}, self.runs[o]) for o in ("ok", "refused", "failed")]),
                *family("ledger_purge_subjects_total", "counter",
                        "Subjects met by scheduled purge runs, by what became of them.",
                        [({"result": r}, self.subjects[r])
                         for r in ("purged", "held", "failed", "soft_deleted")])]


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value)) if isinstance(value, int) else repr(float(value))
    return repr(float(value))


def sample(name: str, labels: Mapping[str, str], value: float) -> str:
    inner = ",".join(f'{key}="{escape(text)}"' for key, text in labels.items())
    return f"{name}{{{inner}}} {_number(value)}" if inner else f"{name} {_number(value)}"


def family(name: str, kind: str, help_text: str,
           samples: Iterable[tuple[Mapping[str, str], float]]) -> list[str]:
    """A metric family: its HELP and TYPE lines, then its samples."""
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}",
            *(sample(name, labels, value) for labels, value in samples)]
