"""Metrics under Gunicorn's many workers: one folder of files per master.

prometheus-client's multiprocess mode: every process writes its values into
files of its own (``counter_<pid>.db``...) in the folder named by
``PROMETHEUS_MULTIPROC_DIR``, and a scrape adds up every file. The master
makes the folder (``metrics_dir``, emptied, or a fresh one under the system's
temporary folder, removed when it exits) in ``on_starting``, before any
worker exists and before anything imports prometheus-client: the variable
must be set by then, since the client chooses its value files once, when it
is imported.

A worker that exits (recycled by ``max_requests``, killed, crashed) leaves its
files behind. So that counters never go backwards and the folder does not
grow with every recycled worker, the master (``child_exit``) adds the dead
worker's counter and histogram values to its own archive files
(``counter_archive.db``, ``histogram_archive.db``) and deletes the worker's
files; its live gauges (in-flight requests, back-off, queue) simply go. The
merge holds an exclusive lock on ``merge.lock`` and every scrape a shared
one, so no scrape sees a value both in the archive and in the dead worker's
file, or in neither.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .record import RECORDER, worker_restarted

if TYPE_CHECKING:
    from ..settings import Settings

log = logging.getLogger(__name__)

ENV_DIR = "PROMETHEUS_MULTIPROC_DIR"
ENV_MASTER = "_GEOJSON_API_METRICS_MASTER"  # pid of the process that made the folder
ENV_TEMPORARY = "_GEOJSON_API_METRICS_TEMPORARY"  # "1": the folder is removed at exit
LOCK_FILE = "merge.lock"
ARCHIVED = ("counter", "histogram")  # values that add up; gauges die with their process


def directory() -> str | None:
    """The shared folder, when this process is one of a master's (else None)."""
    return os.environ.get(ENV_DIR) or None


def master_pid() -> int | None:
    value = os.environ.get(ENV_MASTER)
    return int(value) if value and value.isdigit() else None


def prepare(settings: Settings) -> Path:
    """Make (or empty) the folder and name it in the environment, for this process's children.

    Called by Gunicorn's master in ``on_starting`` and by ``geojson-api worker``
    before Celery starts its pool.
    """
    if settings.metrics_dir is not None:
        folder = Path(settings.metrics_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in [*folder.glob("*.db"), folder / LOCK_FILE]:
            stale.unlink(missing_ok=True)  # an earlier master's values are not ours
        os.environ.pop(ENV_TEMPORARY, None)
    else:
        folder = Path(tempfile.mkdtemp(prefix="geojson-api-metrics-"))
        os.environ[ENV_TEMPORARY] = "1"
    os.environ[ENV_DIR] = str(folder)
    os.environ[ENV_MASTER] = str(os.getpid())
    return folder


def finish() -> None:
    """The master exits: flush its own counts; remove the folder if it made a fresh one."""
    folder = directory()
    if folder is None:
        return
    RECORDER.flush()
    if os.environ.get(ENV_TEMPORARY) == "1" and master_pid() == os.getpid():
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def locked(folder: str, exclusive: bool) -> Iterator[None]:
    """Hold ``merge.lock``: shared while reading the files, exclusive while merging."""
    with open(os.path.join(folder, LOCK_FILE), "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def archive(folder: str, pid: int) -> None:
    """Move a dead process's counters and histograms into the archive; delete its files."""
    from prometheus_client import mmap_dict, multiprocess

    files: Any = mmap_dict.MmapedDict  # untyped

    with locked(folder, exclusive=True):
        for kind in ARCHIVED:
            dead = os.path.join(folder, f"{kind}_{pid}.db")
            if not os.path.exists(dead):
                continue
            store = files(os.path.join(folder, f"{kind}_archive.db"))
            try:
                for key, value, _timestamp, _pos in files.read_all_values_from_file(dead):
                    if value:
                        total, _ = store.read_value(key)
                        store.write_value(key, total + value, 0.0)
            finally:
                store.close()
            os.unlink(dead)
        cast(Any, multiprocess).mark_process_dead(pid, folder)  # its live gauges
        for rest in glob.glob(os.path.join(folder, f"*_{pid}.db")):
            os.unlink(rest)  # any other gauge it had


def worker_exited(pid: int) -> None:
    """Gunicorn's ``child_exit``, in the master: archive the worker, count the restart."""
    folder = directory()
    if folder is None:
        return
    try:
        archive(folder, pid)
    except (OSError, RuntimeError) as exc:  # a torn file: its values are lost, not the master
        log.warning("metrics of worker %s not archived: %s", pid, exc)
    worker_restarted()
    RECORDER.flush()


class SharedFilesCollector:
    """The sum of every process's files (and the archive), read under the shared lock."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def collect(self) -> list[Any]:
        from prometheus_client import multiprocess

        collector: Any = multiprocess.MultiProcessCollector  # untyped
        with locked(self.folder, exclusive=False):
            files = glob.glob(os.path.join(self.folder, "*.db"))
            return list(collector.merge(files, accumulate=True))


def serve_worker_metrics(settings: Settings, version: str) -> None:
    """``geojson-api worker``: its own ``/metrics`` on ``metrics_port``, once Celery is ready.

    Its pool's processes write into a folder like Gunicorn's workers (made here,
    before Celery forks them); the HTTP server starts when the worker is ready,
    after the pool's first forks.
    """
    folder = prepare(settings)
    from celery.signals import worker_ready

    from .scrape import FactsCollector, Scrape

    scrape = Scrape(FactsCollector(None, settings, master=os.getpid(), version=version),
                    SharedFilesCollector(str(folder)))

    def start(**_: Any) -> None:
        host = metrics_host(settings.bind)
        serve_metrics_port(host, settings.metrics_port, scrape, settings.metrics_token)
        log.info("job metrics on http://%s:%d/metrics", host, settings.metrics_port)

    worker_ready.connect(start, weak=False)


def serve_metrics_port(host: str, port: int, scrape: Callable[[], bytes], token: str) -> None:
    """Answer ``/metrics`` (behind ``token`` when set) on ``host:port`` from a daemon thread,
    with the same rules as the app's metrics port: that path only, GET and HEAD."""
    import socket
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client.exposition import ThreadingWSGIServer

    from .wsgi import RequestMetrics

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    def unused(environ: Any, start_response: Any) -> list[bytes]:  # every request is /metrics'
        raise AssertionError("the metrics port answers only /metrics")

    class Server(ThreadingWSGIServer):
        address_family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

    app = RequestMetrics(unused, scrape, token, port)
    server = make_server(host, port, app, Server, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, name="metrics-port", daemon=True).start()


def metrics_host(bind: str) -> str:
    """The host of a HOST:PORT bind (a unix socket's service gets loopback)."""
    if bind.startswith(("unix:", "fd://")):
        return "127.0.0.1"
    return bind.rpartition(":")[0].strip("[]") or "0.0.0.0"
