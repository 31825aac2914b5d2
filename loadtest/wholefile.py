"""Whole-file delivery benchmark: our Gunicorn app against nginx serving the same files.

What is compared
----------------
Five *targets* serve the same three sample datasets (``small`` ~50 KB,
``medium`` ~5 MB, ``large`` ~50 MB) on 127.0.0.1:

* ``nginx``: the files served statically (``sendfile on``, ``open_file_cache``),
  the practical ceiling for "bytes of a file out of a socket" on this machine;
* ``gthread`` and ``gevent``: ``geojson-api serve`` (Gunicorn, default number of
  workers) with that worker class;
* ``bare``: the same Gunicorn config (gthread) around a do-nothing WSGI app that
  returns the file from memory (``bare_wsgi.py``): the ceiling for any Python
  app under Gunicorn, so the report separates Gunicorn's cost from ours;
* ``stack``: the full production-like stack of ``geojson-api stack up
  --instances 2 --offload nginx``: nginx (the rendered production template) in
  front of 2 Gunicorn instances (default worker class and number of workers)
  sharing one redis-server. nginx proxies ``GET /geojson/<name>`` to an
  instance, which answers with ``X-Accel-Redirect``, and nginx sends the file
  bytes (whatever else the stack's configuration does, e.g. for small files, is
  part of what is measured; its rendered nginx config is saved in the JSON
  results). ``stack up`` runs as a subprocess (bounded by ``--start-timeout``; it
  prepares the datasets first) and starts every part *detached*, each in its own
  session, recording them in ``<run-dir>/stack.json``; they are stopped with
  ``geojson-api stack down`` whatever happens, and as a last resort killed by
  PID. ``--app-arg`` does not apply to it; its settings come from the
  ``GEOJSON_API_*`` environment like in production (e.g. ``GEOJSON_API_WORKERS``).

Every target runs without an app access log (``GEOJSON_API_ACCESS_LOG=""``) and
the static nginx with ``access_log off``. The stack's nginx rate limit per
client address (``limit_req``, 50 r/s by default: wrk is one client) is lifted
with ``GEOJSON_API_NGINX_RATE=1000000r/s`` and ``GEOJSON_API_NGINX_BURST=1000000``.
wrk sends no ``Accept-Encoding``, so the app answers with the identity bytes,
like nginx.

Method
------
Each *scenario* is one file at one concurrency (see ``SCENARIOS``). For every
scenario and every round, each target is driven once by
``wrk -t2 -c<connections> -d<duration>s --timeout 30s --latency``, one target
after the other with a short pause in between. The order of the targets is
rotated from one (scenario, round) block to the next, so no target always goes
first: slow drifts of the shared machine (neighbours, page cache, thermal state)
are spread over all targets instead of penalising one of them.

Per scenario and target, the report gives the **median over rounds** of
throughput (MB/s) and requests per second and of the latency percentiles, the
**sum** of errors, and the **maximum** over rounds of the memory growth. The
"vs nginx" ratio is the target's median MB/s divided by nginx's median MB/s in
the same scenario: 1.00 means as fast as nginx, 0.50 half of its throughput.

While wrk runs, the target's whole process tree (master and all descendants)
is sampled from /proc every 0.2 s; for ``stack``, the trees of all its parts
read from ``stack.json`` together (nginx master + workers, both Gunicorn
masters + their workers, redis-server; each part's own process counts as a
master). Sampled are the RSS of every process (idle = just before the run,
peak = highest sample during it, growth = peak - idle) and the tree's CPU time
(user + system of the live processes plus the times of the children they
reaped, so a worker replaced during the run still counts). The CPU delta
over the run gives CPU seconds per GB sent and per 1,000 requests. RSS counts
shared pages in every process that maps them, so the tree's sum overstates the
memory really used; the growth is the meaningful figure. The page cache is not
part of RSS. A worker that appears during the run (Gunicorn's ``max_requests``
recycles workers) is compared with the smallest idle worker of the same master.

Caveats
-------
wrk and the servers share the same cores (the machine has few, and is shared
with other jobs). A server that needs less CPU leaves more to wrk, which is part
of what is measured, but absolute numbers are lower than with a separate load
generator. wrk's own CPU time is recorded: when it approaches the number of
cores (or 2, its thread count), wrk is the bottleneck and the differences
between targets are understated. "other" is the machine's busy CPU during the
run not charged to the target, to wrk or to this script's sampling: neighbours
and kernel work (loopback networking) not attributed to a process. A high value
marks a noisy run. On loopback, much of the cost of moving the bytes is charged
to the receiver (wrk) and to softirq work, so "CPU s/GB" compares the servers
with one another; it is not what they would spend on a real network.
``--quick`` runs are smoke runs, too short for docs: at 200 connections a 50 MB
download can take longer than the run.

``stack`` caveats: its nginx writes a JSON access log line per request (into
the run folder; the template has no setting to switch it off), which costs it a
little and which the static nginx does not pay. It has one more hop (nginx ->
Gunicorn over loopback for every request) and more processes sharing the cores
(the default of 2 x cores + 1 workers per instance). Its parts are detached from
this script: if the script is killed with SIGKILL after ``stack up`` finished,
they keep running; stop them with ``geojson-api stack down --run-dir DIR`` (the
folder is printed at start).

Units: MB = 10^6 bytes and GB = 10^9 bytes everywhere (wrk prints binary units,
converted here); transfer figures include the HTTP headers.

This is not a test: there are no thresholds. The script exits non-zero only
when a target fails to start (or dies), or when wrk cannot connect at all.

Usage::

    python loadtest/wholefile.py [--data DIR] [--duration 10] [--rounds 2]
        [--targets nginx,gthread,gevent,bare,stack] [--scenarios 10c-50KB,50c-5MB]
        [--out loadtest/results] [--quick] [--app-arg=--workers=3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import (  # the folder of this script is not a package
    GB,
    HOST,
    SAMPLE_INTERVAL,
    WRK_THREADS,
    WRK_TIMEOUT,
    BenchmarkError,
    Interrupted,
    MemoryStats,
    Server,
    Supervisor,
    WrkStats,
    base_machine_info,
    descendants_of,
    die_with_parent,
    dist_version,
    first_line,
    fmt,
    fmt_mb,
    free_port,
    http_get,
    install_signal_handlers,
    interrupt_with_parent,
    log_tail,
    markdown_table,
    median,
    memory_stats,
    parse_wrk,
    read_or_none,
    run_wrk,
    running,
    sample_tree,
    spawn,
    system_busy_seconds,
    wait_until_answering,
    wait_until_quiet,
    wrk_command,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TARGETS = ("nginx", "gthread", "gevent", "bare", "stack")
DATASETS = ("small", "medium", "large")


@dataclass(frozen=True)
class Scenario:
    """One file requested over and over by a fixed number of connections."""

    name: str
    dataset: str
    connections: int


SCENARIOS = (
    Scenario("10c-50KB", "small", 10),
    Scenario("50c-5MB", "medium", 50),
    Scenario("100c-5MB", "medium", 100),
    Scenario("200c-50MB", "large", 200),
    Scenario("300c-50KB", "small", 300),
)


# -- targets ---------------------------------------------------------------------------


@dataclass
class Target:
    """A server under test, listening on its own loopback port."""

    name: str
    port: int
    server: Server
    startup_seconds: float = 0.0

    def url(self, dataset: str) -> str:
        return f"http://{HOST}:{self.port}/geojson/{dataset}"

    def tree_roots(self) -> list[psutil.Process]:
        """Every root of the target's process trees; fails if a part has exited."""
        self.server.check_alive()
        return self.server.roots()


