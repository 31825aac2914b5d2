"""Locust as a subprocess: its command line, and its statistics turned into one row.

Locust runs headless with ``--reset-stats``: the statistics cover only the
time after every user was started, a window the locustfile writes down
(``--window-file``); requests/s and MB/s are counts over that window. Its JSON
file (``--json-file``) holds one entry per (request type, name) with a
histogram of response times (ms, rounded by Locust to two significant digits
above 100 ms); its ``_failures.csv`` the error messages. Requests still in
flight when the run stopped are entries of request type ``UNFINISHED`` (see
files/locustfile.py).

Latency is computed over the completed requests *and* those in flight, the
latter at the time they had run so far: a lower bound. A figure is marked as a
lower bound (``censored``) when the requests in flight are numerous enough to
move it: percentile q when they are more than 1 - q of all, the average when
they are more than 5 %.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import LabError
from .matrix import PROFILES, Scenario

UNFINISHED = "UNFINISHED"
QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
AVERAGE_CENSOR_SHARE = 0.05


def locust_command(locustfile: Path, host: str, scenario: Scenario, prefix: Path) -> list[str]:
    profile = PROFILES[scenario.profile]
    return [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
            "--host", host, "--users", str(scenario.users),
            "--spawn-rate", f"{scenario.spawn_rate:g}", "--run-time", f"{scenario.run_time}s",
            "--reset-stats", "--only-summary", "--stop-timeout", "0",
            "--exit-code-on-error", "0", "--json-file", str(prefix), "--csv", str(prefix),
            "--window-file", str(_file(prefix, ".window.json")),
            profile.user_class, *profile.locust_args]


@dataclass
class Entry:
    """One Locust statistics entry (one request type and name)."""

    method: str
    name: str
    requests: int
    failures: int
    total_ms: float
    max_ms: float
    content_bytes: int
    start: float
    last: float
    histogram: dict[int, int]

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Entry:
        return cls(
            method=str(raw["method"]), name=str(raw["name"]),
            requests=int(raw["num_requests"]), failures=int(raw["num_failures"]),
            total_ms=float(raw["total_response_time"]),
            max_ms=float(raw["max_response_time"] or 0.0),
            content_bytes=int(raw["total_content_length"]), start=float(raw["start_time"]),
            last=float(raw["last_request_timestamp"] or raw["start_time"]),
            histogram={int(float(k)): int(v) for k, v in raw["response_times"].items()},
        )


def percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """Nearest-rank percentile of a {value: count} histogram."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = max(math.ceil(q * total), 1)
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return float(value)
    return float(max(histogram))


def merged(histograms: Iterable[Mapping[int, int]]) -> dict[int, int]:
    total: dict[int, int] = {}
    for histogram in histograms:
        for value, count in histogram.items():
            total[value] = total.get(value, 0) + count
    return total


@dataclass
class Latency:
    """avg, p50, p95, p99 and max in ms; ``censored`` names the lower bounds."""

    avg: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    censored: list[str] = field(default_factory=list)


def latency(entries: Sequence[Entry]) -> Latency:
    """Over completed and unfinished requests (see the module's docstring)."""
    count = sum(e.requests for e in entries)
    if not count:
        return Latency()
    unfinished = sum(e.requests for e in entries if e.method == UNFINISHED)
    share = unfinished / count
    histogram = merged(e.histogram for e in entries)
    result = Latency(avg=sum(e.total_ms for e in entries) / count,
                     max=max(e.max_ms for e in entries))
    for key, q in QUANTILES.items():
        setattr(result, key, percentile(histogram, q))
        if share > 1 - q:
            result.censored.append(key)
    if share > AVERAGE_CENSOR_SHARE:
        result.censored.insert(0, "avg")
    return result


@dataclass
class LocustResult:
    """One Locust run as the report needs it."""

    requests: int  # completed (including failed) after the statistics reset
    failures: int
    unfinished: int
    window_s: float
    bytes: int  # of completed requests, plus what those in flight had received
    latency: Latency
    by_name: dict[str, dict[str, Any]]
    errors: list[dict[str, Any]]

    @property
    def error_rate(self) -> float | None:
        return self.failures / self.requests if self.requests else None


def by_name(entries: Sequence[Entry]) -> dict[str, dict[str, Any]]:
    """Per statistics name (e.g. small, medium, large): counts and latency."""
    names = sorted({e.name for e in entries})
    rows = {}
    for name in names:
        mine = [e for e in entries if e.name == name]
        done = [e for e in mine if e.method != UNFINISHED]
        lat = latency(mine)
        rows[name] = {"requests": sum(e.requests for e in done),
                      "failures": sum(e.failures for e in done),
                      "unfinished": sum(e.requests for e in mine if e.method == UNFINISHED),
                      "avg_ms": lat.avg, "p95_ms": lat.p95, "censored": lat.censored}
    return rows


def summarize(entries: Sequence[Entry], errors: list[dict[str, Any]],
              window_s: float) -> LocustResult:
    """One run's figures; ``window_s`` is the time from the statistics reset to the stop."""
    done = [e for e in entries if e.method != UNFINISHED]
    return LocustResult(
        requests=sum(e.requests for e in done), failures=sum(e.failures for e in done),
        unfinished=sum(e.requests for e in entries if e.method == UNFINISHED),
        window_s=window_s, bytes=sum(e.content_bytes for e in entries),
        latency=latency(entries), by_name=by_name(entries), errors=errors,
    )


def read_failures(path: Path, limit: int = 5) -> list[dict[str, Any]]:
    """The most frequent error messages of ``<prefix>_failures.csv``."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: -int(r["Occurrences"]))
    return [{"name": r["Name"], "error": r["Error"], "count": int(r["Occurrences"])}
            for r in rows[:limit]]


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LabError(f"Locust wrote no {what} ({path}): {exc}") from exc


def read_result(prefix: Path) -> LocustResult:
    """Parse ``<prefix>.json``, ``<prefix>.window.json`` and ``<prefix>_failures.csv``."""
    entries = [Entry.from_json(item) for item in _read_json(_file(prefix, ".json"), "statistics")]
    window = _read_json(_file(prefix, ".window.json"), "window")
    return summarize(entries, read_failures(_file(prefix, "_failures.csv")),
                     float(window["stop"]) - float(window["reset"]))


def _file(prefix: Path, suffix: str) -> Path:
    return prefix.with_name(prefix.name + suffix)
