"""Whole-file delivery: ``GET|HEAD /geojson/<name>``.

The view decides *which* bytes (dataset, version, representation) and *which*
headers; Werkzeug's conditional machinery answers If-None-Match,
If-Modified-Since, Range and If-Range; the WSGI server's ``wsgi.file_wrapper``
sends the bytes, which Gunicorn's sync and gthread workers turn into one
``sendfile()`` call. Python never reads the file on that path, so memory stays
flat whatever the file size. Range responses keep that property: the file is
positioned at the range start and wrapped in a bounded reader, whose
descriptor the server still hands to ``sendfile()``.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from flask import Blueprint, Flask, Request, Response, current_app, request
from werkzeug.http import parse_range_header
from werkzeug.wsgi import wrap_file

from .catalog import Catalog, Version
from .errors import BadRequest

GEOJSON_MIMETYPE = "application/geo+json"
BLOCK_SIZE = 256 * 1024  # read size when a server cannot sendfile (e.g. gevent)
ENCODING_PREFERENCE = ("br", "gzip")  # best first, among equal client q-values

bp = Blueprint("delivery", __name__)


@dataclass(frozen=True)
class Representation:
    """One stored form of a version: the identity bytes or a compressed variant."""

    path: Path
    encoding: str | None
    etag: str


class BoundedFile(io.RawIOBase):
    """The bytes ``[start, end)`` of ``raw``, positioned at ``start``.

    ``fileno()``, ``seek()`` and ``tell()`` pass through, so a server that sends
    files with ``sendfile()`` starts at the range start and stops at the
    response's Content-Length; a server that iterates reads stops at ``end``.
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


def choose_representation(version: Version, req: Request) -> Representation:
    """The best stored representation the client accepts (identity if none better)."""
    accepted = req.accept_encodings
    best: tuple[float, str] | None = None
    for encoding in ENCODING_PREFERENCE:
        quality = accepted[encoding]
        if quality > 0 and (best is None or quality > best[0]):
            path = version.variant(encoding)
            if path is not None:
                best = (quality, encoding)
    if best is None:
        return Representation(version.path, None, version.id)
    encoding = best[1]
    path = version.variant(encoding)
    assert path is not None
    return Representation(path, encoding, f"{version.id}.{encoding}")


def _download_requested(req: Request) -> bool:
    value = req.args.get("download", "0").lower()
    if value in {"1", "true", "yes"}:
        return True
    if value in {"0", "false", "no", ""}:
        return False
    raise BadRequest("download must be 1 or 0")


def _range_environ(req: Request) -> dict[str, object]:
    """The request environ, minus a Range header this server chooses to ignore.

    RFC 9110 lets a server ignore Range; we do so for syntax it cannot parse, for
    units other than bytes (which it must ignore) and for multiple ranges,
    answering 200 with the whole representation instead of an error. A
    well-formed single range that misses the file still gets 416.
    """
    environ = req.environ
    header = environ.get("HTTP_RANGE")
    if header is None:
        return environ
    parsed = parse_range_header(header)
    if parsed is not None and parsed.units == "bytes" and len(parsed.ranges) == 1:
        return environ
    return {k: v for k, v in environ.items() if k != "HTTP_RANGE"}


def _set_headers(response: Response, version: Version, rep: Representation, size: int) -> None:
    settings = current_app.config["SETTINGS"]
    response.content_length = size
    response.set_etag(rep.etag)
    response.last_modified = version.modified  # type: ignore[assignment]
    response.cache_control.public = settings.cache_public
    response.cache_control.private = True if not settings.cache_public else None
    response.cache_control.max_age = settings.cache_max_age
    response.cache_control.s_maxage = settings.cache_s_maxage
    response.vary.add("Accept-Encoding")
    if rep.encoding:
        response.content_encoding = rep.encoding


def file_response(version: Version, req: Request) -> Response:
    """A conditional, range-aware response sending one representation of a version."""
    rep = choose_representation(version, req)
    download = _download_requested(req)
    handle = open(rep.path, "rb")  # noqa: SIM115 - closed by the response
    try:
        size = os.fstat(handle.fileno()).st_size
        response = current_app.response_class(
            wrap_file(req.environ, handle, BLOCK_SIZE),
            mimetype=GEOJSON_MIMETYPE,
            direct_passthrough=True,
        )
        _set_headers(response, version, rep, size)
        if download:
            response.headers.set("Content-Disposition", "attachment",
                                 filename=f"{version.name}.geojson")
        response.make_conditional(_range_environ(req), accept_ranges=True, complete_length=size)
    except BaseException:
        handle.close()
        raise
    if response.status_code == 206:
        content_range = response.content_range
        assert content_range.start is not None and content_range.stop is not None
        part = BoundedFile(handle, content_range.start, content_range.stop - content_range.start)
        response.response = wrap_file(req.environ, part, BLOCK_SIZE)  # type: ignore[arg-type]
    return response


def catalog() -> Catalog:
    return current_app.extensions["catalog"]  # type: ignore[no-any-return]


@bp.get("/geojson/<path:raw>")
def geojson(raw: str) -> Response:
    """Send a whole dataset (GET and HEAD)."""
    return file_response(catalog().resolve(raw), request)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
