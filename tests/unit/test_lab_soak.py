"""The soak run's pure parts: options, /metrics parsing, warm-up, growth, count check,
and the report written from samples (no server, no Locust)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from geojson_api.lab import soak
from geojson_api.lab.locustrun import Latency, LocustResult
from geojson_api.settings import Settings

from ..conftest import require_module

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- options -------------------------------------------------------------------------------

def bench(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    from geojson_api.cli import main

    code = main(["bench", *argv])
    return code, capsys.readouterr().err.splitlines()


@pytest.mark.parametrize("argv", [
    ["--soak", "0"], ["--soak", "-1"], ["--soak", "nan"], ["--soak", "inf"],
    ["--soak-users", "5"], ["--soak-interval", "5"],
    ["--soak", "1", "--soak-users", "0"], ["--soak", "1", "--soak-interval", "0"],
    ["--soak", "1", "--quick"], ["--soak", "1", "--targets", "stack"],
    ["--soak", "1", "--scenarios", "mixed"], ["--soak", "1", "--measure", "5"],
    ["--soak", "1", "--max-target-rss", "100"], ["--soak", "1", "--rebuild"],
])
def test_options_that_make_no_sense_are_refused_in_one_line(
        capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, err = bench(capsys, *argv)
    assert code == 2
    assert len(err) == 1 and err[0].startswith("geojson-api bench: "), err


def test_matrix_options_are_named_in_the_refusal(capsys: pytest.CaptureFixture[str]) -> None:
    _, err = bench(capsys, "--soak", "1", "--quick", "--targets", "stack")
    assert "--quick, --targets" in err[0]


def test_settings_that_hide_metrics_are_refused(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOJSON_API_METRICS", "false")
    code, err = bench(capsys, "--soak", "1")
    assert code == 2 and "GEOJSON_API_METRICS" in err[0] and len(err) == 1
    monkeypatch.setenv("GEOJSON_API_METRICS", "true")
    monkeypatch.setenv("GEOJSON_API_METRICS_PORT", "9999")
    code, err = bench(capsys, "--soak", "1")
    assert code == 2 and "GEOJSON_API_METRICS_PORT" in err[0] and len(err) == 1


def namespace(**given: object) -> argparse.Namespace:
    values: dict[str, object] = dict(soak=None, soak_users=None, soak_interval=None, out=None,
                                     data=None, quick=False, targets=None, scenarios=None,
                                     measure=None, max_target_rss=None, rebuild=False)
    values.update(given)
    return argparse.Namespace(**values)


def test_defaults_and_fractional_minutes() -> None:
    plan = soak.plan_from(namespace(soak=60.0))
    assert (plan.users, plan.interval, plan.seconds) == (50, 30.0, 3600)
    assert plan.out == Path("var/bench/soak").absolute() and plan.data is None
    assert plan.sample_every == 30.0
    short = soak.plan_from(namespace(soak=0.5, soak_users=5, soak_interval=5.0, out="o"))
    assert short.seconds == 30 and short.out == Path("o").absolute()
    assert short.sample_every == 30 / soak.MIN_SAMPLES  # shortened: ten samples at least
    assert soak.plan_from(namespace(soak=0.001, soak_interval=0.1)).sample_every == 1.0


def test_the_scenario_and_locust_command_keep_every_request() -> None:
    plan = soak.plan_from(namespace(soak=2.0, soak_users=20))
    scenario = plan.scenario()
    assert (scenario.profile, scenario.users, scenario.run_time) == ("mixed", 20, 120)
    argv = soak.soak_command(plan, "http://127.0.0.1:1", Path("/tmp/x"))
    assert "--reset-stats" not in argv  # statistics from the first request on
    assert argv[argv.index("--run-time") + 1] == "120s"
    assert argv[-3:] == ["StudyUser", "--mix", "mixed"]
    assert soak.plan_from(namespace(soak=1 / 60)).scenario().run_time == 1


def test_the_matrix_still_has_its_own_defaults() -> None:
    from geojson_api.lab.command import plan_from

    plan = plan_from(namespace(quick=True))
    assert plan.out == Path("var/bench").absolute() and plan.max_target_rss == 4_000_000_000


# -- /metrics ------------------------------------------------------------------------------

class Processes(Collector):
    """The process families as the app writes them (labels pid and role)."""

    def collect(self):  # type: ignore[no-untyped-def]
        for name, values in ((soak.RSS, (80e6, 60e6, 62e6)), (soak.FDS, (9, 14, 15))):
            family = GaugeMetricFamily(name, "help", labels=["pid", "role"])
            for pid, role, value in zip((100, 101, 102), ("master", "worker", "worker"),
                                        values, strict=True):
                family.add_metric([str(pid), role], value)
            yield family


def test_parse_a_text_written_by_prometheus_client() -> None:
    registry = CollectorRegistry()
    requests = Counter("geojson_api_http_requests", "help", ["route", "method", "status"],
                       registry=registry)
    requests.labels("/geojson/<path:raw>", "GET", "2xx").inc(40)
    requests.labels("/geojson/<path:raw>", "GET", "4xx").inc(2)
    requests.labels("unmatched", "HEAD", "4xx").inc(1)
    registry.register(Processes())
    scraped = soak.parse_metrics(generate_latest(registry).decode())
    assert scraped.requests == 43  # every route, method and status; not the _created samples
    assert sorted(scraped.processes) == [100, 101, 102]
    master, worker = scraped.processes[100], scraped.processes[102]
    assert (master.role, master.rss_metrics, master.fds_metrics) == ("master", 80_000_000, 9)
    assert (worker.role, worker.rss_metrics, worker.fds_metrics) == ("worker", 62_000_000, 15)
    assert worker.rss_proc is None  # /proc is read apart


def test_parse_the_apps_own_metrics(client: FlaskClient) -> None:
    for _ in range(3):
        client.get("/api/datasets")
    scraped = soak.parse_metrics(client.get("/metrics").text)
    assert scraped.requests >= 3
    assert len(scraped.processes) == 1  # one process, no Gunicorn
    process = next(iter(scraped.processes.values()))
    assert process.rss_metrics and process.rss_metrics > 0 and process.fds_metrics


def test_a_text_without_process_metrics_is_refused() -> None:
    with pytest.raises(ValueError, match="no geojson_api_process_resident_memory_bytes"):
        soak.parse_metrics("# TYPE up gauge\nup 1\n")
    with pytest.raises(ValueError):
        soak.parse_metrics("not { prometheus")


# -- warm-up, growth, counts ---------------------------------------------------------------

@pytest.mark.parametrize(("seconds", "warm"), [(30, 6.0), (180, 36.0), (1500, 300.0),
                                               (3600, 300.0)])
def test_warm_up_is_a_fifth_of_the_run_or_five_minutes(seconds: float, warm: float) -> None:
    assert soak.warm_up_seconds(seconds) == warm


def test_growth_compares_the_last_window_with_the_first_after_warm_up() -> None:
    # An hour sampled every 30 s: climbing during the warm-up, then 100 until minute 30,
    # then 103. Windows of 5 minutes: 10 samples each.
    points = [(t, 50.0 + t / 6 if t < 300 else 100.0 if t < 1800 else 103.0)
              for t in range(0, 3601, 30)]
    found = soak.growth(points, 3600)
    assert found is not None
    assert (found.first, found.last, found.samples) == (100.0, 103.0, 10)
    assert found.first_window == (300, 570) and found.last_window == (3330, 3600)
    assert found.percent == pytest.approx(3.0)


def test_growth_of_a_short_run_and_its_limits() -> None:
    points = [(float(t), 10.0 + t) for t in range(0, 31, 3)]  # warm-up 6 s
    found = soak.growth(points, 30)
    assert found is not None and found.samples == 2  # 6 s of samples after the warm-up
    assert found.first == (16 + 19) / 2 and found.last == (37 + 40) / 2
    assert soak.growth(points[:3], 30) is None  # one sample after the warm-up
    from_zero = soak.growth([(10.0, 0.0), (20.0, 5.0)], 30)
    assert from_zero is not None and from_zero.percent is None
    shrinking = soak.growth([(10.0, 5.0), (20.0, 4.0)], 30)
    assert shrinking is not None and shrinking.percent == -20.0


@pytest.mark.parametrize(("counted", "difference"), [
    (1000, 0), (1003, 0), (1005, 0), (990, 10), (1010, 5)])
def test_counts_may_include_requests_in_flight_at_the_stop(counted: float,
                                                           difference: float) -> None:
    check = soak.CountCheck(completed=1000, unfinished=5, counted=counted)
    assert check.difference == difference
    assert check.percent == difference / 10


def test_count_goal() -> None:
    assert soak.count_goal(soak.CountCheck(1000, 0, 1005)).met is True
    assert soak.count_goal(soak.CountCheck(1000, 0, 1006)).met is False
    assert soak.count_goal(soak.CountCheck(0, 0, 0)).met is None
    assert soak.count_goal(None).met is None


# -- a record of samples and its report ----------------------------------------------------

def process(pid: int, role: str, rss: float, fds: int) -> soak.ProcessSample:
    return soak.ProcessSample(pid, role, int(rss), fds, int(rss) + 4096, fds)


def sample(t: float, rss: float, worker_pids: tuple[int, int]) -> soak.Sample:
    instances = {
        name: soak.InstanceSample(
            requests=10 * t + offset,
            processes=[process(base, "master", 70e6, 8),
                       *(process(base + pid, "worker", rss + pid * 1e6, 12)
                         for pid in worker_pids)])
        for name, base, offset in (("app1", 1000, 0.0), ("app2", 2000, 5.0))}
    return soak.Sample(t, "2026-12-01T12:00:00+00:00", 0.5, instances)


def record(rss_at_end: float) -> soak.SoakRecord:
    plan = soak.SoakPlan(minutes=1.0, users=5, interval=6.0, out=Path("out"), data=None,
                         settings=Settings())
    samples = [sample(float(t), 50e6 if t < 12 else 60e6, (1, 2)) for t in range(0, 40, 6)]
    # Worker 2 is replaced by worker 3 (max_requests) for the last samples.
    samples += [sample(float(t), rss_at_end, (1, 3)) for t in range(42, 61, 6)]
    result = LocustResult(requests=595, failures=0, unfinished=3, window_s=60.0,
                          bytes=1, latency=Latency(avg=20.0, p95=80.0), errors=[],
                          by_name={"small": {"requests": 595, "failures": 0, "unfinished": 3,
                                             "avg_ms": 20.0, "p95_ms": 80.0}})
    return soak.SoakRecord(plan, {"machine": {"date": "2026-12-01", "nproc": 2,
                                              "cpu_model": "cpu", "mem_total_bytes": 8e9,
                                              "kernel": "6", "python": "3.12", "nginx": "n",
                                              "wrk": "w", "redis": "r", "uptime": "u",
                                              "loadavg_at_start": (1.0, 1.0, 1.0)},
                                  "complete": True, "error": None,
                                  "loadavg_at_end": (0.5, 0.5, 0.5),
                                  "datasets": {"small": 49_846, "large": 50_000_000}},
                           samples, before={"app1": 0.0, "app2": 5.0},
                           after={"app1": 300.0, "app2": 302.0}, locust=result,
                           run_seconds=60.0)


def test_per_pid_series_follow_recycled_workers() -> None:
    series = record(60e6).per_pid()["app1"]
    assert set(series) == {"1000", "1001", "1002", "1003"}
    assert series["1000"]["role"] == "master"
    assert series["1002"]["t"][-1] == 36.0 and series["1003"]["t"][0] == 42.0
    assert series["1001"]["rss_metrics"][0] == 51_000_000
    assert series["1001"]["rss_proc"][0] == 51_000_000 + 4096


def test_per_instance_summary_is_over_workers_only() -> None:
    rows = record(60e6).per_instance()["app2"]["rss_metrics"]
    assert rows[0] == [0.0, 51.5e6, 52e6]  # mean and max of workers 1 and 2, not the master
    assert rows[-1] == [60.0, 62e6, 63e6]  # workers 1 and 3


def test_goals_of_a_flat_and_of_a_growing_run() -> None:
    flat = {g.what: g for g in record(60e6).goals()}
    assert flat["errors"].met is True
    assert flat["requests in /metrics vs Locust"].met is True  # 597: 595 done + 2 of 3
    assert flat["RSS growth, app1"].met is True and flat["open files growth, app2"].met is True
    growing = {g.what: g for g in record(66e6).goals()}
    assert growing["RSS growth, app1"].met is False
    assert "/metrics +" in growing["RSS growth, app1"].measured


def test_the_report_files(tmp_path: Path) -> None:
    require_module("matplotlib")
    paths = soak.write_soak(tmp_path, record(66e6))
    assert [p.name for p in paths] == ["soak.json", "soak.md", "soak-rss.png", "soak-fds.png"]
    document = json.loads((tmp_path / "soak.json").read_text())
    assert len(document["samples"]) == 11 and document["requests"]["check"]["percent"] == 0.0
    assert document["settings"]["env"] == {
        "GEOJSON_API_NGINX_MICROCACHE": "0", "GEOJSON_API_NGINX_DIRECT": "false"}
    text = (tmp_path / "soak.md").read_text()
    for heading in ("# Soak run", "## Settings", "## Goals", "## Requests", "### app1",
                    "### app2", "## Graphs"):
        assert heading in text
    assert "**not met**" in text and "repeats of small" in text
    assert "started during the run: 1003; gone before the end: 1002" in text
    for name in ("soak-rss.png", "soak-fds.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG_MAGIC)
