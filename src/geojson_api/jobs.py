"""Background jobs that requests must never wait for.

:func:`dispatch` runs a named task (see ``tasks.py``) either on Celery workers,
when ``GEOJSON_API_BROKER_URL`` names a broker, or on this process's own job
thread otherwise. Both run the same task function; a broker that cannot be
reached degrades to the in-process thread (logged), never to an error.

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
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .settings import Settings

log = logging.getLogger(__name__)

Job = Callable[[], object]
T = TypeVar("T")


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


def run_blocking(function: Callable[..., T], *args: object) -> T:
    """Run CPU-bound work so that a gevent worker keeps serving meanwhile.

    Under gevent (threading monkey-patched) the work goes to the hub's pool of
    real OS threads and the calling greenlet waits; other greenlets keep
    running. Elsewhere it is a plain call.
    """
    try:
        from gevent import get_hub, monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return function(*args)
    if not monkey.is_module_patched("threading"):
        return function(*args)
    return get_hub().threadpool.apply(function, args)  # type: ignore[no-any-return]


_runner = JobRunner()
os.register_at_fork(after_in_child=_runner._after_fork)


def submit(key: Hashable, job: Job) -> bool:
    return _runner.submit(key, job)


def wait_idle(timeout: float | None = None) -> bool:
    return _runner.wait_idle(timeout)


# -- named tasks: Celery when a broker is configured, this process otherwise -------
CELERY_TASK = "geojson_api.run"
BROKER_TIMEOUT = 1.0
LOG_INTERVAL = 60.0
_producers: dict[str, Any] = {}
os.register_at_fork(after_in_child=_producers.clear)  # a broker connection is per process
_last_broker_log = 0.0


def dispatch(settings: Settings, task: str, *args: str) -> None:
    """Run ``task(settings, *args)`` in the background, on Celery or in this process."""
    if settings.broker_url and _send(settings.broker_url, task, args):
        return
    submit((task, *args), functools.partial(run_task, settings, task, *args))


def run_task(settings: Settings, task: str, *args: str) -> None:
    """Run a named task now: what the job thread and the Celery worker both call."""
    from .tasks import TASKS  # tasks -> catalog -> jobs: imported when first used

    TASKS[task](settings, *args)


def _send(url: str, task: str, args: tuple[str, ...]) -> bool:
    try:
        _producer(url).send_task(CELERY_TASK, args=[task, *args], retry=False)
    except Exception as exc:  # the broker is down: degrade to this process
        _log_broker_error(exc)
        return False
    return True


def _producer(url: str) -> Any:
    found = _producers.get(url)
    if found is None:
        from .tasks import celery_app

        found = _producers[url] = celery_app(url)
    return found


def _log_broker_error(exc: Exception) -> None:
    global _last_broker_log
    now = time.monotonic()
    if now - _last_broker_log >= LOG_INTERVAL:
        _last_broker_log = now
        log.warning("job broker unavailable, running jobs in this process: %s", exc)
