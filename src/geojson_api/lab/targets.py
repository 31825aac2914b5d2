"""The servers under test, each on its own free loopback port.

- ``nginx``: the files served statically (``sendfile on``, ``open_file_cache``,
  no access log): what this machine can do at all, the limit.
- ``geojson-api serve`` (Gunicorn) with any extra arguments (worker class ...).
- ``bare``: the same Gunicorn config around a do-nothing WSGI app
  (``files/bare_wsgi.py``).
- ``devserver``: the study's baseline, a naive Flask app reading the whole file
  per request (``files/baseline_app.py``) on the Flask development server.
- ``stack``: see :mod:`.stacktarget`.

The lab's own files (those two apps and the Locust users, ``files/locustfile.py``)
are package data under ``geojson_api/lab/files/``: :func:`lab_file` finds them in
the installed package, so the lab runs from a wheel as from a checkout.

Each start function registers its process with the :class:`~.procs.Supervisor`
before waiting for it, so it is stopped whatever happens next.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil

from ..stack import free_ports
from . import LabError
from .procs import Child, Supervisor
from .sampling import Sampled, sample_tree

HOST = "127.0.0.1"
# The app's access log is off for every target, like the static nginx's.
QUIET_APP_ENV = {"GEOJSON_API_ACCESS_LOG": ""}
# Package data (pyproject: [tool.setuptools.package-data]), beside this module.
FILES = Path(__file__).resolve().with_name("files")


def free_port() -> int:
    return free_ports(1, exclude=set())[0]


def lab_file(name: str) -> Path:
    """One of the lab's own files (``locustfile.py``, ``baseline_app.py``,
    ``bare_wsgi.py``), from the installed package."""
    path = FILES / name
    if not path.is_file():
        raise LabError(f"{path} is missing: the geojson-api package is incomplete "
                       "(reinstall it with pip install 'geojson-api[bench]')")
    return path


def python_command() -> list[str]:
    """``geojson-api`` of this very interpreter (not whichever one is first on PATH)."""
    return [sys.executable, "-m", "geojson_api"]


class Server(Protocol):
    """What runs a target: one ``Child`` (one process tree) or a stack (several)."""

    name: str

    def check_alive(self) -> None:
        """Raise LabError when a process of the server has exited."""

    def roots(self) -> list[psutil.Process]:
        """The roots of the server's process trees (masters, single processes)."""
        ...

    def pids(self) -> list[int]:
        """The PIDs of the roots, for the console and the report."""
        ...

    def describe(self) -> str:
        """The PIDs, for the console."""
        ...


@dataclass
class Target:
    """A server under test, listening on its own loopback port."""

    name: str
    port: int
    server: Server
    startup_seconds: float = 0.0
    has_api: bool = False  # answers /api/datasets (our app, the stack)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def url(self, dataset: str) -> str:
        return f"{self.base_url}/geojson/{dataset}"

    def tree_roots(self) -> list[psutil.Process]:
        """Every root of the target's process trees; fails if a part has exited."""
        self.server.check_alive()
        return self.server.roots()


# -- HTTP checks -----------------------------------------------------------------------

def http_get(url: str, timeout: float = 30.0) -> tuple[int | None, int]:
    """(status, body bytes) of a GET; status None when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            size = 0
            while chunk := response.read(1 << 20):
                size += len(chunk)
            return int(response.status), size
    except urllib.error.HTTPError as exc:
        return int(exc.code), 0
    except (urllib.error.URLError, OSError):
        return None, 0


def wait_until_answering(child: Child, url: str, ok: Callable[[int | None], bool],
                         timeout: float) -> float:
    """Poll ``url`` until ``ok(status)``; seconds it took. Fails fast if the child exits."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        child.check_alive()
        if ok(http_get(url, timeout=2.0)[0]):
            return time.monotonic() - started
        time.sleep(0.2)
    raise LabError(f"{child.name} not ready at {url} after {timeout:.0f} s; end of its log:\n"
                   f"{child.log_tail()}")


def answered(status: int | None) -> bool:
    return status is not None


def ok_200(status: int | None) -> bool:
    return status == 200


# -- nginx serving the files itself ------------------------------------------------------

def _nginx_quote(path: Path, suffix: str = "") -> str:
    """``path`` as a quoted nginx string; ``suffix`` may hold nginx variables."""
    text = str(path)
    if any(c in text for c in '"\\$\n'):
        raise LabError(f"path {text!r} cannot be used in an nginx config")
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


def start_nginx(supervisor: Supervisor, workdir: Path, data_dir: Path, timeout: float,
                name: str = "nginx") -> Target:
    nginx_dir = workdir / name
    nginx_dir.mkdir()
    port = free_port()
    conf = nginx_dir / "nginx.conf"
    conf.write_text(nginx_config(nginx_dir, data_dir, port))
    argv = ["nginx", "-p", str(nginx_dir), "-e", str(nginx_dir / "error.log"), "-c", str(conf)]
    child = supervisor.start(name, argv, nginx_dir / "error.log")
    target = Target(name, port, child)
    # Any HTTP answer (the catch-all 404) means nginx listens; warm_up checks the files.
    target.startup_seconds = wait_until_answering(child, f"{target.base_url}/", answered,
                                                  timeout)
    return target


