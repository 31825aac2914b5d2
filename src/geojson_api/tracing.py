"""OpenTelemetry traces, off unless the standard ``OTEL_*`` variables turn them on.

Tracing is on in a process when ``OTEL_TRACES_EXPORTER`` names something other
than ``none``, or when an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), unless ``OTEL_SDK_DISABLED=true``.
The service is ``OTEL_SERVICE_NAME`` (``geojson-api`` by default); sampling,
batching and the exporter's address and headers follow the SDK's own
``OTEL_*`` variables.

Off costs nothing that shows: no OpenTelemetry module is imported, and every
instrumentation point (:func:`traced`, :func:`span`) is one test of a module
global before the call goes on as if the decorator were not there.

On, the SDK is set up once per process, in the process that serves: Gunicorn
workers build the app after the fork (no ``preload_app``), a Celery pool process
on its first job (:func:`job`). The SDK's batch processor restarts its export
thread in a forked child by itself, so a process forked after setup still
exports. Flask requests get their server span from
opentelemetry-instrumentation-flask; the whole-file fast lane, which answers
before Flask, gets its own (:class:`FastLaneSpans`). A job carries the trace
context of the request that asked for it (W3C ``traceparent`` headers on the
Celery message, or the captured context on this process's job thread), so its
span is part of that request's trace.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar, cast

from . import filebody
from .settings import SettingsError

SERVICE_NAME = "geojson-api"
PREFIX = "geojson_api."
"""Our own span attributes are ``geojson_api.<name>``."""
TRACE_ID = "geojson_api.trace_id"
SPAN_ID = "geojson_api.span_id"
"""WSGI environ keys: the ids of a request's server span (Gunicorn's access line reads them)."""
ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
UNTRACED = "/healthz$,/readyz$,/metrics$"
"""Probes and scrapes are not traced unless OTEL_PYTHON_FLASK_EXCLUDED_URLS says otherwise."""
LOGGERS = ("geojson_api", "gunicorn.error", "gunicorn.access")

Attribute = str | bool | int | float
Attributes = Mapping[str, Attribute]
F = TypeVar("F", bound=Callable[..., Any])


class SpanLike(Protocol):
    """What an instrumentation point may do with its span: add an attribute."""

    def set_attribute(self, key: str, value: Attribute) -> None: ...


class _NoSpan:
    """The span of every instrumentation point while tracing is off: one shared no-op."""

    __slots__ = ()

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set_attribute(self, key: str, value: Attribute) -> None:
        return None


NO_SPAN = _NoSpan()
_tracer: Any = None  # the SDK's tracer, once tracing is on in this process
_provider: Any = None
_decided = False


# -- on or off ------------------------------------------------------------------
def switch(environ: Mapping[str, str] | None = None) -> str | None:
    """The variable that turns tracing on (``OTEL_TRACES_EXPORTER=otlp``), or None: off."""
    environ = os.environ if environ is None else environ
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if exporters:
        return None if exporters.lower() == "none" else f"OTEL_TRACES_EXPORTER={exporters}"
    return next((name for name in ENDPOINTS if environ.get(name, "").strip()), None)


def start(environ: Mapping[str, str] | None = None) -> bool:
    """Set the SDK up in this process if the ``OTEL_*`` variables ask (decided once); on?

    Entry points refuse earlier, in one line, when tracing is asked for without
    the tracing extra (:func:`geojson_api.extras.check`).
    """
    global _decided
    if _decided:
        return _tracer is not None
    _decided = True
    if switch(environ) is not None:
        from opentelemetry import trace

        use(_provider_from_env(os.environ if environ is None else environ))
        trace.set_tracer_provider(_provider)  # for any other instrumented library here
    return _tracer is not None


def use(provider: Any) -> None:
    """Trace into ``provider`` (an SDK TracerProvider) from now on; None turns tracing off.

    :func:`start` hands in the one the environment describes; tests hand in one
    with an in-memory exporter.
    """
    global _tracer, _provider, _decided
    _decided = True
    _provider = provider
    _tracer = None if provider is None else provider.get_tracer("geojson_api")


def on() -> bool:
    return _tracer is not None


def _provider_from_env(environ: Mapping[str, str]) -> Any:
    """A TracerProvider with a batch processor per exporter named by the environment."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = environ.get("OTEL_SERVICE_NAME", "").strip() or SERVICE_NAME
    resource = Resource.create({"service.name": name, "process.pid": os.getpid()})
    provider = TracerProvider(resource=resource)  # the sampler: OTEL_TRACES_SAMPLER
    for exporter in _exporters(environ):
        provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_*: env
    return provider


