"""Prometheus metrics: ``GET /metrics``, summed over Gunicorn's workers (docs/operations.md).

- :mod:`.record`: the counts every process keeps in plain Python, and the
  calls the catalog, the cache, the artifacts and the jobs make;
- :mod:`.wsgi`: the request layer and the ``/metrics`` endpoint;
- :mod:`.scrape`: what a scrape reads (counted values, and datasets,
  artifacts, the broker's queue and the processes, read at scrape time);
- :mod:`.multiproc`: the files shared by Gunicorn's workers, the master's
  archive of dead workers, the Celery worker's own port.

Importing this package does not import prometheus-client (see
:mod:`.multiproc` for why).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .record import (
    RECORDER,
    artifact_build,
    cache_backoff_started,
    cache_result,
    job_run,
    job_submitted,
    publish,
)

if TYPE_CHECKING:
    from flask import Flask

    from ..catalog import Catalog
    from ..settings import Settings

__all__ = ["RECORDER", "artifact_build", "cache_backoff_started", "cache_result", "init_app",
           "job_run", "job_submitted", "publish"]


def init_app(app: Flask, catalog: Catalog, settings: Settings, version: str) -> None:
    """Wrap the app in the request layer (after the CORS layer: it counts their answers too)."""
    RECORDER.enabled = settings.metrics
    if not settings.metrics:
        return
    from .. import jobs
    from . import multiproc
    from .scrape import FactsCollector, LocalCollector, Scrape
    from .wsgi import RequestMetrics

    cache = app.extensions["shared_cache"]
    RECORDER.gauge("geojson_api_cache_backoff", lambda: float(cache.backing_off()))
    if not settings.broker_url:  # with a broker, a scrape reads its queue's length instead
        RECORDER.gauge("geojson_api_jobs_queue_depth", lambda: float(jobs.queue_depth()))
    folder = multiproc.directory()
    facts = FactsCollector(catalog, settings, multiproc.master_pid() if folder else None,
                           version)
    counted = LocalCollector() if folder is None else multiproc.SharedFilesCollector(folder)
    scrape = Scrape(facts, counted)
    app.extensions["metrics"] = scrape
    app.wsgi_app = RequestMetrics(  # type: ignore[method-assign]
        app.wsgi_app, scrape, settings.metrics_token,
        settings.metrics_port if folder else 0)  # a separate port needs Gunicorn
