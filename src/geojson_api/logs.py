"""Logs: one JSON schema for the app, Gunicorn and the Celery worker, and request ids.

Every line is one JSON object (``GEOJSON_API_LOG_FORMAT=json``, the default)
with ``time`` (ISO 8601, UTC, milliseconds), ``level``, ``logger`` and
``message``, and, when known, the request's facts: :data:`FIELDS`. A log
record carries them as attributes; :class:`RequestFilter` gives every record
made while a request (or a job it started) is handled its ``request_id`` and
what the request is (method, path, route, dataset, version). Records that
carry ``trace_id`` / ``span_id`` (the tracing filter sets them) have them
written too. ``GEOJSON_API_LOG_FORMAT=text`` keeps the text formats of
Gunicorn, Celery and the access log exactly as they were, for a terminal.

Where lines come from:

* Gunicorn's master and workers: :class:`GunicornLogger` (the ``logger_class``
  of :mod:`geojson_api.gunicorn_conf`) formats Gunicorn's error log, sends the
  ``geojson_api`` loggers there too, and writes the access log in the same
  schema (``logger`` ``gunicorn.access``, message ``"GET /path 200"``).
* The app: :func:`init_app` puts :class:`RequestIds` around the whole app.
* ``geojson-api worker``: :func:`setup_celery` (JSON on stderr, root logger).

All three use :func:`setup`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from gunicorn import glogging
from pythonjsonlogger.core import RESERVED_ATTRS, merge_record_extra
from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from . import filebody, requestid, requestinfo, tracing
from .settings import Settings

log = logging.getLogger(__name__)

JSON = "json"
TEXT = "text"
FIELDS = ("request_id", "method", "route", "path", "status", "bytes", "duration_ms",
          "dataset", "version", "trace_id", "span_id")
"""The optional members of a line, in the order they are written."""
QUIET = "geojson_api.quiet"
"""An environ key: a request with a true value is left out of the access log (/metrics)."""
TEXT_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"
"""For a process that has no text format of its own (Gunicorn's and Celery's are kept)."""

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


def iso_time(timestamp: float) -> str:
    """``2026-12-05T10:11:12.345Z``."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(_BaseJsonFormatter):
    """One JSON object per record: the four fixed members, the known facts, any extras."""

    def __init__(self) -> None:
        super().__init__(reserved_attrs=[*RESERVED_ATTRS, *FIELDS])

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        log_data["time"] = iso_time(record.created)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.message
        facts = record.__dict__
        for name in FIELDS:
            value = facts.get(name)
            if value is not None:
                log_data[name] = value
        merge_record_extra(record, log_data, reserved=self._skip_fields)
        log_data.update(message_dict)  # exc_info, stack_info


def _fill(record: logging.LogRecord, name: str, value: Any) -> None:
    if value is not None and getattr(record, name, None) is None:
        setattr(record, name, value)


class RequestFilter(logging.Filter):
    """Gives a record the id and the facts of the request being handled (never drops one).

    Facts the record already has (an access line sets its own) are kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        _fill(record, "request_id", requestid.current())
        environ = requestid.environ()
        if environ is not None:
            _fill(record, "method", environ.get("REQUEST_METHOD"))
            _fill(record, "path", _path(environ))
            if requestinfo.ROUTE in environ:
                _fill(record, "route", environ[requestinfo.ROUTE])
            _fill(record, "dataset", environ.get(requestinfo.DATASET))
            _fill(record, "version", environ.get(requestinfo.VERSION))
        return True


def _path(environ: Environ | Any) -> str:
    """The request target as the client sent it (path and query)."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        return str(raw)
    query = environ.get("QUERY_STRING")
    path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
    return f"{path}?{query}" if query else path


# -- setting up a process's logging ---------------------------------------------

def prepare(handler: logging.Handler, log_format: str) -> logging.Handler:
    """``handler`` in ``log_format`` (JSON, or its text formatter kept), with the filter."""
    if log_format == JSON:
        handler.setFormatter(JsonFormatter())
    if not any(isinstance(f, RequestFilter) for f in handler.filters):
        handler.addFilter(RequestFilter())
    return handler


def setup(log_format: str, level: int | str, handlers: Sequence[logging.Handler] | None = None,
          logger: str | None = "geojson_api") -> list[logging.Handler]:
    """The one setup: ``logger`` (None: the root) writes only through ``handlers``.

    Without handlers, one on stderr (text: :data:`TEXT_FORMAT`). The handlers get
    the format and the request filter; the logger does not propagate further.
    """
    if handlers is None:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter(TEXT_FORMAT))
        handlers = [stream]
    prepared = [prepare(h, log_format) for h in handlers]
    target = logging.getLogger(logger)
    target.handlers = list(prepared)
    target.setLevel(level.upper() if isinstance(level, str) else level)
    if logger is not None:
        target.propagate = False
    return prepared


def setup_celery(settings: Settings) -> None:
    """For ``geojson-api worker``: JSON lines on stderr instead of Celery's own format.

    In text mode Celery's format stays. Celery skips its own logging setup when
    a receiver of its ``setup_logging`` signal answers.
    """
    if settings.log_format != JSON:
        return
    from celery import signals

    def configure(loglevel: int | None = None, **_: Any) -> None:
        setup(JSON, loglevel or logging.INFO, logger=None)
        logging.getLogger("geojson_api").setLevel(settings.log_level.upper())

    signals.setup_logging.connect(configure, weak=False)


