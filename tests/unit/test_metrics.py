"""Metrics in one process (create_app), the request layer, and the shared files' archive."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from geojson_api import filebody, jobs
from geojson_api.metrics import multiproc, record, scrape
from geojson_api.metrics.record import RECORDER, REQUEST_BUCKETS, Recorder
from geojson_api.metrics.wsgi import RequestMetrics

from ..conftest import ROADS

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
SMALL = "/geojson/<path:raw>"


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def samples(client: FlaskClient, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.data
    return parse(response.text)


def value(found: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in found.items() if n == name and wanted <= have)


def cache_counts(client: FlaskClient, since: dict[str, float] | None = None) -> dict[str, float]:
    """Shared cache calls by result (minus ``since``), from /metrics."""
    found = samples(client)
    counts = {result: value(found, "geojson_api_cache_requests_total", result=result)
              for result in ("hit", "miss", "error")}
    return {k: v - (since or {}).get(k, 0.0) for k, v in counts.items()}


def requests_to(found: Samples, route: str, **labels: str) -> float:
    return value(found, "geojson_api_http_requests_total", route=route, **labels)


def test_requests_are_counted_by_route_method_and_status(client: FlaskClient) -> None:
    before = samples(client)
    for _ in range(3):
        assert client.get("/geojson/roads").status_code == 200
    assert client.head("/geojson/roads").status_code == 200
    assert client.get("/no/such/page").status_code == 404
    assert client.get("/api/datasets/roads").status_code == 200
    after = samples(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    counted = "geojson_api_http_requests_total"
    assert delta(counted, route=SMALL, method="GET", status="2xx") == 3
    assert delta(counted, route=SMALL, method="HEAD", status="2xx") == 1
    assert delta(counted, route="unmatched", method="GET", status="4xx") == 1
    assert delta(counted, route="/api/datasets/<path:raw>", method="GET") == 1
    assert delta(counted) == 6  # /metrics itself is never counted
    assert delta("geojson_api_http_response_bytes_total", route=SMALL) == 3 * len(ROADS)
    timed = "geojson_api_http_request_duration_seconds_count"
    assert delta(timed, route=SMALL, method="GET") == 3
    assert delta("geojson_api_http_request_duration_seconds_bucket", route=SMALL,
                 method="GET", le="+Inf") == 3
    in_flight = [v for (n, have), v in after.items()
                 if n == "geojson_api_http_requests_in_flight" and ("route", SMALL) in have]
    assert in_flight == [0]  # a route that answered is shown, at 0 when nothing is in flight
    assert value(after, "geojson_api_build_info", version="0.1.0") == 1


def test_metrics_endpoint_answers_prometheus_text_never_cached(client: FlaskClient) -> None:
    response = client.get("/metrics")
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response.headers["Cache-Control"] == "no-store"
    assert client.head("/metrics").data == b""
    refused = client.post("/metrics")
    assert refused.status_code == 405 and refused.json["code"] == "method-not-allowed"  # type: ignore[index]


def test_token(make_app: Callable[..., Flask]) -> None:
    client = make_app(metrics_token="s3cret").test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        refused = client.get("/metrics", headers=headers)
        assert refused.status_code == 401
        assert refused.json["code"] == "unauthorized"  # type: ignore[index]
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert "geojson_api_datasets" in client.get(
        "/metrics", headers={"Authorization": "Bearer s3cret"}).text


def test_metrics_off(make_app: Callable[..., Flask]) -> None:
    client = make_app(metrics=False).test_client()
    assert client.get("/metrics").status_code == 404
    assert client.get("/geojson/roads").status_code == 200
    RECORDER.enabled = True  # the next app turns it on again anyway


def _app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    environ["geojson_api.route"] = "/x"
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


def test_a_separate_port_answers_metrics_only() -> None:
    layer = RequestMetrics(_app, lambda: b"# metrics\n", port=9321)
    answers: list[str] = []

    def call(path: str, port: str) -> bytes:
        environ = {"PATH_INFO": path, "SERVER_PORT": port, "REQUEST_METHOD": "GET"}
        body = layer(environ, lambda status, headers: answers.append(status))
        data = b"".join(body)
        getattr(body, "close", lambda: None)()
        assert environ.get("geojson_api.quiet") is (True if port == "9321" else None)
        return data

    assert call("/metrics", "9321") == b"# metrics\n" and answers[-1].startswith("200")
    assert b"not-found" in call("/geojson/x", "9321") and answers[-1].startswith("404")
    assert call("/metrics", "8000") == b"ok"  # the app's: its /metrics is its own 404


def test_duration_is_measured_until_the_body_is_closed() -> None:
    recorder = Recorder()
    closed: list[bool] = []

    class Body(list[bytes]):
        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("503 SERVICE UNAVAILABLE", [("content-length", "7")])
        return Body([b"waiting"])

    layer = RequestMetrics(app, lambda: b"", recorder=recorder)
    environ = {"PATH_INFO": "/x", "REQUEST_METHOD": "BREW"}
    body = layer(environ, lambda status, headers: None)
    assert list(body) == [b"waiting"] and recorder.active  # in flight until closed
    assert not closed
    body.close()  # type: ignore[attr-defined]
    assert closed == [True] and not recorder.active
    recorder.drain()
    assert recorder._counts == {
        ("geojson_api_http_requests_total", ("unmatched", "other", "5xx")): 1.0,
        ("geojson_api_http_response_bytes_total", ("unmatched",)): 7.0}


def test_flushed_histogram_matches_observe() -> None:
    from prometheus_client import CollectorRegistry, Histogram

    recorder = Recorder()
    registry = CollectorRegistry()
    reference = Histogram("reference", "", buckets=REQUEST_BUCKETS, registry=registry)
    values = [0.0001, 0.0005, 0.0007, 0.003, 0.3, 61.0, 2.5]
    for v in values:
        reference.observe(v)
        recorder.request({"geojson_api.route": "/r", "REQUEST_METHOD": "GET"}, "200 OK", 0, v)
    recorder.flush()
    ours = {s.labels.get("le"): s.value for s in
            recorder.metrics()["geojson_api_http_request_duration_seconds"].collect()[0].samples
            if s.labels.get("route") == "/r"}
    theirs = {s.labels.get("le"): s.value for s in reference.collect()[0].samples}
    assert ours == theirs


def test_counts_survive_a_second_flush_and_no_flush_loses_any() -> None:
    recorder = Recorder()
    for _ in range(record.DRAIN_AT + 5):  # drains on its own past DRAIN_AT
        recorder.request({"REQUEST_METHOD": "GET"}, "200 OK", 0, 0.001)
    recorder.flush()
    recorder.flush()
    counter = recorder.metrics()["geojson_api_http_requests_total"]
    assert counter.labels("unmatched", "GET", "2xx")._value.get() == record.DRAIN_AT + 5


def test_dataset_and_artifact_metrics(make_app: Callable[..., Flask], data_dir: Path) -> None:
    (data_dir / "other.geojson").write_bytes(ROADS)
    client = make_app(metrics_datasets="roads").test_client()
    assert client.get("/geojson/roads").status_code == 200
    assert client.get("/geojson/other").status_code == 200
    jobs.wait_idle(30)
    found = samples(client)
    assert value(found, "geojson_api_datasets") == 2
    assert value(found, "geojson_api_dataset_bytes", dataset="_all") == 2 * len(ROADS)
    assert value(found, "geojson_api_dataset_bytes", dataset="roads") == len(ROADS)
    assert value(found, "geojson_api_dataset_bytes", dataset="other") == 0  # not listed
    assert value(found, "geojson_api_dataset_features", dataset="roads") == 3
    assert value(found, "geojson_api_artifacts", artifact="index", state="ready") == 2
    assert value(found, "geojson_api_artifacts", artifact="variants", state="ready") == 2
    assert ("geojson_api_artifacts",
            frozenset({("artifact", "index"), ("state", "failed")})) in found


def test_publish_builds_and_jobs_are_counted(make_app: Callable[..., Flask],
                                             data_dir: Path) -> None:
    client = make_app().test_client()
    before = samples(client)
    (data_dir / "broken.geojson").write_bytes(b"[]")
    (data_dir / "fresh.geojson").write_bytes(ROADS)
    assert client.get("/geojson/broken").status_code == 503
    assert client.get("/geojson/fresh").status_code == 200
    jobs.wait_idle(30)
    after = samples(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("geojson_api_publish_total", result="published") == 1
    assert delta("geojson_api_publish_total", result="failed") == 1
    assert delta("geojson_api_artifact_builds_total", artifact="variants",
                 result="succeeded") == 1  # inline, as part of publishing
    assert delta("geojson_api_jobs_submitted_total", artifact="index") == 1
    assert delta("geojson_api_jobs_finished_total", artifact="index", result="succeeded") == 1
    assert delta("geojson_api_artifact_builds_total", artifact="index", result="succeeded") == 1
    assert delta("geojson_api_job_duration_seconds_count", artifact="index") == 1
    assert value(after, "geojson_api_jobs_queue_depth") == 0


def test_cache_backoff_metrics(make_app: Callable[..., Flask]) -> None:
    client = make_app(redis_url="redis://127.0.0.1:1/0").test_client()
    before = samples(client)
    for _ in range(3):
        assert client.get("/api/datasets/roads").status_code == 200
    after = samples(client)
    assert value(after, "geojson_api_cache_backoff") == 1
    assert (value(after, "geojson_api_cache_backoffs_total")
            - value(before, "geojson_api_cache_backoffs_total")) == 1


def test_process_metrics_name_a_master_and_its_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        roles = scrape.process_roles(os.getpid())
        assert roles[os.getpid()] == "master" and roles[child.pid] == "worker"
        assert scrape.process_stats(child.pid) is not None
        cpu, rss, fds = scrape.process_stats(os.getpid())  # type: ignore[misc]
        status = Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]
        assert cpu > 0 and abs(rss - int(status) * 1024) < rss * 0.1
        assert fds == len(os.listdir("/proc/self/fd"))  # both count listdir's own
    finally:
        child.kill()
        child.wait()
    assert scrape.process_stats(child.pid) is None
    assert scrape.process_roles(None) == {os.getpid(): "worker"}


def test_importing_the_app_does_not_import_prometheus_client() -> None:
    """PROMETHEUS_MULTIPROC_DIR is set in Gunicorn's on_starting: too late if it were."""
    code = ("import sys, geojson_api, geojson_api.gunicorn_conf, geojson_api.catalog; "
            "print('prometheus_client' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "False"


_DEAD_WORKER = textwrap.dedent("""
    import os
    from geojson_api.metrics.record import RECORDER
    for _ in range({n}):
        RECORDER.request({{"geojson_api.route": "/r", "REQUEST_METHOD": "GET"}}, "200 OK",
                         10, 0.002)
    RECORDER.flush()
    print(os.getpid())
""")


def _dead_worker(folder: Path, n: int) -> int:
    """A process that counts ``n`` requests into ``folder``, flushes and exits."""
    env = {**os.environ, multiproc.ENV_DIR: str(folder)}
    result = subprocess.run([sys.executable, "-c", _DEAD_WORKER.format(n=n)], env=env,
                            capture_output=True, text=True, timeout=60, check=True)
    return int(result.stdout)


def test_dead_workers_are_archived_so_counters_never_go_back(tmp_path: Path) -> None:
    collector = multiproc.SharedFilesCollector(str(tmp_path))

    def counted() -> tuple[float, float, float]:
        found = {s.name + str(sorted(s.labels.items())): s.value
                 for m in collector.collect() for s in m.samples}
        return (found["geojson_api_http_requests_total[('method', 'GET'), ('route', '/r'), "
                      "('status', '2xx')]"],
                found["geojson_api_http_request_duration_seconds_count[('method', 'GET'), "
                      "('route', '/r')]"],
                found["geojson_api_http_response_bytes_total[('route', '/r')]"])

    first = _dead_worker(tmp_path, 7)
    assert counted() == (7, 7, 70)
    multiproc.archive(str(tmp_path), first)
    assert counted() == (7, 7, 70)
    assert not list(tmp_path.glob(f"*_{first}.db"))
    second = _dead_worker(tmp_path, 5)
    multiproc.archive(str(tmp_path), second)
    assert counted() == (12, 12, 120)
    names = sorted(p.name for p in tmp_path.glob("*.db"))
    assert names == ["counter_archive.db", "histogram_archive.db"]  # the folder does not grow


def test_prepare_empties_a_named_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from geojson_api.settings import Settings

    for name in (multiproc.ENV_DIR, multiproc.ENV_MASTER, multiproc.ENV_TEMPORARY):
        monkeypatch.setenv(name, "")  # undone after the test: unset again
        monkeypatch.delenv(name)
    (tmp_path / "counter_1.db").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("kept")
    folder = multiproc.prepare(Settings(metrics_dir=tmp_path))
    assert folder == tmp_path and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert os.environ[multiproc.ENV_DIR] == str(tmp_path)
    assert os.environ[multiproc.ENV_MASTER] == str(os.getpid())
    fresh = multiproc.prepare(Settings())
    assert fresh.is_dir() and fresh != tmp_path
    multiproc.finish()  # the master made it: it goes
    assert not fresh.exists()


def test_metrics_host() -> None:
    assert multiproc.metrics_host("0.0.0.0:8000") == "0.0.0.0"
    assert multiproc.metrics_host("[::1]:8000") == "::1"
    assert multiproc.metrics_host("unix:/run/app.sock") == "127.0.0.1"


def test_a_body_the_server_sends_itself_stays_that_object() -> None:
    """sendfile(2) needs the server's own file wrapper back: only its close is wrapped."""
    recorder = Recorder()

    class FileWrapper:
        def __init__(self, data: io.BytesIO, block: int) -> None:
            self.data, self.closed = data, False

        def __iter__(self) -> Iterable[bytes]:
            return iter([self.data.read()])

        def close(self) -> None:
            self.closed = True

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["geojson_api.route"] = "/big"
        start_response("200 OK", [("Content-Length", "3")])
        return filebody.send(environ, io.BytesIO(b"abc"))  # type: ignore[arg-type]

    layer = RequestMetrics(app, lambda: b"", recorder=recorder)
    environ = {"PATH_INFO": "/big", "REQUEST_METHOD": "GET", "wsgi.file_wrapper": FileWrapper}
    body = layer(environ, lambda status, headers: None)
    assert type(body) is FileWrapper and recorder.active
    body.close()  # type: ignore[attr-defined]
    assert body.closed and not recorder.active  # type: ignore[attr-defined]
    recorder.drain()
    assert recorder._counts[("geojson_api_http_requests_total", ("/big", "GET", "2xx"))] == 1
    assert recorder._counts[("geojson_api_http_response_bytes_total", ("/big",))] == 3


def test_metrics_settings_are_checked() -> None:
    from geojson_api.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="GEOJSON_API_METRICS_PORT must differ"):
        Settings(bind="127.0.0.1:9100", metrics_port=9100)
    with pytest.raises(SettingsError, match="GEOJSON_API_METRICS_FLUSH_INTERVAL"):
        Settings(metrics_flush_interval=0)
    assert Settings(metrics_datasets="a, b").metrics_dataset_list == ("a", "b")


