"""Counting in plain Python, flushed into prometheus-client now and then.

Every process keeps its counts in dicts under one lock (:class:`Recorder`):
adding one request costs a few dict writes and a bisect for its duration
bucket. prometheus-client's values are only touched by :meth:`Recorder.flush`
(its multiprocess values cost microseconds per call, as much as a whole
small-file request): the Gunicorn worker's background thread every
``metrics_flush_interval`` seconds, the process answering a scrape just
before it answers, and a worker on its way out. A worker killed with SIGKILL
loses what it counted since its last flush, at most one interval.

Nothing here imports prometheus-client until the first flush: under
Gunicorn, ``PROMETHEUS_MULTIPROC_DIR`` must be in the environment before it is
imported (the master sets it in ``on_starting``), and this module is imported
by the catalog, the cache and the jobs long before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, cast

log = logging.getLogger(__name__)

REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 30.0, 60.0)
BUILD_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS")


@dataclass(frozen=True)
class Spec:
    """One metric kept in the shared files: its kind, help text, labels (and buckets)."""

    name: str
    kind: str  # counter, histogram or gauge
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    mode: str = ""  # how a gauge adds up over processes (prometheus-client's multiprocess_mode)


SPECS = {spec.name: spec for spec in (
    Spec("geojson_api_http_requests_total", "counter", "HTTP requests answered.",
         ("route", "method", "status")),
    Spec("geojson_api_http_request_duration_seconds", "histogram",
         "Time from a request's arrival in the app to the end of its body.",
         ("route", "method"), REQUEST_BUCKETS),
    Spec("geojson_api_http_requests_in_flight", "gauge", "Requests being answered now.",
         ("route",), mode="livesum"),
    Spec("geojson_api_http_response_bytes_total", "counter",
         "Response body bytes, from Content-Length (none for HEAD).", ("route",)),
    Spec("geojson_api_publish_total", "counter", "Publish attempts of a new content, by result.",
         ("result",)),
    Spec("geojson_api_artifact_builds_total", "counter", "Artifact builds run, by result.",
         ("artifact", "result")),
    Spec("geojson_api_artifact_build_duration_seconds", "histogram", "Artifact build time.",
         ("artifact",), BUILD_BUCKETS),
    Spec("geojson_api_cache_requests_total", "counter", "Shared cache reads and failed calls.",
         ("result",)),
    Spec("geojson_api_cache_backoff", "gauge",
         "1 while a worker leaves the shared cache alone after an error.", mode="livemax"),
    Spec("geojson_api_cache_backoffs_total", "counter",
         "Times a worker started leaving the shared cache alone."),
    Spec("geojson_api_jobs_submitted_total", "counter", "Background jobs queued.", ("artifact",)),
    Spec("geojson_api_jobs_finished_total", "counter", "Background jobs finished, by result.",
         ("artifact", "result")),
    Spec("geojson_api_job_duration_seconds", "histogram", "Background job run time.",
         ("artifact",), BUILD_BUCKETS),
    Spec("geojson_api_jobs_queue_depth", "gauge",
         "Jobs waiting: the in-process queues (with a broker, its queue length instead).",
         mode="livesum"),
    Spec("geojson_api_worker_restarts_total", "counter",
         "Gunicorn workers that exited (and were replaced)."),
)}

REQUESTS = "geojson_api_http_requests_total"
DURATION = "geojson_api_http_request_duration_seconds"
IN_FLIGHT = "geojson_api_http_requests_in_flight"
BYTES = "geojson_api_http_response_bytes_total"

_N_REQUEST_BUCKETS = len(REQUEST_BUCKETS)
_ROW_BUCKETS = 3  # a request row: count, bytes, seconds, then one count per bucket (and +Inf)
DRAIN_AT = 2000  # queued requests counted at once when no flush comes first
ROUTE_KEY = "geojson_api.route"  # requestinfo.ROUTE (not imported: this module imports nothing)
_STATUS = {str(n): f"{n}xx" for n in range(1, 6)}
_METHOD = {m: m for m in METHODS}

Environ = MutableMapping[str, Any]
Labels = tuple[str, ...]


class Recorder:
    """This process's counts since the last flush, and what it flushes them into."""

    def __init__(self) -> None:
        self.enabled = True
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._counts: dict[tuple[str, Labels], float] = {}
        self._histograms: dict[tuple[str, Labels], list[float]] = {}
        self.answered: deque[tuple[str, str, str, int, float]] = deque()
        self.active: dict[int, Environ] = {}  # requests in flight, by id(environ)
        self._gauges: dict[str, Callable[[], float]] = {}
        self._flushed_routes: set[str] = set()
        self._children: dict[tuple[str, Labels], Any] = {}
        self._metrics: dict[str, Any] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- counting (cheap: plain dicts) ------------------------------------------------
    def count(self, name: str, labels: Labels = (), amount: float = 1.0) -> None:
        if not self.enabled:
            return
        key = (name, labels)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0.0) + amount

    def observe(self, name: str, labels: Labels, value: float) -> None:
        if not self.enabled:
            return
        spec = SPECS[name]
        index = bisect_left(spec.buckets, value)
        key = (name, labels)
        with self._lock:
            self._add(key, index, value, len(spec.buckets))

    def _add(self, key: tuple[str, Labels], index: int, value: float, n: int) -> None:
        row = self._histograms.get(key)
        if row is None:
            row = self._histograms[key] = [0.0] * (n + 2)  # buckets, +Inf, the sum
        row[index] += 1
        row[-1] += value

    def request(self, environ: Environ, status: str, length: int, elapsed: float) -> None:
        """One answered request, queued as plain values: no lock, no labels made here.

        A deque's append is atomic, so the request path takes no lock (one costs more
        than the rest); :meth:`flush` turns the queue into labelled counts. The entry
        holds only strings and numbers, which the garbage collector stops tracking.
        """
        self.active.pop(id(environ), None)
        answered = self.answered
        answered.append((environ.get(ROUTE_KEY, "unmatched"), environ.get("REQUEST_METHOD", ""),
                         status[:1], length, elapsed))
        if len(answered) > DRAIN_AT:  # no flush thread (tests, one process): bounded memory
            self.drain()

    def drain(self) -> None:
        """Answered requests into rows per (route, method, status digit), under the lock."""
        answered = self.answered
        rows: dict[tuple[str, str, str], list[float]] = {}
        width = _ROW_BUCKETS + _N_REQUEST_BUCKETS + 1
        bounds = REQUEST_BUCKETS
        for _ in range(len(answered)):  # each popleft is atomic: requests may keep coming
            route, method, digit, length, elapsed = answered.popleft()
            key = (route, method, digit)
            row = rows.get(key)
            if row is None:
                row = rows[key] = [0.0] * width
            row[0] += 1
            row[1] += length
            row[2] += elapsed
            row[bisect_left(bounds, elapsed) + _ROW_BUCKETS] += 1
        with self._lock:
            _requests_into(rows, self._counts, self._histograms)

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        """Set gauge ``name`` from ``read()`` at every flush (e.g. the cache's back-off)."""
        self._gauges[name] = read

    # -- flushing into prometheus-client ---------------------------------------------
    def flush(self) -> None:
        """Add the counts since the last flush to prometheus-client's values."""
        if not self.enabled:
            return
        with self._flush_lock:
            self.drain()
            with self._lock:
                counts, self._counts = self._counts, {}
                histograms, self._histograms = self._histograms, {}
            for (name, labels), amount in counts.items():
                self._child(name, labels).inc(amount)
            for (name, labels), row in histograms.items():
                child = self._child(name, labels)
                for i, n in enumerate(row[:-1]):
                    if n:
                        child._buckets[i].inc(n)  # what Histogram.observe does, n at once
                child._sum.inc(row[-1])
            # every route that answered has an in-flight value, 0 when none is in flight
            self._flushed_routes |= {labels[0] for name, labels in counts if name == REQUESTS}
            self._flush_gauges()

    def _flush_gauges(self) -> None:
        routes: dict[str, int] = {}
        for environ in list(self.active.values()):
            route = environ.get(ROUTE_KEY, "unmatched")
            routes[route] = routes.get(route, 0) + 1
        for route in self._flushed_routes | set(routes):
            self._child(IN_FLIGHT, (route,)).set(routes.get(route, 0))
        self._flushed_routes |= set(routes)
        for name, read in list(self._gauges.items()):
            try:
                value = read()
            except Exception as exc:  # a gauge never breaks the flush of the counts
                log.debug("gauge %s unreadable: %s", name, exc)
                continue
            self._child(name, ()).set(value)

    def _child(self, name: str, labels: Labels) -> Any:
        key = (name, labels)
        child = self._children.get(key)
        if child is None:
            metric = self.metrics()[name]
            child = self._children[key] = metric.labels(*labels) if labels else metric
        return child

    def metrics(self) -> dict[str, Any]:
        """The prometheus-client objects, made on first use (never registered globally)."""
        if self._metrics is None:
            import prometheus_client

            prom: Any = prometheus_client  # partly untyped
            prom.disable_created_metrics()  # as in multiprocess mode: no *_created series
            made: dict[str, Any] = {}
            for spec in SPECS.values():
                common: dict[str, Any] = {"labelnames": spec.labels, "registry": None}
                if spec.kind == "counter":
                    made[spec.name] = prom.Counter(spec.name, spec.help, **common)
                elif spec.kind == "histogram":
                    made[spec.name] = prom.Histogram(spec.name, spec.help, buckets=spec.buckets,
                                                     **common)
                else:
                    made[spec.name] = prom.Gauge(spec.name, spec.help,
                                                 multiprocess_mode=cast(Any, spec.mode), **common)
            self._metrics = made
        return self._metrics

    # -- the background flush --------------------------------------------------------
    def start_flusher(self, interval: float) -> None:
        """Flush every ``interval`` seconds from a daemon thread (a greenlet under gevent)."""
        if not self.enabled or (self._thread is not None and self._thread.is_alive()):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._flush_every, args=(interval,),
                                        name="geojson-api-metrics", daemon=True)
        self._thread.start()

    def _flush_every(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.flush()
            except Exception:  # e.g. the metrics folder removed under a running worker
                log.exception("metrics flush failed")

    def stop_flusher(self) -> None:
        """Stop the thread and flush what is left (a worker on its way out)."""
        self._stop.set()
        self.flush()

    def _after_fork(self) -> None:
        """A forked child counts from zero: what the parent counted is the parent's to flush."""
        self._lock = threading.Lock()  # another thread may have held it at the fork
        self._flush_lock = threading.Lock()
        self._counts, self._histograms, self.active = {}, {}, {}
        self.answered = deque()
        self._flushed_routes = set()
        self._thread = None
        self._stop = threading.Event()


def _requests_into(requests: dict[tuple[str, str, str], list[float]],
                   counts: dict[tuple[str, Labels], float],
                   histograms: dict[tuple[str, Labels], list[float]]) -> None:
    """Request rows added to the three request metrics' labelled values (HEAD sends no
    bytes)."""
    for (route, raw_method, digit), row in requests.items():
        method = _METHOD.get(raw_method, "other")
        counted = (REQUESTS, (route, method, _STATUS.get(digit, "5xx")))
        counts[counted] = counts.get(counted, 0.0) + row[0]
        if row[1] and method != "HEAD":
            sent = (BYTES, (route,))
            counts[sent] = counts.get(sent, 0.0) + row[1]
        timed = (DURATION, (route, method))
        total = histograms.get(timed)
        if total is None:
            total = histograms[timed] = [0.0] * (_N_REQUEST_BUCKETS + 2)
        for i, n in enumerate(row[_ROW_BUCKETS:]):
            total[i] += n
        total[-1] += row[2]


RECORDER = Recorder()
os.register_at_fork(after_in_child=RECORDER._after_fork)


@contextlib.contextmanager
def timed(count: str, duration: str, artifact: str) -> Iterator[Outcome]:
    """Count one run of ``artifact`` (succeeded, or failed if it raised or was marked so)
    and its duration."""
    outcome = Outcome()
    started = time.perf_counter()
    try:
        yield outcome
    except BaseException:
        outcome.failed = True
        raise
    finally:
        result = "failed" if outcome.failed else "succeeded"
        RECORDER.count(count, (artifact, result))
        RECORDER.observe(duration, (artifact,), time.perf_counter() - started)


class Outcome:
    """What a timed block turned out to be; set ``failed`` when it failed without raising."""

    failed = False


# -- what the rest of the service calls ---------------------------------------------------
def publish(result: str) -> None:
    """A publish attempt of a new content: ``published`` or ``failed``."""
    RECORDER.count("geojson_api_publish_total", (result,))


def artifact_build(artifact: str) -> contextlib.AbstractContextManager[Outcome]:
    """Around one artifact build (see :func:`timed`)."""
    return timed("geojson_api_artifact_builds_total",
                 "geojson_api_artifact_build_duration_seconds", artifact)


def job_run(artifact: str) -> contextlib.AbstractContextManager[Outcome]:
    """Around one background job (see :func:`timed`)."""
    return timed("geojson_api_jobs_finished_total", "geojson_api_job_duration_seconds", artifact)


def job_submitted(artifact: str) -> None:
    RECORDER.count("geojson_api_jobs_submitted_total", (artifact,))


def cache_result(result: str) -> None:
    """A shared cache call: ``hit``, ``miss`` or ``error``."""
    RECORDER.count("geojson_api_cache_requests_total", (result,))


def cache_backoff_started() -> None:
    RECORDER.count("geojson_api_cache_backoffs_total")


def worker_restarted() -> None:
    RECORDER.count("geojson_api_worker_restarts_total")
