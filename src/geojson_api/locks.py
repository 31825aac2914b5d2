"""File locks shared by every process that uses one state folder.

Publishing a version and building each of its artifacts happen under an
exclusive ``flock(2)`` on a small file, so that several Gunicorn workers,
several hosts on a shared volume and Celery workers do each piece of work once.

:func:`held` answers "is somebody building this?" without taking the lock:
a state check that tried the lock could, for the instant it held it, make a
real build that also tries without waiting give up. On Linux it reads
``/proc/locks`` (every flock on the machine, containers included); elsewhere
it falls back to trying the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import NotReady

LOCK_WAIT_SECONDS = 120.0
POLL_SECONDS = 0.02
PROC_LOCKS = "/proc/locks"


@contextlib.contextmanager
def file_lock(path: Path, wait: bool | float) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created if missing) for the block.

    ``wait``: False to give up at once (the block gets False), True for up to
    LOCK_WAIT_SECONDS, or seconds. Waiting longer raises NotReady (503 with
    Retry-After for a request). OSError (no space for the lock file, a folder
    gone) reaches the caller.
    """
    limit = LOCK_WAIT_SECONDS if wait is True else float(wait)
    with open(path, "a+b") as handle:
        deadline = time.monotonic() + limit
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    yield False
                    return
                if time.monotonic() > deadline:
                    raise NotReady(f"{path.stem} is busy; try again shortly") from None
                time.sleep(POLL_SECONDS)
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def held(path: Path) -> bool:
    """True while some process holds a lock on ``path`` (False if it does not exist)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    key = f" {os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino} "
    try:
        with open(PROC_LOCKS, encoding="ascii", errors="replace") as table:
            return any(key in line for line in table)
    except OSError:  # not Linux, or /proc hidden: try the lock, release it at once
        try:
            with file_lock(path, wait=False) as free:
                return not free
        except OSError:
            return False
