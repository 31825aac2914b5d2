"""WSGI servers compared on the same app: which one serves small files fastest, and does
it keep big files at sendfile speed? Each candidate beside nginx static, in pairs.

What is compared
----------------
Every *candidate* is one WSGI server setup running either the real app
(``geojson_api.wsgi:app``, built by ``create_app``, the same module Gunicorn loads)
or the do-nothing WSGI app of ``geojson_api/lab/files/bare_wsgi.py`` (the file's
bytes from memory: the ceiling of any Python app under that server). Candidates
are data (``CANDIDATES``): Gunicorn through ``geojson-api serve`` and its config
(gthread with the project's settings and with fewer workers, other thread counts
and keep-alive; sync; gevent with the project's sendfile patch), Granian's WSGI
interface and uWSGI's HTTP socket, each where installed. The reference is nginx
serving the same files statically (:func:`geojson_api.lab.targets.start_nginx`).

Every app candidate runs with the same settings besides the server's own:
no access log, no Prometheus metrics (the multi-process metrics need the
Gunicorn config's hooks; what metrics cost under Gunicorn is in
``loadtest/metrics_cost.py``), no tile builds, no worker recycling (a replaced
worker's CPU would leave the count). ``gthread-metrics`` is the one exception:
``geojson-api serve`` exactly as shipped (metrics on), for the row of the issue.

Method
------
Per *scenario* (``SCENARIOS``: the ~50 KB sample at 10 connections, rps; ~5 MB
and ~50 MB at 50 connections, MB/s) and per pair round, every candidate that
runs the scenario is driven once and nginx once right beside it by
``wrk -t2 -c<connections> -d<duration>s --timeout 30s --latency``, the order
within a pair alternating (candidate first in odd rounds, nginx first in even
ones) and the order of the candidates rotating from round to round. Each pair
gives one ratio, candidate / nginx (rps for the small file, MB/s for the big
ones); the report gives the median ratio over the pairs with its range, the
median absolute figures, and per request the CPU time (user + system of the
server's whole process tree, from /proc, over the run, divided by wrk's
request count) and the write system calls (``syscw`` of ``/proc/<pid>/io``
summed over the tree). That counter counts ``write(2)``, ``writev(2)`` and
``sendfile(2)``, not ``send(2)``/``sendmsg(2)``: nginx makes 2 per small file
(headers, then the body's ``sendfile``), Gunicorn's gthread 1 (the pipe write
that wakes its main loop; the answer itself goes out with ``send``). For a big
file a handful per request means one ``sendfile`` that the kernel finished;
thousands mean a write loop, or ``sendfile`` resumed after every wait.

wrk and the servers share the machine's cores, so a server that needs less CPU
leaves more to wrk; only the ratios taken side by side mean anything. This is a
measurement, not a test: no thresholds.

Usage::

    python loadtest/servers.py [--data DIR] [--duration 8] [--rounds 3]
        [--candidates gthread,granian,...] [--scenarios 10c-50KB,...] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import psutil

from geojson_api.lab.command import add_run_options, exit_code, names_type, run_length
from geojson_api.lab.machine import dist_version, first_line, machine_info
from geojson_api.lab.procs import Supervisor, supervised
from geojson_api.lab.runner import dataset_sizes, missing, rotated
from geojson_api.lab.tables import fmt, median, table, write_pair
from geojson_api.lab.targets import (
    HOST,
    QUIET_APP_ENV,
    Target,
    free_port,
    lab_file,
    serve_command,
    start_nginx,
    wait_until_answering,
    wait_until_quiet,
    warm_up,
)
from geojson_api.lab.wrk import WRK_THREADS, WRK_TIMEOUT

# wholefile: Python puts this script's folder on sys.path.
from wholefile import DATASETS, Run, Scenario, drive, make_samples

RESULTS_DIR = Path(__file__).resolve().parent / "results"
FULL_RUNS = (8, 3)  # seconds per wrk run, pair rounds
SMALL, MEDIUM, LARGE = "10c-50KB", "50c-5MB", "50c-50MB"
SCENARIOS = (Scenario(SMALL, "small", 10), Scenario(MEDIUM, "medium", 50),
             Scenario(LARGE, "large", 50))
ALL = (SMALL, MEDIUM, LARGE)
# Same for every app candidate: the server is what differs.
COMMON_ENV = {**QUIET_APP_ENV, "GEOJSON_API_METRICS": "false", "GEOJSON_API_TILES": "false",
              "GEOJSON_API_MAX_REQUESTS": "0", "GEOJSON_API_SETTLE_SECONDS": "0"}
NPROC = len(os.sched_getaffinity(0))


# -- the candidates -------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    """One server setup around one WSGI app, how to start it and what it runs."""

    name: str
    server: str  # the program: gunicorn, granian, uwsgi
    app: str  # "app" (geojson_api.wsgi:app) or "bare" (bare_wsgi:app)
    setup: str  # in words, for the report
    argv: Callable[[Path, int], list[str]]  # (data folder, port) -> command
    env: dict[str, str] = field(default_factory=dict)
    scenarios: tuple[str, ...] = (SMALL,)

    @property
    def ready_path(self) -> str:
        return "/readyz" if self.app == "app" else "/geojson/small"


def gunicorn(name: str, setup: str, env: dict[str, str], app: str = "app",
             scenarios: tuple[str, ...] = (SMALL,)) -> Candidate:
    """Gunicorn with the project's config (geojson_api.gunicorn_conf), settings from
    ``env``: the app through ``geojson-api serve``, the bare app through the same config."""
    def argv(data: Path, port: int) -> list[str]:
        if app == "app":
            return serve_command(data, port)
        return [sys.executable, "-m", "gunicorn", "-c", "python:geojson_api.gunicorn_conf",
                "--bind", f"{HOST}:{port}", "--pythonpath", str(lab_file("bare_wsgi.py").parent),
                "bare_wsgi:app"]
    return Candidate(name, "gunicorn", app, setup, argv, env, scenarios)


def granian(name: str, setup: str, workers: int, threads: int | None, app: str = "app",
            scenarios: tuple[str, ...] = (SMALL,)) -> Candidate:
    def argv(data: Path, port: int) -> list[str]:
        blocking = ["--blocking-threads", str(threads)] if threads else []
        where = (["--working-dir", str(lab_file("bare_wsgi.py").parent), "bare_wsgi:app"]
                 if app == "bare" else ["geojson_api.wsgi:app"])
        return [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", HOST,
                "--port", str(port), "--workers", str(workers), *blocking, "--no-ws",
                "--log-level", "warning", "--no-access-log", *where]
    return Candidate(name, "granian", app, setup, argv, {}, scenarios)


def uwsgi_program() -> str:
    """uWSGI of this interpreter's environment (pip install uwsgi), else the one on PATH."""
    beside = Path(sys.executable).with_name("uwsgi")
    return str(beside) if beside.exists() else "uwsgi"


