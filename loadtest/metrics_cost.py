"""What Prometheus metrics cost: the same Gunicorn app with and without them, one run.

Two ``geojson-api serve`` instances over the same data folder (the ~50 KB
``small`` sample): ``GEOJSON_API_METRICS=true`` and ``false``, otherwise the
same settings (default worker class and number of workers, no access log, no
tiles). Each is started in its own session and stopped by PID.

Per *scenario* (the small file through the whole-file fast lane, and an OGC
API items page answered from the shared cache), ``--pairs`` pairs of wrk runs
(``wrk -t2 -c<connections> -d<duration>s --latency``) drive one instance and
then the other, the order alternating from pair to pair so that slow drifts of
the shared machine hit both. Reported per scenario and instance: the median
requests/s over the pairs with its range (min-max), the median p99 latency,
the server tree's CPU time per request (master and workers, from /proc, over
each run) and the errors; and the cost, ``1 - median(on) / median(off)``.
The instance that is not being driven sits idle (its metrics thread wakes once
a second).

wrk and the servers share the machine's cores: what a server saves is left to
wrk, so the cost shows as requests/s. This is a measurement, not a test: no
thresholds.

Usage::

    python loadtest/metrics_cost.py [--pairs 3] [--duration 5] [--connections 10]
        [--workers N] [--out loadtest/results]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from geojson_api.lab.wrk import parse_wrk, wrk_command
from geojson_api.metrics.scrape import children, process_stats
from geojson_api.sample import write_samples
from geojson_api.stack import free_ports

SCENARIOS = {"small-file": "/geojson/small", "items": "/collections/small/items?limit=10"}


@dataclass
class Instance:
    name: str
    metrics: bool
    data: Path
    log: Path
    workers: int | None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Instance:
        self.port = free_ports(1, exclude=set())[0]
        env = {**os.environ, "GEOJSON_API_METRICS": str(self.metrics).lower(),
               "GEOJSON_API_ACCESS_LOG": "", "GEOJSON_API_TILES": "false",
               "GEOJSON_API_SETTLE_SECONDS": "0"}
        argv = [sys.executable, "-m", "geojson_api", "serve", "--data", str(self.data),
                "--bind", f"127.0.0.1:{self.port}"]
        if self.workers:
            argv += ["--workers", str(self.workers)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 120
        while not _answers(self.url + "/readyz"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{self.name} did not start; see {self.log}")
            time.sleep(0.2)
        for path in SCENARIOS.values():  # warm: variants, index, the cached page
            for _ in range(20):
                _answers(self.url + path)
        return self

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        pids = [self.proc.pid, *children(self.proc.pid)]
        return sum(stats[0] for pid in pids if (stats := process_stats(pid)) is not None)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass
class Runs:
    rps: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    cpu_us_per_request: list[float] = field(default_factory=list)
    errors: int = 0


def drive(instance: Instance, path: str, connections: int, duration: int, runs: Runs) -> None:
    """One wrk run against ``instance``; its requests/s, p99 and the tree's CPU per request."""
    cpu = instance.cpu_seconds()
    text = subprocess.run(wrk_command(instance.url + path, connections, duration),
                          capture_output=True, text=True, check=True).stdout
    used = instance.cpu_seconds() - cpu
    stats = parse_wrk(text)
    runs.rps.append(stats.requests_per_s)
    runs.p99_ms.append(stats.latency_ms.get("p99") or 0.0)
    runs.cpu_us_per_request.append(used / max(stats.requests, 1) * 1e6)
    runs.errors += stats.errors


def summary(runs: Runs) -> dict[str, Any]:
    return {"rps_median": statistics.median(runs.rps), "rps_min": min(runs.rps),
            "rps_max": max(runs.rps), "p99_ms_median": statistics.median(runs.p99_ms),
            "cpu_us_per_request_median": statistics.median(runs.cpu_us_per_request),
            "errors": runs.errors, "rps": runs.rps}


def report(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = ["| scenario | metrics | req/s median (min-max) | p99 ms | CPU µs/req | errors |",
             "|---|---|---|---|---|---|"]
    for scenario, by_name in results.items():
        for name, s in by_name.items():
            lines.append(f"| {scenario} | {name} | {s['rps_median']:,.0f} "
                         f"({s['rps_min']:,.0f}-{s['rps_max']:,.0f}) | "
                         f"{s['p99_ms_median']:.2f} | {s['cpu_us_per_request_median']:.1f} | "
                         f"{s['errors']} |")
        on, off = by_name["on"], by_name["off"]
        cpu = on["cpu_us_per_request_median"] - off["cpu_us_per_request_median"]
        lines.append(f"| {scenario} | **cost** | {1 - on['rps_median'] / off['rps_median']:+.1%}"
                     f" of req/s | | {cpu:+.1f} µs | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--workers", type=int, help="Gunicorn workers (default: the setting's)")
    parser.add_argument("--out", type=Path, default=Path("loadtest/results"))
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="metrics-cost-"))
    data = work / "data"
    data.mkdir()
    write_samples(data, ["small"])
    instances = {"on": Instance("on", True, data, work / "on.log", args.workers),
                 "off": Instance("off", False, data, work / "off.log", args.workers)}
    results: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        for instance in instances.values():
            instance.start()
        for scenario, path in SCENARIOS.items():
            runs = {name: Runs() for name in instances}
            for pair in range(args.pairs):
                order = ["on", "off"] if pair % 2 == 0 else ["off", "on"]
                for name in order:
                    drive(instances[name], path, args.connections, args.duration, runs[name])
                    time.sleep(1)
            results[scenario] = {name: summary(r) for name, r in runs.items()}
    finally:
        for instance in instances.values():
            instance.stop()
    table = report(results)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    (args.out / f"metrics-cost-{stamp}.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2))
    (args.out / f"metrics-cost-{stamp}.md").write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