def _exporter_points(environ: Mapping[str, str]) -> list[Any]:
    """The entry points of ``OTEL_TRACES_EXPORTER``'s names (``otlp`` when only an endpoint
    is set); raises :class:`SettingsError` for a name this install has no exporter for."""
    from importlib.metadata import entry_points

    names = [n.strip() for n in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
    otlp = "otlp_proto_grpc" if protocol.strip() == "grpc" else "otlp_proto_http"
    found = []
    for name in filter(None, names):
        wanted = otlp if name == "otlp" else name
        matches = entry_points(group="opentelemetry_traces_exporter", name=wanted)
        if not matches:
            raise SettingsError(f"OTEL_TRACES_EXPORTER={name}: no such exporter installed "
                                f"({wanted}; this install has otlp over http/protobuf "
                                "and console)")
        found.append(next(iter(matches)))
    return found


def check_exporters(environ: Mapping[str, str] | None = None) -> None:
    """Refuse at start, in one line, exporters the ``OTEL_*`` variables name and this
    install lacks (rather than in every worker's ``create_app``)."""
    environ = os.environ if environ is None else environ
    if switch(environ) is not None:
        _exporter_points(environ)


def _exporters(environ: Mapping[str, str]) -> list[Any]:
    """An exporter for each name of ``OTEL_TRACES_EXPORTER``."""
    return [point.load()() for point in _exporter_points(environ)]


# -- instrumentation points ------------------------------------------------------
def span(name: str, **attributes: Attribute) -> AbstractContextManager[SpanLike]:
    """A child span of the current one, named ``name`` with ``geojson_api.*`` attributes."""
    if _tracer is None:
        return NO_SPAN
    return cast(AbstractContextManager[SpanLike], _tracer.start_as_current_span(
        name, attributes={PREFIX + key: value for key, value in attributes.items()}))


def traced(name: str, attributes: Callable[..., Attributes] | None = None,
           result: Callable[[Any], Attributes] | None = None) -> Callable[[F], F]:
    """Decorate a function so that each call is a span named ``name``.

    ``attributes`` is given the call's arguments, ``result`` its return value;
    both return ``{name: value}`` (keys get the ``geojson_api.`` prefix). Off,
    the call goes straight through.
    """
    def decorate(function: F) -> F:
        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            if _tracer is None:
                return function(*args, **kwargs)
            with span(name, **(attributes(*args, **kwargs) if attributes else {})) as current:
                value = function(*args, **kwargs)
                for key, found in (result(value) if result else {}).items():
                    current.set_attribute(PREFIX + key, found)
                return value
        return cast(F, call)
    return decorate


# -- jobs: the trace goes with the work -------------------------------------------
def carrier() -> dict[str, str]:
    """The current trace context as message headers (``traceparent``); empty when off."""
    if _tracer is None:
        return {}
    from opentelemetry import propagate

    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


def job(headers: Mapping[str, Any] | None, **attributes: Attribute
        ) -> AbstractContextManager[SpanLike]:
    """The span of one background job, in the trace whose ``headers`` (:func:`carrier`) it got.

    In a Celery pool process, the first job sets the SDK up (:func:`start`).
    """
    if not start():
        return NO_SPAN
    from opentelemetry import propagate, trace

    return cast(AbstractContextManager[SpanLike], _tracer.start_as_current_span(
        "job.run", context=propagate.extract(dict(headers or {})), kind=trace.SpanKind.CONSUMER,
        attributes={PREFIX + key: value for key, value in attributes.items()}))


def in_background(work: Callable[[], object], **attributes: Attribute) -> Callable[[], object]:
    """``work`` to run on the job thread as a :func:`job` of the current trace (as is when off)."""
    if _tracer is None:
        return work
    headers = carrier()

    def run() -> object:
        with job(headers, runner="thread", **attributes):
            return work()
    return run


# -- the web app ------------------------------------------------------------------
def init_app(app: Any) -> None:
    """Flask's server spans and the log filter, when tracing is on in this process.

    Call before the fast lane wraps the app (Flask's own WSGI app is instrumented);
    the fast lane gets its spans from :func:`around_fast_lane`.
    """
    if not start():
        return
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    excluded = None if os.environ.get("OTEL_PYTHON_FLASK_EXCLUDED_URLS") else UNTRACED
    FlaskInstrumentor.instrument_app(app, tracer_provider=_provider, excluded_urls=excluded,
                                     request_hook=_note_ids)  # type: ignore[no-untyped-call]
    install_log_filter()


class Lane(Protocol):
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]: ...

    def handles(self, environ: dict[str, Any]) -> bool: ...