def _nginx_quote(path: Path, suffix: str = "") -> str:
    """``path`` as a quoted nginx string; ``suffix`` may hold nginx variables."""
    text = str(path)
    if any(c in text for c in '"\\$\n'):
        raise BenchmarkError(f"path {text!r} cannot be used in an nginx config")
    return f'"{text}{suffix}"'


def _nginx_temp_paths(workdir: Path) -> list[str]:
    """Temp paths of the modules this nginx build has (no root-owned default paths)."""
    build = subprocess.run(["nginx", "-V"], capture_output=True, text=True).stderr
    lines = [f"client_body_temp_path {_nginx_quote(workdir / 'client_body')};"]
    for module in ("proxy", "fastcgi", "uwsgi", "scgi"):
        if f"--without-http_{module}_module" not in build:
            lines.append(f"{module}_temp_path {_nginx_quote(workdir / module)};")
    return lines


def nginx_config(workdir: Path, data_dir: Path, port: int) -> str:
    """A self-contained nginx config: every path it writes is inside ``workdir``."""
    # As root, workers would switch to "nobody", who may not read the data folder.
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp_paths = "\n".join("    " + line for line in _nginx_temp_paths(workdir))
    alias = _nginx_quote(data_dir, "/$1.geojson")
    return f"""{user}worker_processes auto;
daemon off;
master_process on;
pid {_nginx_quote(workdir / "nginx.pid")};
error_log {_nginx_quote(workdir / "error.log")} warn;

events {{
    worker_connections 1024;
}}

http {{
    access_log off;
{temp_paths}
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    keepalive_timeout 65;
    open_file_cache max=100;

    server {{
        listen {HOST}:{port};
        location ~ ^/geojson/([A-Za-z0-9_.-]+)$ {{
            alias {alias};
            default_type application/geo+json;
        }}
        location / {{
            return 404;
        }}
    }}
}}
"""


def start_nginx(supervisor: Supervisor, workdir: Path, data_dir: Path,
                timeout: float) -> Target:
    nginx_dir = workdir / "nginx"
    nginx_dir.mkdir()
    port = free_port()
    conf = nginx_dir / "nginx.conf"
    conf.write_text(nginx_config(nginx_dir, data_dir, port))
    argv = ["nginx", "-p", str(nginx_dir), "-e", str(nginx_dir / "error.log"), "-c", str(conf)]
    child = supervisor.start("nginx", argv, nginx_dir / "error.log")
    target = Target("nginx", port, child)
    # Any HTTP answer (the catch-all 404) means nginx listens; warm_up checks the files.
    target.startup_seconds = wait_until_answering(
        child, f"http://{HOST}:{port}/", lambda status: status is not None, timeout
    )
    return target


