"""The real stack with a real Prometheus: ``geojson-api stack up --with-monitoring``.

After a short bounded load over several routes (some answered 4xx) and the
publication of a new dataset (so that its builds and jobs are counted), the
test waits until Prometheus has scraped every target twice since and
evaluated its rules, then runs through Prometheus's HTTP query API:

- ``up`` of every scrape job: each target answers;
- every recording rule, as recorded and as an expression;
- every alert expression (it must run; when healthy it is often empty, so the
  series it is computed from, listed in ``INNER``, must return data);
- every query of every dashboard panel, with Grafana's variables filled in.

Each must return data, so a metric renamed in the app or misspelt in a rule
or a panel fails here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from geojson_api.sample import write_samples

from ..conftest import require
from ..unit.test_monitoring import (
    JOBS,
    alerts,
    metric_names,
    panel_queries,
    recordings,
)
from .servers import free_port
from .test_ogc_clients import wait_index

pytestmark = pytest.mark.integration

TIMEOUT = 30
SCRAPE_WAIT = 120.0  # generous: the stack scrapes every 5 s
INSTANCES = 2

# What each alert is computed from, which returns data on a healthy stack
# after the load (the alert's own expression is then usually empty). The
# names each one reads must be names its alert reads (checked below).
INNER = {
    "GeojsonApiHighErrorRate": ["job:geojson_api_http_errors:ratio_rate5m"],
    "GeojsonApiSlowResponses": ["route:geojson_api_http_request_duration_seconds:p95_5m",
                                "route:geojson_api_http_requests:rate5m"],
    "GeojsonApiInstanceDown": ['up{job=~"geojson-api|geojson-api-worker|nginx|redis"}'],
    "GeojsonApiInstancesMissing": ['up{job="geojson-api"}'],
    "GeojsonApiNginxDown": ["nginx_up"],
    "GeojsonApiRedisDown": ["redis_up"],
    "GeojsonApiCacheBackoff": ['max(geojson_api_cache_backoff{job="geojson-api"})'],
    "GeojsonApiCacheBackoffFlapping": [
        'sum(increase(geojson_api_cache_backoffs_total{job="geojson-api"}[30m]))'],
    "GeojsonApiArtifactBuildFailures": [
        "sum by (artifact) (increase(geojson_api_artifact_builds_total[30m]))"],
    "GeojsonApiJobsFailing": [
        "sum by (artifact) (increase(geojson_api_jobs_finished_total[30m]))"],
    "GeojsonApiPublishFailures": ["sum(increase(geojson_api_publish_total[30m]))"],
    "GeojsonApiJobQueueBacklog": ["max(geojson_api_jobs_queue_depth)"],
    "GeojsonApiWorkerRestarts": [
        'sum by (instance) (increase(geojson_api_worker_restarts_total{job="geojson-api"}[15m]))'],
    "GeojsonApiMemoryGrowth": [
        'predict_linear(geojson_api_process_resident_memory_bytes{role="worker"}[6h], 86400)',
        'geojson_api_process_resident_memory_bytes{role="worker"}'],
    "GeojsonApiMemoryHigh": ['geojson_api_process_resident_memory_bytes{role="worker"}'],
}

# (path, status) pairs of the load: every route family, and client errors.
LOAD = [
    ("/geojson/small", 200),
    ("/api/datasets", 200),
    ("/collections", 200),
    ("/collections/small", 200),
    ("/collections/small/items?limit=5", 200),
    ("/collections/small/items?bbox=-180,-90,180,90&limit=2", 200),
    ("/collections/small/items?limit=lots", 400),
    ("/geojson/missing", 404),
    ("/collections/missing/items", 404),
]
ROUNDS = 35  # 315 requests


@dataclass
class Monitored:
    url: str
    prometheus: str
    run_dir: Path
    data_dir: Path
    requests_sent: int = 0


def _stack(*args: str, env: dict[str, str] | None = None, timeout: float = 180
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "geojson_api", "stack", *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=False)


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    for program in ("nginx", "redis-server", "prometheus", "prometheus-nginx-exporter",
                    "prometheus-redis-exporter"):
        require(program)
    data_dir = tmp_path_factory.mktemp("monitored-data")
    write_samples(data_dir, ["small"])
    run_dir = tmp_path_factory.mktemp("stack-monitored")
    started = _stack("up", "--data", str(data_dir), "--run-dir", str(run_dir),
                     "--port", str(free_port()), "--instances", str(INSTANCES),
                     "--with-monitoring",
                     env={"GEOJSON_API_WORKERS": "2", "GEOJSON_API_NGINX_RATE": "100000r/s",
                          "GEOJSON_API_NGINX_BURST": "100000"})
    try:
        assert started.returncode == 0, started.stderr
        parts = {p["name"]: p for p in json.loads((run_dir / "stack.json").read_text())["parts"]}
        prometheus = f"http://127.0.0.1:{parts['prometheus']['port']}"
        assert f"prometheus: {prometheus}" in started.stderr
        stack = Monitored(started.stdout.strip(), prometheus, run_dir, data_dir)
        _load(stack)
        _wait_for_two_scrapes_and_rules(prometheus)
        yield stack
    finally:
        _stack("down", "--run-dir", str(run_dir), timeout=120)


MONITORING_PARTS = ("redis-exporter", "nginx-exporter", "prometheus")


def test_status_reports_the_monitoring_parts(monitored: Monitored) -> None:
    status = _stack("status", "--run-dir", str(monitored.run_dir), timeout=60)
    states = {line.split()[0]: line.split()[-1] for line in status.stdout.splitlines()}
    assert {name: states.get(name) for name in MONITORING_PARTS} == dict.fromkeys(
        MONITORING_PARTS, "healthy")
    for name in MONITORING_PARTS:
        assert f"127.0.0.1:{_part(monitored, name)['port']}" in _listening()


def _part(stack: Monitored, name: str) -> dict[str, Any]:
    parts = json.loads((stack.run_dir / "stack.json").read_text())["parts"]
    (part,) = [p for p in parts if p["name"] == name]
    return part  # type: ignore[no-any-return]


def _listening() -> set[str]:
    """HOST:PORT of every listening IPv4 TCP socket, from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A":  # LISTEN
            address, port = local.split(":")
            host = ".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0))
            found.add(f"{host}:{int(port, 16)}")
    return found


