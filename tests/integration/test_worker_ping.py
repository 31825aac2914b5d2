"""`geojson-api worker --ping`, the worker's health check, against a real Redis and worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ..conftest import require
from .servers import Process, free_port, start_redis

# Bounds, not thresholds: a hung ping fails the test instead of stalling the suite.
PING_BOUND = 60.0
WORKER_START_BOUND = 60.0


def ping(broker: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "geojson_api", "worker", "--ping", *extra],
                          capture_output=True, text=True, timeout=PING_BOUND,
                          env={**os.environ, "GEOJSON_API_BROKER_URL": broker})


def wait_for_pong(broker: str, worker: Process) -> subprocess.CompletedProcess[str]:
    """Ping until the starting worker answers (it connects to the broker first)."""
    deadline = time.monotonic() + WORKER_START_BOUND
    while True:
        result = ping(broker, "--timeout", "1")
        if result.returncode == 0 or time.monotonic() > deadline:
            return result
        assert worker.proc is not None and worker.proc.poll() is None, worker.log()


def test_ping_answers_while_worker_and_broker_are_up(tmp_path: Path) -> None:
    redis_server, port = start_redis(require("redis-server"), tmp_path)
    broker = f"redis://127.0.0.1:{port}/1"
    data = tmp_path / "data"
    data.mkdir()
    worker = Process([sys.executable, "-m", "geojson_api", "worker", "--data", str(data)],
                     tmp_path / "worker.log",
                     env={"GEOJSON_API_BROKER_URL": broker,
                          "GEOJSON_API_STATE_DIR": str(tmp_path / "state")}).start()
    try:
        up = wait_for_pong(broker, worker)
        assert up.returncode == 0, up.stderr + worker.log()
        assert up.stdout.startswith("geojson-api@") and up.stdout.strip().endswith(": pong")

        worker.stop()  # the broker is up, nobody answers
        gone = ping(broker, "--timeout", "1")
        assert gone.returncode == 1
        assert "no reply from geojson-api@" in gone.stderr and "within 1 s" in gone.stderr
        assert len(gone.stderr.splitlines()) == 1 and "Traceback" not in gone.stderr
    finally:
        worker.stop()
        redis_server.stop()

    down = ping(broker)  # the broker is gone too
    assert down.returncode == 1
    assert f"broker redis://127.0.0.1:{port}/1 unreachable" in down.stderr
    assert len(down.stderr.splitlines()) == 1 and "Traceback" not in down.stderr
    assert "Traceback" not in worker.log(), worker.log()


def test_ping_hides_the_broker_password() -> None:
    result = ping(f"redis://:s3cret@127.0.0.1:{free_port()}/1")
    assert result.returncode == 1
    assert "unreachable" in result.stderr and "s3cret" not in result.stderr


def test_ping_timeout_must_be_positive() -> None:
    result = ping(f"redis://127.0.0.1:{free_port()}/1", "--timeout", "0")
    assert result.returncode == 2 and "--timeout" in result.stderr
