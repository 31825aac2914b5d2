"""Whole-file delivery: ``GET|HEAD /geojson/<name>``.

:meth:`Delivery.reply` decides *which* bytes (dataset, version,
representation) and *which* status and headers, using Werkzeug's HTTP
machinery (``is_resource_modified``, ``parse_etags``, ``parse_range_header``)
for If-None-Match, If-Modified-Since, If-Match, Range and If-Range. The body
is the WSGI server's ``wsgi.file_wrapper`` around the open file, which
Gunicorn's sync and gthread workers turn into one ``sendfile()`` call: Python
never reads the file, so memory stays flat whatever the file size. Range
responses keep that property: the file is positioned at the range start and
wrapped in a bounded reader whose descriptor the server still hands to
``sendfile()``.

The same reply reaches clients on two paths. The Flask view serves it like any
other view. :class:`FastLane`, a thin WSGI layer in front of Flask, serves it
without building a request context, because for small files the framework, not
the byte copy, is the cost (see docs/benchmarks.md). Anything the fast lane
cannot answer (an error, a malformed request) goes on to Flask, so errors are
still rendered by the one handler in :mod:`geojson_api.errors`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.http import (
    HTTP_STATUS_CODES,
    is_resource_modified,
    parse_accept_header,
    parse_etags,
    parse_range_header,
)
from werkzeug.wsgi import wrap_file

from .catalog import Catalog, Version
from .errors import BadRequest, NotReady, PreconditionFailed, wsgi_error
from .names import parse_request_name
from .settings import Settings

GEOJSON_MIMETYPE = "application/geo+json"
BLOCK_SIZE = 256 * 1024  # read size when a server cannot sendfile (e.g. gevent)
ENCODING_PREFERENCE = ("br", "gzip")  # best first, among equal client q-values
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


class StoredFileProblem(Exception):
    """A stored file of the version being sent is missing or not the size recorded."""

    def __init__(self, version: Version, rep: Representation, reason: str) -> None:
        super().__init__(reason)
        self.version, self.rep, self.reason = version, rep, reason

    def report(self, catalog: Catalog) -> None:
        """Have the file quarantined and made again; this process forgets it."""
        if self.rep.encoding is None:
            catalog.lost(self.version, self.reason)
        else:
            catalog.variant_unusable(self.version, self.rep.encoding, self.reason)


def _size_checked(rep: Representation, version: Version, actual: int) -> int:
    if actual != rep.size:
        raise StoredFileProblem(version, rep, f"{rep.path.name} has {actual} bytes, "
                                              f"{rep.size} were recorded")
    return actual


@dataclass
class Reply:
    """Status, headers and body of one delivery response."""

    status: int
    headers: list[tuple[str, str]]
    body: Iterable[bytes] = field(default=())

    @property
    def status_line(self) -> str:
        return f"{self.status} {HTTP_STATUS_CODES[self.status].upper()}"  # as Werkzeug does


class BoundedFile(io.RawIOBase):
    """The bytes ``[start, start + length)`` of ``raw``, positioned at ``start``.

    ``fileno()``, ``seek()`` and ``tell()`` pass through, so a server that sends
    files with ``sendfile()`` starts at the range start and stops at the
    response's Content-Length; a server that iterates reads stops at the end.
    """

    def __init__(self, raw: BinaryIO, start: int, length: int) -> None:
        self._raw = raw
        self._end = start + length
        raw.seek(start)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._raw.fileno()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def read(self, size: int = -1) -> bytes:
        left = max(self._end - self._raw.tell(), 0)
        return self._raw.read(left if size < 0 else min(size, left))

    def close(self) -> None:
        self._raw.close()
        super().close()


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


def cache_control(settings: Settings) -> str:
    scope = "public" if settings.cache_public else "private"
    return f"{scope}, max-age={settings.cache_max_age}, s-maxage={settings.cache_s_maxage}"


def choose_representation(version: Version, accept_encoding: str | None) -> Representation:
    """The best stored representation the client accepts (identity if none better)."""
    identity = Representation(version.path, None, f'"{version.id}"', version.size)
    if not accept_encoding:
        return identity
    accepted = parse_accept_header(accept_encoding)
    best: tuple[float, str, Path] | None = None
    for encoding in ENCODING_PREFERENCE:
        quality = accepted[encoding]
        path = version.variant(encoding) if quality > 0 else None
        if path is not None and (best is None or quality > best[0]):
            best = (quality, encoding, path)
    if best is None:
        return identity
    _, encoding, path = best
    return Representation(path, encoding, f'"{version.id}.{encoding}"',
                          version.variant_size(encoding))


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


def _single_byte_range(environ: WSGIEnviron, etag: str, last_modified: str,
                       size: int) -> tuple[int, int] | None:
    """(start, stop) of a Range to honour, or None to send the whole representation.

    RFC 9110 lets a server ignore Range; we do so for syntax it cannot parse,
    for units other than bytes (which it must ignore), for multiple ranges, and
    when If-Range does not match. A well-formed single range that misses the
    representation raises 416.
    """
    parsed = parse_range_header(environ.get("HTTP_RANGE"))
    if parsed is None or parsed.units != "bytes" or len(parsed.ranges) != 1:
        return None
    if "HTTP_IF_RANGE" in environ and is_resource_modified(
        environ, etag, None, last_modified, ignore_if_range=False
    ):
        return None
    bounds = parsed.range_for_length(size)
    if bounds is None:
        raise RequestedRangeNotSatisfiable(length=size)
    return bounds


class Delivery:
    """Builds replies for one app's catalog and settings."""

    def __init__(self, catalog: Catalog, settings: Settings) -> None:
        self.catalog = catalog
        self.cache_control = cache_control(settings)
        self.small_files = SmallFiles(settings.small_file_bytes, settings.small_file_cache_bytes)
        self.offload = settings.offload == "nginx"
        self.versions_dir = Path(settings.state_path) / "versions"

    def reply(self, raw_name: str, environ: WSGIEnviron) -> Reply:
        """The reply for one request; a stored file found missing or damaged is reported
        (quarantined, made again) and the request answered from what is left."""
        name = parse_request_name(raw_name)
        try:
            return self._reply(self.catalog.current(name), environ)
        except StoredFileProblem as problem:
            problem.report(self.catalog)
        try:
            return self._reply(self.catalog.current(name), environ)
        except StoredFileProblem as problem:  # twice in a row: let the client come back
            problem.report(self.catalog)
            raise NotReady(f"dataset {name!r} is being published again; try again shortly",
                           retry_after=1) from None

    def _reply(self, version: Version, environ: WSGIEnviron) -> Reply:
        rep = choose_representation(version, environ.get("HTTP_ACCEPT_ENCODING"))
        last_modified = version.http_date
        headers = [("Content-Type", GEOJSON_MIMETYPE), ("ETag", rep.etag),
                   ("Last-Modified", last_modified), ("Cache-Control", self.cache_control),
                   ("Vary", "Accept-Encoding"), ("Accept-Ranges", "bytes")]
        if rep.encoding:
            headers.append(("Content-Encoding", rep.encoding))
        if _download_requested(environ.get("QUERY_STRING", "")):
            headers.append(("Content-Disposition",
                            f'attachment; filename="{version.name}.geojson"'))
        if "HTTP_IF_MATCH" in environ and not parse_etags(environ["HTTP_IF_MATCH"]).contains(
                rep.etag.strip('"')):
            raise PreconditionFailed(f"If-Match does not match the current version {rep.etag}")
        conditional = "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MODIFIED_SINCE" in environ
        if conditional and not is_resource_modified(environ, rep.etag, None, last_modified):
            # RFC 9110 15.4.5: the headers a 200 would carry that caches need.
            return Reply(304, [headers[1], headers[3], headers[4]])
        return self._body(version, rep, environ, headers, last_modified)

    def _offloaded(self, version: Version, rep: Representation, environ: WSGIEnviron,
                   headers: list[tuple[str, str]], last_modified: str) -> Reply:
        """Let Nginx send the stored file: the same headers, the bytes by X-Accel-Redirect.

        The app has already answered preconditions and 304s and refused
        unsatisfiable ranges; Nginx applies a range only when we honour it
        (the ``range`` location), never a multi-range or an ignored one.
        """
        try:
            size = _size_checked(rep, version, rep.path.stat().st_size)
        except FileNotFoundError:
            raise StoredFileProblem(version, rep, f"{rep.path.name} is missing") from None
        bounds = _single_byte_range(environ, rep.etag, last_modified, size)
        if environ["REQUEST_METHOD"] == "HEAD":
            return Reply(200, [*headers, ("Content-Length", str(size))])
        kind = "full" if bounds is None else "range"
        relative = rep.path.relative_to(self.versions_dir).as_posix()
        # Nginx's offload locations add Accept-Ranges themselves (exactly once).
        headers = [h for h in headers if h[0] != "Accept-Ranges"]
        headers.append(("X-Accel-Redirect", f"{OFFLOAD_PREFIX}/{kind}/{relative}"))
        return Reply(200, headers)

    def _body(self, version: Version, rep: Representation, environ: WSGIEnviron,
              headers: list[tuple[str, str]], last_modified: str) -> Reply:
        try:
            data = self.small_files.get(rep.path, rep.size)
            if self.offload and data is None:  # small files: ours, and Nginx's micro-cache
                return self._offloaded(version, rep, environ, headers, last_modified)
            handle = open(rep.path, "rb") if data is None else None  # noqa: SIM115
        except FileNotFoundError:
            raise StoredFileProblem(version, rep, f"{rep.path.name} is missing") from None
        except ValueError as exc:
            raise StoredFileProblem(version, rep, str(exc)) from None
        try:
            size = len(data) if data is not None else _size_checked(
                rep, version, os.fstat(handle.fileno()).st_size)  # type: ignore[union-attr]
            bounds = _single_byte_range(environ, rep.etag, last_modified, size)
        except BaseException:
            if handle is not None:
                handle.close()
            raise
        if environ["REQUEST_METHOD"] == "HEAD":
            if handle is not None:
                handle.close()
            return Reply(200, [*headers, ("Content-Length", str(size))])
        status, (start, stop) = (200, (0, size)) if bounds is None else (206, bounds)
        headers.append(("Content-Length", str(stop - start)))
        if status == 206:
            headers.append(("Content-Range", f"bytes {start}-{stop - 1}/{size}"))
        if data is not None:
            return Reply(status, headers, [data[start:stop]])
        body = handle if status == 200 else BoundedFile(handle, start, stop - start)  # type: ignore[arg-type]
        return Reply(status, headers, wrap_file(environ, body, BLOCK_SIZE))  # type: ignore[arg-type]


class FastLane:
    """WSGI layer answering ``GET|HEAD /geojson/<name>`` without Flask's request cycle."""

    def __init__(self, app: WSGIApp, delivery: Delivery) -> None:
        self.app = app
        self.delivery = delivery

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST")
        if (host is None and environ.get("SERVER_PROTOCOL") == "HTTP/1.1") or (
                host is not None and "," in host):
            # RFC 9112 3.2: exactly one Host in every HTTP/1.1 request, else 400.
            return wsgi_error(BadRequest("an HTTP/1.1 request needs exactly one Host header"),
                              start_response)
        path: str = environ.get("PATH_INFO", "")
        if path.startswith(PREFIX) and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            try:
                reply = self.delivery.reply(path[len(PREFIX):], environ)
            except Exception:
                return self.app(environ, start_response)
            start_response(reply.status_line, reply.headers)
            return reply.body
        return self.app(environ, start_response)


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
    app.wsgi_app = FastLane(app.wsgi_app, delivery)  # type: ignore[method-assign]
