"""Every error class of the service, and the one renderer that turns errors into responses.

Domain code raises an :class:`APIError` subclass; :func:`render` turns it into
``{"code": ..., "description": ...}`` with the error's HTTP status. Werkzeug's
own HTTP exceptions (404 for unknown routes, 405, 412 and 416 from
:mod:`geojson_api.http` ...) and unexpected exceptions (logged) get the same
JSON shape, so a client never sees an HTML page or a stack trace. Flask's
error handlers (:func:`init_app`) and the delivery fast lane, which answers
outside Flask, both answer with :func:`render`, so an error looks the same on
either path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any, ClassVar

from flask import Flask, Response, current_app
from werkzeug.exceptions import HTTPException

from . import requestid
from .http import JSON, NO_STORE, Header, Reply

log = logging.getLogger(__name__)


class APIError(Exception):
    """Base class: an error with an HTTP status and a stable machine-readable code."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal-error"

    def __init__(self, description: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.headers = headers or {}


class BadRequest(APIError):
    status = 400
    code = "bad-request"


class InvalidName(BadRequest):
    code = "invalid-name"


class InvalidGeoJSON(BadRequest):
    code = "invalid-geojson"


class InvalidParameter(BadRequest):
    """A query parameter with a malformed value, or given twice."""

    code = "invalid-parameter"


class UnknownParameter(BadRequest):
    code = "unknown-parameter"


class Unauthorized(APIError):
    """A request without the token a resource asks for (the metrics token)."""

    status = 401
    code = "unauthorized"

    def __init__(self, description: str) -> None:
        super().__init__(f"{description} (Authorization: Bearer <token>)",
                         headers={"WWW-Authenticate": 'Bearer realm="metrics"'})


class CrossOriginRefused(APIError):
    """A preflight from an origin, or asking for a header, that the CORS policy refuses."""

    status = 403
    code = "cross-origin-refused"


class NotFound(APIError):
    status = 404
    code = "not-found"


class DatasetNotFound(NotFound):
    code = "dataset-not-found"


class FeatureNotFound(NotFound):
    code = "feature-not-found"


class AssetNotFound(NotFound):
    """No static file has this hashed name (unknown, or the content changed since)."""

    code = "asset-not-found"


class NotReady(APIError):
    """The resource exists but is not usable yet (first version still settling)."""

    status = 503
    code = "not-ready"

    def __init__(self, description: str, retry_after: int = 2) -> None:
        super().__init__(description, headers={"Retry-After": str(retry_after)})


class StoredFileProblem(Exception):
    """A stored file of the version being sent is missing or not the size recorded.

    Not an HTTP error: delivery has the file quarantined and made again, and
    answers from what is left (see :meth:`geojson_api.delivery.Delivery.reply`).
    """

    def __init__(self, encoding: str | None, reason: str) -> None:
        super().__init__(reason)
        self.encoding = encoding  # None: the identity file
        self.reason = reason


class StorageFull(APIError):
    """A new content could not be published: no space in the state folder."""

    status = 503
    code = "storage-full"

    def __init__(self, description: str, retry_after: int) -> None:
        super().__init__(description, headers={"Retry-After": str(retry_after)})


class StorageError(StorageFull):
    """A new content could not be published: the state folder failed otherwise (EIO...)."""

    code = "storage-error"


class DatasetUnavailable(APIError):
    """The dataset's file exists but no version of it could be published."""

    status = 503
    code = "dataset-unavailable"


class IndexFailed(APIError):
    """The version's index could not be built; whole-file downloads still work."""

    status = 503
    code = "index-failed"


INDEX_DAMAGE_RETRY_AFTER = 5


class IndexDamaged(NotReady):
    """The index file failed a check or a read; it is being built again."""

    def __init__(self, description: str) -> None:
        super().__init__(description, retry_after=INDEX_DAMAGE_RETRY_AFTER)


class InvalidTile(BadRequest):
    """Tile indices that are not integers, are negative, or lie outside the tile matrix."""

    code = "invalid-tile"


class TileMatrixSetNotFound(NotFound):
    code = "tile-matrix-set-not-found"


class TileNotFound(NotFound):
    """A tile of the matrix set outside the tileset's limits (a zoom not built, or away from
    the data's extent)."""

    code = "tile-not-found"


class TilesNotReady(NotReady):
    """The version's tiles are queued or being built (or built again after damage)."""

    code = "tiles-not-ready"

    def __init__(self, description: str, retry_after: int) -> None:
        super().__init__(description, retry_after=retry_after)


class TilesFailed(APIError):
    """The version's tiles could not be built; features and whole files still work."""

    status = 503
    code = "tiles-failed"


class SourceChanged(Exception):
    """The data file changed while it was being copied (not an HTTP error: retried)."""


# -- errors of the command line (one line on stderr, exit 2) --------------------------
class SettingsError(ValueError):
    """A setting has a value of the wrong type or out of range (the message names it)."""


class AssetsMissing(SettingsError):
    """The install lacks the built web assets (MapLibre, copied by scripts/build-assets).

    A SettingsError so that the command line and Gunicorn's config report it the
    same way: one line saying what to run, exit 2, before any worker starts.
    """


class StackError(RuntimeError):
    """The local stack could not be started, or a part of it is missing."""


class LabError(Exception):
    """A target failed to start or died, or a load generator failed: results are invalid."""


class Interrupted(Exception):
    """SIGTERM or SIGHUP arrived during a lab run; raised in the main thread so cleanup runs."""


def storage_problem(code: str, description: str, retry_after: int) -> StorageFull:
    """The StorageFull or StorageError for a recorded failure ``code``."""
    kind = StorageFull if code == StorageFull.code else StorageError
    return kind(description, retry_after)


def error_body(code: str, description: str, **extra: Any) -> bytes:
    """The one JSON shape of every error the service answers (with the request's id,
    when one is being handled, so a client can quote it)."""
    rid = requestid.current()
    named = {"request_id": rid} if rid is not None else {}
    return json.dumps({"code": code, "description": description, **named, **extra}).encode()


def error_reply(status: int, code: str, description: str,
                headers: Iterable[Header] = (), **extra: Any) -> Reply:
    """An error answer: the JSON body, never cached, with any ``headers`` it needs."""
    body = error_body(code, description, **extra)
    return Reply(status, [("Content-Type", JSON), ("Content-Length", str(len(body))),
                          ("Cache-Control", NO_STORE), *headers], [body])


# Fields of a Werkzeug exception's own response that the JSON answer keeps.
KEPT_HTTP_HEADERS = ("Allow", "Content-Range", "Retry-After")


def _http_code(exc: HTTPException) -> str:
    name = exc.name or "error"
    return name.lower().replace(" ", "-").replace("'", "")


def render(exc: BaseException) -> Reply:
    """The answer to any error raised while handling a request (an unexpected one is logged)."""
    if isinstance(exc, APIError):
        return error_reply(exc.status, exc.code, exc.description, exc.headers.items())
    if isinstance(exc, HTTPException):
        headers = [(k, v) for k, v in exc.get_headers() if k in KEPT_HTTP_HEADERS]
        return error_reply(exc.code or 500, _http_code(exc), exc.description or "", headers)
    log.error("unhandled error", exc_info=exc)
    return error_reply(500, "internal-error", "The server hit an unexpected error.")


def as_response(reply: Reply) -> Response:
    """A :class:`Reply` as a Flask response."""
    return current_app.response_class(reply.body, reply.status, reply.headers)


def error_response(status: int, code: str, description: str, **extra: Any) -> Response:
    """An error answer returned by a view (rather than raised), e.g. readiness."""
    return as_response(error_reply(status, code, description, **extra))


def _handle(exc: Exception) -> Response:
    return as_response(render(exc))


def init_app(app: Flask) -> None:
    """Answer every error raised in a view with :func:`render` (APIError, Werkzeug's
    HTTP exceptions, anything else)."""
    for kind in (APIError, HTTPException, Exception):
        app.register_error_handler(kind, _handle)
