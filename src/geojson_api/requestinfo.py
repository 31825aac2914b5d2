"""What one request turned out to be, kept in its WSGI environ for the metrics and the logs.

The app notes facts as it decides them: the route template that matched (the
fast lane notes its own), and the dataset and version a name resolved to. The
layers outside the app (the metrics layer, Gunicorn's access log) read them
after the app has answered, so that a log line or a metric says
``/collections/<cid>/items`` rather than a raw path, and which version of which
dataset was served. Nothing here costs more than a dict write per fact.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from flask import Flask, request

from .catalog import Catalog, Version
from .names import parse_request_name

ROUTE = "geojson_api.route"
DATASET = "geojson_api.dataset"
VERSION = "geojson_api.version"
REQUEST_ID = "geojson_api.request_id"
UNMATCHED = "unmatched"
FAST_LANE_ROUTE = "/geojson/<path:raw>"  # the fast lane's route, the same as its Flask twin

Environ = MutableMapping[str, Any]


def route(environ: Environ) -> str:
    """The route template that answered, or ``"unmatched"`` (a 404, or before routing)."""
    return environ.get(ROUTE, UNMATCHED)  # type: ignore[no-any-return]


def dataset(environ: Environ) -> str | None:
    return environ.get(DATASET)


def version(environ: Environ) -> str | None:
    return environ.get(VERSION)


def request_id(environ: Environ) -> str | None:
    return environ.get(REQUEST_ID)


def note_version(environ: Environ, found: Version) -> Version:
    """Remember which dataset and version this request is about; returns ``found``."""
    environ[DATASET] = found.name
    environ[VERSION] = found.id
    return found


def resolve(catalog: Catalog, raw_name: str) -> Version:
    """The current version of a requested name, noted on the Flask request being served."""
    return note_version(request.environ, catalog.current(parse_request_name(raw_name)))


def _note_route() -> None:
    rule = request.url_rule
    request.environ[ROUTE] = rule.rule if rule is not None else UNMATCHED


def init_app(app: Flask) -> None:
    """Note the matched route template of every Flask request (before its view runs)."""
    app.before_request(_note_route)