# -- Python servers ----------------------------------------------------------------------

def serve_command(data_dir: Path, port: int, extra: Sequence[str] = ()) -> list[str]:
    """``geojson-api serve`` on ``port`` (Gunicorn, the checked-in config)."""
    return [*python_command(), "serve", "--data", str(data_dir), "--bind", f"{HOST}:{port}",
            *extra]


def bare_command(port: int, extra: Sequence[str] = ()) -> list[str]:
    """Gunicorn with our config (gthread) around the do-nothing app of ``bare_wsgi.py``."""
    return [sys.executable, "-m", "gunicorn", "-c", "python:geojson_api.gunicorn_conf",
            "--bind", f"{HOST}:{port}", "--worker-class", "gthread",
            "--pythonpath", str(lab_file("bare_wsgi.py").parent), *extra, "bare_wsgi:app"]


def devserver_command(port: int) -> list[str]:
    """``flask run``: the development server, threaded (its default), no reloader."""
    app = lab_file("baseline_app.py")
    return [sys.executable, "-m", "flask", "--app", str(app), "run", "--host", HOST,
            "--port", str(port), "--no-reload", "--no-debugger"]


@dataclass(frozen=True)
class PythonServer:
    """How to start one Python target and how to know it is ready."""

    name: str
    argv: Callable[[int], list[str]]  # the command, given the port
    ready_path: str
    ready: Callable[[int | None], bool] = ok_200
    has_api: bool = False


def start_python(supervisor: Supervisor, spec: PythonServer, workdir: Path, data_dir: Path,
                 timeout: float) -> Target:
    port = free_port()
    env = {**os.environ, **QUIET_APP_ENV, "GEOJSON_API_DATA_DIR": str(data_dir),
           "BASELINE_DATA_DIR": str(data_dir)}
    child = supervisor.start(spec.name, spec.argv(port), workdir / f"{spec.name}.log", env)
    target = Target(spec.name, port, child, has_api=spec.has_api)
    target.startup_seconds = wait_until_answering(
        child, target.base_url + spec.ready_path, spec.ready, timeout)
    return target


def gunicorn_server(name: str, data_dir: Path, extra: Sequence[str] = ()) -> PythonServer:
    return PythonServer(name, lambda port: serve_command(data_dir, port, extra), "/readyz",
                        has_api=True)


def bare_server(extra: Sequence[str] = ()) -> PythonServer:
    return PythonServer("bare", lambda port: bare_command(port, extra), "/geojson/small")


def devserver() -> PythonServer:
    return PythonServer("devserver", devserver_command, "/", answered)


# -- before and between runs ---------------------------------------------------------------

def warm_up(target: Target, data_dir: Path, datasets: Iterable[str]) -> None:
    """One GET of each file (checking that the whole file comes back), and of the
    dataset API where there is one."""
    for dataset in datasets:
        expected = (data_dir / f"{dataset}.geojson").stat().st_size
        status, size = http_get(target.url(dataset))
        if status != 200 or size != expected:
            raise LabError(f"{target.name}: GET {target.url(dataset)} gave status {status} "
                           f"and {size} bytes, expected 200 and {expected} bytes")
    if target.has_api:
        status, _ = http_get(f"{target.base_url}/api/datasets")
        if status != 200:
            raise LabError(f"{target.name}: GET /api/datasets gave status {status}")


def busy_cores(targets: Sequence[Sampled], seconds: float) -> dict[str, float]:
    """Cores each target's process tree used over the next ``seconds``."""
    before = [sample_tree(t.tree_roots()).cpu_seconds for t in targets]
    time.sleep(seconds)
    after = [sample_tree(t.tree_roots()).cpu_seconds for t in targets]
    return {t.name: (b - a) / seconds for t, a, b in zip(targets, before, after, strict=True)}


def wait_until_quiet(targets: Sequence[Sampled], limit: float = 30.0,
                     max_cores: float = 0.05, step: float = 1.0) -> float:
    """Wait (bounded) until no target burns CPU, e.g. after start-up work or a run
    whose downloads are still draining; returns the seconds waited."""
    started = time.monotonic()
    while True:
        busy = busy_cores(targets, step)
        if max(busy.values()) < max_cores:
            return time.monotonic() - started
        if time.monotonic() - started > limit:
            print("warning: targets still busy after "
                  f"{limit:.0f} s: " + ", ".join(f"{k} {v:.2f} cores" for k, v in busy.items()),
                  file=sys.stderr)
            return time.monotonic() - started
