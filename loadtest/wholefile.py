"""Whole-file delivery benchmark: our Gunicorn app against nginx serving the same files.

What is compared
----------------
Six *targets* serve the same three sample datasets (``small`` ~50 KB,
``medium`` ~5 MB, ``large`` ~50 MB) on 127.0.0.1:

* ``nginx``: the files served statically (``sendfile on``, ``open_file_cache``),
  the practical ceiling for "bytes of a file out of a socket" on this machine;
* ``gthread`` and ``gevent``: ``geojson-api serve`` (Gunicorn, default number of
  workers) with that worker class;
* ``bare``: the same Gunicorn config (gthread) around a do-nothing WSGI app that
  returns the file from memory (``geojson_api/lab/files/bare_wsgi.py``): the
  ceiling for any Python app under Gunicorn, so the report separates Gunicorn's
  cost from ours;
* ``gthread-stock``: our app under Gunicorn's own gthread worker, without the
  request-head timeout that ``geojson-api serve`` adds (what that costs);
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
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from geojson_api.lab import LabError
from geojson_api.lab.command import add_run_options, exit_code, names_type, run_length
from geojson_api.lab.machine import machine_info
from geojson_api.lab.procs import Supervisor, die_with_parent, supervised
from geojson_api.lab.runner import (
    dataset_sizes,
    missing,
    rotated,
    servers_needed,
    start_targets,
)
from geojson_api.lab.sampling import MemoryStats, memory_stats, sample_tree
from geojson_api.lab.stacktarget import StackServer, read_text, start_stack
from geojson_api.lab.tables import fmt, mb, median, table, write_pair
from geojson_api.lab.targets import (
    PythonServer,
    Target,
    bare_server,
    gunicorn_server,
    python_command,
    start_nginx,
    start_python,
    wait_until_quiet,
    warm_up,
)
from geojson_api.lab.wrk import (
    SAMPLE_INTERVAL,
    WRK_THREADS,
    WRK_TIMEOUT,
    WrkStats,
    run_wrk,
    wrk_command,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TARGETS = ("nginx", "gthread", "gevent", "bare", "stack", "stack-via-app", "gthread-stock")
# The stack with Nginx's direct files off: every request asks an app instance (#14).
VIA_APP_ENV = {"GEOJSON_API_NGINX_DIRECT": "false"}
DATASETS = ("small", "medium", "large")
FULL_RUNS = (10, 2)  # seconds per wrk run, rounds
GB = 1e9


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
    Scenario("50c-50MB", "large", 50),
    Scenario("300c-50KB", "small", 300),
)


# -- targets (the load-test lab's, geojson_api.lab) ------------------------------------

def app_server(name: str, data_dir: Path, app_args: Sequence[str]) -> PythonServer:
    """``geojson-api serve`` with worker class ``name``, or the ``bare`` WSGI app, or
    ``gthread-stock``: our app on Gunicorn's own gthread worker, without the request-head
    timeout of geojson_api.gunicorn_workers (to measure what that costs)."""
    if name == "bare":
        return bare_server(app_args)
    if name == "gthread-stock":
        return PythonServer(name, lambda port: [
            sys.executable, "-m", "gunicorn", "-c", "python:geojson_api.gunicorn_conf",
            "--bind", f"127.0.0.1:{port}", "--worker-class", "gthread", *app_args],
            "/readyz", has_api=True)
    return gunicorn_server(name, data_dir, ["--worker-class", name, *app_args])


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
    command = wrk_command(target.url(scenario.dataset), scenario.connections, duration)
    done = run_wrk(command, target.tree_roots(), limit=duration + 90, target=target.name)
    target.server.check_alive()
    watched = done.watched
    return Run(
        scenario=scenario.name, target=target.name, round=round_no, position=position,
        command=command, wrk=done.stats, wall_seconds=watched.wall_seconds,
        server_cpu_seconds=watched.target_cpu_seconds,
        wrk_cpu_seconds=watched.client_cpu_seconds,
        sampler_cpu_seconds=watched.sampler_cpu_seconds,
        other_cpu_seconds=watched.other_cpu_seconds,
        memory=memory_stats(watched.idle, watched.samples),
        loadavg_before=done.loadavg_before, samples=watched.series(), output=done.output,
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
    summaries: list[Summary] = []
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


# -- reports ---------------------------------------------------------------------------

def summary_table(summaries: Sequence[Summary]) -> str:
    header = ["Scenario", "Target", "MB/s", "vs nginx", "req/s", "p50 ms", "p99 ms", "errors",
              "RSS growth MB", "max worker growth MB", "CPU s/GB"]
    rows = [
        [s.scenario, s.target, fmt(s.mb_per_s), fmt(s.vs_nginx), fmt(s.requests_per_s),
         fmt(s.latency_ms["p50"]), fmt(s.latency_ms["p99"]), str(s.errors),
         mb(s.rss_growth), mb(s.worker_rss_growth), fmt(s.cpu_s_per_gb)]
        for s in summaries
    ]
    return table(header, rows, text_columns=2)


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
            str(s.non_2xx_3xx), mb(s.idle_rss), mb(s.rss_growth),
            mb(s.worker_rss_growth), str(s.new_processes), fmt(s.cpu_s_per_gb),
            fmt(s.cpu_s_per_1k_requests), fmt(s.server_cores), fmt(s.wrk_cores),
            fmt(s.other_cores),
        ])
    return table(header, rows, text_columns=1)


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
    return table(header, rows, text_columns=4)


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
    document = {**meta, "summary": [asdict(s) for s in summaries],
                "runs": [r.as_dict() for r in runs]}
    return write_pair(out_dir, f"wholefile-{stamp}", document,
                      markdown_report(meta, scenarios, summaries, runs))


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
    done = subprocess.run([*python_command(), "sample", str(data_dir)],
                          capture_output=True, text=True, process_group=0,
                          preexec_fn=die_with_parent)
    if done.returncode != 0:
        raise LabError(f"geojson-api sample failed:\n{done.stdout}{done.stderr}")
    return data_dir


def start_target(supervisor: Supervisor, config: Config, workdir: Path, data_dir: Path,
                 name: str) -> Target:
    if name == "nginx":
        return start_nginx(supervisor, workdir, data_dir, config.start_timeout)
    if name == "stack":
        return start_stack(supervisor, workdir, data_dir, config.start_timeout)
    if name == "stack-via-app":
        return start_stack(supervisor, workdir, data_dir, config.start_timeout, name=name,
                           env=VIA_APP_ENV)
    return start_python(supervisor, app_server(name, data_dir, config.app_args),
                        workdir, data_dir, config.start_timeout)


def schedule(config: Config, targets: Sequence[Target]
             ) -> list[tuple[Scenario, int, int, Target]]:
    """(scenario, round, position, target) of every run: each (scenario, round) block runs
    every target, in an order rotated from one block to the next."""
    blocks = [(s, r) for s in config.scenarios for r in range(1, config.rounds + 1)]
    return [(scenario, round_no, position, target)
            for block, (scenario, round_no) in enumerate(blocks)
            for position, target in enumerate(rotated(targets, block), 1)]


def benchmark(config: Config, supervisor: Supervisor, targets: Sequence[Target],
              runs: list[Run]) -> None:
    """Every scenario, every round, every target in rotated order; appends to ``runs``."""
    planned = schedule(config, targets)
    for scenario, round_no, position, target in planned:
        time.sleep(config.pause)
        runs.append(drive(target, scenario, config.duration, round_no, position))
        supervisor.remember_descendants()  # workers may have been replaced
        done = runs[-1]
        print(f"[{len(runs)}/{len(planned)}] {scenario.name} {target.name} round {round_no}: "
              f"{fmt(done.wrk.mb_per_s)} MB/s, {fmt(done.wrk.requests_per_s)} req/s, "
              f"p99 {fmt(done.wrk.latency_ms['p99'])} ms, errors {done.wrk.errors}, "
              f"wrk {fmt(done.cores(done.wrk_cpu_seconds))} cores", flush=True)


def run(config: Config) -> int:
    """Start everything, benchmark, write the reports; everything started is stopped
    whatever happens."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    runs: list[Run] = []
    meta: dict[str, Any] = {"machine": machine_info(), "config": config_dict(config)}

    def finish() -> None:
        if runs:
            report(config, stamp, meta, runs)

    with (tempfile.TemporaryDirectory(prefix="wholefile-") as tmp,
          supervised(meta, finish) as supervisor):
        workdir = Path(tmp)
        data_dir = config.data or make_samples(workdir / "data")
        meta["datasets"] = dataset_sizes(data_dir, sorted(
            {s.dataset for s in config.scenarios}, key=DATASETS.index))
        meta["config"]["data"] = str(data_dir)
        targets = start_targets(supervisor, config.targets, lambda name: start_target(
            supervisor, config, workdir, data_dir, name))
        meta["nginx_conf"] = read_text(workdir / "nginx" / "nginx.conf")
        meta["stack"] = next((g.record() for g in supervisor.groups
                              if isinstance(g, StackServer)), None)
        for target in targets:
            warm_up(target, data_dir, meta["datasets"])
        wait_until_quiet(targets)
        meta["processes"] = {t.name: len(sample_tree(t.tree_roots()).rss) for t in targets}
        benchmark(config, supervisor, targets, runs)
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
    add_run_options(parser, FULL_RUNS, runs_of="scenario and target", results=RESULTS_DIR,
                    quick="3 s per run and 1 round, all scenarios: a smoke run, not for docs")
    parser.add_argument("--targets", default=",".join(TARGETS),
                        type=names_type(TARGETS, "target"),
                        help="comma list of targets (default %(default)s)")
    parser.add_argument("--scenarios", default=",".join(s.name for s in SCENARIOS),
                        type=names_type([s.name for s in SCENARIOS], "scenario"),
                        help="comma list of scenarios (default: all)")
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
    args = build_parser().parse_args(argv)
    duration, rounds = run_length(args, FULL_RUNS)
    by_name = {s.name: s for s in SCENARIOS}
    return Config(
        data=args.data.resolve() if args.data else None, duration=duration, rounds=rounds,
        targets=[t for t in TARGETS if t in args.targets],
        scenarios=[by_name[name] for name in args.scenarios],
        out=args.out.resolve(), app_args=args.app_arg, pause=args.pause,
        start_timeout=args.start_timeout,
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
    absent = missing(["wrk", *servers_needed(config.targets)])
    if absent:
        print(f"wholefile: not found: {', '.join(absent)} "
              "(apt-get install -y nginx-light wrk redis-server)", file=sys.stderr)
        return 1
    return exit_code("wholefile", lambda: run(config))


if __name__ == "__main__":
    sys.exit(main())
