"""Shared fixtures: fresh settings and app per test, sample data made once."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from geojson_api import create_app, jobs
from geojson_api.sample import write_samples
from geojson_api.settings import Settings

IN_CI = os.environ.get("CI", "").lower() == "true"

ROADS = (
    b'{"type":"FeatureCollection","features":[\n'
    b'{"type":"Feature","id":1,"geometry":{"type":"LineString","coordinates":'
    b'[[4.8,45.7],[4.9,45.8]]},"properties":{"name":"A","lanes":2}},\n'
    b'{"type":"Feature","id":2,"geometry":{"type":"Point","coordinates":[5.0,45.75]},'
    b'"properties":{"name":"B","lanes":2.5}},\n'
    b'{"type":"Feature","id":3,"geometry":null,"properties":{"name":"C","lanes":null}}\n'
    b"]}\n"
)


def require(tool: str) -> str:
    """Path of an outside program; skip without it, but fail under CI=true."""
    found = shutil.which(tool)
    if found is None:
        message = f"{tool} is not installed"
        if IN_CI:
            pytest.fail(message + " (CI must install it: see .ci/run)")
        pytest.skip(message)
    return found


def require_module(name: str) -> None:
    """Like ``require`` for a Python package (e.g. the bench extra's locust)."""
    if importlib.util.find_spec(name) is None:
        message = f"Python package {name} is not installed"
        if IN_CI:
            pytest.fail(message + " (CI installs the test extra: see pyproject.toml)")
        pytest.skip(message)


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """small/medium/large sample files, written once per test session (read-only use)."""
    directory = tmp_path_factory.mktemp("samples")
    write_samples(directory)
    return directory


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data folder with one small dataset, roads, padded to be worth compressing."""
    directory = tmp_path / "data"
    directory.mkdir()
    (directory / "roads.geojson").write_bytes(ROADS)
    return directory


class BufferedClient(FlaskClient):
    """A test client that reads and closes every response body (no leaked file handles)."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


@pytest.fixture
def make_app(data_dir: Path) -> Iterator[Callable[..., Flask]]:
    """Build an app over ``data_dir`` with settings overrides; waits for background jobs."""

    def build(**overrides: Any) -> Flask:
        # No vector tiles unless a test asks (tiles=True): each build runs tippecanoe,
        # which would add a second to most tests for nothing they check.
        values: dict[str, Any] = {"data_dir": data_dir, "compress_min_bytes": 1,
                                  "settle_seconds": 0.0, "tiles": False}
        values.update(overrides)
        app = create_app(Settings(**values))
        app.test_client_class = BufferedClient
        return app

    yield build
    jobs.wait_idle(30)


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