def _load(stack: Monitored) -> None:
    """The bounded load, then a dataset published while the stack runs."""
    with requests.Session() as session:
        for _ in range(ROUNDS):
            for path, status in LOAD:
                answer = session.get(stack.url + path, timeout=TIMEOUT)
                assert answer.status_code == status, (path, answer.text[:200])
                stack.requests_sent += 1
    shutil.copyfile(stack.data_dir / "small.geojson", stack.data_dir / "fresh.geojson")
    wait_index(stack.url, "fresh", timeout=120)
    items = requests.get(f"{stack.url}/collections/fresh/items?limit=3", timeout=TIMEOUT)
    assert items.status_code == 200
    stack.requests_sent += 1


def _time(stamp: str) -> float:
    """An RFC 3339 time as Prometheus writes it (up to nanoseconds) in seconds."""
    trimmed = re.sub(r"(\.\d{6})\d*", r"\1", stamp).replace("Z", "+00:00")
    return datetime.fromisoformat(trimmed).timestamp()


def _api(prometheus: str, path: str, **params: str) -> Any:
    answer = requests.get(f"{prometheus}/api/v1/{path}", params=params, timeout=TIMEOUT)
    body = answer.json()
    assert answer.status_code == 200 and body["status"] == "success", (path, params, body)
    return body["data"]


def _wait_for_two_scrapes_and_rules(prometheus: str) -> None:
    """Until every target was scraped twice after now, and every rule group evaluated."""
    since = time.time()
    deadline = time.monotonic() + SCRAPE_WAIT
    for _ in range(2):
        while True:
            targets = _api(prometheus, "targets")["activeTargets"]
            scraped = [_time(t["lastScrape"]) for t in targets]
            if targets and min(scraped) > since:
                since = max(scraped)
                break
            assert time.monotonic() < deadline, f"not every target was scraped: {targets}"
            time.sleep(0.5)
    while True:
        groups = _api(prometheus, "rules")["groups"]
        if groups and min(_time(g["lastEvaluation"]) for g in groups) > since:
            return
        assert time.monotonic() < deadline, f"rules were not evaluated: {groups}"
        time.sleep(0.5)


