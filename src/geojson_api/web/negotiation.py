"""HTML or JSON for one resource: the one place that decides, used by every view.

- ``?f=html`` asks for the page, ``?f=json`` (or ``geojson``) for the document;
- without ``f``, the page when the Accept header ranks ``text/html`` above every
  JSON type (a browser's ``text/html,...,*/*;q=0.8``); a tie, no Accept at all,
  ``*/*`` or any JSON type keeps today's JSON document.

Both answers carry ``Vary: Accept``. A page has its own weak ETag (the format,
the build of templates and assets, the host and what the page shows) and
answers 304 through :func:`geojson_api.http.conditional`, like the documents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlencode

import orjson
from flask import Response, current_app, render_template, request

from .. import http

JSON_TYPES = (http.JSON, http.GEOJSON, http.SCHEMA, http.OPENAPI)
ALTERNATE_TITLES = {"html": "This document as HTML", "json": "This document as JSON"}


def wants_html() -> bool:
    """Whether this request asks for the page (see the module's rules)."""
    chosen = request.args.get("f")
    if chosen is not None:
        return chosen == "html"
    accept = request.accept_mimetypes
    if not accept:
        return False
    return accept.quality(http.HTML) > max(accept.quality(kind) for kind in JSON_TYPES)


def format_url(fmt: str, path: str | None = None, args: Iterable[tuple[str, str]] | None = None
               ) -> str:
    """This request's URL (or ``path``) with ``f=<fmt>`` in place of any ``f`` it had."""
    pairs = [(k, v) for k, v in (request.args.items(multi=True) if args is None else args)
             if k != "f"]
    query = urlencode([*pairs, ("f", fmt)], safe=",:/")
    return f"{request.host_url.rstrip('/')}{request.path if path is None else path}?{query}"


def alternate(fmt: str, media_type: str) -> dict[str, str]:
    """The ``rel=alternate`` link of this request's resource in another format."""
    return {"href": format_url(fmt), "rel": "alternate", "type": media_type,
            "title": ALTERNATE_TITLES[fmt]}


def build_token() -> str:
    """What every page's body depends on beside its data: templates and asset names."""
    return current_app.extensions["web_build"]  # type: ignore[no-any-return]


def vary(response: Response) -> Response:
    response.vary.add("Accept")
    return response


def as_json(response: Response) -> Response:
    """A negotiated JSON answer: ``Vary: Accept`` and (not on a 304, which repeats only
    the fields RFC 9110 15.4.5 names) a ``Link`` to its page."""
    if response.status_code != 304:
        link = f'<{format_url("html")}>; rel="alternate"; type="{http.HTML}"'
        response.headers.add("Link", link)
    return vary(response)


def digest_of(doc: Any) -> str:
    """The ETag part of a page drawn from a JSON document: the document itself."""
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


def page(template: str, key: Sequence[str], context: Callable[[], dict[str, Any]],
         cache_control: str = http.REVALIDATE) -> Response:
    """The HTML page of this request: 304 when the client's copy is current, else
    ``template`` rendered with ``context()`` (called only then) and ``json_url``."""
    etag = http.weak_etag("html", build_token(), request.host_url, *key)

    def build() -> Response:
        body = render_template(template, **{"json_url": format_url("json"), **context()})
        return current_app.response_class(body, mimetype=http.HTML)

    return vary(http.conditional(etag, cache_control, build))


def negotiate(doc: Any, json_answer: Callable[[], Response], template: str, *,
              key: Sequence[str] | None = None, cache_control: str = http.REVALIDATE,
              **context: Any) -> Response:
    """The page of ``doc`` (ETag keyed by ``key``, else by ``doc`` itself) or
    ``json_answer()``, the document as before."""
    if not wants_html():
        return as_json(json_answer())
    return page(template, key if key is not None else [digest_of(doc)],
                lambda: {"doc": doc, **context}, cache_control)
