"""The local production-like stack: Nginx -> N Gunicorn instances -> Redis, on loopback.

Redis is both the shared cache (db 0) and the job broker (db 1) of a Celery
worker (``geojson-api worker``) that builds variants and spatial indexes of
datasets published while the stack runs.

``geojson-api stack up`` starts every process detached, in a run folder of its
own, and records them in ``<run-dir>/stack.json``; ``stack down`` stops
exactly those processes by PID (checking that each PID still runs what was
started); ``stack status`` reports them. Tests and the benchmark lab use it.
With ``monitoring``, Prometheus (loading ``deploy/prometheus/rules.yml``) and
the Nginx and Redis exporters run too, each on a free loopback port, and are
recorded, checked and stopped like the other parts.
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
from .nginxconf import STATUS_PATH, write_standalone
from .pipeline import open_catalog
from .settings import Settings, env_name

STATE_FILE = "stack.json"
PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
SCRAPE_INTERVAL = "5s"
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


def _start_worker(settings: Settings, run_dir: Path, redis_url: str,
                  metrics_port: int | None) -> Part:
    log = run_dir / "worker.log"
    log.unlink(missing_ok=True)  # its "ready" line is the health check
    argv = [sys.executable, "-m", "geojson_api", "worker"]
    env = _app_env(settings, 0, redis_url, "none")
    if metrics_port is not None:  # the worker serves /metrics there (job geojson-api-worker)
        env[env_name("metrics_port")] = str(metrics_port)
    pid = _spawn(argv, log, env)
    return Part("worker", pid, metrics_port or 0, f"log:{log}", "geojson_api")


@dataclass(frozen=True)
class MonitoringPorts:
    """The loopback ports of ``--with-monitoring``'s parts."""

    nginx_status: int
    nginx_exporter: int
    redis_exporter: int
    worker_metrics: int
    prometheus: int

    @classmethod
    def choose(cls, exclude: set[int]) -> MonitoringPorts:
        return cls(*free_ports(5, exclude))


def _program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise StackError(f"{name} is not installed (apt-get install {name}; "
                         "scripts/system-deps installs it)")
    return found


def _check_monitoring() -> None:
    """Fail before anything starts when a part of the monitoring is missing."""
    for name in ("prometheus", "prometheus-nginx-exporter", "prometheus-redis-exporter"):
        _program(name)
    if not (PROMETHEUS_DIR / "rules.yml").is_file():
        raise StackError(f"{PROMETHEUS_DIR}/rules.yml not found: --with-monitoring runs "
                         "from a source checkout")


def _start_exporter(run_dir: Path, name: str, program: str, target: list[str],
                    port: int) -> Part:
    argv = [_program(program), *target, "-web.listen-address", f"127.0.0.1:{port}"]
    pid = _spawn(argv, run_dir / f"{name}.log")
    return Part(name, pid, port, f"http://127.0.0.1:{port}/metrics", program)