def around_fast_lane(lane: Lane, route: str) -> Lane:
    """The fast lane with a server span per request it answers (itself when off);
    ``route`` is its route template."""
    return lane if _tracer is None else ServerSpans(lane, route)


class ServerSpans:
    """Server spans outside Flask: the fast lane's own, and Flask's carried into its bodies.

    A fast-lane request gets a server span shaped like Flask's. It ends when
    the lane returns its reply: a body sent from memory is in it, a file sent
    by ``sendfile`` afterwards is not (wrapping the file would cost the server
    its ``sendfile``).

    Flask's instrumentation ends its span when the view returns, before a
    streamed body (an items page read from the index) is iterated; the body
    is iterated with that span current, so what it does (the rows, the cache
    write) is still part of the request's trace.
    """

    def __init__(self, lane: Lane, route: str) -> None:
        from opentelemetry.instrumentation import wsgi

        self.lane = lane
        self._wsgi = wsgi
        self._route = route

    def handles(self, environ: dict[str, Any]) -> bool:
        return self.lane.handles(environ)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        if not self.lane.handles(environ):
            return _carried(self.lane(environ, start_response), environ)
        from opentelemetry import propagate, trace

        attributes = self._wsgi.collect_request_attributes(environ)
        attributes["http.route"] = self._route
        with _tracer.start_as_current_span(
                f"{environ['REQUEST_METHOD']} {self._route}", kind=trace.SpanKind.SERVER,
                context=propagate.extract(environ, getter=self._wsgi.wsgi_getter),
                attributes=attributes) as current:
            _note_ids(current, environ)

            def answered(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
                self._wsgi.add_response_attributes(current, status, headers)
                return start_response(status, headers, *exc)
            return self.lane(environ, answered)


SPAN = "geojson_api.span"
"""WSGI environ key: the request's server span (Flask's), for its body."""


def _carried(body: Iterable[bytes], environ: dict[str, Any]) -> Iterable[bytes]:
    server = environ.get(SPAN)
    if server is None or isinstance(body, (list, tuple)) or filebody.sent_by_server(
            environ, body):
        return body  # nothing left to run, or a file the server sends by itself
    return CarriedBody(body, server)


class CarriedBody:
    """A response body iterated with its request's span current (attached at the first
    chunk; detached at the last, or when the server closes it)."""

    def __init__(self, body: Iterable[bytes], server: Any) -> None:
        self._body = body
        self._chunks = iter(body)
        self._server = server
        self._token: Any = None

    def __iter__(self) -> CarriedBody:
        return self

    def __next__(self) -> bytes:
        if self._token is None:
            from opentelemetry import context, trace

            self._token = context.attach(trace.set_span_in_context(self._server))
        try:
            return next(self._chunks)
        except StopIteration:
            self._detach()
            raise

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._detach()

    def _detach(self) -> None:
        if self._token is not None:
            from opentelemetry import context

            context.detach(self._token)
            self._token = None


def _note_ids(current: Any, environ: MutableMapping[str, Any]) -> None:
    """Keep the server span and its ids in the environ (its body, the access line)."""
    context = current.get_span_context()
    environ[SPAN] = current
    environ[TRACE_ID] = format(context.trace_id, "032x")
    environ[SPAN_ID] = format(context.span_id, "016x")


# -- logs -------------------------------------------------------------------------
class TraceIds(logging.Filter):
    """Puts ``trace_id`` and ``span_id`` (hex) on a record logged inside a span.

    A Gunicorn access line is written after the request's span has ended; its
    ids come from the request's environ (Gunicorn hands the environ to the
    record as ``{key}e`` atoms).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from opentelemetry import trace

        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        elif isinstance(record.args, Mapping) and f"{{{TRACE_ID}}}e" in record.args:
            record.trace_id = record.args[f"{{{TRACE_ID}}}e"]
            record.span_id = record.args[f"{{{SPAN_ID}}}e"]
        return True


LOG_FILTER = TraceIds()


def install_log_filter() -> None:
    """Add the filter to our logger, Gunicorn's, and their handlers (records that propagate
    from ``geojson_api.*`` meet only the handlers); adding it twice changes nothing."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.addFilter(LOG_FILTER)
        for handler in logger.handlers:
            handler.addFilter(LOG_FILTER)
