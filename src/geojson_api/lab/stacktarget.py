"""The full stack as a target: ``geojson-api stack up --instances 2 --offload nginx``.

Nginx (the production template) in front of two Gunicorn instances (default
worker class and number of workers) sharing one redis-server; Nginx sends the
file bytes after the app's ``X-Accel-Redirect``. ``stack up`` runs as a
subprocess (bounded by a timeout; it prepares the datasets first) and starts
every part *detached*, each in its own session, recording them in
``<run-dir>/stack.json``. They are not the lab's children, so they are followed
by PID: the parts recorded there and every descendant seen so far. They are
stopped with ``geojson-api stack down`` whatever happens, and as a last resort
killed by PID. If the lab is killed with SIGKILL after ``stack up`` finished,
they keep running: ``geojson-api stack down --run-dir DIR`` (the folder is
printed at start).

Every load generator here is one client address, so the stack's per-address
rate limit (``limit_req``) is lifted: the study's users are many addresses.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from . import LabError
from .procs import Supervisor, descendants, interrupt_with_parent, log_tail, running, spawn
from .targets import HOST, QUIET_APP_ENV, Target, free_port, python_command

STACK_INSTANCES = 2
STACK_OFFLOAD = "nginx"
STACK_ENV = {"GEOJSON_API_NGINX_RATE": "1000000r/s", "GEOJSON_API_NGINX_BURST": "1000000",
             **QUIET_APP_ENV}
# `stack down` stops the parts one after the other, each within 30 s (then SIGKILL).
STACK_STOP_TIMEOUT = 150.0


@dataclass
class StackPart:
    """One process of the stack, as recorded in stack.json."""

    name: str
    port: int
    process: psutil.Process  # psutil refuses to act on a PID that was reused


class StackServer:
    """The processes of one ``geojson-api stack up``; a :class:`~.procs.Group`."""

    def __init__(self, name: str, run_dir: Path, log: Path,
                 env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.env = {**STACK_ENV, **(env or {})}  # the settings given to `stack up`
        self.run_dir = run_dir
        self.log = log
        self.parts: list[StackPart] = []
        self.url: str | None = None
        self.seen: set[psutil.Process] = set()
        self._up: subprocess.Popen[bytes] | None = None

    def command(self, action: str, *args: str) -> list[str]:
        return [*python_command(), "stack", action, "--run-dir", str(self.run_dir), *args]

    def up(self, data_dir: Path, port: int, timeout: float) -> None:
        """Run ``stack up`` (bounded by ``timeout``) and read what it started."""
        argv = self.command("up", "--data", str(data_dir), "--port", str(port),
                            "--instances", str(STACK_INSTANCES), "--offload", STACK_OFFLOAD)
        print(f"  {' '.join(argv)}\n  (run folder {self.run_dir})", flush=True)
        # SIGINT if the lab dies: `stack up` then stops the parts it started.
        self._up = spawn(argv, self.log, {**os.environ, **self.env},
                         on_parent_death=interrupt_with_parent)
        self._wait_up(timeout)
        self._read_state(port)
        self.remember_descendants()

    def _wait_up(self, timeout: float) -> None:
        assert self._up is not None
        deadline = time.monotonic() + timeout
        while self._up.poll() is None:
            self.seen.update(descendants(self._up.pid))
            if time.monotonic() > deadline:
                self._interrupt_up()
                raise LabError(f"`stack up` did not finish in {timeout:.0f} s; end of its "
                               f"log:\n{log_tail(self.log)}")
            time.sleep(0.2)
        if self._up.returncode != 0:
            raise LabError(f"`stack up` exited with code {self._up.returncode}; end of its "
                           f"log:\n{log_tail(self.log)}")

    def _recorded(self) -> list[tuple[str, int, int, str]]:
        try:
            state = json.loads((self.run_dir / "stack.json").read_text())
            self.url = str(state["url"])
            return [(str(p["name"]), int(p["pid"]), int(p["port"]), str(p["argv0"]))
                    for p in state["parts"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LabError(f"cannot read {self.run_dir / 'stack.json'}: {exc}") from exc

    def _read_state(self, port: int) -> None:
        problems = []
        for name, pid, part_port, argv0 in self._recorded():
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
            raise LabError("; ".join(problems))

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
                self.seen.update(descendants(part.process.pid))

    def check_alive(self) -> None:
        for part in self.parts:
            if not running(part.process):
                raise LabError(
                    f"stack part {part.name} (pid {part.process.pid}) exited; end of its log:\n"
                    f"{log_tail(self.run_dir / f'{part.name}.log')}"
                )

    def roots(self) -> list[psutil.Process]:
        return [part.process for part in self.parts]

    def pids(self) -> list[int]:
        return [part.process.pid for part in self.parts]

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
            "env": self.env,
            "parts": [{"name": p.name, "pid": p.process.pid, "port": p.port}
                      for p in self.parts],
            "nginx_conf": read_text(nginx_dir / "nginx.conf"),
            "site_conf": read_text(nginx_dir / "geojson-api.conf"),
        }


def read_text(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


def start_stack(supervisor: Supervisor, workdir: Path, data_dir: Path, timeout: float,
                name: str = "stack", env: Mapping[str, str] | None = None) -> Target:
    """``stack up`` with :data:`STACK_ENV` and ``env`` (settings of one kind of run)."""
    port = free_port()
    started = time.monotonic()
    stack = StackServer(name, workdir / name, workdir / f"{name}.log", env)
    supervisor.adopt(stack)  # registered before anything can fail
    stack.up(data_dir, port, timeout)
    return Target(name, port, stack, startup_seconds=time.monotonic() - started, has_api=True)
