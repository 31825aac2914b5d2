"""One row per run: what the client measured and what the target's tree did meanwhile.

Rows from both clients have the same fields, so that the JSON, the CSV, the
tables and the graphs treat them alike; ``client`` says which one produced a
row. Units: ms, MB = 10^6 bytes, CPU in % of one core (100 % = one core busy,
like top), RSS in bytes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .locustrun import LocustResult
from .matrix import Scenario
from .sampling import peak_cpu_percent
from .watch import Watched
from .wrk import WrkStats

MB = 1e6


@dataclass
class Context:
    """Where and when a run happened (known before the client starts)."""

    index: int
    target: str
    started: str  # ISO time
    loadavg: float  # 1-minute load average just before the run


@dataclass
class RunResult:
    """One scenario against one target."""

    index: int
    scenario: str
    profile: str
    users: int
    client: str
    target: str
    started: str
    ramp_s: int
    measure_s: int
    window_s: float
    requests: int
    failures: int
    unfinished: int
    error_rate: float | None
    rps: float | None
    mb_per_s: float | None
    avg_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    censored: list[str] = field(default_factory=list)
    target_idle_rss: int = 0
    target_peak_rss: int = 0
    target_peak_cpu: float = 0.0
    target_avg_cpu: float = 0.0
    target_processes: int = 0
    client_avg_cpu: float = 0.0
    client_peak_cpu: float = 0.0
    other_cpu: float = 0.0  # everything else on the machine meanwhile (shared machine)
    loadavg: float = 0.0
    stopped_by_guard: str | None = None
    by_name: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _process_figures(watched: Watched) -> dict[str, Any]:
    """The target's and the client's CPU and memory over the run."""
    wall = watched.wall_seconds or 1.0
    last = watched.samples[-1] if watched.samples else watched.idle
    return {
        "other_cpu": 100 * watched.other_cpu_seconds / wall,
        "target_idle_rss": watched.idle.total_rss,
        "target_peak_rss": max([watched.idle.total_rss,
                                *(s.total_rss for s in watched.samples)]),
        "target_peak_cpu": peak_cpu_percent(watched.idle, watched.samples),
        "target_avg_cpu": 100 * watched.target_cpu_seconds / wall,
        "target_processes": len(last.rss),
        "client_avg_cpu": 100 * watched.client_cpu_seconds / wall,
        "client_peak_cpu": watched.client_peak_cpu_percent,
        "stopped_by_guard": watched.stopped_by_guard,
    }


def _scenario_figures(scenario: Scenario, context: Context) -> dict[str, Any]:
    return {"index": context.index, "scenario": scenario.name, "profile": scenario.profile,
            "users": scenario.users, "client": scenario.client, "target": context.target,
            "started": context.started, "ramp_s": scenario.ramp,
            "measure_s": scenario.measure, "loadavg": context.loadavg}


def from_locust(scenario: Scenario, context: Context, stats: LocustResult,
                watched: Watched) -> RunResult:
    window = stats.window_s
    lat = stats.latency
    return RunResult(
        **_scenario_figures(scenario, context), window_s=window,
        requests=stats.requests, failures=stats.failures, unfinished=stats.unfinished,
        error_rate=stats.error_rate,
        rps=stats.requests / window if window > 0 else None,
        mb_per_s=stats.bytes / MB / window if window > 0 else None,
        avg_ms=lat.avg, p50_ms=lat.p50, p95_ms=lat.p95, p99_ms=lat.p99, max_ms=lat.max,
        censored=lat.censored, by_name=stats.by_name, errors=stats.errors,
        **_process_figures(watched),
    )


def from_wrk(scenario: Scenario, context: Context, stats: WrkStats,
             watched: Watched) -> RunResult:
    """wrk gives no p95; its errors are socket errors plus non-2xx/3xx answers."""
    return RunResult(
        **_scenario_figures(scenario, context), window_s=stats.seconds,
        requests=stats.requests, failures=stats.errors, unfinished=0,
        error_rate=stats.errors / stats.requests if stats.requests else None,
        rps=stats.requests_per_s, mb_per_s=stats.mb_per_s, avg_ms=stats.average_ms,
        p50_ms=stats.latency_ms["p50"], p95_ms=None, p99_ms=stats.latency_ms["p99"],
        max_ms=None, errors=_wrk_errors(scenario.profile, stats),
        **_process_figures(watched),
    )


def _wrk_errors(name: str, stats: WrkStats) -> list[dict[str, Any]]:
    counts = {f"socket {k}": v for k, v in stats.socket_errors.items()}
    counts["non-2xx or 3xx"] = stats.non_2xx_3xx
    return [{"name": name, "error": k, "count": v} for k, v in counts.items() if v]


CSV_FIELDS = [f.name for f in dataclasses.fields(RunResult)
              if f.name not in ("by_name", "errors", "censored")] + ["censored", "top_error"]


def csv_row(result: RunResult) -> dict[str, Any]:
    """A flat row: the nested fields become short text."""
    row = {k: v for k, v in result.as_dict().items() if k in CSV_FIELDS}
    row["censored"] = " ".join(result.censored)
    row["top_error"] = (f"{result.errors[0]['count']}x {result.errors[0]['error']}"
                        if result.errors else "")
    return row
