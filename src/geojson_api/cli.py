"""The ``geojson-api`` command.

Public forms (scripts and docs rely on them)::

    geojson-api --version
    geojson-api serve [--data DIR] [--bind HOST:PORT] [--sample] [...]
    geojson-api sample DIR [--only NAME ...]
    geojson-api check FILE [--json] [--progress | --no-progress]
    geojson-api prepare [--data DIR]
    geojson-api tiles DATASET --out FILE [--data DIR]
    geojson-api worker [--data DIR] [--concurrency N] [--ping [--timeout S]]
    geojson-api settings [--markdown]
    geojson-api nginx-config [--upstream HOST:PORT ...] [--listen PORT] [--output FILE]
                             [--cache-dir DIR]
    geojson-api stack up|down|status [--data DIR] [--port PORT] [--instances N] [--run-dir DIR]
                                     [--with-monitoring]
    geojson-api bench [--quick] [--out DIR] [--targets LIST] [--scenarios LIST] [--measure S]
    geojson-api bench --soak MINUTES [--soak-users N] [--soak-interval S] [--out DIR]
    geojson-api profile DIR [--match TEXT] [--sort cumulative|tottime] [--limit N]

Errors a user can act on (a missing or unreadable folder or file, a folder
without datasets for ``prepare``, a bad setting, an extra that a setting needs
and that is not installed) are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from . import __version__, extras
from .catalog import Catalog
from .errors import InvalidGeoJSON, StackError
from .scan import plural, scan
from .settings import (
    UNKNOWN_WARNED,
    Settings,
    SettingsError,
    effective,
    env_name,
    markdown_table,
    table,
    unknown_variables,
)

PROGRESS_MIN_BYTES = 8 * 1024 * 1024


# -- progress ---------------------------------------------------------------

class ProgressBar:
    """A one-line progress bar on a terminal stream, redrawn at most 10 times a second."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self._last = 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self._last < 0.1 and done < self.total:
            return
        self._last = now
        fraction = min(done / self.total, 1.0)
        filled = int(fraction * 30)
        bar = "#" * filled + "-" * (30 - filled)
        self.stream.write(
            f"\r{self.label} [{bar}] {fraction:6.1%} {done / 1e6:8.1f}/{self.total / 1e6:.1f} MB"
        )
        self.stream.flush()

    def close(self) -> None:
        self(self.total)
        self.stream.write("\n")


# -- check ------------------------------------------------------------------

def cmd_check(args: argparse.Namespace) -> int:
    path = Path(args.file)
    problem = _file_problem(path)
    if problem is not None:
        print(f"{path}: {problem}", file=sys.stderr)
        return 2
    size = path.stat().st_size
    show = args.progress if args.progress is not None else (
        size >= PROGRESS_MIN_BYTES and sys.stderr.isatty()
    )
    bar = ProgressBar(size, path.name) if show else None
    try:
        result = scan(path, progress=bar)
    except InvalidGeoJSON as exc:
        if bar:
            bar.stream.write("\n")
        return _report_invalid(path, exc.description, args.json)
    if bar:
        bar.close()
    return _report_scan(path, result.as_dict(), args.json)


