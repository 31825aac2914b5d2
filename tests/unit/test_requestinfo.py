"""The facts a request leaves in its environ for the metrics and the logs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from flask import Flask

from geojson_api import jobs, requestinfo


def _environ_after(app: Flask, path: str, method: str = "GET") -> dict[str, Any]:
    """Run one request through the whole WSGI app (fast lane included); its environ after."""
    environ: dict[str, Any] = {}
    with app.test_request_context(path, method=method):
        from flask import request
        environ = request.environ
    status: list[str] = []
    body: Iterable[bytes] = app.wsgi_app(environ, lambda s, h, e=None: status.append(s))
    b"".join(body)
    getattr(body, "close", lambda: None)()
    environ["_status"] = status[0]
    return environ


def test_fast_lane_notes_its_route_dataset_and_version(app: Flask) -> None:
    environ = _environ_after(app, "/geojson/roads")
    assert environ["_status"].startswith("200")
    assert requestinfo.route(environ) == "/geojson/<path:raw>"
    assert requestinfo.dataset(environ) == "roads"
    version = app.extensions["catalog"].current("roads").id
    assert requestinfo.version(environ) == version


@pytest.mark.parametrize(("path", "route"), [
    ("/collections/roads/items?limit=1", "/collections/<cid>/items"),
    ("/collections/roads", "/collections/<cid>"),
    ("/api/datasets/roads", "/api/datasets/<path:raw>"),
])
def test_flask_views_note_the_template_and_the_version(app: Flask, path: str,
                                                       route: str) -> None:
    app.test_client().get(path)  # the first query asks for the index...
    jobs.wait_idle(30)  # ...built in the background
    environ = _environ_after(app, path)
    assert environ["_status"].startswith("200")
    assert requestinfo.route(environ) == route
    assert requestinfo.dataset(environ) == "roads"
    assert requestinfo.version(environ) == app.extensions["catalog"].current("roads").id


def test_unknown_paths_and_listings_name_no_dataset(app: Flask) -> None:
    missing = _environ_after(app, "/no/such/page")
    assert missing["_status"].startswith("404")
    assert requestinfo.route(missing) == "unmatched"
    listing = _environ_after(app, "/api/datasets")
    assert requestinfo.route(listing) == "/api/datasets"
    assert requestinfo.dataset(listing) is None and requestinfo.version(listing) is None


def test_an_unknown_dataset_keeps_its_route_but_names_nothing(app: Flask) -> None:
    environ = _environ_after(app, "/collections/nope/items")
    assert environ["_status"].startswith("404")
    assert requestinfo.route(environ) == "/collections/<cid>/items"
    assert requestinfo.dataset(environ) is None