def uwsgi(name: str, setup: str, processes: int, threads: int, app: str = "app",
          scenarios: tuple[str, ...] = (SMALL,)) -> Candidate:
    def argv(data: Path, port: int) -> list[str]:
        where = (["--pythonpath", str(lab_file("bare_wsgi.py").parent), "--module",
                  "bare_wsgi:app"] if app == "bare" else ["--module", "geojson_api.wsgi:app"])
        # http11-socket: uWSGI's own HTTP parser in every worker, with keep-alive (wrk
        # and nginx keep connections open); lazy-apps: the app is built in each worker,
        # like Gunicorn without preload.
        return [uwsgi_program(), "--master", "--http11-socket", f"{HOST}:{port}",
                "--processes", str(processes), "--threads", str(threads), "--lazy-apps",
                "--need-app", "--disable-logging", "--die-on-term", "--thunder-lock",
                "--buffer-size", "32768", *where]
    return Candidate(name, "uwsgi", app, setup, argv, {}, scenarios)


def gunicorn_env(worker_class: str, workers: int, threads: int = 8,
                 keepalive: int | None = None) -> dict[str, str]:
    env = {"GEOJSON_API_WORKER_CLASS": worker_class, "GEOJSON_API_WORKERS": str(workers),
           "GEOJSON_API_THREADS": str(threads)}
    if keepalive is not None:
        env["GEOJSON_API_KEEPALIVE"] = str(keepalive)
    return env


