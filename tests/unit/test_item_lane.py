"""The item lane answers a feature by id exactly as Flask's view does, or leaves it to Flask.

Each request goes through the whole app twice: once as served (the lane takes
what it can) and once with the lane switched off (Flask's ``item`` view
answers). Status, every header and the body must be the same, and the facts
the metrics and logs read (route, dataset, version) too.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import EnvironBuilder

from geojson_api import jobs, requestinfo
from geojson_api.features.lane import ROUTE, ItemLane, host_url

Answer = tuple[str, list[tuple[str, str]], bytes, dict[str, Any]]


@pytest.fixture
def app(make_app: Callable[..., Flask], data_dir: Path, samples: Path) -> Flask:
    shutil.copy(samples / "small.geojson", data_dir / "small.geojson")
    app = make_app()
    client = app.test_client()
    client.get("/collections/small")  # publishes; the index is built in the background
    assert jobs.wait_idle(60)
    assert client.get("/collections/small/items/1").status_code == 200
    return app


def the_lane(app: Flask) -> ItemLane:
    layer: Any = app.wsgi_app
    while not isinstance(layer, ItemLane):
        layer = layer.app
    return layer


def call(app: Flask, environ: dict[str, Any]) -> Answer:
    started: list[Any] = []
    body = app.wsgi_app(environ, lambda status, headers, exc_info=None: started.append(
        (status, headers)))
    try:
        data = b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    status, headers = started[0]
    facts = {key: environ.get(key) for key in (requestinfo.ROUTE, requestinfo.DATASET,
                                               requestinfo.VERSION)}
    return status, sorted(headers), data, facts


def environ(path: str, method: str = "GET", base_url: str = "http://127.0.0.1:8000",
            **headers: str) -> dict[str, Any]:
    built = EnvironBuilder(path, base_url=base_url, method=method,
                           headers={"X-Request-ID": "lane-test", **headers}).get_environ()
    return dict(built)


@pytest.fixture
def compare(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., bool]]:
    """Both answers to one request; returns whether the lane answered it itself."""
    lane = the_lane(app)
    answer = lane._answer

    def both(path: str, method: str = "GET", base_url: str = "http://127.0.0.1:8000",
             **headers: str) -> bool:
        took = answer(environ(path, method, base_url, **headers)) is not None
        served = call(app, environ(path, method, base_url, **headers))
        with monkeypatch.context() as off:
            off.setattr(lane, "_answer", lambda environ: None)
            flask = call(app, environ(path, method, base_url, **headers))
        assert served == flask
        return took

    yield both


@pytest.mark.parametrize(("path", "method", "base_url", "headers"), [
    ("/collections/small/items/1", "GET", "http://127.0.0.1:8000", {}),
    ("/collections/small/items/2", "HEAD", "http://127.0.0.1:8000", {}),
    ("/collections/small/items/3?f=json", "GET", "http://127.0.0.1:8000", {}),
    ("/collections/small/items/3?f=geojson", "GET", "http://127.0.0.1:8000", {}),
    ("/collections/small.geojson/items/4", "GET", "http://127.0.0.1:8000", {}),
    ("/collections/small/items/5", "GET", "http://Example.COM:8080", {}),
    ("/collections/small/items/5", "GET", "http://127.0.0.1:8000", {"Host": "Example.COM:8080"}),
    ("/collections/small/items/5", "GET", "http://localhost:80", {}),
    ("/collections/small/items/5", "GET", "https://example.org:443", {}),
    ("/collections/small/items/5", "GET", "https://example.org", {}),
    ("/collections/small/items/5", "GET", "http://[::1]:8000", {}),
    ("/collections/small/items/6", "GET", "http://127.0.0.1:8000", {"Accept": "*/*"}),
    ("/collections/small/items/6", "GET", "http://127.0.0.1:8000",
     {"Accept": "application/geo+json"}),
    ("/collections/small/items/6", "GET", "http://127.0.0.1:8000",
     {"Accept": "application/json, text/plain;q=0.5"}),
    ("/collections/small/items/6?f=json", "GET", "http://127.0.0.1:8000",
     {"Accept": "text/html"}),  # f wins over Accept
])
def test_the_lane_gives_flasks_answer(compare: Callable[..., bool], path: str, method: str,
                                      base_url: str, headers: dict[str, str]) -> None:
    assert compare(path, method, base_url, **headers)


@pytest.mark.parametrize(("path", "method", "base_url", "headers"), [
    ("/collections/small/items/1", "GET", "http://127.0.0.1:8000", {"Accept": "text/html"}),
    ("/collections/small/items/1", "GET", "http://127.0.0.1:8000", {"Accept": "text/*"}),
    ("/collections/small/items/1", "GET", "http://127.0.0.1:8000",
     {"Accept": "*/*, application/geo+json;q=0.1"}),
    ("/collections/small/items/1?f=html", "GET", "http://127.0.0.1:8000", {}),
    ("/collections/small/items/1?f=xml", "GET", "http://127.0.0.1:8000", {}),  # 400
    ("/collections/small/items/1?f=json&x=1", "GET", "http://127.0.0.1:8000", {}),  # 400
    ("/collections/small/items/1", "POST", "http://127.0.0.1:8000", {}),  # 405
    ("/collections/small/items/99999", "GET", "http://127.0.0.1:8000", {}),  # 404
    ("/collections/nothing/items/1", "GET", "http://127.0.0.1:8000", {}),  # 404
    ("/collections/..small/items/1", "GET", "http://127.0.0.1:8000", {}),  # 400
    ("/collections/small/items/1/", "GET", "http://127.0.0.1:8000", {}),
    ("/collections/small/items/a b", "GET", "http://127.0.0.1:8000", {}),
    ("/collections/small/items/1", "GET", "http://xn--bcher-kva.example", {}),
    ("/collections/small/items/1", "GET", "http://127.0.0.1:8000",
     {"If-None-Match": "*"}),  # 304
    ("/collections/small/items/1", "GET", "http://127.0.0.1:8000",
     {"If-Match": '"nope"'}),  # 412
    ("/collections/small/items/1", "GET", "http://127.0.0.1:8000",
     {"If-Modified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"}),
])
def test_everything_else_is_flasks(compare: Callable[..., bool], path: str, method: str,
                                   base_url: str, headers: dict[str, str]) -> None:
    assert not compare(path, method, base_url, **headers)


def test_a_revalidation_of_the_lanes_answer_is_a_304(app: Flask) -> None:
    _, headers, _, facts = call(app, environ("/collections/small/items/1"))
    etag = dict(headers)["ETag"]
    status, _, body, _ = call(app, environ("/collections/small/items/1", If_None_Match=etag))
    assert status.startswith("304") and body == b""
    assert facts[requestinfo.ROUTE] == ROUTE and facts[requestinfo.DATASET] == "small"


def test_a_missing_host_is_flasks_400(app: Flask) -> None:
    built = environ("/collections/small/items/1")
    del built["HTTP_HOST"]
    assert host_url(built) is None
    assert call(app, built)[0].startswith("400")


def test_a_changed_file_is_served_at_its_new_version(app: Flask, data_dir: Path,
                                                     samples: Path) -> None:
    first = call(app, environ("/collections/small/items/1"))
    shutil.copy(samples / "medium.geojson", data_dir / "small.geojson")
    call(app, environ("/collections/small"))  # publishes the new content
    assert jobs.wait_idle(120)
    second = call(app, environ("/collections/small/items/1"))
    assert second[0].startswith("200")
    assert second[3][requestinfo.VERSION] != first[3][requestinfo.VERSION]
    assert dict(second[1])["ETag"] != dict(first[1])["ETag"]


def test_tracing_keeps_flasks_path(make_app: Callable[..., Flask],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from geojson_api import tracing

    monkeypatch.setattr(tracing, "on", lambda: True)
    layer: Any = make_app().wsgi_app
    while hasattr(layer, "app"):
        assert not isinstance(layer, ItemLane)
        layer = layer.app