def geojson_api_command() -> list[str]:
    found = shutil.which("geojson-api")
    return [found] if found else [sys.executable, "-m", "geojson_api"]


def app_command(name: str, data_dir: Path, port: int, app_args: Sequence[str]) -> list[str]:
    """``geojson-api serve`` for gthread and gevent; for ``bare``, Gunicorn with the
    same config (gthread) around the do-nothing WSGI app of ``bare_wsgi.py``."""
    if name == "bare":
        return [sys.executable, "-m", "gunicorn", "-c", "python:geojson_api.gunicorn_conf",
                "--bind", f"{HOST}:{port}", "--worker-class", "gthread",
                "--pythonpath", str(Path(__file__).resolve().parent), *app_args,
                "bare_wsgi:app"]
    return [*geojson_api_command(), "serve", "--data", str(data_dir),
            "--bind", f"{HOST}:{port}", "--worker-class", name, *app_args]


def start_app(supervisor: Supervisor, worker_class: str, workdir: Path, data_dir: Path,
              app_args: Sequence[str], timeout: float) -> Target:
    port = free_port()
    argv = app_command(worker_class, data_dir, port, app_args)
    env = {**os.environ, "GEOJSON_API_ACCESS_LOG": "", "GEOJSON_API_DATA_DIR": str(data_dir)}
    log = workdir / f"{worker_class}.log"
    child = supervisor.start(worker_class, argv, log, env)
    target = Target(worker_class, port, child)
    ready = "/geojson/small" if worker_class == "bare" else "/readyz"
    target.startup_seconds = wait_until_answering(
        child, f"http://{HOST}:{port}{ready}", lambda status: status == 200, timeout
    )
    return target


# -- the production-like stack ---------------------------------------------------------

STACK_INSTANCES = 2
STACK_OFFLOAD = "nginx"
# wrk is one client address: lift the per-address rate limit of the stack's nginx. The
# app's access log is off like for the other targets (nginx's JSON one cannot be).
STACK_ENV = {"GEOJSON_API_NGINX_RATE": "1000000r/s", "GEOJSON_API_NGINX_BURST": "1000000",
             "GEOJSON_API_ACCESS_LOG": ""}
# `stack down` stops the parts one after the other, each within 30 s (then SIGKILL).
STACK_STOP_TIMEOUT = 150.0


@dataclass
class StackPart:
    """One process of the stack, as recorded in stack.json."""

    name: str
    port: int
    process: psutil.Process  # psutil refuses to act on a PID that was reused