def test_the_dashboard_digest_sums_what_metrics_counts(client: FlaskClient) -> None:
    before = client.get("/api/metrics").get_json()
    for _ in range(3):
        assert client.get("/geojson/roads").status_code == 200
    assert client.get("/no/such/page").status_code == 404
    response = client.get("/api/metrics")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    after = response.get_json()
    assert after["scope"] == "process" and after["time"] >= before["time"], after
    by_status = after["requests"]["by_status"]
    # the first digest request is counted once it ended, the second not yet
    assert by_status["2xx"] - before["requests"]["by_status"].get("2xx", 0) == 3 + 1
    assert by_status["4xx"] - before["requests"]["by_status"].get("4xx", 0) == 1
    assert after["requests"]["total"] == sum(by_status.values())
    size = len(client.get("/geojson/roads").data)
    assert after["response_bytes"] - before["response_bytes"] >= 3 * size
    bounds = [le for le, _ in after["duration_buckets"]]
    assert bounds[-1] is None and bounds[:-1] == sorted(bounds[:-1])  # +Inf last
    assert after["duration_buckets"][-1][1] == after["requests"]["total"]
    counts = [n for _, n in after["duration_buckets"]]
    assert counts == sorted(counts)  # cumulative
    # the same totals as /metrics
    found = samples(client)
    assert sum(v for (n, _), v in found.items() if n == "geojson_api_http_requests_total") >= (
        after["requests"]["total"])


def test_the_dashboard_digest_asks_for_the_token(make_app: Callable[..., Flask]) -> None:
    client = make_app(metrics_token="s3cret").test_client()
    refused = client.get("/api/metrics")
    assert refused.status_code == 401 and refused.get_json()["code"] == "unauthorized"
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/api/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    allowed = client.get("/api/metrics", headers={"Authorization": "Bearer s3cret"})
    assert allowed.status_code == 200 and "requests" in allowed.get_json()


def test_the_dashboard_digest_when_metrics_are_off(make_app: Callable[..., Flask]) -> None:
    client = make_app(metrics=False).test_client()
    refused = client.get("/api/metrics")
    assert refused.status_code == 404 and "GEOJSON_API_METRICS" in refused.get_json()["description"]
    unknown = make_app().test_client().get("/api/metrics?x=1")
    assert unknown.status_code == 400 and unknown.get_json()["code"] == "unknown-parameter"
