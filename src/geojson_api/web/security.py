"""The Content-Security-Policy of every HTML page: our own origin only.

Scripts, styles, workers, fetches and fonts come from ``'self'`` alone: no
inline script or style element, no ``eval``, no CDN. MapLibre's CSP build
loads its worker from a file URL (``worker-src 'self'``, no ``blob:``).

The one exception is ``img-src data:``: MapLibre's and Swagger UI's style
sheets draw their control icons as ``data:`` SVG images. A data URI is part of
the style sheet we serve, so it reaches nothing beyond the server.
"""

from __future__ import annotations

from flask import Response

from ..http import HTML

POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "worker-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'self'",
])


def add_policy(response: Response) -> Response:
    """Flask's after_request hook: the policy on HTML responses, whatever view made them."""
    if response.mimetype == HTML and response.status_code != 304:  # a 304 has no body
        response.headers["Content-Security-Policy"] = POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
    return response
