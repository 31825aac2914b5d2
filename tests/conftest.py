"""Shared fixtures: fresh settings and app per test, sample data made once."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from geojson_api import create_app, jobs, pipeline
from geojson_api.sample import write_samples
from geojson_api.settings import Settings
from geojson_api.tiles import builder as tiles_builder
from geojson_api.versions import Pointer, Signature

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


_PREPARED: list[Path] = []  # made once per session, before the first test that needs it


def _prepare(directory: Path) -> Path:
    """The samples published with every artifact built (variants, index, tiles)."""
    write_samples(directory)
    catalog = pipeline.open_catalog(Settings(data_dir=directory), background=False)
    assert catalog.prepare_all(lambda _: None) == 0
    for name in ("small", "medium", "large"):
        assert tiles_builder.ready(catalog.current(name).directory), f"no tiles for {name}"
    return directory


def pytest_collection_finish(session: pytest.Session) -> None:
    """Prepare the samples before the first test when a collected test needs them.

    Building the 50 MB sample's artifacts takes minutes of CPU on a busy machine,
    more than one test's timeout: done here, it is outside every test's clock.
    """
    if not any("prepared" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    started = time.monotonic()
    _PREPARED.append(_prepare(Path(tempfile.mkdtemp(prefix="geojson-api-prepared-"))))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"prepared the samples (variants, indexes, tiles) in "
                            f"{time.monotonic() - started:.0f} s: {_PREPARED[0]}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    for directory in _PREPARED:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def prepared() -> Path:
    """The prepared samples: servers over :func:`copy_prepared` copies find every
    artifact ready instead of each building them again (and again in the background
    while other tests run). Read-only: copy it."""
    assert _PREPARED, "pytest_collection_finish prepares the samples for tests that ask"
    return _PREPARED[0]


def copy_prepared(prepared: Path, target: Path, *names: str, tiles: bool = True) -> Path:
    """A private data folder with the prepared samples ``names`` (all by default).

    The state folder comes along, its pointers told the copies' own signatures, so
    a server publishes nothing again. ``tiles=False`` leaves the tiles out (a test
    that watches them being built).
    """
    target.mkdir(parents=True, exist_ok=True)
    names = names or tuple(p.stem for p in sorted(prepared.glob("*.geojson")))
    state, copied = prepared / ".state", target / ".state"
    for name in names:
        shutil.copy2(prepared / f"{name}.geojson", target / f"{name}.geojson")
        shutil.copytree(state / "versions" / name, copied / "versions" / name)
        pointer = Pointer.load(state / "datasets" / f"{name}.json")
        (copied / "datasets").mkdir(parents=True, exist_ok=True)
        moved = dataclasses.replace(pointer, source=Signature.of(
            (target / f"{name}.geojson").stat()))
        (copied / "datasets" / f"{name}.json").write_bytes(moved.dump())
        if not tiles:
            for archive in (copied / "versions" / name).glob(f"*/{tiles_builder.ARCHIVE_FILE}"):
                archive.unlink()
    return target


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
