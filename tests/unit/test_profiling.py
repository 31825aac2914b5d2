"""GEOJSON_API_PROFILE_DIR: one cProfile file per request, the fast lane included."""

from __future__ import annotations

import pstats
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import EnvironBuilder
from werkzeug.wsgi import FileWrapper

from geojson_api import cors, logs
from geojson_api.cli import main
from geojson_api.delivery import FastLane
from geojson_api.features.lane import ItemLane
from geojson_api.metrics.wsgi import RequestMetrics
from geojson_api.profiling import RequestProfiler, profiles, summary
from geojson_api.settings import Settings

from ..conftest import ROADS


def functions(path: Path) -> set[str]:
    """'file:function' of every function a profile saw."""
    stats = pstats.Stats(str(path))
    return {f"{Path(file).name}:{name}" for file, _, name in stats.stats}  # type: ignore[attr-defined]


@pytest.fixture
def profiled(make_app: Callable[..., Flask], tmp_path: Path) -> tuple[Flask, Path]:
    directory = tmp_path / "profiles"
    return make_app(profile_dir=directory), directory


def test_off_unless_set(app: Flask) -> None:
    assert isinstance(app.wsgi_app, RequestMetrics)  # the metrics layer, outermost
    assert isinstance(app.wsgi_app.app, logs.RequestIds)  # request ids, around CORS
    assert isinstance(app.wsgi_app.app.app, cors.Middleware)
    assert isinstance(app.wsgi_app.app.app.app, ItemLane)  # a feature by id
    assert isinstance(app.wsgi_app.app.app.app.app, FastLane)
    assert Settings.from_env({"GEOJSON_API_PROFILE_DIR": ""}).profile_dir is None
    assert Settings.from_env({"GEOJSON_API_PROFILE_DIR": "/tmp/p"}).profile_dir == Path("/tmp/p")


def test_a_download_is_profiled_through_the_fast_lane(profiled: tuple[Flask, Path]) -> None:
    app, directory = profiled
    response = app.test_client().get("/geojson/roads")
    assert response.status_code == 200 and response.data == ROADS
    (profile,) = profiles(directory, "GET.geojson.roads")
    assert {"delivery.py:__call__", "delivery.py:reply"} <= functions(profile)
    assert "app.py:full_dispatch_request" not in functions(profile)  # Flask never ran


def test_flask_routes_are_profiled_too(profiled: tuple[Flask, Path]) -> None:
    app, directory = profiled
    assert app.test_client().get("/api/datasets").status_code == 200
    (profile,) = profiles(directory, "GET.api.datasets")
    assert "app.py:full_dispatch_request" in functions(profile)
    assert profile.name.endswith("ms.prof")


def test_a_body_the_server_sends_itself_is_passed_through(
        make_app: Callable[..., Flask], tmp_path: Path) -> None:
    directory = tmp_path / "profiles"
    app = make_app(profile_dir=directory, small_file_bytes=0)  # the file is opened, not cached
    environ = EnvironBuilder(path="/geojson/roads").get_environ()
    environ["wsgi.file_wrapper"] = FileWrapper  # what Gunicorn turns into sendfile(2)
    statuses: list[str] = []
    body = app.wsgi_app(environ, lambda status, headers: statuses.append(status))
    try:
        assert isinstance(body, FileWrapper) and statuses == ["200 OK"]
        assert len(profiles(directory)) == 1  # written at once: nothing left to profile
    finally:
        body.close()  # type: ignore[attr-defined]


def test_other_bodies_are_profiled_until_closed(tmp_path: Path) -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Any:
            yield from (b"a", b"b")

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Body:
        start_response("200 OK", [])
        return Body()

    middleware = RequestProfiler(app, tmp_path)
    body = middleware(EnvironBuilder(path="/x").get_environ(), lambda *_: None)
    assert profiles(tmp_path) == []
    assert b"".join(body) == b"ab" and closed == [True]
    (profile,) = profiles(tmp_path, "GET.x.")
    assert "test_profiling.py:close" in functions(profile)


def test_summary_and_command(profiled: tuple[Flask, Path],
                             capsys: pytest.CaptureFixture[str]) -> None:
    app, directory = profiled
    client = app.test_client()
    for _ in range(3):
        assert client.get("/geojson/roads").status_code == 200
    text = summary(profiles(directory, "GET.geojson.roads"), limit=5)
    assert text.startswith("3 requests, ") and "per request inside the WSGI app" in text
    assert main(["profile", str(directory), "--match", "GET.geojson.roads", "--limit", "3"]) == 0
    assert "3 requests" in capsys.readouterr().out
    assert main(["profile", str(directory), "--match", "nothing-like-this"]) == 1
