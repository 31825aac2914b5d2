"""What a process tree did: CPU time and RSS of every process, read from /proc.

A target is sampled as the union of its trees (for the stack: nginx, each
Gunicorn master, redis-server; each root counts as a master). CPU time is user
+ system of the live processes plus the times of the children they reaped, so
a worker replaced during a run still counts. RSS counts shared pages in every
process that maps them, so a tree's sum overstates the memory really used;
growth over idle is the meaningful figure. The page cache is not part of RSS.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import psutil

from . import LabError
from .procs import running


class Sampled(Protocol):
    """Something whose process trees can be sampled: a server under test."""

    name: str

    def tree_roots(self) -> list[psutil.Process]:
        """The roots of its process trees; fails if a part has exited."""
        ...


@dataclass
class TreeSample:
    """One look at a target's process trees: CPU time so far, RSS of every process
    (bytes) and the root of the tree each process belongs to (PID -> root PID)."""

    at: float
    cpu_seconds: float
    rss: dict[int, int]
    root_of: dict[int, int]

    @property
    def total_rss(self) -> int:
        return sum(self.rss.values())


def _own_and_reaped_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system + times.children_user + times.children_system)


def _read(process: psutil.Process) -> tuple[float, int]:
    with process.oneshot():
        return _own_and_reaped_cpu(process), int(process.memory_info().rss)


def sample_tree(roots: Sequence[psutil.Process]) -> TreeSample:
    """CPU and RSS of every root and all its descendants."""
    cpu = 0.0
    rss: dict[int, int] = {}
    root_of: dict[int, int] = {}
    for root in roots:
        try:
            cpu_root, rss[root.pid] = _read(root)
            members = root.children(recursive=True)
        except psutil.NoSuchProcess as exc:
            raise LabError(f"server process {root.pid} disappeared") from exc
        cpu += cpu_root
        root_of[root.pid] = root.pid
        for process in members:
            try:
                cpu_member, rss[process.pid] = _read(process)
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue  # exited between listing and reading: its parent reaps its CPU time
            cpu += cpu_member
            root_of[process.pid] = root.pid
    return TreeSample(time.monotonic(), cpu, rss, root_of)


def tree_pss(roots: Sequence[psutil.Process]) -> int | None:
    """Proportional set size of the whole trees (bytes): pages shared by several processes
    (mapped files, PostgreSQL's shared buffers, copy-on-write pages of forked workers)
    are split among them instead of counted in each. It reads every process's smaps,
    which is slow, so it is taken once after a run, not at every sample. None where the
    kernel does not tell."""
    total = 0
    for root in roots:
        try:
            processes = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for process in processes:
            try:
                total += int(process.memory_full_info().pss)
            except (psutil.Error, AttributeError):
                if not running(process):
                    continue  # exited meanwhile
                return None
    return total


@dataclass
class MemoryStats:
    """RSS of a process tree around one run (bytes)."""

    idle_total: int
    peak_total: int
    growth_total: int
    worker_growth_max: int
    processes: list[dict[str, int | str]]
    new_processes: int


def _peaks(idle: TreeSample, samples: Sequence[TreeSample]
           ) -> tuple[dict[int, int], dict[int, int]]:
    """Peak RSS of every process seen, and the root of each."""
    peak_by_pid: dict[int, int] = dict(idle.rss)
    root_of: dict[int, int] = dict(idle.root_of)
    for sample in samples:
        for pid, rss in sample.rss.items():
            peak_by_pid[pid] = max(rss, peak_by_pid.get(pid, 0))
        root_of.update(sample.root_of)
    return peak_by_pid, root_of


def _fresh_worker_base(idle: TreeSample, roots: set[int], root: int) -> int:
    """A worker new in the run is compared with the smallest idle one of its master."""
    idle_workers = [rss for pid, rss in idle.rss.items()
                    if pid not in roots and idle.root_of[pid] == root]
    return min(idle_workers, default=idle.rss.get(root, 0))


def memory_stats(idle: TreeSample, samples: Sequence[TreeSample]) -> MemoryStats:
    """Growth of every process; the roots (masters) are left out of the worker growth."""
    peak_by_pid, root_of = _peaks(idle, samples)
    roots = set(root_of.values())
    growths = [
        peak - (idle.rss[pid] if pid in idle.rss
                else _fresh_worker_base(idle, roots, root_of[pid]))
        for pid, peak in peak_by_pid.items() if pid not in roots
    ]
    peak_total = max([idle.total_rss, *(s.total_rss for s in samples)])
    processes: list[dict[str, int | str]] = [
        {"pid": pid, "role": "master" if pid in roots else "worker", "root": root_of[pid],
         "idle_rss": idle.rss.get(pid, 0), "peak_rss": peak}
        for pid, peak in sorted(peak_by_pid.items())
    ]
    return MemoryStats(
        idle_total=idle.total_rss, peak_total=peak_total,
        growth_total=peak_total - idle.total_rss,
        worker_growth_max=max(growths, default=0), processes=processes,
        new_processes=len(set(peak_by_pid) - set(idle.rss)),
    )


def peak_cpu_percent(idle: TreeSample, samples: Sequence[TreeSample],
                     min_seconds: float = 0.4) -> float:
    """Highest CPU use over any stretch of at least ``min_seconds`` between samples, in %
    of one core (like top). The kernel counts CPU time in ticks of 10 ms, so shorter
    stretches (the last sample comes right after the client exits) would be noise."""
    peak = 0.0
    previous = idle
    for sample in samples:
        elapsed = sample.at - previous.at
        if elapsed >= min_seconds:
            peak = max(peak, 100 * (sample.cpu_seconds - previous.cpu_seconds) / elapsed)
            previous = sample
    return peak


def system_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores)."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq + t.steal)
