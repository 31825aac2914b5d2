"""The background tasks, and the Celery app that runs them on worker processes.

Every task is a plain function ``task(settings, *args)``. The in-process job
thread (``jobs.py``) calls it directly; a Celery worker started with
``geojson-api worker`` receives ``geojson_api.run(task, *args)`` and calls
the same function with the worker's own settings (its environment must name
the same data and state folders as the web processes').
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .catalog import Catalog
from .jobs import BROKER_TIMEOUT, CELERY_TASK, run_task
from .settings import Settings


def build_artifact(settings: Settings, artifact: str, name: str, version_id: str) -> None:
    """Build one derived artifact (``variants`` or ``index``) of a current version."""
    Catalog(settings, background=False).build_artifact(artifact, name, version_id)


TASKS: dict[str, Callable[..., None]] = {"build_artifact": build_artifact}


def celery_app(broker_url: str) -> Any:
    """A Celery app on ``broker_url`` that knows the one task entry point."""
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

    @app.task(name=CELERY_TASK)  # type: ignore[untyped-decorator]
    def run(task: str, *args: str) -> None:
        run_task(Settings.from_env(), task, *args)

    return app