DEFAULT_WORKERS = 2 * NPROC + 1  # the project's default (settings.py)
CANDIDATES = (
    gunicorn("gthread", f"geojson-api serve: {DEFAULT_WORKERS} workers x 8 threads, "
             "keep-alive 5 s (the project's settings)",
             gunicorn_env("gthread", DEFAULT_WORKERS), scenarios=ALL),
    gunicorn("gthread-metrics", "the same with Prometheus metrics on (as shipped)",
             {**gunicorn_env("gthread", DEFAULT_WORKERS), "GEOJSON_API_METRICS": "true"}),
    gunicorn("gthread-1w", "1 worker x 8 threads", gunicorn_env("gthread", 1)),
    gunicorn("gthread-2w", "2 workers x 8 threads", gunicorn_env("gthread", 2), scenarios=ALL),
    gunicorn("gthread-2w-2t", "2 workers x 2 threads", gunicorn_env("gthread", 2, 2)),
    gunicorn("gthread-2w-ka75", "2 workers x 8 threads, keep-alive 75 s",
             gunicorn_env("gthread", 2, keepalive=75)),
    gunicorn("sync", f"{DEFAULT_WORKERS} sync workers (no keep-alive)",
             gunicorn_env("sync", DEFAULT_WORKERS), scenarios=ALL),
    gunicorn("gevent", f"{DEFAULT_WORKERS} gevent workers, the project's sendfile patch",
             gunicorn_env("gevent", DEFAULT_WORKERS), scenarios=ALL),
    gunicorn("gevent-2w", "2 gevent workers, the project's sendfile patch",
             gunicorn_env("gevent", 2)),
    granian("granian", "Granian WSGI, 2 workers, default blocking threads", 2, None,
            scenarios=ALL),
    uwsgi("uwsgi", "uWSGI http11-socket, 2 processes x 8 threads", 2, 8, scenarios=ALL),
    gunicorn("bare-gthread", "do-nothing app, Gunicorn gthread as the project's",
             gunicorn_env("gthread", DEFAULT_WORKERS), app="bare"),
    gunicorn("bare-gthread-2w", "do-nothing app, Gunicorn gthread 2 workers x 8 threads",
             gunicorn_env("gthread", 2), app="bare"),
    gunicorn("bare-sync", f"do-nothing app, {DEFAULT_WORKERS} Gunicorn sync workers",
             gunicorn_env("sync", DEFAULT_WORKERS), app="bare"),
    gunicorn("bare-gevent", f"do-nothing app, {DEFAULT_WORKERS} Gunicorn gevent workers",
             gunicorn_env("gevent", DEFAULT_WORKERS), app="bare"),
    granian("bare-granian", "do-nothing app, Granian WSGI, 2 workers", 2, None, app="bare"),
    uwsgi("bare-uwsgi", "do-nothing app, uWSGI 2 processes x 8 threads", 2, 8, app="bare"),
)
BY_NAME = {c.name: c for c in CANDIDATES}


def installed(candidate: Candidate) -> bool:
    if candidate.server == "uwsgi":
        return shutil.which(uwsgi_program()) is not None
    return dist_version(candidate.server) is not None


def start_candidate(supervisor: Supervisor, candidate: Candidate, workdir: Path,
                    data_dir: Path, timeout: float) -> Target:
    port = free_port()
    env = {**os.environ, **COMMON_ENV, **candidate.env, "GEOJSON_API_DATA_DIR": str(data_dir)}
    child = supervisor.start(candidate.name, candidate.argv(data_dir, port),
                             workdir / f"{candidate.name}.log", env)
    target = Target(candidate.name, port, child, has_api=candidate.app == "app")
    target.startup_seconds = wait_until_answering(
        child, target.base_url + candidate.ready_path, lambda s: s == 200, timeout)
    return target


# -- one pair ---------------------------------------------------------------------------------

def write_calls(roots: Sequence[psutil.Process]) -> int:
    """Write-type system calls (sendfile, write, send...) made so far by the trees."""
    total = 0
    for root in roots:
        for process in [root, *root.children(recursive=True)]:
            try:
                total += process.io_counters().write_count
            except (psutil.Error, AttributeError):
                continue
    return total


@dataclass
class Measured:
    """One wrk run of one target, with its write system calls."""

    run: Run
    write_calls: int

    @property
    def rate(self) -> float:
        """What the scenario compares: rps for the small file, MB/s for the others."""
        wrk = self.run.wrk
        return wrk.requests_per_s if self.run.scenario == SMALL else wrk.mb_per_s

    @property
    def cpu_us_per_request(self) -> float | None:
        requests = self.run.wrk.requests
        return self.run.server_cpu_seconds / requests * 1e6 if requests else None

    @property
    def writes_per_request(self) -> float | None:
        requests = self.run.wrk.requests
        return self.write_calls / requests if requests else None


def measure(target: Target, scenario: Scenario, duration: int, round_no: int,
            position: int) -> Measured:
    before = write_calls(target.tree_roots())
    done = drive(target, scenario, duration, round_no, position)
    return Measured(done, write_calls(target.tree_roots()) - before)


