"""Typed errors and the one place that turns them into JSON responses.

Domain code raises an :class:`APIError` subclass; :func:`init_app` registers a
single handler that renders ``{"code": ..., "description": ...}`` with the
error's HTTP status. Werkzeug's own HTTP exceptions (404 for unknown routes,
405, 416 ...) and unexpected exceptions get the same JSON shape, so a client
never sees an HTML page or a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from flask import Flask, Response, current_app, json
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

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


class NotFound(APIError):
    status = 404
    code = "not-found"


class DatasetNotFound(NotFound):
    code = "dataset-not-found"


class PreconditionFailed(APIError):
    status = 412
    code = "precondition-failed"


class NotReady(APIError):
    """The resource exists but is not usable yet (first version still settling)."""

    status = 503
    code = "not-ready"

    def __init__(self, description: str, retry_after: int = 2) -> None:
        super().__init__(description, headers={"Retry-After": str(retry_after)})


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


class SourceChanged(Exception):
    """The data file changed while it was being copied (not an HTTP error: retried)."""


# -- errors of the command line (one line on stderr, exit 2) --------------------------
class StackError(RuntimeError):
    """The local stack could not be started, or a part of it is missing."""


def storage_problem(code: str, description: str, retry_after: int) -> StorageFull:
    """The StorageFull or StorageError for a recorded failure ``code``."""
    kind = StorageFull if code == StorageFull.code else StorageError
    return kind(description, retry_after)


def error_body(code: str, description: str, **extra: Any) -> bytes:
    """The one JSON shape of every error the service answers."""
    return json.dumps({"code": code, "description": description, **extra}).encode()


def error_response(status: int, code: str, description: str, **extra: Any) -> Response:
    response = current_app.response_class(
        error_body(code, description, **extra), status=status, mimetype="application/json"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def wsgi_error(error: APIError, start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer ``error`` from plain WSGI code (outside Flask), in the same shape."""
    body = error_body(error.code, error.description)
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
               ("Cache-Control", "no-store"), *error.headers.items()]
    start_response(f"{error.status} {HTTP_STATUS_CODES[error.status].upper()}", headers)
    return [body]


def _handle_api_error(error: APIError) -> Response:
    response = error_response(error.status, error.code, error.description)
    response.headers.update(error.headers)
    return response


def _http_code(exc: HTTPException) -> str:
    name = exc.name or "error"
    return name.lower().replace(" ", "-").replace("'", "")


def _handle_http_exception(exc: HTTPException) -> Response:
    response = error_response(exc.code or 500, _http_code(exc), exc.description or "")
    original = exc.get_response()
    for header in ("Allow", "Content-Range", "Retry-After"):
        if header in original.headers:
            response.headers[header] = original.headers[header]
    return response


def _handle_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error")
    return error_response(500, "internal-error", "The server hit an unexpected error.")


def init_app(app: Flask) -> None:
    """Register the JSON error handlers."""
    app.register_error_handler(APIError, _handle_api_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
