"""deploy/prometheus and deploy/grafana, offline.

The rules pass ``promtool check rules`` and their tests ``promtool test
rules``; every alert is tested both firing and not firing; the Prometheus
configurations (compose, Kubernetes, the local stack's template) pass
``promtool check config``; the Grafana dashboard is well formed, its
expressions parse, and its panels cover every KPI of issue #13 using only the
metric names of docs/operations.md (Metrics) and of the two exporters. The same expressions
run against a real Prometheus in tests/integration/test_monitoring.py.
"""

from __future__ import annotations

import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from geojson_api.cli import main
from geojson_api.nginxconf import STATUS_LISTEN, STATUS_PATH, render_site, write_standalone
from geojson_api.settings import Settings
from geojson_api.stack import MonitoringPorts, Part, render_prometheus_config

from ..conftest import require

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules.yml"
RULE_TESTS = PROMETHEUS / "rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "geojson-api.json"

# The app's metric names and their types (docs/operations.md, "The metrics").
CONTRACT = {
    "geojson_api_http_requests_total": "counter",
    "geojson_api_http_request_duration_seconds": "histogram",
    "geojson_api_http_requests_in_flight": "gauge",
    "geojson_api_http_response_bytes_total": "counter",
    "geojson_api_datasets": "gauge",
    "geojson_api_dataset_bytes": "gauge",
    "geojson_api_dataset_features": "gauge",
    "geojson_api_publish_total": "counter",
    "geojson_api_artifacts": "gauge",
    "geojson_api_artifact_builds_total": "counter",
    "geojson_api_artifact_build_duration_seconds": "histogram",
    "geojson_api_cache_requests_total": "counter",
    "geojson_api_cache_backoff": "gauge",
    "geojson_api_cache_backoffs_total": "counter",
    "geojson_api_jobs_submitted_total": "counter",
    "geojson_api_jobs_finished_total": "counter",
    "geojson_api_job_duration_seconds": "histogram",
    "geojson_api_jobs_queue_depth": "gauge",
    "geojson_api_process_cpu_seconds_total": "counter",
    "geojson_api_process_resident_memory_bytes": "gauge",
    "geojson_api_process_open_fds": "gauge",
    "geojson_api_worker_restarts_total": "counter",
    "geojson_api_build_info": "gauge",
}
# The exporters' standard names the contract allows, and Prometheus's own `up`.
EXPORTER_NAMES = {"nginx_up", "nginx_connections_active", "nginx_http_requests_total",
                  "redis_up", "redis_connected_clients", "redis_memory_used_bytes", "up"}
JOBS = ("geojson-api", "geojson-api-worker", "nginx", "redis")
SEVERITIES = {"warning", "critical"}

# The KPIs of the issue, each with the names a panel must show it by.
KPIS = {
    "average response time": {"geojson_api_http_request_duration_seconds_sum",
                              "geojson_api_http_request_duration_seconds_count"},
    "p95 response time": {"geojson_api_http_request_duration_seconds_bucket"},
    "error rate": {"geojson_api_http_requests_total",
                   "job:geojson_api_http_errors:ratio_rate5m"},
    "throughput": {"geojson_api_http_requests_total", "geojson_api_http_response_bytes_total",
                   "nginx_http_requests_total"},
    "CPU": {"geojson_api_process_cpu_seconds_total"},
    "memory per worker": {"geojson_api_process_resident_memory_bytes",
                          "instance_pid:geojson_api_process_resident_memory_bytes:deriv1h"},
    "concurrent users": {"geojson_api_http_requests_in_flight", "nginx_connections_active"},
    "open files": {"geojson_api_process_open_fds"},
    "cache": {"geojson_api_cache_requests_total", "geojson_api_cache_backoff",
              "geojson_api_cache_backoffs_total"},
    "builds and jobs": {"geojson_api_artifacts", "geojson_api_artifact_builds_total",
                        "geojson_api_artifact_build_duration_seconds_bucket",
                        "geojson_api_jobs_submitted_total", "geojson_api_jobs_finished_total",
                        "geojson_api_job_duration_seconds_bucket"},
    "queue depth": {"geojson_api_jobs_queue_depth"},
    "datasets": {"geojson_api_datasets", "geojson_api_dataset_bytes",
                 "geojson_api_dataset_features", "geojson_api_publish_total"},
    "worker restarts": {"geojson_api_worker_restarts_total"},
    "Redis and Nginx up": {"up", "nginx_up", "redis_up", "redis_connected_clients",
                           "redis_memory_used_bytes"},
}

# What Grafana puts in place of its variables, for running a panel's query elsewhere.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "5m", "$job": ".+",
                     "$instance": ".+"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "bool", "offset", "inf", "nan"}