@dataclass
class Pair:
    scenario: str
    candidate: str
    round: int
    first: str
    server: Measured
    nginx: Measured

    @property
    def ratio(self) -> float | None:
        return self.server.rate / self.nginx.rate if self.nginx.rate else None

    def as_dict(self) -> dict[str, Any]:
        def one(m: Measured) -> dict[str, Any]:
            return {**m.run.as_dict(), "write_calls": m.write_calls,
                    "cpu_us_per_request": m.cpu_us_per_request,
                    "write_calls_per_request": m.writes_per_request}
        return {"scenario": self.scenario, "candidate": self.candidate, "round": self.round,
                "first": self.first, "ratio": self.ratio, "server": one(self.server),
                "nginx": one(self.nginx)}


def run_pair(nginx: Target, target: Target, scenario: Scenario, config: Config,
             round_no: int) -> Pair:
    """The candidate and nginx, one after the other; the candidate first in odd rounds."""
    order = [target, nginx] if round_no % 2 else [nginx, target]
    done: dict[str, Measured] = {}
    for position, who in enumerate(order, 1):
        time.sleep(config.pause)
        done[who.name] = measure(who, scenario, config.duration, round_no, position)
    return Pair(scenario.name, target.name, round_no, order[0].name, done[target.name],
                done[nginx.name])


# -- aggregation and report -------------------------------------------------------------------

@dataclass
class Summary:
    scenario: str
    candidate: str
    pairs: int
    ratio: float | None
    ratio_min: float | None
    ratio_max: float | None
    rate: float | None
    nginx_rate: float | None
    cpu_us_per_request: float | None
    nginx_cpu_us_per_request: float | None
    write_calls_per_request: float | None
    nginx_write_calls_per_request: float | None
    p50_ms: float | None
    p99_ms: float | None
    errors: int


def summarize(pairs: Sequence[Pair]) -> list[Summary]:
    keys = list(dict.fromkeys((p.scenario, p.candidate) for p in pairs))
    summaries = []
    for scenario, candidate in keys:
        chosen = [p for p in pairs if (p.scenario, p.candidate) == (scenario, candidate)]
        ratios = [r for p in chosen if (r := p.ratio) is not None]
        summaries.append(Summary(
            scenario=scenario, candidate=candidate, pairs=len(chosen),
            ratio=median(ratios), ratio_min=min(ratios, default=None),
            ratio_max=max(ratios, default=None),
            rate=median(p.server.rate for p in chosen),
            nginx_rate=median(p.nginx.rate for p in chosen),
            cpu_us_per_request=median(p.server.cpu_us_per_request for p in chosen),
            nginx_cpu_us_per_request=median(p.nginx.cpu_us_per_request for p in chosen),
            write_calls_per_request=median(p.server.writes_per_request for p in chosen),
            nginx_write_calls_per_request=median(p.nginx.writes_per_request for p in chosen),
            p50_ms=median(p.server.run.wrk.latency_ms["p50"] for p in chosen),
            p99_ms=median(p.server.run.wrk.latency_ms["p99"] for p in chosen),
            errors=sum(p.server.run.wrk.errors for p in chosen),
        ))
    return summaries


def summary_table(summaries: Sequence[Summary], scenario: str) -> str:
    unit = "rps" if scenario == SMALL else "MB/s"
    header = ["Candidate", "vs nginx (min-max)", unit, f"nginx {unit}", "CPU µs/req",
              "nginx CPU µs/req", "writes/req", "nginx writes/req", "p50 / p99 ms", "errors"]
    rows = [[s.candidate, f"{fmt(s.ratio)} ({fmt(s.ratio_min)}-{fmt(s.ratio_max)})",
             fmt(s.rate), fmt(s.nginx_rate), fmt(s.cpu_us_per_request),
             fmt(s.nginx_cpu_us_per_request), fmt(s.write_calls_per_request),
             fmt(s.nginx_write_calls_per_request), f"{fmt(s.p50_ms)} / {fmt(s.p99_ms)}",
             str(s.errors)]
            for s in sorted((s for s in summaries if s.scenario == scenario),
                            key=lambda s: -(s.ratio or 0))]
    return table(header, rows, text_columns=1)


