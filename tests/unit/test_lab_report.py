"""The lab's report: JSON and CSV of every run, the study's tables, the two graphs."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from geojson_api.lab import report, tables
from geojson_api.lab.results import RunResult

from ..conftest import require_module

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def row(index: int, target: str, users: int, profile: str, client: str = "locust",
        **overrides: Any) -> RunResult:
    name = f"wrk-{users}c-{profile}" if client == "wrk" else f"{users}u-{profile}"
    values: dict[str, Any] = dict(
        index=index, scenario=name, profile=profile, users=users, client=client,
        target=target, started="2026-11-21T16:00:00+00:00", ramp_s=2, measure_s=5,
        window_s=5.0, requests=100, failures=0, unfinished=0, error_rate=0.0, rps=20.0,
        mb_per_s=1000.0, avg_ms=100.0, p50_ms=90.0, p95_ms=200.0, p99_ms=300.0,
        max_ms=400.0, target_idle_rss=40_000_000, target_peak_rss=60_000_000,
        target_peak_cpu=150.0, target_avg_cpu=80.0, target_processes=3,
        client_avg_cpu=50.0, client_peak_cpu=90.0, other_cpu=12.0, loadavg=0.5)
    values.update(overrides)
    return RunResult(**values)


RESULTS = [
    row(1, "devserver", 200, "large", avg_ms=8000.0, p95_ms=12000.0, rps=10.0,
        mb_per_s=500.0, error_rate=0.02, failures=2, unfinished=150,
        censored=["avg", "p95", "p99"], target_peak_rss=3_900_000_000,
        stopped_by_guard="target RSS 4,100 MB passed the limit of 4,000 MB",
        errors=[{"name": "large", "error": "ConnectionResetError(104)", "count": 2}]),
    row(2, "stack", 200, "large", avg_ms=4000.0, p95_ms=6000.0, rps=40.0, mb_per_s=2000.0),
    row(3, "nginx", 200, "large", avg_ms=3500.0, p95_ms=5500.0, rps=44.0, mb_per_s=2200.0),
    row(4, "stack", 200, "large", client="wrk", p95_ms=None, rps=38.0, mb_per_s=1900.0),
    row(5, "nginx", 300, "small", rps=150.0, avg_ms=1.5, error_rate=0.0),
    row(6, "devserver", 300, "small", rps=140.0, avg_ms=30.0, error_rate=0.031,
        failures=13, unfinished=4),
    row(7, "gunicorn", 10, "small", rps=5.0, avg_ms=2.0),
]


def meta(complete: bool = True) -> dict[str, Any]:
    machine = {"date": "2026-11-21T16:00:00+00:00", "nproc": 2, "cpu_model": "AMD EPYC",
               "mem_total_bytes": 25_300_000_000, "os": "Debian GNU/Linux 12 (bookworm)",
               "kernel": "6.18", "python": "3.11.7", "flask": "3.1.3", "werkzeug": "3.1.8",
               "gunicorn": "27.0.1", "locust": "2.47.0", "nginx": "nginx/1.22.1",
               "wrk": "wrk 4.1.0", "redis": "Redis 7.0.15", "uptime": "up 2:31",
               "loadavg_at_start": [1.5, 0.8, 0.6]}
    scenarios = [{"name": r.scenario, "client": r.client, "profile": r.profile,
                  "users": r.users, "ramp_s": r.ramp_s, "measure_s": r.measure_s}
                 for r in RESULTS]
    plan = {"quick": False, "targets": ["devserver", "gunicorn", "stack", "nginx"],
            "scenarios": scenarios, "max_target_rss": 4_000_000_000,
            "sample_interval_s": 0.5, "cool_down_s": [0.5, 5.0]}
    targets = [{"name": "stack", "url": "http://127.0.0.1:1", "pids": [11, 12],
                "has_api": True, "startup_seconds": 2.0}]
    return {"machine": machine, "plan": plan, "complete": complete,
            "error": None if complete else "interrupted before the end",
            "wall_seconds": 720.0, "targets": targets}


def test_formatting() -> None:
    assert [tables.fmt(v) for v in (None, 0.456, 12.34, 1740.0)] == ["-", "0.46", "12.3",
                                                                     "1,740"]
    assert [tables.pct(v) for v in (None, 0.0, 0.157)] == ["-", "0 %", "15.7 %"]
    assert tables.factor(2600, 115) == "22.6x" and tables.factor(None, 1) == "-"
    assert report.latency(RESULTS[0], "avg") == "≥ 8,000"
    assert report.latency(RESULTS[1], "avg") == "4,000"


def test_tables_put_the_studys_numbers_beside_ours() -> None:
    text = report.document(meta(), RESULTS)
    assert "**Date:** 2026-11-21" in text and "2 cores (AMD EPYC)" in text
    assert "**Load average at the start:** 1.50, 0.80, 0.60" in text
    assert "12.0 minutes" in text and "large (locust) 5 s" in text
    table1 = text.split("## Table 1")[1].split("## Table 2")[0]
    assert ("| 200 users · large | study (its 2 vCPU VM) | 2,600 | - | 38.0 | 1,900 | 15.7 %"
            in table1)
    assert ("|  | devserver · Locust | ≥ 8,000 | ≥ 12,000 | 10.0 | 500 "
            "| 2.0 % (stopped: memory) | 150 |" in table1)
    table2 = text.split("## Table 2")[1].split("## Table 3")[0]
    assert "| 200 users · large | study's claim | 115 | - | 1,740 | 87,000 | 0 % |" in table2
    # wrk counts no requests in flight: "-".
    assert "**stack** · wrk | 100 | - | 38.0 | 1,900 | 0 % | - |" in table2
    table3 = text.split("## Table 3")[1].split("## Error rates")[0]
    assert "| study: factor | 22.6x | - | 45.8x | 45.8x |" in table3
    # Ours: latency 8,000 -> 4,000 ms, 10 -> 40 req/s, 500 -> 2,000 MB/s.
    # The dev server's run was stopped by the memory guard: no factor from partial figures.
    assert "| ours · Locust: factor, stack vs devserver | (stopped: memory) | - |" in table3
    unstopped = [RESULTS[0].__class__(**{**RESULTS[0].as_dict(), "stopped_by_guard": None}),
                 *RESULTS[1:]]
    table3 = report.table3(unstopped)
    # Its latency is a lower bound (requests in flight): so is the factor.
    assert "| ours · Locust: factor, stack vs devserver | ≥ 2.0x | ≥ 2.0x | 4.0x | 4.0x |" in table3
    assert "implies 87 GB/s" in text and "was 2.20 GB/s: the claim is 40x" in text


def test_error_rates_at_300_users_and_guard_notes() -> None:
    text = report.document(meta(), RESULTS)
    section = text.split("## Error rates at 300 users")[1].split("## Graphs")[0]
    assert "| Profile | devserver | nginx |" in section
    assert "| small | 3.1 % (4 in flight) | 0 % (0 in flight) |" in section
    assert "#1 200u-large · devserver: target RSS 4,100 MB passed the limit" in text
    assert "#1 200u-large · devserver: 2x ConnectionResetError(104)" in text
    assert "client CPU avg / peak | others' CPU |" in text and "| 50 / 90 % | 12 % |" in text
    assert "INCOMPLETE" not in text
    assert "**INCOMPLETE RUN**: interrupted" in report.document(meta(False), RESULTS)


def test_write_report_round_trips(tmp_path: Path) -> None:
    require_module("matplotlib")
    paths = report.write_report(tmp_path, meta(), RESULTS)
    assert [p.name for p in paths] == ["report.md", "runs.json", "runs.csv",
                                       "latency-vs-users.png", "throughput-vs-users.png"]
    for png in paths[3:]:
        assert png.read_bytes().startswith(PNG_MAGIC) and png.stat().st_size > 10_000
    loaded_meta, loaded = report.load(tmp_path / "runs.json")
    assert loaded == RESULTS and loaded_meta["plan"]["quick"] is False
    with open(tmp_path / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(RESULTS) and rows[0]["target"] == "devserver"
    assert rows[0]["censored"] == "avg p95 p99"
    assert rows[0]["top_error"] == "2x ConnectionResetError(104)"
    assert "![Latency vs users](latency-vs-users.png)" in (tmp_path / "report.md").read_text()


def test_rebuild_rewrites_the_report_from_runs_json(tmp_path: Path) -> None:
    require_module("matplotlib")
    from geojson_api.cli import main

    report.write_report(tmp_path, meta(), RESULTS)
    (tmp_path / "report.md").unlink()
    assert main(["bench", "--rebuild", "--out", str(tmp_path)]) == 0
    assert "## Table 3" in (tmp_path / "report.md").read_text()
    assert main(["bench", "--rebuild", "--out", str(tmp_path / "none")]) == 1


@pytest.mark.parametrize("key", ["avg_ms", "rps"])
def test_graph_series_leave_out_missing_values(key: str) -> None:
    from geojson_api.lab.graphs import series

    rows = [row(1, "stack", 50, "large"), row(2, "stack", 10, "large"),
            row(3, "stack", 100, "large", **{key: None}), row(4, "stack", 10, "large", "wrk")]
    users, values = series(rows, "large", "stack", key)
    assert users == [10, 50]
    assert values == [getattr(rows[1], key), getattr(rows[0], key)]