def _file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be checked, or None when it is a readable regular file."""
    if path.is_dir():
        return "is a folder, not a file"
    if not path.exists():
        return "no such file"
    if not path.is_file():
        return "is not a regular file"
    try:
        with path.open("rb"):
            return None
    except OSError as exc:
        return f"cannot read: {exc.strerror}"


def _report_invalid(path: Path, message: str, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"file": str(path), "valid": False, "error": message}))
    else:
        print(f"{path}: invalid: {message}", file=sys.stderr)
    return 1


def _report_scan(path: Path, info: dict[str, Any], as_json: bool) -> int:
    """The scan's findings; exit 0 when the file has no problem, 1 when it has any.

    A file with problems is still published (they are listed in its metadata),
    but a script that runs ``check`` before publishing learns of them.
    """
    valid = info["problem_count"] == 0
    if as_json:
        print(json.dumps({"file": str(path), "valid": valid, **info}))
        return 0 if valid else 1
    print(f"{path}: {info['type']}, {plural(info['features'], 'feature')}, bbox {info['bbox']}, "
          f"geometry types {', '.join(info['geometry_types']) or '-'}")
    for problem in info["problems"]:
        print(f"  problem: {problem}", file=sys.stderr)
    if not valid:
        counts = ", ".join(f"{n} {kind}" for kind, n in info["problem_counts"].items())
        where = f" in {plural(n, 'feature')}" if (n := info["problem_features"]) else ""
        print(f"{path}: {plural(info['problem_count'], 'problem')}{where} ({counts}; "
              f"{len(info['problems'])} shown, features numbered from 0)", file=sys.stderr)
        return 1
    print(f"{path}: valid GeoJSON")
    return 0


# -- sample -----------------------------------------------------------------

def cmd_sample(args: argparse.Namespace) -> int:
    from .sample import write_samples

    def progress(name: str, done: int, total: int) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\rwriting {name}.geojson {done / 1e6:6.1f}/{total / 1e6:.1f} MB")

    paths = write_samples(args.dir, args.only or None, progress=progress)
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    for path in paths:
        print(f"{path} {path.stat().st_size} bytes")
    return 0


# -- prepare and serve -------------------------------------------------------

def _apply_env(pairs: dict[str, object]) -> None:
    for name, value in pairs.items():
        if value is not None:
            os.environ[env_name(name)] = str(value)


def fail(command: str, message: str) -> int:
    """Say what went wrong in one line; exit code 2 (the user can fix it)."""
    print(f"geojson-api {command}: {message}", file=sys.stderr)
    return 2


def folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be read as the data folder, or None."""
    try:
        with os.scandir(folder):
            return None
    except FileNotFoundError:
        return f"data folder {folder} does not exist"
    except NotADirectoryError:
        return f"data folder {folder} is not a folder"
    except OSError as exc:
        return f"cannot read data folder {folder}: {exc.strerror}"


def catalog(settings: Settings) -> Catalog:
    """The catalog of the CLI: it builds nothing behind the caller's back."""
    from .pipeline import open_catalog  # the builders import Shapely: only when needed

    return open_catalog(settings, background=False)


def datasets(settings: Settings) -> list[str]:
    """The names the data folder publishes (the catalog's own listing)."""
    return catalog(settings).names()


def no_datasets(folder: Path) -> str:
    return f"no datasets in {folder} (a dataset is a file NAME.geojson or NAME.json)"


def _with_data(command: str, args: argparse.Namespace) -> tuple[Settings, int | None]:
    """The settings with ``--data``, and the exit code when that folder cannot be read."""
    _apply_env({"data_dir": args.data})
    settings = Settings.from_env()
    problem = folder_problem(settings.data_dir)
    return settings, None if problem is None else fail(command, f"{problem} (use --data DIR)")


def cmd_prepare(args: argparse.Namespace) -> int:
    """Exit 0 all published, 1 some file refused, 2 no usable data folder or no dataset."""
    settings, failed = _with_data("prepare", args)
    if failed is not None:
        return failed
    found = catalog(settings)
    problems = found.readiness()  # also makes the state folder, or says why it cannot
    if problems:
        return fail("prepare", "; ".join(problems.values()))
    if not found.names():
        return fail("prepare", no_datasets(settings.data_dir))
    return 1 if found.prepare_all(print) else 0


def cmd_tiles(args: argparse.Namespace) -> int:
    """Export the tile archive of a dataset's current version (built first if need be)."""
    from .errors import APIError
    from .names import parse_request_name
    from .tiles import builder

    settings, failed = _with_data("tiles", args)
    if failed is not None:
        return failed
    if not settings.tiles:
        return fail("tiles", "vector tiles are off (GEOJSON_API_TILES=false)")
    out = Path(args.out)
    if out.is_dir() or not out.parent.is_dir():
        return fail("tiles", f"cannot write {out}: " + (
            "it is a folder" if out.is_dir() else f"no folder {out.parent}"))
    found = catalog(settings)
    try:
        version = found.current(parse_request_name(args.dataset))
        found.artifacts.build(version, builder.ARTIFACT, wait=True)
    except APIError as exc:
        return fail("tiles", exc.description)
    state = found.artifacts.state(version, builder.ARTIFACT)
    if state.status != "ready":
        why = state.info.get("error", "not built (see the log)")
        return fail("tiles", f"the tiles of {version.name!r} could not be built: {why}")
    _copy_atomically(version.directory / builder.ARCHIVE_FILE, out)
    info = builder.info(version.directory)
    print(f"{out}: {info['bytes']} bytes, zooms {info['minzoom']}-{info['maxzoom']}, every "
          f"feature from zoom {info['completeZoom']} (version {version.id})")
    return 0