def query(stack: Monitored, expr: str) -> list[dict[str, Any]]:
    """Run an instant query; any error fails (the result may be empty)."""
    data = _api(stack.prometheus, "query", query=expr)
    assert data["resultType"] in {"vector", "scalar"}, (expr, data)
    result: list[dict[str, Any]] = (data["result"] if data["resultType"] == "vector"
                                    else [{"value": data["result"]}])
    return result


def has_data(stack: Monitored, expr: str) -> list[dict[str, Any]]:
    result = query(stack, expr)
    assert result, f"no data: {expr}"
    return result


# -- every part is scraped ------------------------------------------------------------


@pytest.mark.parametrize("job", JOBS)
def test_every_target_of_the_job_is_up(monitored: Monitored, job: str) -> None:
    result = has_data(monitored, f'up{{job="{job}"}}')
    assert {r["metric"]["instance"]: r["value"][1] for r in result} == {
        r["metric"]["instance"]: "1" for r in result}
    if job == "geojson-api":
        assert len(result) == INSTANCES


def test_nginx_exporter_counted_the_load(monitored: Monitored) -> None:
    (total,) = has_data(monitored, 'sum(nginx_http_requests_total{job="nginx"})')
    assert float(total["value"][1]) >= monitored.requests_sent


def test_redis_exporter_sees_the_apps_connections(monitored: Monitored) -> None:
    (clients,) = has_data(monitored, 'redis_connected_clients{job="redis"}')
    assert float(clients["value"][1]) >= 1  # the exporter itself, at least


# -- every expression of the rules and of the dashboard -----------------------------------


def _every_expression() -> list[tuple[str, str]]:
    found = [(rule["record"], rule["expr"]) for rule in recordings()]
    found += [(rule["alert"], rule["expr"]) for rule in alerts()]
    found += [(f"{name} inner {n}", expr) for name, inner in INNER.items()
              for n, expr in enumerate(inner)]
    return found + panel_queries()


@pytest.mark.parametrize(("where", "expr"), _every_expression(),
                         ids=[where for where, _ in _every_expression()])
def test_expression_runs(monitored: Monitored, where: str, expr: str) -> None:
    """No error from Prometheus (an alert condition may well be empty)."""
    query(monitored, expr)


@pytest.mark.parametrize("rule", recordings(), ids=lambda r: r["record"])
def test_recording_rule_has_data(monitored: Monitored, rule: dict[str, Any]) -> None:
    has_data(monitored, rule["record"])
    has_data(monitored, rule["expr"])


def test_inner_series_cover_every_alert() -> None:
    """INNER has an entry per alert, reading only what that alert reads."""
    by_name = {rule["alert"]: rule for rule in alerts()}
    assert set(INNER) == set(by_name)
    for name, inner in INNER.items():
        read = metric_names(by_name[name]["expr"])
        for expr in inner:
            assert metric_names(expr) <= read, (name, expr)


@pytest.mark.parametrize("name", sorted(INNER))
def test_alert_series_have_data(monitored: Monitored, name: str) -> None:
    for expr in INNER[name]:
        has_data(monitored, expr)


@pytest.mark.parametrize(("where", "expr"), panel_queries(),
                         ids=[where for where, _ in panel_queries()])
def test_dashboard_query_has_data(monitored: Monitored, where: str, expr: str) -> None:
    has_data(monitored, expr)


# -- last: stopping -------------------------------------------------------------------


def test_down_stops_the_monitoring_parts(monitored: Monitored) -> None:
    """Last in this module (pytest keeps file order): it stops the shared stack."""
    pids = [int(_part(monitored, name)["pid"]) for name in MONITORING_PARTS]
    down = _stack("down", "--run-dir", str(monitored.run_dir), timeout=120)
    assert down.returncode == 0, down.stderr
    for name in MONITORING_PARTS:
        assert f"{name}: stopped" in down.stdout
    assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []
