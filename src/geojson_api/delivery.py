"""Whole-file delivery: ``GET|HEAD /geojson/<name>``.

:meth:`Delivery.reply` decides *which* bytes (dataset, version,
representation) and *which* status and headers. The body is the WSGI server's
``wsgi.file_wrapper`` around the open file, which Gunicorn's sync and gthread
workers turn into one ``sendfile()`` call: Python never reads the file, so
memory stays flat whatever the file size. Range responses keep that property:
the file is positioned at the range start and wrapped in a bounded reader
whose descriptor the server still hands to ``sendfile()``
(:mod:`geojson_api.filebody` says how each server does it).

One request is decided once, in this order: the representation (identity or
a stored variant, :func:`choose_representation`), its headers, the
preconditions (304, 412), HEAD, the size of the stored file and the byte
range (416); then exactly one sender writes the body: memory for small files,
the file for whole bodies, the bounded file for a range, or Nginx when
offloading (X-Accel-Redirect). The HTTP rules themselves (ETags, conditionals,
ranges, codings) are :mod:`geojson_api.http`'s.

The same reply reaches clients on two paths. The Flask view serves it like any
other view. :class:`FastLane`, a thin WSGI layer in front of Flask, serves it
without building a request context, because for small files the framework, not
the byte copy, is the cost (see docs/benchmarks.md). An error on the fast lane
is answered there with :func:`geojson_api.errors.render`, the renderer behind
Flask's error handlers, so both paths give the same error; a request is never
handled twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import parse_qs

from flask import Blueprint, Flask, Response, current_app, request

from . import errors, filebody, http, requestinfo, tracing
from .catalog import Catalog, Version
from .errors import BadRequest, NotReady, StoredFileProblem
from .http import Header, Reply
from .names import parse_request_name
from .settings import Settings

PREFIX = "/geojson/"
OFFLOAD_PREFIX = "/_offload"  # Nginx's internal locations over <state>/versions/

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]

bp = Blueprint("delivery", __name__)


@dataclass(frozen=True)
class Representation:
    """One stored form of a version: the identity bytes or a compressed variant."""

    path: Path
    encoding: str | None
    etag: str  # quoted
    size: int  # as recorded when it was built


class SmallFiles:
    """Per-process memory of small stored files, so that they are sent without a file open.

    Stored files never change (a new content is a new path), so entries never
    go stale. Files above ``file_limit`` are remembered as too big. When the
    total passes ``total_limit`` the memory is simply cleared.
    """

    def __init__(self, file_limit: int, total_limit: int) -> None:
        self.file_limit = file_limit
        self.total_limit = total_limit
        self._data: dict[Path, bytes | None] = {}
        self._total = 0

    def get(self, path: Path, expected: int | None = None) -> bytes | None:
        """The bytes of a small stored file of ``expected`` size (None: big, send the file).

        Raises FileNotFoundError, or ValueError when it holds other than ``expected``
        bytes. Without ``expected``, the file's own size is taken.
        """
        try:
            return self._data[path]
        except KeyError:
            return self._load(path, path.stat().st_size if expected is None else expected)

    def _load(self, path: Path, expected: int) -> bytes | None:
        if self.file_limit <= 0 or expected > self.file_limit:
            self._data[path] = None
            return None
        data = path.read_bytes()
        if len(data) != expected:
            raise ValueError(f"{path.name} has {len(data)} bytes, {expected} were recorded")
        if self._total + len(data) > self.total_limit:
            self._data.clear()
            self._total = 0
        self._data[path] = data
        self._total += len(data)
        return data


def choose_representation(version: Version, accept_encoding: str | None) -> Representation:
    """The best stored representation the client accepts (identity if none better)."""
    for encoding in http.accepted_encodings(accept_encoding):
        path = version.variant(encoding)
        if path is not None:
            return Representation(path, encoding, http.strong_etag(version.id, encoding),
                                  version.variant_size(encoding))
    return Representation(version.path, None, http.strong_etag(version.id), version.size)


DOWNLOAD_VALUES = ("1", "true", "yes", "0", "false", "no", "")


def _download_requested(query: str) -> bool:
    if not query:
        return False
    value = parse_qs(query, keep_blank_values=True).get("download", ["0"])[-1]
    if value in {"1", "true", "yes"}:
        return True
    if value in {"0", "false", "no", ""}:
        return False
    raise BadRequest(f"download must be one of {', '.join(DOWNLOAD_VALUES)}, not {value!r}")


class Source(NamedTuple):
    """Where the bytes of a representation come from, and how many there are."""

    size: int
    data: bytes | None = None  # a small file, from memory
    handle: BinaryIO | None = None  # the open file (None: memory, or nothing to open)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def _checked(rep: Representation, actual: int) -> int:
    if actual != rep.size:
        raise StoredFileProblem(rep.encoding, f"{rep.path.name} has {actual} bytes, "
                                              f"{rep.size} were recorded")
    return actual


def _content(headers: list[Header], bounds: tuple[int, int] | None,
             size: int) -> tuple[int, int, int]:
    """Status, start and stop of a body of ``size`` bytes; adds its length (and range)."""
    if bounds is None:
        headers.append(("Content-Length", str(size)))
        return 200, 0, size
    start, stop = bounds
    headers += [("Content-Length", str(stop - start)),
                ("Content-Range", f"bytes {start}-{stop - 1}/{size}")]
    return 206, start, stop


class Delivery:
    """Builds replies for one app's catalog and settings."""

    def __init__(self, catalog: Catalog, settings: Settings) -> None:
        self.catalog = catalog
        self.cache_control = http.cache_control(settings)
        self.small_files = SmallFiles(settings.small_file_bytes, settings.small_file_cache_bytes)
        self.offload = settings.offload == "nginx"
        self.versions_dir = Path(settings.state_path) / "versions"

    def reply(self, raw_name: str, environ: WSGIEnviron) -> Reply:
        """The reply for one request; a stored file found missing or damaged is reported
        (quarantined, made again) and the request answered once more from what is left."""
        name = parse_request_name(raw_name)
        for _ in range(2):
            version = requestinfo.note_version(environ, self.catalog.current(name))
            try:
                return self._reply(version, environ)
            except StoredFileProblem as problem:
                self._report(version, problem)
        # twice in a row: let the client come back
        raise NotReady(f"dataset {name!r} is being published again; try again shortly",
                       retry_after=1)

    def _report(self, version: Version, problem: StoredFileProblem) -> None:
        """Have the file quarantined and made again; this process forgets it."""
        if problem.encoding is None:
            self.catalog.lost(version, problem.reason)
        else:
            self.catalog.variant_unusable(version, problem.encoding, problem.reason)

    def _reply(self, version: Version, environ: WSGIEnviron) -> Reply:
        rep = choose_representation(version, environ.get("HTTP_ACCEPT_ENCODING"))
        headers = self._headers(version, rep, environ)
        if http.check_preconditions(environ, rep.etag, version.http_date):
            return Reply(304, http.not_modified_headers(rep.etag, self.cache_control,
                                                        http.VARY_ENCODING))
        if environ["REQUEST_METHOD"] == "HEAD":  # RFC 9110 14.2: Range is for GET only
            size = self._source(rep, open_file=False).size
            return Reply(200, [*headers, ("Content-Length", str(size))])
        source = self._source(rep, open_file=not self.offload)
        try:
            bounds = http.byte_range(environ, rep.etag, version.http_date, source.size)
        except BaseException:
            source.close()
            raise
        if source.data is not None:
            return _from_memory(source.data, headers, bounds)
        if source.handle is None:
            return self._offloaded(rep, headers, bounds)
        return from_file(environ, source.handle, source.size, headers, bounds)

    def _headers(self, version: Version, rep: Representation,
                 environ: WSGIEnviron) -> list[Header]:
        """The fields every 200 and 206 of this representation carries."""
        headers = [("Content-Type", http.GEOJSON), ("ETag", rep.etag),
                   ("Last-Modified", version.http_date), ("Cache-Control", self.cache_control),
                   ("Vary", http.VARY_ENCODING), ("Accept-Ranges", "bytes")]
        if rep.encoding:
            headers.append(("Content-Encoding", rep.encoding))
        if _download_requested(environ.get("QUERY_STRING", "")):
            headers.append(("Content-Disposition",
                            f'attachment; filename="{version.name}.geojson"'))
        return headers

    def _source(self, rep: Representation, open_file: bool) -> Source:
        """The bytes of a small file, or the checked size of a stored file (open if asked)."""
        try:
            data = self.small_files.get(rep.path, rep.size)
            if data is not None:
                return Source(len(data), data)
            if not open_file:
                return Source(_checked(rep, rep.path.stat().st_size))
            handle = open(rep.path, "rb")  # noqa: SIM115 (the response closes it)
        except FileNotFoundError:
            raise StoredFileProblem(rep.encoding, f"{rep.path.name} is missing") from None
        except ValueError as exc:
            raise StoredFileProblem(rep.encoding, str(exc)) from None
        try:
            return Source(_checked(rep, os.fstat(handle.fileno()).st_size), handle=handle)
        except BaseException:
            handle.close()
            raise

    def _offloaded(self, rep: Representation, headers: list[Header],
                   bounds: tuple[int, int] | None) -> Reply:
        """Let Nginx send the stored file: the same headers, the bytes by X-Accel-Redirect.

        The app has already answered preconditions, 304s and HEAD and refused
        unsatisfiable ranges; Nginx applies a range only when we honour it
        (the ``range`` location), never a multi-range or an ignored one.
        """
        kind = "full" if bounds is None else "range"
        relative = rep.path.relative_to(self.versions_dir).as_posix()
        # Nginx's offload locations add Accept-Ranges themselves (exactly once).
        headers = [h for h in headers if h[0] != "Accept-Ranges"]
        headers.append(("X-Accel-Redirect", f"{OFFLOAD_PREFIX}/{kind}/{relative}"))
        return Reply(200, headers)


def _from_memory(data: bytes, headers: list[Header], bounds: tuple[int, int] | None) -> Reply:
    status, start, stop = _content(headers, bounds, len(data))
    return Reply(status, headers, [data[start:stop]])


def from_file(environ: WSGIEnviron, handle: BinaryIO, size: int, headers: list[Header],
               bounds: tuple[int, int] | None) -> Reply:
    """The open file, sent by the server itself (:mod:`geojson_api.filebody`)."""
    status, start, stop = _content(headers, bounds, size)
    part = None if status == 200 else (start, stop - start)
    return Reply(status, headers, filebody.send(environ, handle, part))


def _host_problem(environ: WSGIEnviron) -> BadRequest | None:
    """RFC 9112 3.2: exactly one Host in every HTTP/1.1 request, else 400."""
    host = environ.get("HTTP_HOST")
    if (host is None and environ.get("SERVER_PROTOCOL") == "HTTP/1.1") or (
            host is not None and "," in host):
        return BadRequest("an HTTP/1.1 request needs exactly one Host header")
    return None


class FastLane:
    """WSGI layer answering ``GET|HEAD /geojson/<name>`` without Flask's request cycle."""

    def __init__(self, app: WSGIApp, delivery: Delivery) -> None:
        self.app = app
        self.delivery = delivery

    def handles(self, environ: WSGIEnviron) -> bool:
        """Whether this is a request the lane answers itself (the others go on to Flask)."""
        path: str = environ.get("PATH_INFO", "")
        return path.startswith(PREFIX) and environ.get("REQUEST_METHOD") in ("GET", "HEAD")

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        problem = _host_problem(environ)
        if problem is not None:
            return _send(errors.render(problem), environ, start_response)
        if not self.handles(environ):
            return self.app(environ, start_response)
        environ[requestinfo.ROUTE] = requestinfo.FAST_LANE_ROUTE
        try:
            reply = self.delivery.reply(environ["PATH_INFO"][len(PREFIX):], environ)
        except Exception as exc:  # answered here, as Flask's handlers would: never replayed
            reply = errors.render(exc)
        return _send(reply, environ, start_response)


def _send(reply: Reply, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
    start_response(reply.status_line, reply.headers)
    if environ.get("REQUEST_METHOD") == "HEAD":  # an error's body: its length only, as Flask
        return ()
    return reply.body


def _delivery() -> Delivery:
    return current_app.extensions["delivery"]  # type: ignore[no-any-return]


@bp.get("/geojson/<path:raw>")
def geojson(raw: str) -> Response:
    """Send a whole dataset (GET and HEAD)."""
    reply = _delivery().reply(raw, request.environ)
    return current_app.response_class(reply.body, reply.status, reply.headers,
                                      direct_passthrough=True)


def init_app(app: Flask, catalog: Catalog, settings: Settings) -> None:
    app.extensions["delivery"] = delivery = Delivery(catalog, settings)
    app.register_blueprint(bp)
    app.wsgi_app = tracing.around_fast_lane(  # type: ignore[method-assign]
        FastLane(app.wsgi_app, delivery), requestinfo.FAST_LANE_ROUTE)
