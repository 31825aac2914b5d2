"""Background jobs on a real Celery worker through a real Redis broker, and without one."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest
import requests

from ..conftest import ROADS, require
from .servers import GunicornServer, Process, free_port, start_redis
from .test_ogc_clients import wait_index


def publish(data: Path, samples: Path) -> None:
    shutil.copyfile(samples / "small.geojson", data / "small.geojson")
    (data / "roads.geojson").write_bytes(ROADS)


def test_index_is_built_by_the_celery_worker(samples: Path, tmp_path: Path) -> None:
    redis_server, port = start_redis(require("redis-server"), tmp_path)
    broker = f"redis://127.0.0.1:{port}/1"
    data = tmp_path / "data"
    data.mkdir()
    publish(data, samples)
    env = {"GEOJSON_API_BROKER_URL": broker, "GEOJSON_API_SETTLE_SECONDS": "0",
           "GEOJSON_API_PREPARE_ON_START": "false"}
    worker = Process([sys.executable, "-m", "geojson_api", "worker", "--data", str(data)],
                     tmp_path / "worker.log", env=env).start()
    web = GunicornServer(data, tmp_path / "web.log", workers=2, env=env)
    try:
        web.start()
        first = requests.get(f"{web.url}/collections/small", timeout=10).json()["index"]
        assert first["status"] in ("queued", "building", "ready")
        wait_index(web.url, "small", timeout=90)
        assert requests.get(f"{web.url}/collections/small/items", timeout=10).status_code == 200
        deadline = time.monotonic() + 30
        while "succeeded" not in worker.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "geojson_api.run" in worker.log() and "succeeded" in worker.log()
        assert "versions/small/" in "".join(
            line for line in worker.log().splitlines() if "indexed" in line)
        assert "published version" in web.log()  # the app's log reaches Gunicorn's...
        assert "indexed" not in web.log()  # ...and the web processes built nothing
    finally:
        web.stop()
        worker.stop()
        redis_server.stop()
    assert "Traceback" not in web.log() + worker.log(), web.log() + worker.log()


def test_unreachable_broker_degrades_to_the_web_process(samples: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    publish(data, samples)
    env = {"GEOJSON_API_BROKER_URL": f"redis://127.0.0.1:{free_port()}/1",
           "GEOJSON_API_PREPARE_ON_START": "false"}
    web = GunicornServer(data, tmp_path / "web.log", workers=1, env=env)
    try:
        web.start()
        started = time.monotonic()
        response = requests.get(f"{web.url}/collections/roads", timeout=30)
        assert response.status_code == 200
        assert time.monotonic() - started < 15, "a dead broker must not hold requests up"
        wait_index(web.url, "roads", timeout=60)
        assert "job broker unavailable" in web.log() and "indexed" in web.log()
    finally:
        web.stop()


@pytest.mark.parametrize("argv", [["worker"]])
def test_worker_without_broker_is_a_clear_error(argv: list[str], tmp_path: Path) -> None:
    import subprocess

    result = subprocess.run([sys.executable, "-m", "geojson_api", *argv], capture_output=True,
                            text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "GEOJSON_API_BROKER_URL" in result.stderr