class Stack:
    """The stack of ``geojson-api stack up``: detached processes, each in its own session.

    They outlive ``stack up`` and are not our children, so they are followed by
    PID: the parts recorded in ``stack.json`` and every descendant seen so far
    (including whatever ``stack up`` had started when it was still running).
    """

    def __init__(self, name: str, run_dir: Path, log: Path) -> None:
        self.name = name
        self.run_dir = run_dir
        self.log = log
        self.parts: list[StackPart] = []
        self.url: str | None = None
        self.seen: set[psutil.Process] = set()
        self._up: subprocess.Popen[bytes] | None = None

    def command(self, action: str, *args: str) -> list[str]:
        return [*geojson_api_command(), "stack", action, "--run-dir", str(self.run_dir), *args]

    def up(self, data_dir: Path, port: int, timeout: float) -> None:
        """Run ``stack up`` (bounded by ``timeout``) and read what it started."""
        argv = self.command("up", "--data", str(data_dir), "--port", str(port),
                            "--instances", str(STACK_INSTANCES), "--offload", STACK_OFFLOAD)
        print(f"  {' '.join(argv)}\n  (run folder {self.run_dir})", flush=True)
        # SIGINT if this script dies: `stack up` then stops the parts it started.
        self._up = spawn(argv, self.log, {**os.environ, **STACK_ENV},
                         on_parent_death=interrupt_with_parent)
        deadline = time.monotonic() + timeout
        while self._up.poll() is None:
            self.seen.update(descendants_of(self._up.pid))
            if time.monotonic() > deadline:
                self._interrupt_up()
                raise BenchmarkError(f"`stack up` did not finish in {timeout:.0f} s; end of "
                                     f"its log:\n{log_tail(self.log)}")
            time.sleep(0.2)
        if self._up.returncode != 0:
            raise BenchmarkError(f"`stack up` exited with code {self._up.returncode}; end of "
                                 f"its log:\n{log_tail(self.log)}")
        self._read_state(port)
        self.remember_descendants()

    def _read_state(self, port: int) -> None:
        try:
            state = json.loads((self.run_dir / "stack.json").read_text())
            self.url = str(state["url"])
            recorded = [(str(p["name"]), int(p["pid"]), int(p["port"]), str(p["argv0"]))
                        for p in state["parts"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BenchmarkError(f"cannot read {self.run_dir / 'stack.json'}: {exc}") from exc
        problems = []
        for name, pid, part_port, argv0 in recorded:
            try:
                process = psutil.Process(pid)
                cmdline = " ".join(process.cmdline())
            except psutil.Error:
                problems.append(f"stack part {name} (pid {pid}) is not running")
                continue
            if argv0 not in cmdline:  # what `stack down` checks too
                problems.append(f"stack part {name}: pid {pid} runs {cmdline!r}")
                continue
            self.parts.append(StackPart(name, part_port, process))
            self.seen.add(process)
        if self.url != f"http://{HOST}:{port}":
            problems.append(f"`stack up` serves {self.url}, expected port {port}")
        if problems:
            raise BenchmarkError("; ".join(problems))

    def _interrupt_up(self) -> None:
        """SIGINT a running ``stack up``: it stops what it started; SIGKILL if it hangs."""
        if self._up is None or self._up.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._up.send_signal(signal.SIGINT)
        try:
            self._up.wait(STACK_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._up.kill()
            self._up.wait()

    def remember_descendants(self) -> None:
        for part in self.parts:
            if running(part.process):
                self.seen.update(descendants_of(part.process.pid))

    def check_alive(self) -> None:
        for part in self.parts:
            if not running(part.process):
                raise BenchmarkError(
                    f"stack part {part.name} (pid {part.process.pid}) exited; end of its log:\n"
                    f"{log_tail(self.run_dir / f'{part.name}.log')}"
                )

    def roots(self) -> list[psutil.Process]:
        return [part.process for part in self.parts]

    def describe(self) -> str:
        return "pids " + ", ".join(f"{p.name} {p.process.pid}" for p in self.parts)

    def stop(self) -> None:
        """``stack down``; then SIGKILL, by PID, whatever of the stack still runs."""
        self._interrupt_up()
        self.remember_descendants()
        if (self.run_dir / "stack.json").exists():
            self._down()
        self.remember_descendants()  # a part's workers, should `stack down` have failed
        leftovers = []
        for process in self.seen:
            if running(process):
                with contextlib.suppress(psutil.Error):  # psutil checks for PID reuse
                    process.kill()
                    leftovers.append(process.pid)
        if leftovers:
            print(f"{self.name}: killed leftover processes {sorted(leftovers)}", file=sys.stderr)

    def _down(self) -> None:
        with open(self.log, "ab") as out:
            try:
                done = subprocess.run(self.command("down"), stdin=subprocess.DEVNULL,
                                      stdout=out, stderr=subprocess.STDOUT,
                                      timeout=STACK_STOP_TIMEOUT, process_group=0)
            except subprocess.TimeoutExpired:
                print(f"{self.name}: `stack down` did not finish in {STACK_STOP_TIMEOUT:.0f} s",
                      file=sys.stderr)
                return
        if done.returncode != 0:
            print(f"{self.name}: `stack down` exited with code {done.returncode}; end of its "
                  f"log:\n{log_tail(self.log)}", file=sys.stderr)

    def record(self) -> dict[str, Any]:
        """For the JSON results: the parts, the settings given and nginx's configuration."""
        nginx_dir = self.run_dir / "nginx"
        return {
            "url": self.url, "instances": STACK_INSTANCES, "offload": STACK_OFFLOAD,
            "env": STACK_ENV,
            "parts": [{"name": p.name, "pid": p.process.pid, "port": p.port}
                      for p in self.parts],
            "nginx_conf": read_or_none(nginx_dir / "nginx.conf"),
            "site_conf": read_or_none(nginx_dir / "geojson-api.conf"),
        }


def start_stack(supervisor: Supervisor, workdir: Path, data_dir: Path,
                timeout: float) -> Target:
    port = free_port()
    started = time.monotonic()
    stack = Stack("stack", workdir / "stack", workdir / "stack.log")
    supervisor.groups.append(stack)  # registered before anything can fail
    stack.up(data_dir, port, timeout)
    return Target("stack", port, stack, startup_seconds=time.monotonic() - started)


def warm_up(target: Target, data_dir: Path, datasets: Iterable[str]) -> None:
    """One GET of each file, checking that the whole file comes back."""
    for dataset in datasets:
        expected = (data_dir / f"{dataset}.geojson").stat().st_size
        status, size = http_get(target.url(dataset))
        if status != 200 or size != expected:
            raise BenchmarkError(
                f"{target.name}: GET {target.url(dataset)} gave status {status} and "
                f"{size} bytes, expected 200 and {expected} bytes"
            )


# -- one run ---------------------------------------------------------------------------

@dataclass
class Run:
    """One wrk run against one target, with what the server's tree did meanwhile."""

    scenario: str
    target: str
    round: int
    position: int
    command: list[str]
    wrk: WrkStats
    wall_seconds: float
    server_cpu_seconds: float
    wrk_cpu_seconds: float
    sampler_cpu_seconds: float
    other_cpu_seconds: float
    memory: MemoryStats
    loadavg_before: tuple[float, float, float]
    samples: list[tuple[float, int, float]] = field(repr=False)
    output: str = field(repr=False)

    @property
    def cpu_s_per_gb(self) -> float | None:
        gigabytes = self.wrk.bytes_read / GB
        return self.server_cpu_seconds / gigabytes if gigabytes else None

    @property
    def cpu_s_per_1k_requests(self) -> float | None:
        thousands = self.wrk.requests / 1000
        return self.server_cpu_seconds / thousands if thousands else None

    def cores(self, cpu_seconds: float) -> float:
        return cpu_seconds / self.wall_seconds if self.wall_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["wrk"]["errors"] = self.wrk.errors
        data["derived"] = {
            "cpu_s_per_gb": self.cpu_s_per_gb,
            "cpu_s_per_1k_requests": self.cpu_s_per_1k_requests,
            "server_cores": self.cores(self.server_cpu_seconds),
            "wrk_cores": self.cores(self.wrk_cpu_seconds),
            "other_cores": self.cores(self.other_cpu_seconds),
        }
        return data


def drive(target: Target, scenario: Scenario, duration: int, round_no: int,
          position: int) -> Run:
    """Run wrk once against ``target`` while sampling the target's process trees."""
    roots = target.tree_roots()
    command = wrk_command(target.url(scenario.dataset), scenario.connections, duration)
    loadavg = os.getloadavg()
    idle = sample_tree(roots)
    busy_before, own_before = system_busy_seconds(), time.process_time()
    output, samples, wrk_cpu = run_wrk(command, roots, limit=duration + 90)
    busy = system_busy_seconds() - busy_before
    sampler_cpu = time.process_time() - own_before
    target.server.check_alive()
    stats = parse_wrk(output)
    if stats.requests == 0 and stats.socket_errors["connect"] > 0:
        raise BenchmarkError(f"wrk could not connect to {target.name}:\n{output}")
    end = samples[-1]
    server_cpu = end.cpu_seconds - idle.cpu_seconds
    return Run(
        scenario=scenario.name, target=target.name, round=round_no, position=position,
        command=command, wrk=stats, wall_seconds=end.at - idle.at,
        server_cpu_seconds=server_cpu, wrk_cpu_seconds=wrk_cpu, sampler_cpu_seconds=sampler_cpu,
        other_cpu_seconds=busy - server_cpu - wrk_cpu - sampler_cpu,
        memory=memory_stats(idle, samples), loadavg_before=loadavg,
        samples=[(round(s.at - idle.at, 3), s.total_rss, round(s.cpu_seconds - idle.cpu_seconds, 3))
                 for s in samples],
        output=output,
    )


# -- aggregation -----------------------------------------------------------------------

@dataclass
class Summary:
    """One scenario and target, aggregated over rounds."""

    scenario: str
    target: str
    rounds: int
    mb_per_s: float | None
    mb_per_s_min: float | None
    mb_per_s_max: float | None
    requests_per_s: float | None
    vs_nginx: float | None
    latency_ms: dict[str, float | None]
    socket_errors: dict[str, int]
    non_2xx_3xx: int
    errors: int
    idle_rss: int
    rss_growth: int
    worker_rss_growth: int
    new_processes: int
    cpu_s_per_gb: float | None
    cpu_s_per_1k_requests: float | None
    server_cores: float | None
    wrk_cores: float | None
    other_cores: float | None


def summarize_one(scenario: str, target: str, runs: Sequence[Run]) -> Summary:
    throughput = [r.wrk.mb_per_s for r in runs]
    return Summary(
        scenario=scenario, target=target, rounds=len(runs),
        mb_per_s=median(throughput), mb_per_s_min=min(throughput), mb_per_s_max=max(throughput),
        requests_per_s=median(r.wrk.requests_per_s for r in runs), vs_nginx=None,
        latency_ms={k: median(r.wrk.latency_ms[k] for r in runs) for k in runs[0].wrk.latency_ms},
        socket_errors={k: sum(r.wrk.socket_errors[k] for r in runs)
                       for k in runs[0].wrk.socket_errors},
        non_2xx_3xx=sum(r.wrk.non_2xx_3xx for r in runs),
        errors=sum(r.wrk.errors for r in runs),
        idle_rss=max(r.memory.idle_total for r in runs),
        rss_growth=max(r.memory.growth_total for r in runs),
        worker_rss_growth=max(r.memory.worker_growth_max for r in runs),
        new_processes=sum(r.memory.new_processes for r in runs),
        cpu_s_per_gb=median(r.cpu_s_per_gb for r in runs),
        cpu_s_per_1k_requests=median(r.cpu_s_per_1k_requests for r in runs),
        server_cores=median(r.cores(r.server_cpu_seconds) for r in runs),
        wrk_cores=median(r.cores(r.wrk_cpu_seconds) for r in runs),
        other_cores=median(r.cores(r.other_cpu_seconds) for r in runs),
    )


def summarize(runs: Sequence[Run], scenarios: Sequence[Scenario],
              targets: Sequence[str]) -> list[Summary]:
    summaries = []
    for scenario in scenarios:
        rows = {
            t: summarize_one(scenario.name, t, chosen)
            for t in targets
            if (chosen := [r for r in runs if r.scenario == scenario.name and r.target == t])
        }
        reference = rows["nginx"].mb_per_s if "nginx" in rows else None
        for row in rows.values():
            if reference and row.mb_per_s is not None:
                row.vs_nginx = row.mb_per_s / reference
        summaries.extend(rows.values())
    return summaries


# -- machine information ---------------------------------------------------------------

def machine_info() -> dict[str, Any]:
    return {
        **base_machine_info(),
        "geojson_api": dist_version("geojson-api"),
        "gunicorn": dist_version("gunicorn"),
        "gevent": dist_version("gevent"),
        "nginx": first_line(["nginx", "-v"]),
        "redis": first_line(["redis-server", "--version"]),
        "geojson_api_env": {k: v for k, v in os.environ.items() if k.startswith("GEOJSON_API_")},
    }


# -- reports ---------------------------------------------------------------------------

def summary_table(summaries: Sequence[Summary]) -> str:
    header = ["Scenario", "Target", "MB/s", "vs nginx", "req/s", "p50 ms", "p99 ms", "errors",
              "RSS growth MB", "max worker growth MB", "CPU s/GB"]
    rows = [
        [s.scenario, s.target, fmt(s.mb_per_s), fmt(s.vs_nginx), fmt(s.requests_per_s),
         fmt(s.latency_ms["p50"]), fmt(s.latency_ms["p99"]), str(s.errors),
         fmt_mb(s.rss_growth), fmt_mb(s.worker_rss_growth), fmt(s.cpu_s_per_gb)]
        for s in summaries
    ]
    return markdown_table(header, rows)


def scenario_table(summaries: Sequence[Summary]) -> str:
    header = ["Target", "MB/s (min-max)", "vs nginx", "req/s", "p50 / p90 / p99 ms",
              "socket errors c/r/w/t", "non-2xx", "idle RSS MB", "RSS growth MB",
              "max worker growth MB", "new procs", "CPU s/GB", "CPU s/1k req",
              "server cores", "wrk cores", "other cores"]
    rows = []
    for s in summaries:
        lat = s.latency_ms
        errors = s.socket_errors
        rows.append([
            s.target, f"{fmt(s.mb_per_s)} ({fmt(s.mb_per_s_min)}-{fmt(s.mb_per_s_max)})",
            fmt(s.vs_nginx), fmt(s.requests_per_s),
            f"{fmt(lat['p50'])} / {fmt(lat['p90'])} / {fmt(lat['p99'])}",
            "/".join(str(errors[k]) for k in ("connect", "read", "write", "timeout")),
            str(s.non_2xx_3xx), fmt_mb(s.idle_rss), fmt_mb(s.rss_growth),
            fmt_mb(s.worker_rss_growth), str(s.new_processes), fmt(s.cpu_s_per_gb),
            fmt(s.cpu_s_per_1k_requests), fmt(s.server_cores), fmt(s.wrk_cores),
            fmt(s.other_cores),
        ])
    return markdown_table(header, rows)


def runs_table(runs: Sequence[Run]) -> str:
    header = ["#", "Scenario", "Round", "Target", "MB/s", "req/s", "p99 ms", "errors",
              "server cores", "wrk cores", "other cores", "load avg"]
    rows = [
        [str(i), r.scenario, str(r.round), r.target, fmt(r.wrk.mb_per_s),
         fmt(r.wrk.requests_per_s), fmt(r.wrk.latency_ms["p99"]), str(r.wrk.errors),
         fmt(r.cores(r.server_cpu_seconds)), fmt(r.cores(r.wrk_cpu_seconds)),
         fmt(r.cores(r.other_cpu_seconds)), f"{r.loadavg_before[0]:.2f}"]
        for i, r in enumerate(runs, 1)
    ]
    return markdown_table(header, rows)


METHOD_NOTE = """\
Each target was driven in turn by `{command}`, the order of the targets rotating
from one scenario/round block to the next. Figures are medians over rounds
(throughput, req/s, latency, CPU), sums (errors) or maxima (memory). "vs nginx"
is the target's median MB/s divided by nginx's in the same scenario. MB = 10^6
bytes, GB = 10^9 bytes; transfer includes HTTP headers. RSS is sampled every
{interval} s over the server's whole process tree (master + workers); growth is
peak minus the idle value just before the run. CPU is user + system time of the
tree over the run. wrk and the servers share the same {nproc} cores; "wrk cores"
near {threads} means the load generator was the bottleneck, "other cores" is
CPU used by anything else on the (shared) machine meanwhile. The app's access
log is off (`GEOJSON_API_ACCESS_LOG=""`) and so is the static nginx's
(`access_log off`).
"""

STACK_NOTE = """`stack` is `geojson-api stack up --instances {instances} --offload {offload}`: nginx
(the production template) in front of {instances} Gunicorn instances sharing one
redis-server; nginx sends the file bytes after the app's `X-Accel-Redirect`. Its
rate limit is lifted (`{env}`). Its process trees (nginx, each Gunicorn master,
redis-server) are sampled together. Caveat: its nginx writes a JSON access log
line per request (no setting switches it off), which the static nginx does not.
"""


def markdown_report(meta: dict[str, Any], scenarios: Sequence[Scenario],
                    summaries: Sequence[Summary], runs: Sequence[Run]) -> str:
    machine = meta["machine"]
    config = meta["config"]
    parts = ["# Whole-file delivery: geojson-api under Gunicorn vs nginx\n"]
    if not meta["complete"]:
        parts.append(f"**INCOMPLETE RUN**: {meta['error']}\n")
    parts.append(
        f"{machine['date']}; {machine['nproc']} cores ({machine['cpu_model']}), "
        f"{machine['mem_total_bytes'] / GB:.1f} GB RAM, Linux {machine['kernel']}; "
        f"Python {machine['python']}, gunicorn {machine['gunicorn']}, gevent {machine['gevent']}, "
        f"{machine['nginx']}, {machine['wrk']}. Duration {config['duration']} s per run, "
        f"{config['rounds']} round(s), app arguments: `{' '.join(config['app_args']) or '-'}`.\n"
    )
    parts.append(METHOD_NOTE.format(
        command=(f"wrk -t{WRK_THREADS} -c<connections> -d{config['duration']}s "
                 f"--timeout {WRK_TIMEOUT} --latency <url>"),
        interval=SAMPLE_INTERVAL, nproc=machine["nproc"], threads=WRK_THREADS))
    if meta.get("stack"):
        stack = meta["stack"]
        parts.append(STACK_NOTE.format(
            instances=stack["instances"], offload=stack["offload"],
            env=" ".join(f"{k}={v}" for k, v in stack["env"].items() if v)))
    parts += ["## Summary\n", summary_table(summaries)]
    sizes = meta["datasets"]
    for scenario in scenarios:
        rows = [s for s in summaries if s.scenario == scenario.name]
        if rows:
            parts.append(f"## {scenario.name}: {scenario.dataset}.geojson "
                         f"({sizes[scenario.dataset]:,} bytes), {scenario.connections} "
                         "connections\n")
            parts.append(scenario_table(rows))
    parts += ["## Runs, in the order they ran\n", runs_table(runs)]
    return "\n".join(parts)


def write_results(out_dir: Path, stamp: str, meta: dict[str, Any],
                  scenarios: Sequence[Scenario], runs: Sequence[Run],
                  summaries: Sequence[Summary]) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"wholefile-{stamp}.json"
    md_path = out_dir / f"wholefile-{stamp}.md"
    document = {**meta, "summary": [asdict(s) for s in summaries],
                "runs": [r.as_dict() for r in runs]}
    json_path.write_text(json.dumps(document, indent=1) + "\n")
    md_path.write_text(markdown_report(meta, scenarios, summaries, runs))
    return json_path, md_path


# -- the benchmark ---------------------------------------------------------------------

@dataclass
class Config:
    data: Path | None
    duration: int
    rounds: int
    targets: list[str]
    scenarios: list[Scenario]
    out: Path
    app_args: list[str]
    pause: float
    start_timeout: float


def make_samples(data_dir: Path) -> Path:
    print(f"writing sample datasets into {data_dir} ...", flush=True)
    done = subprocess.run([*geojson_api_command(), "sample", str(data_dir)],
                          capture_output=True, text=True, process_group=0,
                          preexec_fn=die_with_parent)
    if done.returncode != 0:
        raise BenchmarkError(f"geojson-api sample failed:\n{done.stdout}{done.stderr}")
    return data_dir


def dataset_sizes(data_dir: Path, scenarios: Sequence[Scenario]) -> dict[str, int]:
    sizes = {}
    for name in sorted({s.dataset for s in scenarios}, key=DATASETS.index):
        path = data_dir / f"{name}.geojson"
        if not path.is_file():
            raise BenchmarkError(f"{path} is missing (make it with: geojson-api sample DIR)")
        sizes[name] = path.stat().st_size
    return sizes


def start_targets(supervisor: Supervisor, config: Config, workdir: Path,
                  data_dir: Path) -> list[Target]:
    """Start every target, one after the other (the first app prepares the datasets)."""
    targets = []
    for name in config.targets:
        print(f"starting {name} ...", flush=True)
        if name == "nginx":
            target = start_nginx(supervisor, workdir, data_dir, config.start_timeout)
        elif name == "stack":
            target = start_stack(supervisor, workdir, data_dir, config.start_timeout)
        else:
            target = start_app(supervisor, name, workdir, data_dir, config.app_args,
                               config.start_timeout)
        supervisor.remember_descendants()
        print(f"  {name}: {target.server.describe()}, port {target.port}, "
              f"ready in {target.startup_seconds:.1f} s", flush=True)
        targets.append(target)
    return targets


def benchmark(config: Config, supervisor: Supervisor, targets: Sequence[Target],
              runs: list[Run]) -> None:
    """Every scenario, every round, every target in rotated order; appends to ``runs``."""
    total = len(config.scenarios) * config.rounds * len(targets)
    block = 0
    for scenario in config.scenarios:
        for round_no in range(1, config.rounds + 1):
            shift = block % len(targets)
            order = [*targets[shift:], *targets[:shift]]
            block += 1
            for position, target in enumerate(order, 1):
                time.sleep(config.pause)
                run = drive(target, scenario, config.duration, round_no, position)
                supervisor.remember_descendants()  # workers may have been replaced
                runs.append(run)
                print(f"[{len(runs)}/{total}] {scenario.name} {target.name} round {round_no}: "
                      f"{fmt(run.wrk.mb_per_s)} MB/s, {fmt(run.wrk.requests_per_s)} req/s, "
                      f"p99 {fmt(run.wrk.latency_ms['p99'])} ms, errors {run.wrk.errors}, "
                      f"wrk {fmt(run.cores(run.wrk_cpu_seconds))} cores", flush=True)


def run(config: Config) -> int:
    """Start everything, benchmark, write the reports; everything started is stopped."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    runs: list[Run] = []
    supervisor = Supervisor()
    with tempfile.TemporaryDirectory(prefix="wholefile-") as tmp:
        workdir = Path(tmp)
        meta: dict[str, Any] = {"machine": machine_info(), "config": config_dict(config),
                                "complete": False, "error": "interrupted before the end"}
        try:
            data_dir = config.data or make_samples(workdir / "data")
            meta["datasets"] = dataset_sizes(data_dir, config.scenarios)
            meta["config"]["data"] = str(data_dir)
            targets = start_targets(supervisor, config, workdir, data_dir)
            meta["nginx_conf"] = read_or_none(workdir / "nginx" / "nginx.conf")
            meta["stack"] = next(
                (g.record() for g in supervisor.groups if isinstance(g, Stack)), None)
            for target in targets:
                warm_up(target, data_dir, meta["datasets"])
            wait_until_quiet(targets)
            meta["processes"] = {t.name: len(sample_tree(t.tree_roots()).rss) for t in targets}
            benchmark(config, supervisor, targets, runs)
            meta.update(complete=True, error=None)
        except BenchmarkError as exc:
            meta["error"] = str(exc).splitlines()[0]
            raise
        finally:
            supervisor.stop_all()
            if runs:
                report(config, stamp, meta, runs)
    return 0


def report(config: Config, stamp: str, meta: dict[str, Any], runs: Sequence[Run]) -> None:
    summaries = summarize(runs, config.scenarios, config.targets)
    json_path, md_path = write_results(config.out, stamp, meta, config.scenarios, runs,
                                       summaries)
    print()
    print(summary_table(summaries), end="")
    print(f"\nresults: {json_path}\n         {md_path}")


def config_dict(config: Config) -> dict[str, Any]:
    data = asdict(config)
    data["data"] = str(config.data) if config.data else None
    data["out"] = str(config.out)
    return data


# -- command line ----------------------------------------------------------------------

def _choices(text: str, known: Sequence[str], what: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [c for c in chosen if c not in known]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(unknown) or '(none given)'}; choose from {','.join(known)}"
        )
    return chosen


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark whole-file delivery: geojson-api (gthread, gevent, the "
                    "nginx + Gunicorn + redis stack) vs nginx.",
        epilog="scenarios: " + ", ".join(
            f"{s.name} ({s.dataset}, {s.connections} connections)" for s in SCENARIOS),
    )
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="folder with small/medium/large.geojson (default: a temporary "
                             "folder filled by 'geojson-api sample')")
    parser.add_argument("--duration", type=int, metavar="SECONDS",
                        help="seconds per wrk run (default 10, 3 with --quick)")
    parser.add_argument("--rounds", type=int, metavar="N",
                        help="runs per scenario and target (default 2, 1 with --quick)")
    parser.add_argument("--targets", default=",".join(TARGETS),
                        type=lambda text: _choices(text, TARGETS, "target"),
                        help="comma list of targets (default %(default)s)")
    parser.add_argument("--scenarios", default=",".join(s.name for s in SCENARIOS),
                        type=lambda text: _choices(text, [s.name for s in SCENARIOS], "scenario"),
                        help="comma list of scenarios (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, metavar="DIR",
                        help="folder for the JSON and Markdown results (default loadtest/results)")
    parser.add_argument("--quick", action="store_true",
                        help="3 s per run and 1 round, all scenarios: a smoke run, not for docs")
    parser.add_argument("--app-arg", action="append", default=[], metavar="ARG",
                        help="extra argument for 'geojson-api serve' (not the stack), "
                             "repeatable; write --app-arg=--workers=3 for values starting "
                             "with a dash")
    parser.add_argument("--pause", type=float, default=2.0, metavar="SECONDS",
                        help="pause before each wrk run (default %(default)s)")
    parser.add_argument("--start-timeout", type=float, default=120.0, metavar="SECONDS",
                        help="how long a target may take to become ready (default %(default)s)")
    return parser


def parse_config(argv: Sequence[str] | None) -> Config:
    parser = build_parser()
    args = parser.parse_args(argv)
    duration = args.duration or (3 if args.quick else 10)
    rounds = args.rounds or (1 if args.quick else 2)
    if duration < 1 or rounds < 1:
        parser.error("--duration and --rounds must be at least 1")
    by_name = {s.name: s for s in SCENARIOS}
    return Config(
        data=args.data.resolve() if args.data else None, duration=duration, rounds=rounds,
        targets=[t for t in TARGETS if t in args.targets],
        scenarios=[by_name[name] for name in args.scenarios],
        out=args.out.resolve(), app_args=args.app_arg, pause=args.pause,
        start_timeout=args.start_timeout,
    )


def missing_tools(targets: Sequence[str]) -> list[str]:
    needed = ["wrk"]
    if "nginx" in targets or "stack" in targets:
        needed.append("nginx")
    if "stack" in targets:
        needed.append("redis-server")
    return [tool for tool in needed if shutil.which(tool) is None]


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
    missing = missing_tools(config.targets)
    if missing:
        print(f"wholefile: not found: {', '.join(missing)} "
              "(apt-get install -y nginx-light wrk redis-server)", file=sys.stderr)
        return 1
    install_signal_handlers()
    try:
        return run(config)
    except BenchmarkError as exc:
        print(f"wholefile: error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"wholefile: interrupted ({str(exc) or 'SIGINT'}); all servers stopped",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