def pairs_table(pairs: Sequence[Pair]) -> str:
    header = ["#", "Scenario", "Round", "Candidate", "first", "ratio", "candidate", "nginx",
              "load avg"]
    rows = [[str(i), p.scenario, str(p.round), p.candidate, p.first, fmt(p.ratio),
             fmt(p.server.rate), fmt(p.nginx.rate),
             f"{p.server.run.loadavg_before[0]:.2f}"] for i, p in enumerate(pairs, 1)]
    return table(header, rows, text_columns=5)


def markdown_report(meta: dict[str, Any], summaries: Sequence[Summary],
                    pairs: Sequence[Pair]) -> str:
    machine, config = meta["machine"], meta["config"]
    parts = ["# WSGI servers on the same app, each beside nginx static\n"]
    if not meta["complete"]:
        parts.append(f"**INCOMPLETE RUN**: {meta['error']}\n")
    versions = ", ".join(f"{k} {v}" for k, v in meta["servers"].items() if v)
    parts.append(
        f"{machine['date']}; {machine['nproc']} cores ({machine['cpu_model']}), Linux "
        f"{machine['kernel']}, Python {machine['python']}; {versions}; {machine['nginx']}, "
        f"{machine['wrk']}. Load average at start {machine['loadavg_at_start']}. "
        f"`wrk -t{WRK_THREADS} -c<connections> -d{config['duration']}s --timeout "
        f"{WRK_TIMEOUT} --latency`, {config['rounds']} pairs per candidate and scenario "
        "(candidate and nginx back to back, the order alternating), candidates rotating.\n")
    parts.append("Ratio: candidate / nginx in the same pair (rps for 50 KB, MB/s for the "
                 "big files), median over the pairs (range). CPU: the server tree's "
                 "user + system time over the run per request. writes/req: the tree's "
                 "write(2), writev(2) and sendfile(2) calls per request (/proc syscw; "
                 "send(2) is not counted).\n")
    parts += ["## Candidates\n", table(["Candidate", "server", "app", "setup"], [
        [c["name"], c["server"], c["app"], c["setup"]] for c in meta["candidates"]])]
    sizes = meta["datasets"]
    for scenario in SCENARIOS:
        if any(s.scenario == scenario.name for s in summaries):
            parts.append(f"## {scenario.name}: {scenario.dataset}.geojson "
                         f"({sizes[scenario.dataset]:,} bytes), {scenario.connections} "
                         "connections\n")
            parts.append(summary_table(summaries, scenario.name))
    parts += ["## Pairs, in the order they ran\n", pairs_table(pairs)]
    return "\n".join(parts)


# -- the benchmark ----------------------------------------------------------------------------

@dataclass
class Config:
    data: Path | None
    duration: int
    rounds: int
    candidates: list[str]
    scenarios: list[Scenario]
    out: Path
    stem: str
    pause: float
    start_timeout: float


def schedule(config: Config, targets: Sequence[Target]) -> list[tuple[Scenario, int, Target]]:
    """(scenario, round, candidate) of every pair: per scenario and round, every candidate
    that runs the scenario, in an order rotated from round to round."""
    plan = []
    for scenario in config.scenarios:
        chosen = [t for t in targets if scenario.name in BY_NAME[t.name].scenarios]
        for round_no in range(1, config.rounds + 1):
            plan += [(scenario, round_no, t) for t in rotated(chosen, round_no - 1)]
    return plan


def benchmark(config: Config, nginx: Target, targets: Sequence[Target],
              pairs: list[Pair]) -> None:
    planned = schedule(config, targets)
    started = time.monotonic()
    for scenario, round_no, target in planned:
        pairs.append(run_pair(nginx, target, scenario, config, round_no))
        p = pairs[-1]
        print(f"[{len(pairs)}/{len(planned)}] {scenario.name} round {round_no} "
              f"{target.name}: {fmt(p.server.rate)} vs nginx {fmt(p.nginx.rate)} = "
              f"{fmt(p.ratio)}x, {fmt(p.server.cpu_us_per_request)} µs/req, errors "
              f"{p.server.run.wrk.errors} ({time.monotonic() - started:.0f} s)", flush=True)
        wait_until_quiet([nginx, target], limit=10.0)


