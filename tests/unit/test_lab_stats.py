"""The lab reads its clients' statistics: Locust's JSON and failures CSV, wrk's output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from geojson_api.lab import LabError
from geojson_api.lab.locustrun import (
    Entry,
    latency,
    locust_command,
    percentile,
    read_result,
    summarize,
)
from geojson_api.lab.matrix import Scenario
from geojson_api.lab.targets import lab_file
from geojson_api.lab.wrk import parse_wrk


def entry(method: str, name: str, histogram: dict[str, int], *, failures: int = 0,
          start: float = 1000.0, last: float = 1004.0, size: int = 50_000) -> dict[str, Any]:
    """One entry as Locust's --json-file writes it."""
    count = sum(histogram.values())
    return {"name": name, "method": method, "last_request_timestamp": last,
            "start_time": start, "num_requests": count, "num_none_requests": 0,
            "num_failures": failures,
            "total_response_time": float(sum(int(k) * v for k, v in histogram.items())),
            "max_response_time": float(max(int(k) for k in histogram)),
            "min_response_time": float(min(int(k) for k in histogram)),
            "total_content_length": size * count, "response_times": histogram,
            "num_reqs_per_sec": {}, "num_fail_per_sec": {}}


RUN = [
    entry("GET", "small", {"10": 6, "20": 2, "30": 1}, failures=1),
    entry("GET", "large", {"400": 1}, size=50_000_000),
    entry("UNFINISHED", "large", {"5000": 1}, start=1001.0, last=1005.0, size=20_000_000),
]


def test_percentile_is_nearest_rank() -> None:
    histogram = {10: 6, 20: 2, 30: 1, 400: 1}
    assert percentile(histogram, 0.5) == 10
    assert percentile(histogram, 0.7) == 20
    assert percentile(histogram, 0.95) == 400
    assert percentile({}, 0.5) is None


def test_summary_counts_requests_in_flight_apart_and_as_lower_bounds() -> None:
    result = summarize([Entry.from_json(e) for e in RUN], errors=[], window_s=5.0)
    assert (result.requests, result.failures, result.unfinished) == (10, 1, 1)
    assert result.error_rate == pytest.approx(0.1)
    assert result.bytes == 9 * 50_000 + 50_000_000 + 20_000_000
    lat = result.latency
    assert lat.avg == pytest.approx((60 + 40 + 30 + 400 + 5000) / 11)
    assert (lat.p50, lat.p95, lat.max) == (10, 5000, 5000)
    # 1 of 11 requests (9 %) still in flight: the average, p95 and p99 are lower bounds;
    # the median is not (fewer than half the requests are in flight).
    assert lat.censored == ["avg", "p95", "p99"]
    assert result.by_name["large"] == {"requests": 1, "failures": 0, "unfinished": 1,
                                       "avg_ms": 2700.0, "p95_ms": 5000.0,
                                       "censored": ["avg", "p95", "p99"]}


def test_no_requests_in_flight_means_exact_figures() -> None:
    lat = latency([Entry.from_json(RUN[0])])
    assert lat.censored == [] and lat.p50 == 10


def test_read_result_with_failures(tmp_path: Path) -> None:
    prefix = tmp_path / "001-stack-10u-mixed"
    (tmp_path / "001-stack-10u-mixed.json").write_text(json.dumps(RUN))
    (tmp_path / "001-stack-10u-mixed.window.json").write_text('{"reset": 1000.5, "stop": 1005}')
    (tmp_path / "001-stack-10u-mixed_failures.csv").write_text(
        "Method,Name,Error,Occurrences\n"
        "GET,small,\"HTTPError('503 Server Error')\",1\n"
        "GET,large,ConnectionResetError(104),7\n")
    result = read_result(prefix)
    assert result.requests == 10 and result.window_s == 4.5
    assert [e["count"] for e in result.errors] == [7, 1]
    assert result.errors[0]["error"] == "ConnectionResetError(104)"


def test_missing_statistics_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="Locust wrote no statistics"):
        read_result(tmp_path / "none")
    (tmp_path / "none.json").write_text(json.dumps(RUN))
    with pytest.raises(LabError, match="Locust wrote no window"):
        read_result(tmp_path / "none")


def test_locust_command_ramps_and_resets() -> None:
    argv = locust_command(lab_file("locustfile.py"), "http://127.0.0.1:1",
                          Scenario("locust", "large", 200, 2, 5), Path("/tmp/x"))
    text = " ".join(argv)
    assert "--users 200 --spawn-rate 66.6667 --run-time 7s --reset-stats" in text
    assert argv[-5:] == ["--window-file", "/tmp/x.window.json", "StudyUser", "--mix", "large"]


WRK_OUTPUT = """\
Running 3s test @ http://127.0.0.1:43463/geojson/small
  2 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    11.54ms    3.49ms  28.01ms   75.23%
    Req/Sec   431.73     54.23   550.00     67.50%
  Latency Distribution
     50%   10.97ms
     75%   13.24ms
     90%   16.06ms
     99%    1.20s
  1726 requests in 2.01s, 82.33MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:    858.57
Transfer/sec:     40.95MB
"""


def test_parse_wrk() -> None:
    stats = parse_wrk(WRK_OUTPUT)
    assert stats.requests == 1726 and stats.seconds == pytest.approx(2.01)
    assert stats.average_ms == pytest.approx(11.54)
    assert stats.latency_ms["p50"] == pytest.approx(10.97)
    assert stats.latency_ms["p99"] == pytest.approx(1200)
    assert stats.mb_per_s == pytest.approx(40.95 * 2**20 / 1e6)
    assert stats.errors == 2 + 1 + 4


def test_parse_wrk_rejects_other_output() -> None:
    with pytest.raises(LabError, match="cannot find"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")
