"""Child processes of the lab: started in their own process group, stopped by PID.

Every long-running process is registered with a :class:`Supervisor` before
anything can fail, and :meth:`Supervisor.stop_all` stops all of them whatever
happened (an error, Ctrl-C, SIGTERM): each child's stop signal (SIGTERM unless
it needs another, e.g. SIGINT for PostgreSQL's fast shutdown) in reverse order
of start, a bounded wait, then SIGKILL of leftovers, always by PID and never by
name. Children also get ``PR_SET_PDEATHSIG``, so Linux signals them should the
lab itself be killed. A child may run as another user (``user=``, e.g. a
database that refuses root).
"""

from __future__ import annotations

import contextlib
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import psutil

from ..children import die_with_parent as die_with_parent
from ..children import interrupt_with_parent as interrupt_with_parent
from ..errors import Interrupted as Interrupted
from . import LabError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def spawn(argv: Sequence[str], log: Path, env: dict[str, str] | None = None,
          on_parent_death: Callable[[], None] = die_with_parent, *,
          user: str | None = None) -> subprocess.Popen[bytes]:
    """Start a child in its own process group (a terminal's Ctrl-C reaches only the lab),
    as ``user`` with that user's group when given."""
    with open(log, "ab") as out:  # append: nginx also writes its error log there
        return subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=env, process_group=0, preexec_fn=on_parent_death,
            user=user, group=_group_of(user), extra_groups=[] if user else None,
        )


def _group_of(user: str | None) -> int | None:
    return None if user is None else pwd.getpwnam(user).pw_gid


def log_tail(log: Path, lines: int = 15) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def running(process: psutil.Process) -> bool:
    """True while ``process`` runs: not exited, not a zombie, its PID not reused."""
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


@dataclass
class Child:
    """A long-running process the lab started; stopped by its PID, never by name."""

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
            raise LabError(
                f"{self.name} (pid {self.pid}) exited with code {self.popen.returncode}; "
                f"end of its log:\n{self.log_tail()}"
            )

    def roots(self) -> list[psutil.Process]:
        return [psutil.Process(self.pid)]

    def pids(self) -> list[int]:
        return [self.pid]

    def describe(self) -> str:
        return f"pid {self.pid}"


class Group(Protocol):
    """Processes started another way (e.g. detached by ``stack up``) that the
    supervisor must stop too."""

    def remember_descendants(self) -> None:
        """Note the descendants seen now, to stop them should their parent die first."""

    def stop(self) -> None:
        """Stop every process of the group, by PID."""


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Hold back Ctrl-C and friends while children are being stopped."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class Supervisor:
    """Starts the long-running children and stops them all, whatever happens."""

    def __init__(self) -> None:
        self.children: list[Child] = []
        self.groups: list[Group] = []
        # Workers seen so far: if a master dies first, its orphans are still ours to stop.
        self.descendants: set[psutil.Process] = set()
        # Run once every process has stopped, e.g. to remove a folder they wrote into.
        self.cleanups: list[Callable[[], None]] = []

    def start(self, name: str, argv: Sequence[str], log: Path,
              env: dict[str, str] | None = None, *, user: str | None = None,
              stop_signal: signal.Signals = signal.SIGTERM) -> Child:
        child = Child(name, spawn(argv, log, env, user=user), log, stop_signal)
        self.children.append(child)  # registered before anything can fail
        return child

    def adopt(self, group: Group) -> None:
        """Register a group before it starts anything."""
        self.groups.append(group)

    def remember_descendants(self) -> None:
        for child in self.children:
            if child.alive():
                self.descendants.update(descendants(child.pid))
        for group in self.groups:
            group.remember_descendants()

    def stop_all(self, timeout: float = 45.0) -> None:
        """Stop every group, then send every child its stop signal (a graceful stop),
        wait, SIGKILL leftovers and orphaned descendants by PID, and run the cleanups."""
        with signals_blocked():
            for group in self.groups:
                group.stop()
            self.remember_descendants()
            self._terminate_children(timeout)
            for process in self.descendants:
                # psutil refuses to signal a PID that was reused by another process.
                with contextlib.suppress(psutil.Error):
                    process.kill()
            for cleanup in self.cleanups:
                cleanup()

    def _terminate_children(self, timeout: float) -> None:
        # Latest first: clients stop before the database they were started after.
        running_children = [c for c in reversed(self.children) if c.alive()]
        for child in running_children:
            with contextlib.suppress(ProcessLookupError):
                child.popen.send_signal(child.stop_signal)
        deadline = time.monotonic() + timeout
        for child in running_children:
            try:
                child.popen.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                print(f"{child.name} did not stop in {timeout:.0f} s; killing it",
                      file=sys.stderr)
                child.popen.kill()
                child.popen.wait()


@contextlib.contextmanager
def supervised(meta: dict[str, Any], then: Callable[[], None]) -> Iterator[Supervisor]:
    """A :class:`Supervisor` for the block. Whatever ends it, every process it started is
    stopped, then ``then()`` runs (it reports what was done). ``meta`` says whether the
    block completed (``complete``) and if not why (``error``: the first line of the
    LabError that ended it, or an interruption)."""
    meta.update(complete=False, error="interrupted before the end")
    supervisor = Supervisor()
    try:
        yield supervisor
        meta.update(complete=True, error=None)
    except LabError as exc:
        meta["error"] = str(exc).splitlines()[0]
        raise
    finally:
        supervisor.stop_all()
        then()


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP raise :class:`Interrupted`, SIGINT raises KeyboardInterrupt."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupted)
    # A shell without job control starts background jobs with SIGINT ignored; stop on
    # SIGINT all the same, so that `kill -INT` cleans up like Ctrl-C.
    signal.signal(signal.SIGINT, signal.default_int_handler)
