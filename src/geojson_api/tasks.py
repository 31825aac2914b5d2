"""Artifact builds on Celery workers: the task, the worker's app, the web side's sender.

A web process given ``GEOJSON_API_BROKER_URL`` hands each :class:`Build` to
the broker with a :class:`Sender`; a worker started with ``geojson-api
worker`` runs the one task, ``geojson_api.run(artifact, dataset, version)``,
with the ``run`` function the wiring gives it (:func:`geojson_api.pipeline.
build_now` over the worker's own settings: its environment must name the same
data and state folders as the web processes'). Celery is imported only here,
and only when a broker is configured.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import tracing
from .artifacts import Build
from .metrics import record as metrics

log = logging.getLogger(__name__)

BUILD_TASK = "geojson_api.run"
BROKER_TIMEOUT = 1.0
LOG_INTERVAL = 60.0
"""A broker that stays down is logged at most this often per process."""


def celery_app(broker_url: str, run: Callable[[Build], None] | None = None) -> Any:
    """A Celery app on ``broker_url``; with ``run``, one that executes the build task."""
    from celery import Celery

    app = Celery("geojson_api", broker=broker_url)
    app.conf.update(
        broker_connection_timeout=BROKER_TIMEOUT,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"socket_connect_timeout": BROKER_TIMEOUT,
                                  "socket_timeout": BROKER_TIMEOUT, "max_retries": 0},
        task_ignore_result=True,
        task_acks_late=True,  # a worker killed mid-build leaves the job queued
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
    )
    if run is not None:
        @app.task(name=BUILD_TASK, bind=True)  # type: ignore[untyped-decorator]
        def build(task: Any, artifact: str, dataset: str, version: str) -> None:
            request = Build(artifact, dataset, version)
            try:
                with (tracing.job(task.request.get("trace"), runner="celery", **vars(request)),
                      metrics.job_run(artifact)):
                    run(request)
            finally:
                metrics.RECORDER.flush()  # a pool process has no flush thread

    return app


def without_password(url: str) -> str:
    """``url`` with its password masked, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:**@{host}"))


class Sender:
    """Hands builds to the broker; False when it cannot (the caller builds locally)."""

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url
        self._app: Any = None
        self._pid = 0
        self._last_log = -LOG_INTERVAL

    def __call__(self, request: Build) -> bool:
        try:
            self._producer().send_task(
                BUILD_TASK, args=[request.artifact, request.dataset, request.version],
                headers={"trace": tracing.carrier()}, retry=False)
        except Exception as exc:  # the broker is down: degrade to this process
            self._log(exc)
            return False
        return True

    def _producer(self) -> Any:
        if self._app is None or self._pid != os.getpid():  # a connection is per process
            self._app, self._pid = celery_app(self.broker_url), os.getpid()
        return self._app

    def _log(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_log >= LOG_INTERVAL:
            self._last_log = now
            log.warning("job broker unavailable, running jobs in this process: %s", exc)