def render_prometheus_config(run_dir: Path, apps: list[Part], ports: MonitoringPorts) -> str:
    """The stack's prometheus.yml (deploy/prometheus/stack.yml.j2)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    environment = Environment(loader=FileSystemLoader(PROMETHEUS_DIR),
                              undefined=StrictUndefined, keep_trailing_newline=True)
    return environment.get_template("stack.yml.j2").render(
        interval=SCRAPE_INTERVAL,
        run_dir=str(run_dir),
        rules=str(PROMETHEUS_DIR / "rules.yml"),
        apps=[f"127.0.0.1:{app.port}" for app in apps],
        worker=f"127.0.0.1:{ports.worker_metrics}",
        nginx_exporter=f"127.0.0.1:{ports.nginx_exporter}",
        redis_exporter=f"127.0.0.1:{ports.redis_exporter}",
        prometheus=f"127.0.0.1:{ports.prometheus}",
    )


def _start_prometheus(run_dir: Path, apps: list[Part], ports: MonitoringPorts) -> Part:
    folder = run_dir / "prometheus"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "prometheus.yml"
    config.write_text(render_prometheus_config(run_dir, apps, ports))
    argv = [_program("prometheus"), f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{ports.prometheus}"]
    pid = _spawn(argv, run_dir / "prometheus.log")
    return Part("prometheus", pid, ports.prometheus,
                f"http://127.0.0.1:{ports.prometheus}/-/ready", "prometheus")


def _start_nginx(settings: Settings, run_dir: Path, apps: list[Part], port: int,
                 status_port: int | None) -> Part:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        raise StackError("nginx is not installed (apt-get install nginx-light)")
    listen = dataclasses.replace(settings, nginx_listen=f"127.0.0.1:{port}")
    upstreams = [f"127.0.0.1:{a.port}" for a in apps]
    status = f"127.0.0.1:{status_port}" if status_port is not None else None
    conf = write_standalone(listen, upstreams, run_dir / "nginx", status_listen=status)
    check = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(run_dir / "nginx")],
                           capture_output=True, text=True)
    if check.returncode != 0:
        raise StackError(f"nginx rejected its configuration:\n{check.stderr}")
    pid = _spawn([nginx, "-c", str(conf), "-p", str(run_dir / "nginx")], run_dir / "nginx.log")
    return Part("nginx", pid, port, f"http://127.0.0.1:{port}/healthz", "nginx")


def up(settings: Settings, run_dir: Path, port: int, instances: int, offload: str,
       say: Callable[[str], None], monitoring: bool = False) -> Stack:
    """Start Redis, a job worker, ``instances`` Gunicorn instances and Nginx; wait for each.
    With ``monitoring``, also the Redis and Nginx exporters and Prometheus."""
    run_dir = run_dir.absolute()
    if monitoring:
        _check_monitoring()
    if (run_dir / STATE_FILE).exists() and any(p.alive() for p in Stack.load(run_dir).parts):
        raise StackError(f"a stack is already running from {run_dir}; run `stack down` first")
    run_dir.mkdir(parents=True, exist_ok=True)
    if not Path(settings.data_dir).is_dir():
        raise StackError(f"data folder {settings.data_dir} does not exist")
    say(f"preparing datasets in {settings.data_dir} ...")
    open_catalog(settings, background=False).prepare_all(say)
    stack = Stack(str(run_dir), f"http://127.0.0.1:{port}")
    try:
        _start_all(stack, settings, run_dir, port, instances, offload, monitoring)
    except BaseException:
        stack.save()
        down(run_dir, lambda _: None)
        raise
    stack.save()
    return stack


def _add(stack: Stack, part: Part) -> Part:
    """Record ``part`` (so that a failure stops it too) and wait until it is healthy."""
    stack.parts.append(part)
    _wait(stack, part, START_TIMEOUT)
    return part


def _start_all(stack: Stack, settings: Settings, run_dir: Path, port: int, instances: int,
               offload: str, monitoring: bool) -> None:
    redis_port, *app_ports = free_ports(1 + instances, exclude={port})
    ports = (MonitoringPorts.choose({port, redis_port, *app_ports}) if monitoring else None)
    redis = _add(stack, _start_redis(run_dir, redis_port))
    _add(stack, _start_worker(settings, run_dir, redis.health,
                              ports.worker_metrics if ports else None))
    apps = [_start_app(settings, run_dir, i + 1, app_port, redis.health, offload)
            for i, app_port in enumerate(app_ports)]
    stack.parts.extend(apps)
    for app in apps:
        _wait(stack, app, START_TIMEOUT)
    # Nginx's configuration follows the stack's offload (direct files need it on).
    _add(stack, _start_nginx(dataclasses.replace(settings, offload=offload), run_dir, apps,
                             port, ports.nginx_status if ports else None))
    if not _answers(f"{stack.url}/readyz"):
        raise StackError("nginx answers but /readyz through it does not")
    if ports is not None:
        _start_monitoring(stack, run_dir, apps, redis, ports)


def _start_monitoring(stack: Stack, run_dir: Path, apps: list[Part], redis: Part,
                      ports: MonitoringPorts) -> None:
    """The exporters (each needs its server up: the Nginx one exits otherwise) and Prometheus."""
    _add(stack, _start_exporter(run_dir, "redis-exporter", "prometheus-redis-exporter",
                                ["-redis.addr", redis.health], ports.redis_exporter))
    status_uri = f"http://127.0.0.1:{ports.nginx_status}{STATUS_PATH}"
    _add(stack, _start_exporter(run_dir, "nginx-exporter", "prometheus-nginx-exporter",
                                ["-nginx.scrape-uri", status_uri], ports.nginx_exporter))
    _add(stack, _start_prometheus(run_dir, apps, ports))


def prometheus_url(stack: Stack) -> str | None:
    """Where the stack's Prometheus answers, when it runs one."""
    ports = [p.port for p in stack.parts if p.name == "prometheus"]
    return f"http://127.0.0.1:{ports[0]}" if ports else None


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