# -- reading the files (also used by tests/integration/test_monitoring.py) ---------------

@cache
def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return groups


def rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def recordings() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "record" in rule]


@cache
def dashboard() -> dict[str, Any]:
    model: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return model


def panels() -> list[dict[str, Any]]:
    """Every panel but the rows (which only group the ones below them)."""
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def grafana_to_promql(expr: str) -> str:
    for variable in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(variable, GRAFANA_VARIABLES[variable])
    assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
    return expr


def panel_queries() -> list[tuple[str, str]]:
    """(panel title and refId, the query as Prometheus runs it) for every target."""
    return [(f"{panel['title']} [{target['refId']}]", grafana_to_promql(target["expr"]))
            for panel in panels() for target in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads (not its functions or labels)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ",
                  text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[a-zA-Z_:][\w:]*", text):
        if text[match.end():].lstrip().startswith("("):  # a function or an aggregation
            continue
        if match.group() not in KEYWORDS:
            names.add(match.group())
    return names


def known_names() -> set[str]:
    names = set(EXPORTER_NAMES) | {rule["record"] for rule in recordings()}
    for name, kind in CONTRACT.items():
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def _promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require("promtool"), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120, check=False)


# -- the rules ------------------------------------------------------------------------


def test_promtool_checks_the_rules() -> None:
    checked = _promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout


def test_promtool_runs_the_rule_tests() -> None:
    tested = _promtool("test", "rules", RULE_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_rule_tests_fail_when_a_rule_changes(tmp_path: Path) -> None:
    """The tests are not vacuous: a threshold moved makes promtool fail."""
    changed = RULES.read_text().replace("> 0.05", "> 0.5", 1)
    assert changed != RULES.read_text()
    (tmp_path / RULES.name).write_text(changed)
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    tested = _promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert tested.returncode != 0 and "GeojsonApiHighErrorRate" in tested.stdout + tested.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing, quiet = set(), set()
    for group in tests:
        for case in group.get("alert_rule_test", []):
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - firing == set(), "never shown firing"
    assert names - quiet == set(), "never shown quiet"
    assert firing | quiet <= names, "a test names an alert that does not exist"
    tested_records = {case["expr"].split("{")[0] for group in tests
                      for case in group.get("promql_expr_test", [])}
    assert {rule["record"] for rule in recordings()} <= tested_records


def test_alerts_wait_carry_a_severity_and_say_what_to_do() -> None:
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names))
    for rule in alerts():
        name = rule["alert"]
        assert name.startswith("GeojsonApi"), name
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name}: no `for`"
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert set(rule["annotations"]) == {"summary", "description"}, name
        assert all(text.strip() for text in rule["annotations"].values()), name


def test_an_instance_down_alert_covers_each_job() -> None:
    (down,) = [r for r in alerts() if r["alert"] == "GeojsonApiInstanceDown"]
    jobs = re.search(r'up\{job=~"([^"]+)"\} == 0', down["expr"])
    assert jobs is not None and set(jobs.group(1).split("|")) == set(JOBS)


def test_the_latency_alert_is_the_studys_budget() -> None:
    (slow,) = [r for r in alerts() if r["alert"] == "GeojsonApiSlowResponses"]
    assert "p95" in slow["expr"] and "> 0.5" in slow["expr"]


def test_rules_use_only_names_of_the_contract_and_the_exporters() -> None:
    known = known_names()
    for rule in rules():
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, f"{rule.get('alert') or rule.get('record')}: {sorted(unknown)}"


# -- Prometheus configurations --------------------------------------------------------


