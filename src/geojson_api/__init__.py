"""geojson-api: serve GeoJSON datasets fast, versioned and safely."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from flask import Flask

from . import (
    api,
    cache,
    cors,
    delivery,
    errors,
    logs,
    metrics,
    pipeline,
    profiling,
    public,
    requestinfo,
    tracing,
    web,
)
from .features import views as features
from .settings import Settings
from .tiles import views as tiles

__all__ = ["Settings", "create_app", "warm_up"]
__version__ = "0.1.0"

log = logging.getLogger(__name__)


def warm_up(app: Flask, tick: Callable[[], object] = lambda: None) -> None:
    """Open what the first requests of a new process would otherwise open themselves: the
    built feature indexes of the current versions (each checked once per process:
    SQLite's quick check of a 100 MB index takes about 0.1 s of CPU, which a loaded
    worker stretches to most of a second while its first requests wait). Gunicorn calls
    it in a new worker before the worker accepts connections (``post_worker_init``), with
    its heartbeat as ``tick``. A failure is logged; the requests then open what they
    need, as without it."""
    started = time.monotonic()
    try:
        opened = app.extensions["feature_indexes"].open_built(tick)
    except Exception:  # a worker must start whatever the data folder holds
        log.warning("warm-up: the feature indexes were not opened", exc_info=True)
        return
    log.info("warm-up: %d feature index(es) open in %.2f s", opened, time.monotonic() - started)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI app. Nothing is configured at import time."""
    settings = settings or Settings.from_env()
    app = Flask(__name__, static_folder=None)
    app.config["SETTINGS"] = settings
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False  # "//" in a dataset path is malformed, not redirected
    web.init_app(app, __version__)  # first: it refuses to start without the built assets
    app.extensions["catalog"] = catalog = pipeline.open_catalog(settings)
    errors.init_app(app)
    requestinfo.init_app(app)
    cache.init_app(app, settings)
    tracing.init_app(app)  # OTEL_* variables; before the fast lane, which it wraps too
    delivery.init_app(app, catalog, settings)
    if settings.direct_files:  # Nginx answers public files: keep its pointers in step
        public.init_app(app, catalog, settings.nginx_direct_watch)
    api.init_app(app)
    features.init_app(app, catalog)
    if settings.tiles:
        tiles.init_app(app, catalog, settings)
    cors.init_app(app, settings.cors_origin_list, settings.cors_credentials,
                  settings.cors_max_age)  # around the fast lane: every answer has them
    logs.init_app(app, settings)  # around CORS: every answer and log line has its request id
    metrics.init_app(app, catalog, settings, __version__)  # counts every answer but /metrics
    if settings.profile_dir is not None:  # outermost: it sees the fast lane too
        profiling.init_app(app, Path(settings.profile_dir))
    return app