def _copy_atomically(source: Path, target: Path) -> None:
    """Copy into a hidden file beside ``target``, then rename: never a half-written file."""
    import shutil
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as dst, open(source, "rb") as src:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# The worker's Celery node name; %h is this host's name (a container's id in compose).
WORKER_NODE = "geojson-api@%h"


def _ping_worker(broker_url: str, timeout: float) -> int:
    """Exit status of a Celery control ping to this host's worker: 0 on its reply."""
    import socket

    from .tasks import celery_app, without_password

    node = WORKER_NODE.replace("%h", socket.gethostname())
    broker = without_password(broker_url)
    try:
        replies = celery_app(broker_url).control.ping(destination=[node], timeout=timeout)
    except Exception as exc:  # kombu and redis raise their own connection errors
        reason = " ".join(str(exc).split()) or type(exc).__name__
        print(f"geojson-api worker --ping: broker {broker} unreachable: {reason}",
              file=sys.stderr)
        return 1
    if any(node in reply for reply in replies):
        print(f"{node}: pong")
        return 0
    print(f"geojson-api worker --ping: no reply from {node} via {broker} within {timeout:g} s",
          file=sys.stderr)
    return 1


def cmd_worker(args: argparse.Namespace) -> int:
    """A Celery worker for the background jobs (variants, indexes) of the web processes.

    With ``--ping``, a health check instead: does this host's worker answer through the broker?
    """
    _apply_env({"data_dir": args.data})  # the tasks read their settings from the environment
    settings = Settings.from_env()
    missing = extras.problem("worker") or extras.tracing_problem()
    if missing is not None:
        return fail("worker", missing)
    if not settings.broker_url:
        return fail("worker", f"set {env_name('broker_url')} (e.g. redis://127.0.0.1:6379/1)")
    if args.ping:
        if not args.timeout > 0:
            return fail("worker", "--timeout must be above 0 seconds")
        return _ping_worker(settings.broker_url, args.timeout)
    from .logs import setup_celery
    from .pipeline import worker_app

    setup_celery(settings)  # JSON lines, with the request id of each job
    if settings.metrics and settings.metrics_port:  # its own /metrics: it has no Gunicorn
        from . import __version__
        from .metrics.multiproc import serve_worker_metrics

        serve_worker_metrics(settings, __version__)
    argv = ["worker", f"--concurrency={args.concurrency}", "--loglevel=INFO",
            "--without-gossip", "--without-mingle", f"--hostname={WORKER_NODE}"]
    worker_app(settings).worker_main(argv)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    _apply_env({"data_dir": args.data, "bind": args.bind, "workers": args.workers,
                "worker_class": args.worker_class, "threads": args.threads})
    settings = Settings.from_env()
    extras.check(settings)
    data_dir = settings.data_dir
    if args.sample and not any(data_dir.glob("*.geojson")):
        from .sample import write_samples

        print(f"writing sample datasets into {data_dir} ...", file=sys.stderr)
        write_samples(data_dir)
    problem = folder_problem(data_dir)
    if problem is not None:
        return fail("serve", f"{problem} (use --data DIR, or --sample to make sample data)")
    if not datasets(settings):  # still serves: files added later publish on first request
        print(f"geojson-api serve: warning: {no_datasets(data_dir)}; files added later are "
              "published on their first request", file=sys.stderr)
    if args.no_prepare:
        os.environ[env_name("prepare_on_start")] = "false"
    os.environ[UNKNOWN_WARNED] = "1"  # main() did; the Gunicorn master need not say it again
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:geojson_api.gunicorn_conf"]
    print(f"serving on http://{settings.bind}/ ({settings.workers} {settings.worker_class} "
          "workers)", file=sys.stderr)
    sys.stderr.flush()
    os.execv(sys.executable, argv)
    return 0  # not reached


