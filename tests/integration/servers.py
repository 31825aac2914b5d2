"""Real servers for integration tests: a Gunicorn process tree on a free loopback port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from geojson_api.stack import free_ports


def free_port() -> int:
    return free_ports(1, exclude=set())[0]


def wait_http(url: str, timeout: float = 120.0,
              proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout} s")


def nginx_access(run_dir: Path, wanted: Callable[[dict[str, Any]], bool] | str,
                 count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The entries of Nginx's JSON access log under ``run_dir`` that ``wanted`` picks (or
    whose line contains that string), once there are ``count`` of them. Nginx writes a
    request's line when the request has ended, which can be just after the client read
    the last byte."""
    log = run_dir / "nginx" / "access.log"
    deadline = time.monotonic() + timeout
    while True:
        lines = log.read_text().splitlines()
        if isinstance(wanted, str):
            found = [json.loads(line) for line in lines if wanted in line]
        else:
            found = [e for e in map(json.loads, lines) if wanted(e)]
        if len(found) >= count or time.monotonic() >= deadline:
            assert len(found) >= count, f"{len(found)} of {count} lines in {log}"
            return found
        time.sleep(0.05)


def children(pid: int) -> list[int]:
    """Direct children of a process, from /proc."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def proc_status(pid: int, key: str) -> int:
    """A kB value (e.g. VmRSS) from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def proc_io(pid: int) -> dict[str, int]:
    rows = Path(f"/proc/{pid}/io").read_text().splitlines()
    return {k: int(v) for k, v in (row.split(": ") for row in rows)}


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL to the whole session after 30 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@dataclass
class GunicornServer:
    """``geojson-api serve`` started as a subprocess; stopped by PID."""

    data_dir: Path
    log_path: Path
    worker_class: str = "gthread"
    workers: int = 2
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GunicornServer:
        self.port = free_port()
        env = {**os.environ, "GEOJSON_API_SETTLE_SECONDS": "0", **self.env}
        command = [sys.executable, "-m", "geojson_api", "serve", "--data", str(self.data_dir),
                   "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers),
                   "--worker-class", self.worker_class]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        try:
            wait_http(self.url + "/readyz", proc=self.proc)
            self._wait_workers()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_workers(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.worker_pids()) < self.workers and time.monotonic() < deadline:
            time.sleep(0.1)

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        return children(self.proc.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop(self.proc)


@dataclass
class Process:
    """Any server started as a subprocess in its own session; stopped by PID."""

    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, env={**os.environ, **self.env}, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop(self.proc)


def start_redis(redis_server: str, directory: Path) -> tuple[Process, int]:
    """redis-server on a free loopback port, persisting nothing; answers PING when returned."""
    import redis

    port = free_port()
    argv = [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(directory)]
    server = Process(argv, directory / "redis.log").start()
    deadline = time.monotonic() + 20
    while True:
        try:
            redis.Redis(port=port, socket_timeout=1).ping()
            return server, port
        except redis.RedisError:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.05)
