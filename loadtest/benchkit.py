"""What the benchmarks in loadtest/ share: child processes, wrk, process-tree sampling, reports.

* **Children** are started in their own process group and die with this script
  (``PR_SET_PDEATHSIG``); a ``Supervisor`` stops every one of them by PID, also
  on Ctrl-C, SIGTERM or an error, together with the workers it has seen them fork.
* **wrk** runs while the server's process trees are sampled from /proc every
  ``SAMPLE_INTERVAL`` seconds (RSS of every process, CPU time of the tree); its
  output is parsed into plain units (ms, bytes, MB/s with MB = 10^6 bytes).
* **Reports**: number formatting and Markdown tables.

Used by ``wholefile.py`` (whole files vs nginx) and ``features.py`` (OGC API -
Features vs peers). Run those scripts from the repository root or anywhere:
each puts its own folder on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import psutil

HOST = "127.0.0.1"
SAMPLE_INTERVAL = 0.2  # seconds between two samples of the target's process tree
WRK_THREADS = 2
WRK_TIMEOUT = "30s"
MB = 1e6
GB = 1e9


class BenchmarkError(Exception):
    """A target failed to start or died, or wrk could not connect: results are invalid."""


class Interrupted(Exception):
    """SIGTERM or SIGHUP arrived; raised in the main thread so that cleanup runs."""


# -- child processes -------------------------------------------------------------------

_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def die_with_parent() -> None:
    """Run in each child before exec: Linux SIGTERMs it if this script dies, even by SIGKILL."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def interrupt_with_parent() -> None:
    """Like ``die_with_parent`` with SIGINT: a Python child gets KeyboardInterrupt and
    can clean up (``geojson-api stack up`` then stops what it started)."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGINT))


def spawn(argv: Sequence[str], log: Path, env: dict[str, str] | None = None,
          on_parent_death: Callable[[], None] = die_with_parent, *,
          user: str | None = None) -> subprocess.Popen[bytes]:
    """Start a child in its own process group (a terminal Ctrl-C reaches only us),
    as ``user`` (with that user's group) when given."""
    with open(log, "ab") as out:  # append: nginx also writes its error log there
        return subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=env, process_group=0, preexec_fn=on_parent_death,
            user=user, group=_group_of(user), extra_groups=[] if user else None,
        )


def _group_of(user: str | None) -> int | None:
    if user is None:
        return None
    import pwd

    return pwd.getpwnam(user).pw_gid


def log_tail(log: Path, lines: int = 15) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


