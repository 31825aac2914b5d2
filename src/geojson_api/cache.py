"""The shared cache: Redis through Flask-Caching, or a per-process dict without Redis.

Cached values are JSON response bodies under keys that contain the dataset
version, so a new version never needs an invalidation: its keys are new.

Degrade, don't fail: when Redis is down or slow, a request is served
uncached. Errors are counted (in ``/metrics``, with hits and misses), logged
at most once per ``LOG_INTERVAL``, and Redis is left alone for ``BACKOFF``
seconds after an error, so a dead Redis
costs one short timeout now and then instead of one per request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app
from flask_caching import Cache

from . import tracing
from .metrics import record as metrics
from .settings import Settings

log = logging.getLogger(__name__)

KEY_PREFIX = "geojson-api:"
SOCKET_TIMEOUT = 0.25
BACKOFF = 5.0
LOG_INTERVAL = 60.0


class SharedCache:
    """get/set that never raise; hits, misses and errors go to the metrics."""

    def __init__(self, settings: Settings) -> None:
        self.backend = "redis" if settings.redis_url else "simple"
        self.timeout = settings.cache_timeout
        self._cache = Cache(config=_flask_caching_config(settings))
        self._down_until = 0.0
        self._last_log = 0.0
        self._lock = threading.Lock()

    def init_app(self, app: Flask) -> None:
        self._cache.init_app(app)
        app.extensions["shared_cache"] = self

    @tracing.traced("cache.get", lambda self, key: {"cache": self.backend},
                    lambda value: {"hit": value is not None})
    def get(self, key: str) -> Any:
        if time.monotonic() < self._down_until:
            return None
        try:
            value = self._cache.get(key)
        except Exception as exc:
            self._failed(exc)
            return None
        metrics.cache_result("hit" if value is not None else "miss")
        return value

    @tracing.traced("cache.set", lambda self, key, value: {"cache": self.backend})
    def set(self, key: str, value: Any) -> None:
        if time.monotonic() < self._down_until:
            return
        try:
            self._cache.set(key, value, timeout=self.timeout)
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        metrics.cache_result("error")
        with self._lock:
            if now >= self._down_until:
                metrics.cache_backoff_started()
            self._down_until = now + BACKOFF
            should_log = now - self._last_log >= LOG_INTERVAL
            if should_log:
                self._last_log = now
        if should_log:
            log.warning("shared cache unavailable, serving uncached for %.0f s: %s",
                        BACKOFF, exc)

    def backing_off(self) -> bool:
        return time.monotonic() < self._down_until

    def status(self) -> dict[str, Any]:
        """Backend, and the seconds left before Redis is tried again (counts: /metrics)."""
        backoff = max(0.0, self._down_until - time.monotonic())
        return {"backend": self.backend, "backoff_seconds": round(backoff, 1)}


def _flask_caching_config(settings: Settings) -> dict[str, Any]:
    if not settings.redis_url:
        return {"CACHE_TYPE": "SimpleCache", "CACHE_THRESHOLD": 2000,
                "CACHE_DEFAULT_TIMEOUT": settings.cache_timeout}
    return {
        "CACHE_TYPE": "RedisCache",
        "CACHE_REDIS_URL": settings.redis_url,
        "CACHE_KEY_PREFIX": KEY_PREFIX,
        "CACHE_DEFAULT_TIMEOUT": settings.cache_timeout,
        "CACHE_OPTIONS": {"socket_timeout": SOCKET_TIMEOUT,
                          "socket_connect_timeout": SOCKET_TIMEOUT},
    }


def shared_cache() -> SharedCache:
    return current_app.extensions["shared_cache"]  # type: ignore[no-any-return]


def cached(key: str, build: Callable[[], bytes]) -> bytes:
    """The cached bytes for ``key``, built and stored on a miss."""
    cache = shared_cache()
    found = cache.get(key)
    if isinstance(found, bytes):
        return found
    value = build()
    cache.set(key, value)
    return value


def init_app(app: Flask, settings: Settings) -> None:
    SharedCache(settings).init_app(app)