# -- nginx and the local stack ------------------------------------------------

def cmd_nginx_config(args: argparse.Namespace) -> int:
    from .nginxconf import render_site

    overrides = {"nginx_listen": args.listen} if args.listen else {}
    settings = Settings.from_env(**overrides)
    text = render_site(settings, args.upstream or [settings.bind], cache_dir=args.cache_dir)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_stack(args: argparse.Namespace) -> int:
    from . import stack

    run_dir = Path(args.run_dir)
    try:
        if args.action == "up":
            return _stack_up(args, run_dir)
        if args.action == "down":
            stack.down(run_dir, print)
            return 0
        return _stack_status(run_dir)
    except StackError as exc:
        print(f"geojson-api stack: {exc}", file=sys.stderr)
        return 1


def _stack_up(args: argparse.Namespace, run_dir: Path) -> int:
    from . import stack

    _apply_env({"data_dir": args.data})
    settings = Settings.from_env()
    for extra in ("redis", "worker"):  # the stack's shared cache and its job worker
        missing = extras.problem(extra)
        if missing is not None:
            return fail("stack", missing)
    problem = folder_problem(settings.data_dir)
    if problem is not None:
        return fail("stack", f"{problem} (use --data DIR)")
    if not datasets(settings):
        print(f"geojson-api stack: warning: {no_datasets(settings.data_dir)}", file=sys.stderr)
    started = stack.up(settings, run_dir, args.port, args.instances, args.offload,
                       lambda line: print(line, file=sys.stderr), args.with_monitoring)
    for part in started.parts:
        print(f"  {part.name:<14} pid {part.pid:<8} port {part.port}", file=sys.stderr)
    prometheus = stack.prometheus_url(started)
    if prometheus is not None:
        print(f"  prometheus: {prometheus}", file=sys.stderr)
    print(started.url)
    return 0


def _stack_status(run_dir: Path) -> int:
    from . import stack

    rows = stack.status(run_dir)
    for part, alive, healthy in rows:
        state = "healthy" if healthy else ("running" if alive else "stopped")
        print(f"{part.name:<14} pid {part.pid:<8} port {part.port:<6} {state}")
    return 0 if rows and all(healthy for _, _, healthy in rows) else 1


# -- the load-test lab ---------------------------------------------------------

def cmd_bench(args: argparse.Namespace) -> int:
    missing = extras.problem("bench")
    if missing is not None:
        return fail("bench", missing)
    try:
        from .lab.command import main as bench
    except ImportError as exc:  # a package of the extra is there but broken
        return fail("bench", f"{exc.msg} (pip install 'geojson-api[bench]')")
    return bench(args)


