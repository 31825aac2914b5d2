"""The soak run for real: ``geojson-api bench --soak 0.5`` against the stack, 5 users.

Thirty seconds of the mixed profile through Nginx to two Gunicorn instances;
then the files it wrote, the samples of every Gunicorn process read from both
``/metrics`` and /proc, Locust's request count against the instances' counters,
and that nothing it started still runs. No timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from ..conftest import copy_prepared, require, require_module

pytestmark = pytest.mark.integration

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Soaked:
    """The folder a soak run wrote, and what it printed."""

    def __init__(self, out: Path, stdout: str) -> None:
        self.out, self.stdout = out, stdout
        self.document: dict[str, Any] = json.loads((out / "soak.json").read_text())


@pytest.fixture(scope="module")
def soaked(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Soaked:
    for tool in ("nginx", "redis-server"):
        require(tool)
    for module in ("locust", "matplotlib"):
        require_module(module)
    data = copy_prepared(prepared, tmp_path_factory.mktemp("soak-data"))
    out = tmp_path_factory.mktemp("soak") / "out"
    done = subprocess.run(
        [sys.executable, "-m", "geojson_api", "bench", "--soak", "0.5", "--soak-users", "5",
         "--soak-interval", "5", "--data", str(data), "--out", str(out)],
        capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    return Soaked(out, done.stdout)


def masters(document: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["pid"] for p in document["target"]["stack"]["parts"]
            if p["name"].startswith("app")}


def test_the_run_completes_and_writes_its_files(soaked: Soaked) -> None:
    assert soaked.document["complete"] is True and soaked.document["error"] is None
    assert "report: " in soaked.stdout
    text = (soaked.out / "soak.md").read_text()
    for heading in ("# Soak run", "## Settings", "## Goals", "## Requests", "### app1",
                    "### app2", "## Graphs"):
        assert heading in text
    for name in ("soak-rss.png", "soak-fds.png"):
        assert (soaked.out / name).read_bytes().startswith(PNG_MAGIC)
    assert soaked.document["settings"]["env"] == {
        "GEOJSON_API_NGINX_MICROCACHE": "0", "GEOJSON_API_NGINX_DIRECT": "false"}


def test_every_gunicorn_process_is_read_from_metrics_and_proc(soaked: Soaked) -> None:
    samples = soaked.document["samples"]
    assert len(samples) >= 5  # every 3 s over 30 s: ten, fewer on a crowded machine
    for name, master in masters(soaked.document).items():
        for sample in samples:
            reading = sample["instances"][name]
            assert reading["error"] is None, reading
            processes = reading["processes"]
            # One process list: the pids /metrics names are the master and its children
            # as /proc shows them, and each has its RSS and open files from both.
            assert [p["pid"] for p in processes if p["role"] == "master"] == [master]
            assert sum(p["role"] == "worker" for p in processes) >= 1
            for p in processes:
                assert None not in (p["rss_metrics"], p["rss_proc"], p["fds_metrics"],
                                    p["fds_proc"]), p
                assert 0.5 < p["rss_metrics"] / p["rss_proc"] < 2, p
        series = soaked.document["per_instance"][name]
        assert len(series["rss_metrics"]) == len(series["rss_proc"]) == len(samples)


def test_locust_and_metrics_count_the_same_requests(soaked: Soaked) -> None:
    locust = soaked.document["locust"]
    check = soaked.document["requests"]["check"]
    assert locust["requests"] > 0 and locust["failures"] == 0
    assert check["counted"] > 0 and check["completed"] == locust["requests"]
    assert check["difference"] == 0, check  # within completed .. completed + in flight
    goals = {g["what"]: g for g in soaked.document["goals"]}
    assert goals["requests in /metrics vs Locust"]["met"] is True
    assert goals["errors"]["met"] is True
    assert {"RSS growth, app1", "open files growth, app2"} <= set(goals)


def test_nothing_it_started_still_runs(soaked: Soaked) -> None:
    finished = (soaked.out / "soak.json").stat().st_mtime
    pids = {p["pid"] for p in soaked.document["target"]["stack"]["parts"]}
    pids |= {p["pid"] for s in soaked.document["samples"]
             for reading in s["instances"].values() for p in reading["processes"]}
    alive = []
    for pid in pids:
        try:  # a PID taken again after the run is another process
            process = psutil.Process(pid)
            if process.create_time() < finished and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{pid} {' '.join(process.cmdline())}")
        except psutil.Error:
            continue
    assert not alive
