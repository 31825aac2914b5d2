"""Gunicorn configuration, derived from the settings table.

Used as ``gunicorn -c python:geojson_api.gunicorn_conf`` (what ``geojson-api
serve`` and the container run) or through ``deploy/gunicorn.conf.py``. Every
value comes from a ``GEOJSON_API_*`` variable; see the README's configuration
table. Plain Gunicorn flags on the command line still override these.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from geojson_api import extras, tracing
from geojson_api.settings import UNKNOWN_WARNED, Settings, SettingsError, unknown_variables
from geojson_api.web.assets import check_built

try:
    _s = Settings.from_env()
    extras.check(_s)  # e.g. GEOJSON_API_WORKER_CLASS=gevent without the gevent extra
    check_built()  # the pages' MapLibre files (AssetsMissing is a SettingsError)
except SettingsError as exc:  # one line, instead of Gunicorn's config-file traceback
    print(f"geojson-api: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

wsgi_app = "geojson_api.wsgi:app"
bind = [_s.bind]
if _s.metrics and _s.metrics_port:  # workers answer /metrics there, and nothing else
    from geojson_api.metrics.multiproc import metrics_host

    bind.append(f"{metrics_host(_s.bind)}:{_s.metrics_port}")
workers = _s.workers
# gthread is Gunicorn's, with request heads read by the poller under a timeout
# (geojson_api.gunicorn_workers): slow clients cannot hold its threads.
WORKER_CLASSES = {"gthread": "geojson_api.gunicorn_workers.ThreadWorker"}
worker_class = WORKER_CLASSES.get(_s.worker_class, _s.worker_class)
threads = _s.threads
worker_connections = _s.worker_connections
timeout = _s.timeout
graceful_timeout = _s.graceful_timeout
keepalive = _s.keepalive
max_requests = _s.max_requests
max_requests_jitter = _s.max_requests_jitter
accesslog = _s.access_log or None
# JSON error and access logs (GEOJSON_API_LOG_FORMAT), the app's log in the error log.
logger_class = "geojson_api.logs.GunicornLogger"
# Gunicorn's size atom %(b)s counts bytes written by Python and stays 0 when the
# body went out with sendfile(2); log the Content-Length instead, and the time
# taken in milliseconds at the end. (This is the text format; the JSON lines of
# geojson_api.logs take the same Content-Length.)
access_log_format = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %({content-length}o)s "%(f)s" "%(a)s" %(M)sms'
)
errorlog = _s.error_log
loglevel = _s.log_level
proc_name = _s.proc_name
forwarded_allow_ips = _s.forwarded_allow_ips
# Do not set `sendfile` here: Gunicorn treats *any* value of that setting,
# True included, as --no-sendfile. Left unset, sync and gthread workers send
# files with sendfile(2).


def on_starting(server: object) -> None:
    """In the master, before any worker: the metrics folder, every dataset (the app's log
    goes to Gunicorn's error log: geojson_api.logs.GunicornLogger)."""
    import logging

    if _s.metrics:  # first: before anything imports prometheus-client
        from geojson_api.metrics import multiproc

        multiproc.prepare(_s)

    logger = logging.getLogger("gunicorn.error")
    if not os.environ.get(UNKNOWN_WARNED):  # `geojson-api serve` has said it already
        for line in unknown_variables():
            logger.warning("%s", line)
    if not _s.prepare_on_start:
        return
    from geojson_api.pipeline import open_catalog

    logger.info("preparing datasets in %s", _s.data_dir)
    try:
        # Tiles are left to the workers (about 100 s per 50 MB): they start, and build them.
        open_catalog(_s, background=False).prepare_all(logger.info, at_start=True)
    except OSError as exc:  # e.g. no data folder yet: workers answer /readyz with 503
        logger.warning("could not prepare datasets: %s", exc)
    if _s.metrics:
        from geojson_api.metrics import RECORDER

        RECORDER.flush()  # what publishing counted here, before the workers fork


def child_exit(server: object, worker: Any) -> None:
    """In the master: a worker is gone; its counters join the master's archive (metrics)."""
    if _s.metrics:
        from geojson_api.metrics import multiproc

        multiproc.worker_exited(worker.pid)


def worker_exit(server: object, worker: object) -> None:
    """In a worker on its way out: flush its last counts (a SIGKILL loses one interval)."""
    if _s.metrics:
        from geojson_api.metrics import RECORDER

        RECORDER.stop_flusher()


def on_exit(server: object) -> None:
    if _s.metrics:
        from geojson_api.metrics import multiproc

        multiproc.finish()


def post_worker_init(worker: object) -> None:
    """JSON for Gunicorn's own errors; the metrics flush thread; gevent workers send files
    with sendfile(2); the public pointers' watcher; the feature indexes opened."""
    from geojson_api.gunicorn_workers import install_json_errors

    install_json_errors()
    if tracing.on():  # again, in case the worker's log handlers changed after create_app
        tracing.install_log_filter()
    if _s.metrics:
        from geojson_api.metrics import RECORDER

        RECORDER.start_flusher(_s.metrics_flush_interval)
    if "gevent" in type(worker).__module__:
        from geojson_api.gevent_support import install

        install()
    from geojson_api import public, warm_up

    public.start_watchers()  # a preloaded app's thread did not survive the fork
    wsgi = getattr(worker, "wsgi", None)  # the app Gunicorn loaded for this worker
    if wsgi is not None and hasattr(wsgi, "extensions"):
        # Before the worker takes connections: no request waits for it.
        warm_up(wsgi, getattr(worker, "notify", lambda: None))


# Gunicorn 27 opens a control socket in $HOME by default; several instances on
# one machine (tests, the local stack) would fight over it.
control_socket_disable = True