def test_compose_scrape_config_passes_promtool() -> None:
    checked = _promtool("check", "config", "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_kubernetes_scrape_config_passes_promtool(tmp_path: Path) -> None:
    """Debian's promtool is built without Kubernetes discovery: the check runs on a
    copy whose discovery is an empty static list, which keeps every relabelling."""
    config = yaml.safe_load((PROMETHEUS / "kubernetes.yml").read_text())
    assert {job["job_name"] for job in config["scrape_configs"]} == {"geojson-api", "nginx",
                                                                     "redis"}
    for job in config["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs")[0]["role"] == "pod"
        job["static_configs"] = [{"targets": []}]
    (tmp_path / "kubernetes.yml").write_text(yaml.safe_dump(config))
    (tmp_path / RULES.name).write_text(RULES.read_text())
    checked = _promtool("check", "config", "kubernetes.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_stacks_config_scrapes_every_part(tmp_path: Path) -> None:
    apps = [Part(f"app{i}", 0, port, "", "gunicorn") for i, port in ((1, 18001), (2, 18002))]
    ports = MonitoringPorts(nginx_status=18081, nginx_exporter=19113, redis_exporter=19121,
                            worker_metrics=19464, prometheus=19090)
    text = render_prometheus_config(tmp_path, apps, ports)
    (tmp_path / "prometheus.yml").write_text(text)
    checked = _promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load(text)
    assert config["rule_files"] == [str(RULES)]
    targets = {job["job_name"]: job["static_configs"][0]["targets"]
               for job in config["scrape_configs"]}
    assert targets == {"geojson-api": ["127.0.0.1:18001", "127.0.0.1:18002"],
                       "geojson-api-worker": ["127.0.0.1:19464"],
                       "nginx": ["127.0.0.1:19113"], "redis": ["127.0.0.1:19121"],
                       "prometheus": ["127.0.0.1:19090"]}


# -- the dashboard --------------------------------------------------------------------


def test_dashboard_panels_have_unique_ids_and_fit_the_grid() -> None:
    every = dashboard()["panels"]
    ids = [p["id"] for p in every]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    taken: set[tuple[int, int]] = set()
    for panel in every:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                 for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_dashboard_panels_query_the_chosen_prometheus() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "instance"):
        assert variables[name]["datasource"]["uid"] == "${datasource}", name
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".+", name
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], f"{panel['title']}: no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"] == panel["datasource"], panel["title"]


def test_dashboard_uses_only_names_of_the_contract_and_the_exporters() -> None:
    known = known_names()
    for where, query in panel_queries():
        names = metric_names(query)
        assert names, f"{where}: reads no series"
        assert not names - known, f"{where}: {sorted(names - known)}"
    for variable in dashboard()["templating"]["list"][1:]:
        series = re.fullmatch(r"label_values\((.+), *\w+\)", variable["definition"])
        assert series is not None, variable["name"]
        assert metric_names(series.group(1)) <= known, variable["name"]


def test_dashboard_covers_every_kpi() -> None:
    shown = set().union(*(metric_names(query) for _, query in panel_queries()))
    missing = {kpi: sorted(names - shown) for kpi, names in KPIS.items() if names - shown}
    assert not missing


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_expression_parses(tmp_path: Path, source: str) -> None:
    """promtool parses each expression as the body of a recording rule."""
    queries = (panel_queries() if source == "dashboard"
               else [(r["alert"], r["expr"]) for r in alerts()])
    group = {"name": source, "rules": [{"record": f"check:{source}:{number}", "expr": query}
                                       for number, (_, query) in enumerate(queries)]}
    (tmp_path / "parsed.yml").write_text(yaml.safe_dump({"groups": [group]}))
    checked = _promtool("check", "rules", "parsed.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# -- the stack's side: Nginx's status server, missing programs ---------------------------


def test_nginx_serves_stub_status_on_loopback_only(tmp_path: Path) -> None:
    site = render_site(Settings(data_dir=tmp_path), ["127.0.0.1:8000"])
    server = site[site.index(f"listen {STATUS_LISTEN};"):]
    assert f"location = {STATUS_PATH} {{\n        stub_status;" in server
    assert "allow 127.0.0.1;" in server and "deny all;" in server
    with pytest.raises(ValueError, match="loopback"):
        render_site(Settings(data_dir=tmp_path), ["127.0.0.1:8000"], status_listen="0.0.0.0:81")
    assert "stub_status;" not in render_site(Settings(data_dir=tmp_path), ["127.0.0.1:8000"],
                                            status_listen=None)
    conf = write_standalone(Settings(data_dir=tmp_path), ["127.0.0.1:8000"], tmp_path / "a")
    assert "stub_status;" not in (conf.parent / "geojson-api.conf").read_text()
    conf = write_standalone(Settings(data_dir=tmp_path), ["127.0.0.1:8000"], tmp_path / "b",
                            status_listen="127.0.0.1:18081")
    assert "listen 127.0.0.1:18081;" in (conf.parent / "geojson-api.conf").read_text()
    nginx = require("nginx")
    checked = subprocess.run([nginx, "-t", "-q", "-c", str(conf), "-p", str(conf.parent)],
                             capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stderr


def test_stack_up_with_monitoring_names_a_missing_program(
        tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    run_dir = tmp_path / "run"
    code = main(["stack", "up", "--data", str(data_dir), "--run-dir", str(run_dir),
                 "--with-monitoring"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == ["geojson-api stack: prometheus is not installed (apt-get install "
                   "prometheus; scripts/system-deps installs it)"]
    assert not (run_dir / "stack.json").exists(), "nothing was started"