@dataclass
class Child:
    """A long-running process this script started; stopped by its PID, never by name."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    stop_signal: signal.Signals = signal.SIGTERM

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        return log_tail(self.log, lines)

    def check_alive(self) -> None:
        if not self.alive():
            raise BenchmarkError(
                f"{self.name} (pid {self.pid}) exited with code {self.popen.returncode}; "
                f"end of its log:\n{self.log_tail()}"
            )

    def roots(self) -> list[psutil.Process]:
        return [psutil.Process(self.pid)]

    def describe(self) -> str:
        return f"pid {self.pid}"


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Hold back Ctrl-C and friends while children are being stopped."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def descendants_of(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def running(process: psutil.Process) -> bool:
    """True while ``process`` runs: not exited, not a zombie, its PID not reused."""
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


class Group(Protocol):
    """Processes started some other way than ``Supervisor.start`` (e.g. detached), which
    the supervisor must also stop."""

    def remember_descendants(self) -> None:
        """Note the PIDs of whatever the group runs now."""

    def stop(self) -> None:
        """Stop everything the group runs."""


class Supervisor:
    """Starts the long-running children (and groups) and stops them all, whatever happens."""

    def __init__(self) -> None:
        self.children: list[Child] = []
        self.groups: list[Group] = []
        # Called after every process has stopped, e.g. to remove a folder they wrote into.
        self.cleanups: list[Callable[[], None]] = []
        # Workers seen so far: if a master dies first, its orphans are still ours to stop.
        self.descendants: set[psutil.Process] = set()

    def start(self, name: str, argv: Sequence[str], log: Path,
              env: dict[str, str] | None = None, *, user: str | None = None,
              stop_signal: signal.Signals = signal.SIGTERM) -> Child:
        child = Child(name, spawn(argv, log, env, user=user), log, stop_signal)
        self.children.append(child)  # registered before anything can fail
        return child

    def remember_descendants(self) -> None:
        for child in self.children:
            if child.alive():
                self.descendants.update(descendants_of(child.pid))
        for group in self.groups:
            group.remember_descendants()

    def stop_all(self, timeout: float = 45.0) -> None:
        """Stop every group; send every child its stop signal (SIGTERM: a graceful stop),
        in reverse order of start (clients before their database), wait, then SIGKILL
        leftovers by PID."""
        with signals_blocked():
            for group in self.groups:
                group.stop()
            self.remember_descendants()
            running = [c for c in reversed(self.children) if c.alive()]
            for child in running:
                with contextlib.suppress(ProcessLookupError):
                    child.popen.send_signal(child.stop_signal)
            deadline = time.monotonic() + timeout
            for child in running:
                try:
                    child.popen.wait(max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    print(f"{child.name} did not stop in {timeout:.0f} s; killing it",
                          file=sys.stderr)
                    child.popen.kill()
                    child.popen.wait()
            for process in self.descendants:
                # psutil refuses to signal a PID that was reused by another process.
                with contextlib.suppress(psutil.Error):
                    process.kill()
            for cleanup in self.cleanups:
                cleanup()


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def install_signal_handlers() -> None:
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupted)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


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
    raise BenchmarkError(
        f"{child.name} not ready at {url} after {timeout:.0f} s; end of its log:\n"
        f"{child.log_tail()}"
    )


# -- process tree sampling -------------------------------------------------------------

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
    return times.user + times.system + times.children_user + times.children_system


def tree_pss(roots: Sequence[psutil.Process]) -> int | None:
    """Proportional set size of the whole trees (bytes): shared pages (mmap'ed files,
    PostgreSQL's shared buffers, copy-on-write pages of forked workers) are split among
    the processes that map them instead of counted in each. Reads every smaps: slow,
    so taken once, not at every sample. None where the kernel does not tell."""
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


def sample_tree(roots: Sequence[psutil.Process]) -> TreeSample:
    """CPU and RSS of every root and all its descendants, read from /proc."""
    cpu = 0.0
    rss: dict[int, int] = {}
    root_of: dict[int, int] = {}
    for root in roots:
        try:
            with root.oneshot():
                cpu += _own_and_reaped_cpu(root)
                rss[root.pid] = root.memory_info().rss
            descendants = root.children(recursive=True)
        except psutil.NoSuchProcess as exc:
            raise BenchmarkError(f"server process {root.pid} disappeared") from exc
        root_of[root.pid] = root.pid
        for process in descendants:
            try:
                with process.oneshot():
                    cpu += _own_and_reaped_cpu(process)
                    rss[process.pid] = process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue  # exited between listing and reading: its parent reaps its CPU time
            root_of[process.pid] = root.pid
    return TreeSample(time.monotonic(), cpu, rss, root_of)


@dataclass
class MemoryStats:
    """RSS of a process tree around one run (bytes)."""

    idle_total: int
    peak_total: int
    growth_total: int
    worker_growth_max: int
    processes: list[dict[str, int | str]]
    new_processes: int


def memory_stats(idle: TreeSample, samples: Sequence[TreeSample]) -> MemoryStats:
    """Growth of every process; the roots (masters) are left out of the worker growth."""
    peak_by_pid: dict[int, int] = dict(idle.rss)
    root_of: dict[int, int] = dict(idle.root_of)
    for sample in samples:
        for pid, rss in sample.rss.items():
            peak_by_pid[pid] = max(rss, peak_by_pid.get(pid, 0))
        root_of.update(sample.root_of)
    roots = set(root_of.values())

    def fresh_worker_base(root: int) -> int:
        """A worker new in the run is compared with the smallest idle one of its master."""
        idle_workers = [rss for pid, rss in idle.rss.items()
                        if pid not in roots and idle.root_of[pid] == root]
        return min(idle_workers, default=idle.rss.get(root, 0))

    growths = [
        peak - (idle.rss[pid] if pid in idle.rss else fresh_worker_base(root_of[pid]))
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


def system_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores)."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + t.steal


# -- wrk -------------------------------------------------------------------------------

_TIME_TO_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_BINARY = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_TIME = r"([\d.]+)(us|ms|s|m|h)"
_SIZE = r"([\d.]+)([KMGTP]?)B"
_SUMMARY_RE = re.compile(rf"(\d+) requests in {_TIME}, {_SIZE} read")
_RPS_RE = re.compile(r"Requests/sec:\s+([\d.]+)")
_TRANSFER_RE = re.compile(rf"Transfer/sec:\s+{_SIZE}")
_PERCENTILE_RE = re.compile(rf"^\s+(50|75|90|99)%\s+{_TIME}\s*$", re.MULTILINE)
_SOCKET_RE = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX_RE = re.compile(r"Non-2xx or 3xx responses: (\d+)")


@dataclass
class WrkStats:
    """What wrk printed, in plain units (ms, bytes, MB/s with MB = 10^6 bytes)."""

    requests: int
    seconds: float
    bytes_read: float
    requests_per_s: float
    mb_per_s: float
    latency_ms: dict[str, float | None]
    socket_errors: dict[str, int]
    non_2xx_3xx: int

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values()) + self.non_2xx_3xx


def _search(pattern: re.Pattern[str], text: str) -> re.Match[str]:
    match = pattern.search(text)
    if match is None:
        raise BenchmarkError(f"cannot find {pattern.pattern!r} in wrk's output:\n{text}")
    return match


def parse_wrk(text: str) -> WrkStats:
    summary = _search(_SUMMARY_RE, text)
    requests = int(summary[1])
    transfer = _search(_TRANSFER_RE, text)
    latency: dict[str, float | None] = {f"p{p}": None for p in (50, 75, 90, 99)}
    if requests:
        for match in _PERCENTILE_RE.finditer(text):
            latency[f"p{match[1]}"] = float(match[2]) * _TIME_TO_MS[match[3]]
    sockets = _SOCKET_RE.search(text)
    counts = [int(n) for n in sockets.groups()] if sockets else [0, 0, 0, 0]
    non_2xx = _NON_2XX_RE.search(text)
    return WrkStats(
        requests=requests,
        seconds=float(summary[2]) * _TIME_TO_MS[summary[3]] / 1e3,
        bytes_read=float(summary[4]) * _BINARY[summary[5]],
        requests_per_s=float(_search(_RPS_RE, text)[1]),
        mb_per_s=float(transfer[1]) * _BINARY[transfer[2]] / MB,
        latency_ms=latency,
        socket_errors=dict(zip(("connect", "read", "write", "timeout"), counts, strict=True)),
        non_2xx_3xx=int(non_2xx[1]) if non_2xx else 0,
    )


def wrk_command(url: str, connections: int, duration: int, *, timeout: str = WRK_TIMEOUT,
                script: Path | None = None, script_args: Sequence[str] = ()) -> list[str]:
    """``wrk -t2 -c<connections> -d<duration>s --timeout <timeout> --latency``, with a Lua
    script (its arguments go after ``--``) when given."""
    lua = ["-s", str(script)] if script else []
    rest = ["--", *script_args] if script_args else []
    return ["wrk", f"-t{WRK_THREADS}", f"-c{connections}", f"-d{duration}s",
            "--timeout", timeout, "--latency", *lua, url, *rest]


def watch_wrk(wrk: subprocess.Popen[bytes], roots: Sequence[psutil.Process], limit: float,
              ) -> tuple[list[TreeSample], float]:
    """Sample the server trees until wrk exits; wrk's own CPU seconds come from wait4()."""
    samples: list[TreeSample] = []
    started = next_at = time.monotonic()
    while True:
        pid, status, usage = os.wait4(wrk.pid, os.WNOHANG)
        if pid:
            wrk.returncode = os.waitstatus_to_exitcode(status)
            samples.append(sample_tree(roots))
            return samples, usage.ru_utime + usage.ru_stime
        if time.monotonic() - started > limit:
            raise BenchmarkError(f"wrk still running after {limit:.0f} s")
        samples.append(sample_tree(roots))
        next_at += SAMPLE_INTERVAL
        time.sleep(max(next_at - time.monotonic(), 0.0))


def run_wrk(command: Sequence[str], roots: Sequence[psutil.Process], limit: float,
            ) -> tuple[str, list[TreeSample], float]:
    """(output, server samples, wrk CPU seconds) of one wrk run; wrk is always reaped."""
    with tempfile.TemporaryFile() as out:
        wrk = subprocess.Popen(list(command), stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.STDOUT, process_group=0,
                               preexec_fn=die_with_parent)
        try:
            samples, wrk_cpu = watch_wrk(wrk, roots, limit)
        finally:
            if wrk.returncode is None:
                wrk.kill()
                wrk.wait()
        out.seek(0)
        text = out.read().decode(errors="replace")
    if wrk.returncode != 0:
        reason = "could not connect" if "unable to connect" in text else "failed"
        raise BenchmarkError(f"wrk {reason} (exit code {wrk.returncode}): {text.strip()}")
    return text, samples, wrk_cpu


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


# -- machine information ---------------------------------------------------------------

def first_line(argv: Sequence[str]) -> str | None:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].split(" Copyright")[0].strip() if lines else None


def dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def base_machine_info() -> dict[str, Any]:
    """The machine and the tools every benchmark reports."""
    return {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "mem_total_bytes": psutil.virtual_memory().total,
        "kernel": platform.release(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "psutil": dist_version("psutil"),
        "wrk": first_line(["wrk", "-v"]),
        "loadavg_at_start": os.getloadavg(),
    }


# -- reports ---------------------------------------------------------------------------

def fmt(value: float | None, unit: str = "") -> str:
    """Three significant figures or so, thousands separated; '-' when unknown."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return text + unit


def fmt_mb(nbytes: float) -> str:
    return fmt(nbytes / MB)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def read_or_none(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


class Sampled(Protocol):
    """Something whose process trees can be sampled: a server under test."""

    name: str

    def tree_roots(self) -> list[psutil.Process]:
        """The roots of its process trees; fails if a part has exited."""
        ...


class Server(Protocol):
    """What runs a target: one ``Child`` (one process tree) or several processes."""

    name: str

    def check_alive(self) -> None:
        """Raise BenchmarkError when a process of the server has exited."""

    def roots(self) -> list[psutil.Process]:
        """The roots of the server's process trees (masters, single processes)."""
        ...

    def describe(self) -> str:
        """The PIDs, for the console."""
        ...


def wait_until_quiet(targets: Sequence[Sampled], limit: float = 30.0,
                     max_cores: float = 0.05) -> None:
    """Wait (bounded) until no target burns CPU, e.g. after startup work."""
    deadline = time.monotonic() + limit
    while True:
        before = [sample_tree(t.tree_roots()).cpu_seconds for t in targets]
        time.sleep(1.0)
        after = [sample_tree(t.tree_roots()).cpu_seconds for t in targets]
        busy = {t.name: b - a for t, a, b in zip(targets, before, after, strict=True)}
        if max(busy.values()) < max_cores:
            return
        if time.monotonic() > deadline:
            print(f"warning: targets still busy after {limit:.0f} s: "
                  + ", ".join(f"{k} {v:.2f} cores" for k, v in busy.items()), file=sys.stderr)
            return

