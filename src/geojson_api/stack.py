"""The local production-like stack: Nginx -> N Gunicorn instances -> Redis, on loopback.

Redis is both the shared cache (db 0) and the job broker (db 1) of a Celery
worker (``geojson-api worker``) that builds variants and spatial indexes of
datasets published while the stack runs.

``geojson-api stack up`` starts every process detached, in a run folder of its
own, and records them in ``<run-dir>/stack.json``; ``stack down`` stops
exactly those processes by PID (checking that each PID still runs what was
started); ``stack status`` reports them. Tests and the benchmark lab use it.
The configuration is the one every environment uses: the settings table,
the Gunicorn config and the rendered Nginx template.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import StackError
from .nginxconf import write_standalone
from .pipeline import open_catalog
from .settings import Settings, env_name

STATE_FILE = "stack.json"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0


@dataclass
class Part:
    """One process of the stack."""

    name: str
    pid: int
    port: int
    health: str  # URL answering 200 when up; redis:...; or log:PATH (a line saying ready)
    argv0: str  # what /proc/<pid>/cmdline must contain to be ours

    def alive(self) -> bool:
        """True while the PID runs what was started (not a zombie, not a reused PID)."""
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except (OSError, IndexError):
            return False
        # The command line reads empty for a moment around exec: still ours.
        return state != "Z" and (not cmdline or self.argv0.encode() in cmdline)


@dataclass
class Stack:
    """What ``stack up`` started; saved as JSON in the run folder."""

    run_dir: str
    url: str
    parts: list[Part] = field(default_factory=list)

    def save(self) -> None:
        Path(self.run_dir, STATE_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, run_dir: Path) -> Stack:
        try:
            raw = json.loads((run_dir / STATE_FILE).read_text())
        except FileNotFoundError:
            raise StackError(f"no stack recorded in {run_dir}") from None
        return cls(raw["run_dir"], raw["url"], [Part(**p) for p in raw["parts"]])


def free_ports(count: int, exclude: set[int]) -> list[int]:
    """``count`` distinct free loopback ports, none in ``exclude``.

    All sockets stay bound until every port is chosen, so that the kernel
    cannot hand out the same port twice (a later server binds it for real).
    """
    held: list[socket.socket] = []
    try:
        while len(held) < count:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            if s.getsockname()[1] in exclude:
                s.close()
                continue
            held.append(s)
        return [int(s.getsockname()[1]) for s in held]
    finally:
        for s in held:
            s.close()


def _spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    return proc.pid


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _describe(pid: int) -> str:
    try:
        return " [" + Path(f"/proc/{pid}/stat").read_text()[:60] + "]"
    except OSError as exc:
        return f" [{exc.strerror}]"


def healthy(part: Part) -> bool:
    if part.health.startswith("redis:"):
        return _redis_ping(part.port)
    if part.health.startswith("log:"):  # the Celery worker says "... ready." when it is
        try:
            return " ready." in Path(part.health[4:]).read_text(errors="replace")
        except OSError:
            return False
    return _answers(part.health)


def _wait(stack: Stack, part: Part, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not part.alive():
            raise StackError(f"{part.name} (pid {part.pid}) exited; see "
                             f"{stack.run_dir}/{part.name}.log{_describe(part.pid)}")
        if healthy(part):
            return
        time.sleep(0.1)
    raise StackError(f"{part.name} did not become healthy within {timeout:.0f} s")


def _start_redis(run_dir: Path, port: int) -> Part:
    redis = shutil.which("redis-server")
    if redis is None:
        raise StackError("redis-server is not installed (apt-get install redis-server)")
    argv = [redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(run_dir), "--maxmemory", "256mb",
            "--maxmemory-policy", "allkeys-lru"]
    pid = _spawn(argv, run_dir / "redis.log")
    return Part("redis", pid, port, f"redis://127.0.0.1:{port}", "redis-server")


def _broker(redis_url: str) -> str:
    return redis_url.rstrip("/") + "/1"  # the cache uses db 0


def _app_env(settings: Settings, port: int, redis_url: str, offload: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        env_name("bind"): f"127.0.0.1:{port}",
        env_name("redis_url"): redis_url,
        env_name("broker_url"): _broker(redis_url),
        env_name("offload"): offload,
        env_name("data_dir"): str(Path(settings.data_dir).absolute()),
        env_name("state_dir"): str(Path(settings.state_path).absolute()),
        env_name("prepare_on_start"): "false",  # `stack up` prepared once for all
    })
    return env


def _start_app(settings: Settings, run_dir: Path, index: int, port: int, redis_url: str,
               offload: str) -> Part:
    name = f"app{index}"
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:geojson_api.gunicorn_conf",
            "--name", f"geojson-api-{name}"]
    pid = _spawn(argv, run_dir / f"{name}.log", _app_env(settings, port, redis_url, offload))
    return Part(name, pid, port, f"http://127.0.0.1:{port}/readyz", "gunicorn")


def _start_worker(settings: Settings, run_dir: Path, redis_url: str) -> Part:
    log = run_dir / "worker.log"
    log.unlink(missing_ok=True)  # its "ready" line is the health check
    argv = [sys.executable, "-m", "geojson_api", "worker"]
    pid = _spawn(argv, log, _app_env(settings, 0, redis_url, "none"))
    return Part("worker", pid, 0, f"log:{log}", "geojson_api")


def _start_nginx(settings: Settings, run_dir: Path, apps: list[Part], port: int) -> Part:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        raise StackError("nginx is not installed (apt-get install nginx-light)")
    listen = dataclasses.replace(settings, nginx_listen=f"127.0.0.1:{port}")
    upstreams = [f"127.0.0.1:{a.port}" for a in apps]
    conf = write_standalone(listen, upstreams, run_dir / "nginx")
    check = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(run_dir / "nginx")],
                           capture_output=True, text=True)
    if check.returncode != 0:
        raise StackError(f"nginx rejected its configuration:\n{check.stderr}")
    pid = _spawn([nginx, "-c", str(conf), "-p", str(run_dir / "nginx")], run_dir / "nginx.log")
    return Part("nginx", pid, port, f"http://127.0.0.1:{port}/healthz", "nginx")


def up(settings: Settings, run_dir: Path, port: int, instances: int, offload: str,
       say: Callable[[str], None]) -> Stack:
    """Start Redis, a job worker, ``instances`` Gunicorn instances and Nginx; wait for each."""
    run_dir = run_dir.absolute()
    if (run_dir / STATE_FILE).exists() and any(p.alive() for p in Stack.load(run_dir).parts):
        raise StackError(f"a stack is already running from {run_dir}; run `stack down` first")
    run_dir.mkdir(parents=True, exist_ok=True)
    if not Path(settings.data_dir).is_dir():
        raise StackError(f"data folder {settings.data_dir} does not exist")
    say(f"preparing datasets in {settings.data_dir} ...")
    open_catalog(settings, background=False).prepare_all(say)
    stack = Stack(str(run_dir), f"http://127.0.0.1:{port}")
    try:
        _start_all(stack, settings, run_dir, port, instances, offload)
    except BaseException:
        stack.save()
        down(run_dir, lambda _: None)
        raise
    stack.save()
    return stack


def _start_all(stack: Stack, settings: Settings, run_dir: Path, port: int, instances: int,
               offload: str) -> None:
    redis_port, *app_ports = free_ports(1 + instances, exclude={port})
    redis = _start_redis(run_dir, redis_port)
    stack.parts.append(redis)
    _wait(stack, redis, START_TIMEOUT)
    worker = _start_worker(settings, run_dir, redis.health)
    stack.parts.append(worker)
    _wait(stack, worker, START_TIMEOUT)
    apps = [_start_app(settings, run_dir, i + 1, app_port, redis.health, offload)
            for i, app_port in enumerate(app_ports)]
    stack.parts.extend(apps)
    for app in apps:
        _wait(stack, app, START_TIMEOUT)
    nginx = _start_nginx(settings, run_dir, apps, port)
    stack.parts.append(nginx)
    _wait(stack, nginx, START_TIMEOUT)
    if not _answers(f"{stack.url}/readyz"):
        raise StackError("nginx answers but /readyz through it does not")


def _stop(part: Part) -> None:
    if not part.alive():
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(part.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while part.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if part.alive():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(part.pid, signal.SIGKILL)


def down(run_dir: Path, say: Callable[[str], None]) -> None:
    """Stop every process recorded in ``run_dir``, front to back."""
    stack = Stack.load(run_dir.absolute())
    for part in reversed(stack.parts):
        was_alive = part.alive()
        _stop(part)
        say(f"  {part.name}: {'stopped' if was_alive else 'was not running'} (pid {part.pid})")
    (run_dir / STATE_FILE).unlink(missing_ok=True)


def status(run_dir: Path) -> list[tuple[Part, bool, bool]]:
    """(part, process alive, health check passes) for every recorded part."""
    stack = Stack.load(run_dir.absolute())
    return [(part, part.alive(), part.alive() and healthy(part)) for part in stack.parts]