# -- Gunicorn --------------------------------------------------------------------

def _header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _status(resp: Any) -> int:
    code = getattr(resp, "status_code", None)
    if isinstance(code, int):
        return code
    return int(str(resp.status).split(None, 1)[0])


def _bytes(resp: Any, method: str, status: int) -> int:
    """Body bytes: the Content-Length (Gunicorn counts 0 for a sendfile(2) body)."""
    sent = int(getattr(resp, "sent", 0) or 0)
    if method == "HEAD" or status in (204, 304):
        return sent
    length = _header(resp.headers, "content-length")
    return int(length) if length is not None and length.isdigit() else sent


def access_fields(resp: Any, environ: Environ, request_time: Any) -> dict[str, Any]:
    """The facts of one access line, from Gunicorn's response and the request's environ."""
    method = str(environ.get("REQUEST_METHOD", "-"))
    status = _status(resp)
    fields = {"request_id": requestinfo.request_id(environ), "method": method,
              "route": requestinfo.route(environ), "path": _path(environ), "status": status,
              "bytes": _bytes(resp, method, status),
              "duration_ms": round(request_time.total_seconds() * 1000, 3),
              "dataset": requestinfo.dataset(environ), "version": requestinfo.version(environ),
              # the request's span has ended when Gunicorn logs: its ids are in the environ
              "trace_id": environ.get(tracing.TRACE_ID), "span_id": environ.get(tracing.SPAN_ID)}
    return {k: v for k, v in fields.items() if v is not None}


class GunicornLogger(glogging.Logger):  # type: ignore[misc]
    """Gunicorn's logger in the service's format; the app's lines go to its error log.

    JSON (the default): the error log and the access log are :class:`JsonFormatter`
    lines; text: Gunicorn's own formats (the access format of gunicorn_conf). Either
    way a request marked quiet (``/metrics``) is not logged.
    """

    log_format = JSON

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)  # runs again on a reload (SIGHUP): so does this
        settings = Settings.from_env()
        self.log_format = settings.log_format
        ours = [h for h in self.error_log.handlers if getattr(h, "_gunicorn", False)]
        for handler in ours + [h for h in self.access_log.handlers
                               if getattr(h, "_gunicorn", False)]:
            prepare(handler, self.log_format)
        app_logger = logging.getLogger("geojson_api")  # published versions, builds...
        app_logger.handlers = ours  # ...in Gunicorn's error log (the master's too)
        app_logger.propagate = False
        app_logger.setLevel(settings.log_level.upper())

    def access(self, resp: Any, req: Any, environ: Environ, request_time: Any) -> None:
        if environ.get(QUIET) or not self.access_log_enabled:
            return
        if self.log_format != JSON:
            super().access(resp, req, environ, request_time)
            return
        try:
            fields = access_fields(resp, environ, request_time)
            self.access_log.info("%s %s %s", fields["method"], fields["path"],
                                 fields["status"], extra=fields)
        except Exception:  # as Gunicorn's own access(): a bad line never fails a request
            self.exception("could not write the access log line")


# -- request ids -----------------------------------------------------------------

class _Body:
    """A streamed body, so that its request stays current until the server closes it."""

    def __init__(self, body: Iterable[bytes], token: Any) -> None:
        self.body = body
        self.token = token

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            requestid.leave(self.token)


class RequestIds:
    """WSGI layer: every request gets an id, in its environ, its answer and its log lines.

    The client's id (the configured header) is used when :func:`requestid.sane`;
    an insane one is replaced (and the replacement said in a debug line). Bodies
    already complete (lists, file wrappers: the fast lane's sendfile path) are
    returned untouched; a streamed body is wrapped so the id stays current while
    it is produced.
    """

    def __init__(self, app: WSGIApp, header: str = "X-Request-ID") -> None:
        self.app = app
        self.header = header
        self.environ_key = "HTTP_" + header.upper().replace("-", "_")

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        given = environ.get(self.environ_key)
        rid = str(given) if requestid.sane(given) else requestid.new()
        environ[requestinfo.REQUEST_ID] = rid
        token = requestid.enter(rid, environ)
        if given is not None and rid != given:
            log.debug("request id %r refused (not %s): using %s", given[:200],
                      requestid.PATTERN, rid)
        echoed = (self.header, rid)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers = [*headers, echoed]
            if exc_info is None:  # as called: some callers take exactly two arguments
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, start)
        except BaseException:
            requestid.leave(token)
            raise
        if isinstance(body, list | tuple) or filebody.sent_by_server(environ, body):
            requestid.leave(token)
            return body
        return _Body(body, token)


def init_app(app: Any, settings: Settings) -> None:
    """Put the request-id layer around the app (outside CORS and the fast lane); set
    the app's log level; give a process whose logging nobody set up lines on stderr."""
    app.wsgi_app = RequestIds(app.wsgi_app, settings.request_id_header)
    app_logger = logging.getLogger("geojson_api")
    if not app_logger.handlers and not logging.getLogger().handlers:
        setup(settings.log_format, settings.log_level)  # e.g. `flask run`
    app_logger.setLevel(settings.log_level.upper())
