"""Request ids: which ids a client may give, and the id of the work being done right now.

A request's id comes from its ``X-Request-ID`` header (the
``GEOJSON_API_REQUEST_ID_HEADER`` setting) when that value is *sane*: at
most :data:`MAX_LENGTH` characters from a small safe set, so that it can be
written into a log line, a header and a JSON body as it is. Otherwise the
service makes one (:func:`new`, a uuid4 in hex, like Nginx's
``$request_id``). Nginx applies the same rule (:data:`PATTERN` is rendered
into its configuration), so both always agree on a request's id.

While a request is served (and while a job it started runs, on the job thread
or a Celery worker), its id is the value of one context variable, so log
records made meanwhile can carry it (:class:`geojson_api.logs.RequestFilter`)
and error bodies can name it. Context variables belong to the thread, or to
the greenlet under gevent, so concurrent requests never see each other's id.

Only the standard library is imported here: the job queue and the error
renderer use this module without pulling in the web app.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any, TypeVar

MAX_LENGTH = 128
PATTERN = f"[A-Za-z0-9+/=._:@-]{{1,{MAX_LENGTH}}}"
"""What a client's id may be: letters, digits, ``+/=._:@-`` (uuids, base64, hex, ...)."""
_SANE = re.compile(PATTERN)

# (the id, the WSGI environ of the request when the work is a request)
_current: ContextVar[tuple[str, Mapping[str, Any] | None] | None] = ContextVar(
    "geojson_api_request", default=None)

T = TypeVar("T")


def new() -> str:
    """A fresh id: 32 hex digits, the same shape as Nginx's ``$request_id``."""
    return uuid.uuid4().hex


def sane(value: str | None) -> bool:
    """Whether a client's id can be used as it is."""
    return value is not None and _SANE.fullmatch(value) is not None


def current() -> str | None:
    """The id of the request (or of the job a request started) being handled now."""
    found = _current.get()
    return found[0] if found is not None else None


def environ() -> Mapping[str, Any] | None:
    """The WSGI environ of the request being handled now (None in a job)."""
    found = _current.get()
    return found[1] if found is not None else None


def enter(request_id: str, environ: Mapping[str, Any] | None = None
          ) -> Token[tuple[str, Mapping[str, Any] | None] | None]:
    """Make ``request_id`` the current one; :func:`leave` with the token undoes it."""
    return _current.set((request_id, environ))


def leave(token: Token[tuple[str, Mapping[str, Any] | None] | None]) -> None:
    try:
        _current.reset(token)
    except ValueError:  # another context made the token: leave this one clean
        _current.set(None)


@contextmanager
def bound(request_id: str | None) -> Iterator[None]:
    """Within the block, ``request_id`` is current (nothing changes for None)."""
    if request_id is None:
        yield
        return
    token = enter(request_id)
    try:
        yield
    finally:
        leave(token)


def carried(job: Callable[[], T]) -> Callable[[], T]:
    """``job``, made to run later (on another thread) under the current request's id."""
    request_id = current()
    if request_id is None:
        return job

    def run() -> T:
        with bound(request_id):
            return job()

    return run