def _add_bench(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser(
        "bench", help="load-test lab: the study's scenarios on every target, with a report",
        description="Run the study's scenario matrix (10-300 users x small, medium, large, "
                    "mixed) with Locust, and wrk for maximum rates, against the study's "
                    "baseline (devserver), our app (gunicorn), our stack and Nginx static; "
                    "write report.md, runs.json, runs.csv and two graphs.")
    bench.add_argument("--quick", action="store_true",
                       help="smoke run: 10 users, 2 s per scenario (for CI)")
    bench.add_argument("--out", metavar="DIR",
                       help="folder for the report (default var/bench, var/bench/soak with "
                            "--soak)")
    bench.add_argument("--targets", metavar="LIST",
                       help="comma list of devserver, gunicorn, stack, nginx (default: all)")
    bench.add_argument("--scenarios", metavar="LIST",
                       help="comma list of names (200u-large, wrk-50c-small), profiles "
                            "(small, medium, large, mixed, api), counts (200u, 50c) or "
                            "clients (locust, wrk); default: the study's matrix")
    bench.add_argument("--measure", type=int, metavar="SECONDS",
                       help="seconds measured per scenario, instead of each one's own")
    bench.add_argument("--data", metavar="DIR",
                       help="folder holding small/medium/large.geojson (default: write the "
                            "samples into a temporary folder)")
    bench.add_argument("--max-target-rss", type=int, metavar="MB",
                       help="stop a run when the target's processes pass this RSS "
                            "(default 4000)")
    bench.add_argument("--rebuild", action="store_true",
                       help="run nothing: rewrite the report and graphs from OUT/runs.json")
    bench.add_argument("--soak", type=float, metavar="MINUTES",
                       help="soak run instead of the matrix: the mixed profile against the "
                            "stack for MINUTES, RSS and open files per worker from /metrics "
                            "and /proc, request counts checked (docs/operations.md)")
    bench.add_argument("--soak-users", type=int, metavar="N",
                       help="users of the soak run (default 50)")
    bench.add_argument("--soak-interval", type=float, metavar="SECONDS",
                       help="seconds between two samples of the soak run (default 30; "
                            "shorter for short runs)")
    bench.set_defaults(func=cmd_bench)


# -- profiles ------------------------------------------------------------------

def cmd_profile(args: argparse.Namespace) -> int:
    from .profiling import profiles, summary

    files = profiles(Path(args.dir), args.match)
    if not files:
        print(f"no profile matching {args.match!r} in {args.dir} (serve with "
              "GEOJSON_API_PROFILE_DIR set, then send requests)", file=sys.stderr)
        return 1
    sys.stdout.write(summary(files, args.sort, args.limit))
    return 0


def _add_profile(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    prof = sub.add_parser("profile", help="add up the per-request profiles of a folder")
    prof.add_argument("dir", metavar="DIR", help="GEOJSON_API_PROFILE_DIR of a server")
    prof.add_argument("--match", default="", metavar="TEXT",
                      help="only files whose name holds TEXT, e.g. GET.geojson.small")
    prof.add_argument("--sort", default="cumulative", choices=["cumulative", "tottime"],
                      help="order of the functions (default %(default)s)")
    prof.add_argument("--limit", type=int, default=25, metavar="N",
                      help="functions shown (default %(default)s)")
    prof.set_defaults(func=cmd_profile)


# -- settings ----------------------------------------------------------------

def cmd_settings(args: argparse.Namespace) -> int:
    if args.markdown:
        sys.stdout.write(markdown_table())
        return 0
    for row, value, origin in effective(Settings.from_env()):
        print(f"{row.env:<42} {value:<28} {origin}")
    return 0


# -- parser ------------------------------------------------------------------

def _settings_epilog() -> str:
    lines = ["settings (environment variables):"]
    lines += [f"  {row.env:<36} default {row.default}" for row in table()]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geojson-api", description="Serve GeoJSON datasets fast, versioned and safely.",
        epilog=_settings_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"geojson-api {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    _add_data_commands(sub)
    _add_deployment(sub)
    _add_bench(sub)
    _add_profile(sub)
    settings = sub.add_parser(
        "settings", help="show every setting's value in force and where it comes from")
    settings.add_argument("--markdown", action="store_true", help="print the README table")
    settings.set_defaults(func=cmd_settings)
    return parser


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="run the service under Gunicorn")
    serve.add_argument("--data", metavar="DIR", help="data folder (GEOJSON_API_DATA_DIR)")
    serve.add_argument("--bind", metavar="HOST:PORT", help="listen address (GEOJSON_API_BIND)")
    serve.add_argument("--workers", type=int, help="worker processes (GEOJSON_API_WORKERS)")
    serve.add_argument("--worker-class", choices=["gthread", "gevent", "sync"],
                       help="Gunicorn worker class (GEOJSON_API_WORKER_CLASS)")
    serve.add_argument("--threads", type=int, help="threads per worker (GEOJSON_API_THREADS)")
    serve.add_argument("--sample", action="store_true",
                       help="write the sample datasets first if the data folder has none")
    serve.add_argument("--no-prepare", action="store_true",
                       help="start at once; datasets are published on first request "
                            "(GEOJSON_API_PREPARE_ON_START=false)")
    serve.set_defaults(func=cmd_serve)


def _add_data_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sample = sub.add_parser("sample", help="write small, medium and large sample datasets")
    sample.add_argument("dir", metavar="DIR")
    sample.add_argument("--only", action="append", choices=["small", "medium", "large"],
                        help="write only this one (repeatable)")
    sample.set_defaults(func=cmd_sample)

    check = sub.add_parser("check", help="validate a GeoJSON file (streaming)")
    check.add_argument("file", metavar="FILE")
    check.add_argument("--json", action="store_true", help="print the result as JSON")
    check.add_argument("--progress", dest="progress", action="store_true", default=None,
                       help="always show the progress bar")
    check.add_argument("--no-progress", dest="progress", action="store_false")
    check.set_defaults(func=cmd_check)

    prep = sub.add_parser("prepare", help="publish every dataset, build its compressed "
                                          "variants, spatial index and vector tiles")
    prep.add_argument("--data", metavar="DIR", help="data folder (GEOJSON_API_DATA_DIR)")
    prep.set_defaults(func=cmd_prepare)

    tiles = sub.add_parser("tiles", help="export the vector tiles (PMTiles) of a dataset's "
                                         "current version")
    tiles.add_argument("dataset", metavar="DATASET")
    tiles.add_argument("--out", required=True, metavar="FILE",
                       help="the archive to write (replaced atomically)")
    tiles.add_argument("--data", metavar="DIR", help="data folder (GEOJSON_API_DATA_DIR)")
    tiles.set_defaults(func=cmd_tiles)

    worker = sub.add_parser("worker", help="run a Celery worker for background jobs "
                                           "(needs GEOJSON_API_BROKER_URL)")
    worker.add_argument("--data", metavar="DIR", help="data folder (GEOJSON_API_DATA_DIR)")
    worker.add_argument("--concurrency", type=int, default=1,
                        help="jobs run at once (default 1: an index build uses one core)")
    worker.add_argument("--ping", action="store_true",
                        help="health check: exit 0 if this host's worker answers through the "
                             "broker, else 1 with the reason")
    worker.add_argument("--timeout", type=float, default=3.0, metavar="S",
                        help="seconds --ping waits for the reply (default 3)")
    worker.set_defaults(func=cmd_worker)


def _add_deployment(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    nginx = sub.add_parser("nginx-config", help="render the Nginx configuration (http level)")
    nginx.add_argument("--upstream", action="append", metavar="HOST:PORT",
                       help="an app instance (repeatable; default: GEOJSON_API_BIND)")
    nginx.add_argument("--listen", metavar="PORT", help="listen port (GEOJSON_API_NGINX_LISTEN)")
    nginx.add_argument("--output", metavar="FILE", help="write here instead of stdout")
    nginx.add_argument("--cache-dir", metavar="DIR", default="/var/cache/nginx/geojson-api",
                       help="micro-cache folder; its parent must exist and be writable "
                            "(default /var/cache/nginx/geojson-api)")
    nginx.set_defaults(func=cmd_nginx_config)

    stk = sub.add_parser("stack", help="local production-like stack: nginx, gunicorn, redis")
    stk.add_argument("action", choices=["up", "down", "status"])
    stk.add_argument("--data", metavar="DIR", help="data folder (GEOJSON_API_DATA_DIR)")
    stk.add_argument("--port", type=int, default=8080, help="Nginx port (default 8080)")
    stk.add_argument("--instances", type=int, default=2, help="Gunicorn instances (default 2)")
    stk.add_argument("--run-dir", default="var/stack", metavar="DIR",
                     help="folder for configs, logs and PIDs (default var/stack)")
    stk.add_argument("--offload", choices=["nginx", "none"], default="nginx",
                     help="who sends dataset bytes (default nginx)")
    stk.add_argument("--with-monitoring", action="store_true",
                     help="also run Prometheus and the Nginx and Redis exporters on loopback "
                          "(up only; Debian's prometheus* packages)")
    stk.set_defaults(func=cmd_stack)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for line in unknown_variables():
        print(f"geojson-api: warning: {line}", file=sys.stderr)
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"geojson-api: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `geojson-api settings | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # a folder or file the command needs: one line, no traceback
        where = f": {exc.filename}" if exc.filename else ""
        return fail(args.command, f"{exc.strerror or exc}{where}")
    except KeyboardInterrupt:
        return 130