def run(config: Config) -> int:
    pairs: list[Pair] = []
    meta: dict[str, Any] = {"machine": machine_info(), "config": config_dict(config),
                            "servers": server_versions(),
                            "candidates": [candidate_dict(BY_NAME[n]) for n in config.candidates]}

    def finish() -> None:
        if pairs:
            report(config, meta, pairs)

    with (tempfile.TemporaryDirectory(prefix="servers-") as tmp,
          supervised(meta, finish) as supervisor):
        workdir = Path(tmp)
        data_dir = config.data or make_samples(workdir / "data")
        meta["datasets"] = dataset_sizes(data_dir, list(DATASETS))
        nginx = start_nginx(supervisor, workdir, data_dir, config.start_timeout)
        targets = []
        for name in config.candidates:  # the first Gunicorn one prepares the datasets
            print(f"starting {name} ...", flush=True)
            targets.append(start_candidate(supervisor, BY_NAME[name], workdir, data_dir,
                                           config.start_timeout))
            supervisor.remember_descendants()
            warm_up(targets[-1], data_dir, meta["datasets"])
        meta["pids"] = {t.name: t.server.pids() for t in [nginx, *targets]}
        wait_until_quiet([nginx, *targets], limit=60.0)
        benchmark(config, nginx, targets, pairs)
    return 0


def report(config: Config, meta: dict[str, Any], pairs: Sequence[Pair]) -> None:
    summaries = summarize(pairs)
    document = {**meta, "summary": [asdict(s) for s in summaries],
                "pairs": [p.as_dict() for p in pairs]}
    json_path, md_path = write_pair(config.out, config.stem, document,
                                    markdown_report(meta, summaries, pairs))
    for scenario in config.scenarios:
        print(f"\n{scenario.name}\n" + summary_table(summaries, scenario.name), end="")
    print(f"\nresults: {json_path}\n         {md_path}")


def server_versions() -> dict[str, str | None]:
    return {"gunicorn": dist_version("gunicorn"), "gevent": dist_version("gevent"),
            "granian": dist_version("granian"),
            "uwsgi": first_line([uwsgi_program(), "--version"])
            if shutil.which(uwsgi_program()) else None}


def candidate_dict(candidate: Candidate) -> dict[str, Any]:
    return {"name": candidate.name, "server": candidate.server, "app": candidate.app,
            "setup": candidate.setup, "env": candidate.env,
            "scenarios": list(candidate.scenarios),
            "argv": candidate.argv(Path("DATA"), 0)}


def config_dict(config: Config) -> dict[str, Any]:
    data = asdict(config)
    data["data"] = str(config.data) if config.data else None
    data["out"] = str(config.out)
    data["common_env"] = COMMON_ENV
    return data


# -- command line -----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="WSGI servers (Gunicorn gthread/sync/gevent, Granian, uWSGI) on the "
                    "same app and on a do-nothing app, each beside nginx static.",
        epilog="candidates: " + ", ".join(BY_NAME))
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="folder with small/medium/large.geojson (default: a temporary "
                             "folder filled by 'geojson-api sample')")
    add_run_options(parser, FULL_RUNS, runs_of="candidate and scenario (pairs)",
                    results=RESULTS_DIR, quick="3 s per run and 1 pair: a smoke run")
    parser.add_argument("--candidates", type=names_type(list(BY_NAME), "candidate"),
                        help="comma list (default: every one whose server is installed)")
    parser.add_argument("--scenarios", default=",".join(ALL),
                        type=names_type(list(ALL), "scenario"),
                        help="comma list of scenarios (default %(default)s)")
    parser.add_argument("--stem", default=f"servers-{date.today().isoformat()}",
                        help="name of the result files, without .json/.md "
                             "(default %(default)s)")
    parser.add_argument("--pause", type=float, default=1.0, metavar="SECONDS",
                        help="pause before each wrk run (default %(default)s)")
    parser.add_argument("--start-timeout", type=float, default=180.0, metavar="SECONDS")
    return parser


def parse_config(argv: Sequence[str] | None) -> Config:
    args = build_parser().parse_args(argv)
    duration, rounds = run_length(args, FULL_RUNS)
    names = args.candidates or [c.name for c in CANDIDATES if installed(c)]
    return Config(
        data=args.data.resolve() if args.data else None, duration=duration, rounds=rounds,
        candidates=[c.name for c in CANDIDATES if c.name in names],
        scenarios=[s for s in SCENARIOS if s.name in args.scenarios],
        out=args.out.resolve(), stem=args.stem, pause=args.pause,
        start_timeout=args.start_timeout)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
    absent = missing(["wrk", "nginx"])
    absent += [n for n in config.candidates if not installed(BY_NAME[n])]
    if absent:
        print(f"servers: not found: {', '.join(absent)} (apt-get install -y nginx-light wrk; "
              "pip install granian uwsgi)", file=sys.stderr)
        return 1
    return exit_code("servers", lambda: run(config))


if __name__ == "__main__":
    sys.exit(main())
