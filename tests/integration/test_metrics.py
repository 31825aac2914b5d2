"""/metrics against a real Gunicorn with several workers (gthread and gevent), and the
Celery worker's own metrics port."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict

from ..conftest import require
from ..unit.test_metrics import SMALL, Samples, parse, requests_to, value
from .servers import GunicornServer, Process, free_port, start_redis

WORKERS = 3
POLL_SECONDS = 20.0  # flushes come every second; the bound only ends a broken test


def scrape(url: str, **headers: str) -> Samples:
    response = requests.get(f"{url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return parse(response.text)


def small_requests(url: str) -> float:
    return requests_to(scrape(url), SMALL, method="GET", status="2xx")


def poll_until(url: str, expected: float) -> float:
    """The small-file count once every worker has flushed it (or the bound is reached)."""
    deadline = time.monotonic() + POLL_SECONDS
    while (found := small_requests(url)) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def send(url: str, n: int) -> None:
    """``n`` small-file requests, each on its own connection, eight at a time."""
    def one(_: int) -> int:
        return requests.get(f"{url}/geojson/small", headers={"Connection": "close"},
                            timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one, range(n))) == {200}


def per_worker(folder: Path) -> dict[int, float]:
    """Small-file requests each live process has flushed into its own file."""
    counts = {}
    for path in folder.glob("counter_*.db"):
        pid = path.stem.split("_")[1]
        if pid.isdigit():
            counts[int(pid)] = sum(
                v for key, v, _ts, _pos in MmapedDict.read_all_values_from_file(str(path))
                if '"geojson_api_http_requests_total"' in key and SMALL in key)
    return counts


def start(tmp_path: Path, samples: Path, worker_class: str = "gthread",
          **env: str) -> GunicornServer:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(samples / "small.geojson", data / "small.geojson")
    env = {"GEOJSON_API_TILES": "false", "GEOJSON_API_ACCESS_LOG": "",
           "GEOJSON_API_METRICS_DIR": str(tmp_path / "metrics"), **env}
    return GunicornServer(data, tmp_path / "gunicorn.log", worker_class=worker_class,
                          workers=WORKERS, env=env).start()


@pytest.fixture
def gthread(tmp_path: Path, samples: Path) -> Iterator[GunicornServer]:
    server = start(tmp_path, samples)
    try:
        yield server
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()


def spread(server: GunicornServer, folder: Path, batch: int = 60) -> int:
    """Send batches until at least two workers have answered; returns how many were sent."""
    sent = 0
    while sent < 20 * batch:
        send(server.url, batch)
        sent += batch
        time.sleep(1.5)  # every worker flushes
        answered = {pid for pid, n in per_worker(folder).items()
                    if n and pid in server.worker_pids()}
        if len(answered) >= 2:
            return sent
    raise AssertionError(f"one worker answered all {sent} requests")


def test_n_requests_over_several_workers_count_exactly_n(gthread: GunicornServer,
                                                         tmp_path: Path) -> None:
    before = small_requests(gthread.url)
    sent = spread(gthread, tmp_path / "metrics")
    assert poll_until(gthread.url, before + sent) == before + sent
    send(gthread.url, 37)
    assert poll_until(gthread.url, before + sent + 37) == before + sent + 37
    found = scrape(gthread.url)
    assert value(found, "geojson_api_http_request_duration_seconds_count",
                 route=SMALL) == before + sent + 37
    roles = {dict(labels)["role"] for (name, labels) in found
             if name == "geojson_api_process_resident_memory_bytes"}
    assert roles == {"master", "worker"}
    pids = {int(dict(labels)["pid"]) for (name, labels) in found
            if name == "geojson_api_process_open_fds"}
    assert pids == {gthread.proc.pid, *gthread.worker_pids()}  # type: ignore[union-attr]


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_dead_worker_is_archived_and_counters_never_go_back(
        gthread: GunicornServer, tmp_path: Path, how: signal.Signals) -> None:
    folder = tmp_path / "metrics"
    sent = spread(gthread, folder)
    total = poll_until(gthread.url, sent)
    assert total == sent
    restarts = value(scrape(gthread.url), "geojson_api_worker_restarts_total")
    counts = per_worker(folder)
    victim = max(gthread.worker_pids(), key=lambda pid: counts.get(pid, 0))
    assert counts[victim] > 0  # what it counted is flushed: a SIGKILL loses nothing of it
    os.kill(victim, how)
    deadline = time.monotonic() + POLL_SECONDS
    while (victim in gthread.worker_pids() or len(gthread.worker_pids()) < WORKERS
           or list(folder.glob(f"*_{victim}.db"))) and time.monotonic() < deadline:
        assert small_requests(gthread.url) >= total  # never backwards, even meanwhile
        time.sleep(0.1)
    assert victim not in gthread.worker_pids() and len(gthread.worker_pids()) == WORKERS
    assert not list(folder.glob(f"*_{victim}.db")), "the dead worker's files are gone"
    assert (folder / "counter_archive.db").exists()
    found = scrape(gthread.url)
    assert requests_to(found, SMALL, method="GET", status="2xx") == total
    assert value(found, "geojson_api_worker_restarts_total") == restarts + 1
    send(gthread.url, 10)
    assert poll_until(gthread.url, total + 10) == total + 10


def test_token_and_separate_port(tmp_path: Path, samples: Path) -> None:
    port = free_port()
    server = start(tmp_path, samples, GEOJSON_API_METRICS_PORT=str(port),
                   GEOJSON_API_METRICS_TOKEN="t0ken")
    try:
        assert requests.get(f"{server.url}/metrics", timeout=10).status_code == 404
        metrics_url = f"http://127.0.0.1:{port}"
        refused = requests.get(f"{metrics_url}/metrics", timeout=10)
        assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
        assert requests.get(f"{metrics_url}/geojson/small", timeout=10).status_code == 404
        send(server.url, 12)
        deadline = time.monotonic() + POLL_SECONDS
        while requests_to(scrape(metrics_url, Authorization="Bearer t0ken"), SMALL) != 12:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        found = scrape(metrics_url, Authorization="Bearer t0ken")
        assert requests_to(found, "unmatched") == 1  # the app port's /metrics: a plain 404
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()


def test_gevent_workers_count_exactly_n(tmp_path: Path, samples: Path) -> None:
    server = start(tmp_path, samples, worker_class="gevent")
    try:
        before = small_requests(server.url)
        sent = spread(server, tmp_path / "metrics")
        assert poll_until(server.url, before + sent) == before + sent
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()


TOKEN = {"Authorization": "Bearer job-secret"}


def test_the_celery_worker_serves_its_job_metrics(samples: Path, tmp_path: Path) -> None:
    redis_server, redis_port = start_redis(require("redis-server"), tmp_path)
    broker = f"redis://127.0.0.1:{redis_port}/1"
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(samples / "small.geojson", data / "small.geojson")
    port = free_port()
    env = {"GEOJSON_API_BROKER_URL": broker, "GEOJSON_API_SETTLE_SECONDS": "0",
           "GEOJSON_API_PREPARE_ON_START": "false", "GEOJSON_API_TILES": "false",
           "GEOJSON_API_METRICS_PORT": str(port)}
    worker = Process([sys.executable, "-m", "geojson_api", "worker", "--data", str(data)],
                     tmp_path / "worker.log",
                     env={**env, "GEOJSON_API_METRICS_TOKEN": "job-secret"}).start()
    web = GunicornServer(data, tmp_path / "web.log", workers=2,
                         env={**env, "GEOJSON_API_METRICS_PORT": "0"})
    try:
        web.start()
        assert requests.get(f"{web.url}/collections/small/items", timeout=10).status_code in (
            200, 503)
        deadline = time.monotonic() + 60
        finished = 0.0
        while finished < 1 and time.monotonic() < deadline:
            try:
                found = parse(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5,
                                           headers=TOKEN).text)
                finished = value(found, "geojson_api_jobs_finished_total", artifact="index",
                                 result="succeeded")
            except requests.RequestException:
                pass  # not ready yet
            time.sleep(0.3)
        assert finished == 1, worker.log()
        refused = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert refused.status_code == 401, refused.text
        assert refused.json()["code"] == "unauthorized"
        assert requests.get(f"http://127.0.0.1:{port}/items", timeout=5,
                            headers=TOKEN).status_code == 404
        assert value(found, "geojson_api_job_duration_seconds_count", artifact="index") == 1
        assert value(found, "geojson_api_jobs_queue_depth") == 0  # LLEN of the broker's queue
        assert value(found, "geojson_api_process_open_fds", role="master") > 0
        # the submitting worker's flush thread writes its count within an interval (1 s)
        deadline = time.monotonic() + 10
        submitted = 0.0
        while submitted < 1 and time.monotonic() < deadline:
            submitted = value(scrape(web.url), "geojson_api_jobs_submitted_total",
                              artifact="index")
            time.sleep(0.2)
        assert submitted >= 1
    finally:
        web.stop()
        worker.stop()
        redis_server.stop()
    assert "Traceback" not in web.log() + worker.log(), web.log() + worker.log()
