"""The item lane: ``GET|HEAD /collections/<cid>/items/<fid>`` answered without Flask.

A single feature by id is the cheapest query there is: one lookup of its
position in the index and one read of the features file. Flask's request
cycle around it (the request context, URL matching, ``url_for`` for four
links, the response object, the HTML negotiation) cost more than the read
itself, so this WSGI layer answers the plain case directly, beside the
whole-file fast lane (:class:`geojson_api.delivery.FastLane`).

Its answer is, byte for byte and header for header, the one
:func:`geojson_api.features.views.item` gives (``tests/unit/test_item_lane.py``
compares them). It takes only requests whose answer it can give exactly, and
hands every other one to Flask, unchanged:

* the path is ``/collections/<name>/items/<id>`` with a name and an id of
  letters, digits, ``.``, ``_`` and ``-`` (nothing to quote in the links);
* the query is empty, ``f=json`` or ``f=geojson``;
* the request cannot want the HTML page: no ``Accept``, ``*/*``, or one with
  neither ``html`` nor a wildcard in it;
* no precondition (``If-None-Match``, ``If-Modified-Since``, ``If-Match``,
  ``If-Unmodified-Since``): Flask answers 304 and 412;
* the ``Host`` is a plain host name or address, with a port or not, and the
  app is mounted at the root;
* the feature is found: a missing feature, a dataset not ready, any error is
  left to Flask, which renders it.

With tracing on, the lane is not installed: every request then gets Flask's
server span and the spans inside it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from .. import http, requestinfo
from ..catalog import Catalog
from ..names import parse_request_name
from . import documents, render
from .indexes import Indexes

ROUTE = "/collections/<cid>/items/<path:fid>"
"""The route template of :func:`geojson_api.features.views.item`, noted for the metrics."""

_PATH = re.compile(r"/collections/([A-Za-z0-9._-]+)/items/([A-Za-z0-9._-]+)")
_HOST = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_MEDIA_TYPES = {"": http.GEOJSON, "f=geojson": http.GEOJSON, "f=json": http.JSON}
_PRECONDITIONS = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_IF_MATCH",
                  "HTTP_IF_UNMODIFIED_SINCE")
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


def _wants_json(accept: str | None) -> bool:
    """Whether an ``Accept`` surely does not prefer the page: the negotiation's answer
    (:func:`geojson_api.web.negotiation.wants_html`) without parsing the header."""
    return not accept or accept == "*/*" or ("html" not in accept and "*" not in accept)


def host_url(environ: Environ) -> str | None:
    """``scheme://host/`` as Werkzeug's ``request.host_url`` gives it (the host in lower
    case, without the scheme's default port), or None when the host is not a plain one
    (then Flask builds the links)."""
    host = environ.get("HTTP_HOST")
    if not host or not _HOST.fullmatch(host):
        return None
    host = host.lower()
    if "xn--" in host:
        return None
    scheme = environ.get("wsgi.url_scheme", "http")
    default = _DEFAULT_PORTS.get(scheme)
    if default is not None and host.endswith(default):
        host = host[: -len(default)]
    return f"{scheme}://{host}/"


class ItemLane:
    """WSGI layer answering a feature by id; every other request goes on to ``app``."""

    def __init__(self, app: WSGIApp, catalog: Catalog, indexes: Indexes,
                 cache_control: str) -> None:
        self.app = app
        self.catalog = catalog
        self.indexes = indexes
        self.cache_control = cache_control

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        answer = self._answer(environ)
        if answer is None:
            return self.app(environ, start_response)
        headers, body = answer
        start_response("200 OK", headers)
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]

    def _answer(self, environ: Environ) -> tuple[list[tuple[str, str]], bytes] | None:
        """The headers and body of the answer, or None for Flask to answer."""
        path = _PATH.fullmatch(environ.get("PATH_INFO", ""))
        if path is None or environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return None
        query = environ.get("QUERY_STRING", "")
        media_type = _MEDIA_TYPES.get(query)
        if media_type is None or (not query and not _wants_json(environ.get("HTTP_ACCEPT"))):
            return None
        if environ.get("SCRIPT_NAME") or any(k in environ for k in _PRECONDITIONS):
            return None
        base = host_url(environ)
        if base is None:
            return None
        raw_name, fid = path.groups()
        try:
            version = self.catalog.current(parse_request_name(raw_name))
            feature = self.indexes.backend(version).feature(fid)
        except Exception:  # an APIError or worse: Flask's error handlers render it
            return None
        if feature is None:  # Flask's 404
            return None
        environ[requestinfo.ROUTE] = ROUTE
        requestinfo.note_version(environ, version)
        root = base[:-1]
        body = render.with_links(feature, documents.feature_links(
            lambda endpoint, **values: _url(root, endpoint, **values), version.name, fid))
        item_path = environ["PATH_INFO"]
        etag = http.weak_etag(base, version.id, fid, query[2:])
        return [("Content-Type", media_type), ("Content-Length", str(len(body))),
                ("ETag", etag), ("Cache-Control", self.cache_control),
                ("Link", f'<{root}{item_path}?f=html>; rel="alternate"; '
                         f'type="{http.HTML}"'),
                ("Vary", "Accept")], body


def _url(base: str, endpoint: str, cid: str, fid: str | None = None) -> str:
    """The two links of a feature: itself, and its collection."""
    if endpoint == "features.item":
        return f"{base}/collections/{cid}/items/{fid}"
    if endpoint == "features.collection":
        return f"{base}/collections/{cid}"
    raise ValueError(f"no such link: {endpoint}")


def init_app(app: Any, catalog: Catalog, indexes: Indexes, cache_control: str) -> None:
    """Answer features by id before Flask (not with tracing on: Flask's spans then)."""
    from .. import tracing

    if not tracing.on():
        app.wsgi_app = ItemLane(app.wsgi_app, catalog, indexes, cache_control)
