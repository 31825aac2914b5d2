"""The load-test lab for real: ``geojson-api bench`` as a subprocess, every target started.

One quick run end to end (it writes its own sample data), then the ways a run
can end early: Ctrl-C, a target that cannot start, the memory guard. Each of
them must leave no process behind. No timing is asserted: only that every target
answered, without errors, and that the report was written.

Then the lab as an installed package: its own files (the Locust users, the
baseline and bare apps) come from the package, never from a source checkout.
A copy of the package outside the checkout starts both apps and loads the
Locust users, and no module of the lab names a path that goes up from it.
"""

from __future__ import annotations

import ast
import csv
import fnmatch
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

import geojson_api
import geojson_api.lab
from geojson_api.lab.matrix import TARGETS
from geojson_api.lab.targets import FILES, bare_command, devserver_command, lab_file

from ..conftest import require, require_module

pytestmark = pytest.mark.integration

BENCH = [sys.executable, "-m", "geojson_api", "bench"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def require_lab() -> None:
    for tool in ("nginx", "redis-server", "wrk"):
        require(tool)
    for module in ("locust", "matplotlib"):
        require_module(module)


def printed_pids(output: str) -> list[int]:
    """The PIDs the lab prints when it starts a target ("  name: pid N" or "pids a N, b M")."""
    pids = []
    for line in output.splitlines():
        if match := re.match(r"\s+\w+: pids? (.*?), http://", line):
            pids += [int(n) for n in re.findall(r"\b\d+\b", match[1])]  # not app1's 1
    return pids


def still_running(processes: list[psutil.Process]) -> list[str]:
    alive = []
    for process in processes:
        try:  # psutil compares the creation time: a reused PID is not the same process
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{process.pid} {' '.join(process.cmdline())}")
        except psutil.Error:
            continue
    return alive


@dataclass
class QuickRun:
    done: subprocess.CompletedProcess[str]
    out: Path
    document: dict[str, Any]
    started: float  # time.time() before the run: its processes were made after


@pytest.fixture(scope="module")
def quick(served_data: Path, tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    """The quick run over the prepared samples: without --data it would write the same
    samples (geojson_api.sample) and spend minutes building their artifacts again."""
    require_lab()
    out = tmp_path_factory.mktemp("bench") / "out"
    started = time.time()
    done = subprocess.run([*BENCH, "--quick", "--data", str(served_data), "--out", str(out)],
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    return QuickRun(done, out, json.loads((out / "runs.json").read_text()), started)


def test_quick_run_reaches_every_target_without_errors(quick: QuickRun) -> None:
    runs = quick.document["runs"]
    assert quick.document["complete"] is True
    assert {r["target"] for r in runs} == set(TARGETS)
    assert {r["client"] for r in runs} == {"locust", "wrk"}
    for r in runs:
        # On a busy machine a 2 s window may end with every request still in flight.
        assert r["requests"] + r["unfinished"] > 0 and r["failures"] == 0, r
        assert r["target_peak_rss"] > 0 and r["client_avg_cpu"] > 0, r
    for target in TARGETS:
        assert sum(r["requests"] for r in runs if r["target"] == target) > 0
    # The dataset API and feature-query users run only where there is an API.
    assert {r["target"] for r in runs if r["profile"] == "api"} == {"gunicorn", "stack"}
    assert {r["target"] for r in runs if r["profile"] == "features"} == {"gunicorn", "stack"}


def test_quick_run_names_statistics_per_size_and_endpoint(quick: QuickRun) -> None:
    for r in quick.document["runs"]:
        if r["profile"] == "mixed":
            assert set(r["by_name"]) <= {"small", "medium", "large"} and "small" in r["by_name"]
            assert sum(n["requests"] for n in r["by_name"].values()) == r["requests"]
        if r["profile"] == "api":
            assert set(r["by_name"]) == {"/api/datasets", "/api/datasets/<name>"}
        if r["profile"] == "features":
            assert {"/collections/<id>", "items?bbox&limit=100"} <= set(r["by_name"])


def test_quick_run_writes_the_report_and_graphs(quick: QuickRun) -> None:
    text = (quick.out / "report.md").read_text()
    for heading in ("# Load-test lab", "## Table 1", "## Table 2", "## Table 3", "## Graphs"):
        assert heading in text
    assert "**Mode:** quick" in text
    with open(quick.out / "runs.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(quick.document["runs"])
    for name in ("latency-vs-users.png", "throughput-vs-users.png"):
        assert (quick.out / name).read_bytes().startswith(PNG_MAGIC)
    total = len(quick.document["runs"])  # progress counts every run: [ n/total]
    assert "report: " in quick.done.stdout
    assert re.search(rf"\[\s*{total}/{total}\]", quick.done.stdout)


def test_quick_run_leaves_no_process(quick: QuickRun) -> None:
    pids = [pid for t in quick.document["targets"] for pid in t["pids"]]
    assert len(pids) >= 7 and pids == printed_pids(quick.done.stdout)
    assert not still_running([psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)])
    # processes in a lab work folder made during this run (not another run's, e.g. a soak)
    bench_dirs = [p for p in psutil.process_iter(["cmdline", "create_time"])
                  if "geojson-api-bench-" in " ".join(p.info["cmdline"] or [])
                  and p.info["create_time"] >= quick.started - 1]
    assert not still_running(bench_dirs)


class Lines:
    """A child's output, line by line, readable with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout
        threading.Thread(target=lambda: [self.queue.put(line) for line in stream],
                         daemon=True).start()

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return
        raise AssertionError(f"{text!r} not printed within {timeout} s:\n{''.join(self.seen)}")


def everything_of(bench: psutil.Process, output: str) -> list[psutil.Process]:
    """The lab's children and grandchildren, and the stack's detached parts with theirs."""
    processes = bench.children(recursive=True)
    for pid in printed_pids(output):
        root = psutil.Process(pid)
        processes += [root, *root.children(recursive=True)]
    return processes


@pytest.fixture
def interrupted(served_data: Path, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    require_lab()
    command = [*BENCH, "--quick", "--scenarios", "10u-mixed", "--measure", "60",
               "--data", str(served_data), "--out", str(tmp_path / "out")]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        yield proc
    finally:  # a failed test still lets the lab stop what it started (the stack is detached)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=240)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_ctrl_c_stops_every_process(interrupted: subprocess.Popen[str]) -> None:
    lines = Lines(interrupted)
    lines.wait_for("running 1 scenarios on 4 targets", timeout=180)
    time.sleep(2)  # the first Locust run is under way
    processes = everything_of(psutil.Process(interrupted.pid), "".join(lines.seen))
    names = " ".join(" ".join(p.cmdline()) for p in processes)
    for part in ("locust", "flask", "gunicorn", "nginx", "redis-server"):
        assert part in names
    interrupted.send_signal(signal.SIGINT)
    assert interrupted.wait(timeout=240) == 130
    assert not still_running(processes)


def test_a_target_that_cannot_start_stops_the_others(served_data: Path, tmp_path: Path) -> None:
    require_lab()
    env = {**os.environ, "GEOJSON_API_WORKER_CLASS": "bogus"}  # `serve` refuses it
    done = subprocess.run([*BENCH, "--quick", "--targets", "devserver,gunicorn", "--data",
                           str(served_data), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "gunicorn (pid" in done.stderr and "exited with code" in done.stderr
    (devserver,) = printed_pids(done.stdout)
    assert not psutil.pid_exists(devserver) or not still_running([psutil.Process(devserver)])
    assert not (tmp_path / "out" / "report.md").exists()


def test_memory_guard_stops_a_run(served_data: Path, tmp_path: Path) -> None:
    """The study's baseline holds each body in memory: 100 downloads of 5 MB pass 80 MB."""
    require_lab()
    out = tmp_path / "out"
    done = subprocess.run([*BENCH, "--quick", "--targets", "devserver", "--scenarios",
                           "wrk-100c-medium", "--max-target-rss", "80", "--data",
                           str(served_data), "--out", str(out)],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = json.loads((out / "runs.json").read_text())["runs"]
    assert run["stopped_by_guard"].startswith("target RSS") and run["requests"] > 0
    assert "stopped by the memory guard" in (out / "report.md").read_text()


# -- the lab as an installed package -------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
LAB_FILES = ("locustfile.py", "baseline_app.py", "bare_wsgi.py")
# Run with a copy of the package first on the path, from a folder outside the checkout.
PROBE = """
import json, subprocess, sys
from pathlib import Path
import geojson_api
from geojson_api.lab.procs import Supervisor
from geojson_api.lab.targets import (
    bare_command, bare_server, devserver, devserver_command, lab_file, start_python, warm_up)

data, work = Path(sys.argv[1]), Path(sys.argv[2])
found = {"package": geojson_api.__file__, "bare": bare_command(1),
         "devserver": devserver_command(1),
         "files": [str(lab_file(name)) for name in sys.argv[3:]]}
supervisor = Supervisor()
try:
    for spec in (devserver(), bare_server()):
        warm_up(start_python(supervisor, spec, work, data, timeout=60), data, ["small"])
finally:
    supervisor.stop_all()
listed = subprocess.run([sys.executable, "-m", "locust", "-f", str(lab_file("locustfile.py")),
                         "--list"], capture_output=True, text=True, timeout=120)
found["locust"] = listed.stdout + listed.stderr
print(json.dumps(found))
"""


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def inside(path: str | Path, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


def test_a_copy_of_the_package_outside_the_checkout_runs_the_lab_files(
        samples: Path, tmp_path: Path) -> None:
    require_module("locust")
    site = tmp_path / "site"
    shutil.copytree(Path(geojson_api.__file__).parent, site / "geojson_api",
                    ignore=shutil.ignore_patterns("__pycache__"))
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(samples / "small.geojson", data / "small.geojson")
    (tmp_path / "work").mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", PROBE, str(data), str(tmp_path / "work"),
                           *LAB_FILES], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    lab = site / "geojson_api" / "lab"
    assert inside(found["package"], site)
    for path in found["files"]:
        assert inside(path, lab / "files") and Path(path).is_file(), path
    assert inside(option(found["bare"], "--pythonpath"), lab / "files")
    assert inside(option(found["devserver"], "--app"), lab / "files")
    for user in ("StudyUser", "DatasetApiUser", "FeatureQueryUser"):
        assert user in found["locust"]


def test_the_lab_files_are_package_data_of_the_imported_package() -> None:
    package = Path(geojson_api.lab.__file__).parent
    assert (package / "files").resolve() == FILES
    for name in LAB_FILES:
        assert inside(lab_file(name), package / "files")
    assert inside(option(bare_command(1), "--pythonpath"), package)
    assert inside(option(devserver_command(1), "--app"), package)
    # What a wheel holds: every file of lab/files/ matches a declared glob.
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["package-data"]["geojson_api.lab"]
    shipped = sorted(p.relative_to(package).as_posix() for p in (package / "files").iterdir()
                     if p.is_file())
    assert set(LAB_FILES) <= {Path(p).name for p in shipped}
    assert [p for p in shipped if not any(fnmatch.fnmatch(p, g) for g in declared)] == []
    assert not (package / "files" / "__init__.py").exists()  # data, never imported


def checkout_references(source: str) -> list[str]:
    """What in a module could reach out of its package into a source checkout: a path
    going up (``.parents[...]``, ``.parent.parent``) or a string (docstrings aside)
    naming ``loadtest``."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and (
                node.attr == "parents" or (node.attr == "parent" and isinstance(
                    node.value, ast.Attribute) and node.value.attr == "parent")):
            hits.append(f"line {node.lineno}: .{node.attr}")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and "loadtest" in node.value and id(node) not in docstrings):
            hits.append(f"line {node.lineno}: {node.value!r}")
    return hits


def test_no_module_of_the_lab_reaches_into_the_checkout() -> None:
    old = 'path = Path(__file__).resolve().parents[3] / "loadtest"\n'
    assert len(checkout_references(old)) == 2  # the finder finds what the lab once did
    assert checkout_references('"""See loadtest/wholefile.py."""\nx = Path(y).parent\n') == []
    package = Path(geojson_api.lab.__file__).parent
    modules = sorted(package.rglob("*.py"))
    assert package / "files" / "locustfile.py" in modules
    hits = {str(p.relative_to(package)): found for p in modules
            if (found := checkout_references(p.read_text()))}
    assert hits == {}
