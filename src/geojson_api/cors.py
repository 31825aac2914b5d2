"""Cross-origin reads: the CORS headers of every response, and preflight answers.

A dashboard served from another origin reads our datasets, collections and
tiles with ``fetch()``. The browser lets it only when the response names its
origin (or ``*``) in ``Access-Control-Allow-Origin``, and lets its scripts read
only the response headers listed in ``Access-Control-Expose-Headers`` (beyond
the few the Fetch standard always shows). Requests that carry headers such as
``Range`` or ``If-None-Match`` are preceded by a preflight ``OPTIONS``.

The policy is one WSGI layer around the whole app, the delivery fast lane
included, so that every answer (errors too: a dashboard must read why a
request failed) carries the same headers whichever path made it. Nginx copies
these headers from the app's answer onto the files it sends itself (the
offload locations of ``nginx/geojson-api.conf.j2``), and its micro-cache keeps
them with the body.

``GEOJSON_API_CORS_ORIGINS`` is ``*`` (any origin; the reads are anonymous, so
credentials are never allowed with it), a comma list of origins (the request's
``Origin`` is echoed when listed, with ``Vary: Origin``), or empty (no CORS
headers at all: only same-origin pages can read).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from . import errors
from .errors import CrossOriginRefused
from .http import Header, Reply

ANY = "*"
METHODS = "GET, HEAD, OPTIONS"
# What a dashboard's requests may carry: conditionals, ranges, negotiation, and
# (for the write endpoints to come) a token and a request id.
ALLOWED_HEADERS = ("Accept", "Authorization", "Content-Type", "If-Match", "If-Modified-Since",
                   "If-None-Match", "If-Range", "If-Unmodified-Since", "Range", "X-Request-ID")
# What it must be able to read: validators, partial content, paging links and the
# reasons to come back later. (Content-Type, Cache-Control, Last-Modified, Expires
# and Content-Language are always readable.)
EXPOSED_HEADERS = ("Accept-Ranges", "Content-Encoding", "Content-Length", "Content-Range",
                   "ETag", "Link", "Retry-After", "X-Request-ID")
_ALLOWED_LOWER = frozenset(h.lower() for h in ALLOWED_HEADERS)

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]


class Policy:
    """Which origins may read, and the headers that tell the browser so."""

    def __init__(self, origins: Iterable[str], credentials: bool = False,
                 max_age: int = 600) -> None:
        self.origins = frozenset(origins)
        self.any = ANY in self.origins
        if self.any and credentials:
            raise ValueError("credentials cannot be allowed to any origin ('*')")
        self.enabled = bool(self.origins)
        self.credentials = credentials
        self.max_age = max_age
        expose = ("Access-Control-Expose-Headers", ", ".join(EXPOSED_HEADERS))
        # With '*' every answer carries the same two fields, built once.
        self.any_headers: list[Header] = [("Access-Control-Allow-Origin", ANY), expose]
        self._expose = expose

    def allows(self, origin: str | None) -> bool:
        return origin is not None and (self.any or origin in self.origins)

    def headers(self, origin: str | None) -> list[Header]:
        """The fields an answer to a request from ``origin`` gets (none if not allowed)."""
        if self.any:
            return self.any_headers
        if not self.allows(origin):
            return []
        found: list[Header] = [("Access-Control-Allow-Origin", origin or ""), self._expose]
        if self.credentials:
            found.append(("Access-Control-Allow-Credentials", "true"))
        return found

    def preflight(self, environ: WSGIEnviron) -> Reply:
        """The answer to ``OPTIONS`` with ``Access-Control-Request-Method``."""
        origin = environ.get("HTTP_ORIGIN")
        if not self.allows(origin):
            raise CrossOriginRefused(
                f"origin {origin!r} may not read this service "
                "(GEOJSON_API_CORS_ORIGINS lists the origins that may)")
        asked = environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "")
        refused = sorted({h.strip().lower() for h in asked.split(",") if h.strip()}
                         - _ALLOWED_LOWER)
        if refused:
            raise CrossOriginRefused(f"request header(s) {', '.join(refused)} are not allowed; "
                                   f"allowed: {', '.join(ALLOWED_HEADERS)}")
        return Reply(204, [*self.headers(origin),
                           ("Access-Control-Allow-Methods", METHODS),
                           ("Access-Control-Allow-Headers", ", ".join(ALLOWED_HEADERS)),
                           ("Access-Control-Max-Age", str(self.max_age))])


def _with_vary_origin(headers: list[Header]) -> list[Header]:
    """``Vary`` gains ``Origin``: the answer depends on it (one field, for caches)."""
    for i, (name, value) in enumerate(headers):
        if name.lower() == "vary":
            headers[i] = (name, f"{value}, Origin")
            return headers
    headers.append(("Vary", "Origin"))
    return headers


class Middleware:
    """WSGI layer: preflights answered here, CORS fields added to every other answer."""

    def __init__(self, app: WSGIApp, policy: Policy) -> None:
        self.app = app
        self.policy = policy

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        policy = self.policy
        if (environ.get("REQUEST_METHOD") == "OPTIONS"
                and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ):
            try:
                reply = policy.preflight(environ)
            except CrossOriginRefused as exc:
                reply = errors.render(exc)
            if not policy.any:
                _with_vary_origin(reply.headers)
            start_response(reply.status_line, reply.headers)
            return reply.body
        extra = policy.any_headers if policy.any else policy.headers(environ.get("HTTP_ORIGIN"))

        def start(status: str, headers: list[Header], exc_info: Any = None) -> Any:
            headers = headers + extra
            if not policy.any:
                _with_vary_origin(headers)
            if exc_info is None:  # as called: some callers take exactly two arguments
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


def init_app(app: Any, origins: Iterable[str], credentials: bool, max_age: int) -> None:
    """Wrap the app (outside the fast lane) in the CORS layer; no origins: nothing to add."""
    policy = Policy(origins, credentials, max_age)
    if policy.enabled:
        app.wsgi_app = Middleware(app.wsgi_app, policy)
