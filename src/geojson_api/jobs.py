"""Background jobs that requests must never wait for.

A :class:`Scheduler` (what the catalog is given) runs artifact builds either
on Celery workers, when the wiring gives it a sender (``GEOJSON_API_BROKER_URL``,
see :mod:`geojson_api.pipeline` and :mod:`geojson_api.tasks`), or on this
process's own job thread. This module knows nothing of Celery or of what a
build does.

The in-process queue has one worker thread, started lazily in the process
that first submits (so it survives Gunicorn's fork: the master never owns it).
Jobs are keyed; a key already queued or running is not queued twice. Work that
must happen once across processes guards itself with a file lock.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import threading
from collections.abc import Callable, Hashable

from . import tracing
from .artifacts import Build
from .metrics import record as metrics

log = logging.getLogger(__name__)

Job = Callable[[], object]


class JobRunner:
    """One worker thread draining a queue of keyed jobs."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[Hashable, Job]] = queue.Queue()
        self._pending: set[Hashable] = set()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._pid = 0

    def submit(self, key: Hashable, job: Job) -> bool:
        """Queue ``job`` unless a job with ``key`` is already waiting or running."""
        with self._lock:
            if key in self._pending:
                return False
            self._pending.add(key)
            self._ensure_thread()
        self._queue.put((key, job))
        return True

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="geojson-api-jobs", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            key, job = self._queue.get()
            try:
                job()
            except Exception:
                log.exception("background job %r failed", key)
            finally:
                with self._lock:
                    self._pending.discard(key)
                    self._idle.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job is pending; False on timeout."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._pending, timeout)

    def _after_fork(self) -> None:
        """A forked child starts with no thread, no queue and nothing pending."""
        self.__init__()  # type: ignore[misc]


_runner = JobRunner()
os.register_at_fork(after_in_child=_runner._after_fork)


def submit(key: Hashable, job: Job) -> bool:
    return _runner.submit(key, job)


def wait_idle(timeout: float | None = None) -> bool:
    return _runner.wait_idle(timeout)


def queue_depth() -> int:
    """Jobs waiting in this process's queue (not the one running)."""
    return _runner._queue.qsize()


class Scheduler:
    """Where a version's artifact builds run: Celery workers or this process's job thread.

    ``run`` builds a request here (on the job thread); ``send`` hands it to a
    broker and returns False when the broker cannot take it, in which case it
    runs here after all: a broker that is down degrades to the web process,
    never to an error.
    """

    def __init__(self, run: Callable[[Build], None],
                 send: Callable[[Build], bool] | None = None) -> None:
        self._run = run
        self._send = send

    @tracing.traced("job.submit", lambda self, request: vars(request))
    def build(self, request: Build) -> None:
        if self._send is not None and self._send(request):
            metrics.job_submitted(request.artifact)
            return
        if submit(request, tracing.in_background(functools.partial(self._timed, request),
                                                 **vars(request))):
            metrics.job_submitted(request.artifact)

    def _timed(self, request: Build) -> None:
        with metrics.job_run(request.artifact):
            self._run(request)

    def call_soon(self, key: Hashable, job: Job) -> None:
        submit(key, job)
