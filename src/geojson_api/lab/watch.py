"""Run a load generator while sampling the target's process trees and the client itself.

The client (Locust or wrk) is a child in its own process group. While it runs,
the target's trees are sampled every ``interval`` seconds (CPU time, RSS) and so
is the client's CPU, so a saturated client is visible next to the server. A
:class:`Guard` stops the client early (SIGINT: Locust and wrk then still
write their statistics) when the target's memory passes a limit, e.g. the study's baseline,
which holds a whole file in memory per download in flight.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from . import LabError
from .procs import die_with_parent
from .sampling import TreeSample, sample_tree, system_busy_seconds

MB = 1e6


@dataclass(frozen=True)
class Guard:
    """Limits that stop a run early: the target's RSS and the machine's free memory."""

    max_target_rss: int  # bytes, the whole tree
    min_available: int = 1_500_000_000  # bytes the machine must keep available

    def check(self, sample: TreeSample) -> str | None:
        """Why the run must stop now, or None."""
        if sample.total_rss > self.max_target_rss:
            return (f"target RSS {sample.total_rss / MB:,.0f} MB passed the limit of "
                    f"{self.max_target_rss / MB:,.0f} MB")
        available = psutil.virtual_memory().available
        if available < self.min_available:
            return (f"machine memory available {available / MB:,.0f} MB fell below "
                    f"{self.min_available / MB:,.0f} MB")
        return None


@dataclass
class Watched:
    """What the target's trees and the client did during one run."""

    idle: TreeSample
    samples: list[TreeSample] = field(default_factory=list)
    client_cpu_seconds: float = 0.0  # user + system, from wait4()
    client_peak_cpu_percent: float = 0.0  # % of one core, highest between two samples
    stopped_by_guard: str | None = None
    returncode: int | None = None
    machine_busy_seconds: float = 0.0  # CPU time of the whole machine (all cores)
    sampler_cpu_seconds: float = 0.0  # the lab's own, sampling

    @property
    def wall_seconds(self) -> float:
        return self.samples[-1].at - self.idle.at if self.samples else 0.0

    @property
    def target_cpu_seconds(self) -> float:
        return self.samples[-1].cpu_seconds - self.idle.cpu_seconds if self.samples else 0.0

    def series(self) -> list[tuple[float, int, float]]:
        """Every sample as (seconds since idle, RSS bytes, CPU seconds since idle)."""
        return [(round(s.at - self.idle.at, 3), s.total_rss,
                 round(s.cpu_seconds - self.idle.cpu_seconds, 3)) for s in self.samples]

    @property
    def other_cpu_seconds(self) -> float:
        """CPU used meanwhile by anything but the target, the client and the lab: other
        jobs on a shared machine, and kernel work charged to no process."""
        return max(self.machine_busy_seconds - self.target_cpu_seconds
                   - self.client_cpu_seconds - self.sampler_cpu_seconds, 0.0)


class _ClientCpu:
    """The client's CPU between two samples."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.last = (time.monotonic(), 0.0)

    def percent(self) -> float:
        try:
            times = self.process.cpu_times()
        except psutil.Error:
            return 0.0
        now, cpu = time.monotonic(), float(times.user + times.system)
        before, self.last = self.last, (now, cpu)
        return 100 * (cpu - before[1]) / (now - before[0]) if now > before[0] else 0.0


def _reaped(client: subprocess.Popen[bytes], watched: Watched) -> bool:
    """Reap the client if it exited, keeping its CPU time (wait4's rusage)."""
    pid, status, usage = os.wait4(client.pid, os.WNOHANG)
    if not pid:
        return False
    client.returncode = watched.returncode = os.waitstatus_to_exitcode(status)
    watched.client_cpu_seconds = usage.ru_utime + usage.ru_stime
    return True


def _guard(client: subprocess.Popen[bytes], watched: Watched, guard: Guard | None) -> None:
    if guard is None or watched.stopped_by_guard:
        return
    reason = guard.check(watched.samples[-1])
    if reason:
        watched.stopped_by_guard = reason
        with contextlib.suppress(ProcessLookupError):
            client.send_signal(signal.SIGINT)


def watch(client: subprocess.Popen[bytes], watched: Watched, roots: Sequence[psutil.Process],
          limit: float, interval: float, guard: Guard | None) -> None:
    """Sample until the client exits (at most ``limit`` seconds)."""
    cpu = _ClientCpu(client.pid)
    started = next_at = time.monotonic()
    while not _reaped(client, watched):
        if time.monotonic() - started > limit:
            raise LabError(f"{client.args!r} still running after {limit:.0f} s")
        watched.samples.append(sample_tree(roots))
        watched.client_peak_cpu_percent = max(watched.client_peak_cpu_percent, cpu.percent())
        _guard(client, watched, guard)
        next_at += interval
        time.sleep(max(next_at - time.monotonic(), 0.0))
    watched.samples.append(sample_tree(roots))


def run_client(argv: Sequence[str], log: Path, roots: Sequence[psutil.Process], limit: float,
               interval: float, guard: Guard | None = None) -> Watched:
    """Run a load generator to its end (its output goes to ``log``); it is always reaped."""
    busy, own = system_busy_seconds(), time.process_time()
    watched = Watched(idle=sample_tree(roots))
    with open(log, "wb") as out:
        client = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, process_group=0,
                                  preexec_fn=die_with_parent)
    try:
        watch(client, watched, roots, limit, interval, guard)
    finally:
        if client.returncode is None:
            client.kill()
            client.wait()
    watched.machine_busy_seconds = system_busy_seconds() - busy
    watched.sampler_cpu_seconds = time.process_time() - own
    return watched
