"""A new process opens the built feature indexes before its first request (warm_up)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from geojson_api import jobs, warm_up
from geojson_api.features import sqlite_index
from geojson_api.features.indexes import Indexes


@pytest.fixture
def published(make_app: Callable[..., Flask], data_dir: Path, samples: Path) -> Path:
    """small and roads published, their indexes built by a first app; returns small's
    index file."""
    shutil.copy(samples / "small.geojson", data_dir / "small.geojson")
    client = make_app().test_client()
    for name in ("roads", "small"):
        assert client.get(f"/collections/{name}/items?limit=1").status_code in (200, 503)
    assert jobs.wait_idle(60)
    index = next(data_dir.glob(f".state/versions/small/*/{sqlite_index.INDEX_FILE}"))
    return index


def indexes(app: Flask) -> Indexes:
    return app.extensions["feature_indexes"]  # type: ignore[no-any-return]


def open_count(app: Flask) -> int:
    return sum(len(v) for v in indexes(app)._open.values())


def test_every_built_index_is_opened(make_app: Callable[..., Flask], published: Path) -> None:
    fresh = make_app()  # a new process: nothing open yet
    assert open_count(fresh) == 0
    ticks: list[int] = []
    assert indexes(fresh).open_built(lambda: ticks.append(1)) == 2
    assert open_count(fresh) == 2 and len(ticks) == 2


def test_a_missing_index_is_left_to_its_first_query(make_app: Callable[..., Flask],
                                                    published: Path) -> None:
    published.unlink()
    fresh = make_app()
    assert indexes(fresh).open_built() == 1  # roads only
    assert jobs.wait_idle(60)
    assert not published.exists()  # nothing was built for small


def test_an_outdated_index_is_left_to_its_first_query(make_app: Callable[..., Flask],
                                                      published: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_index, "outdated", lambda directory: True)
    fresh = make_app()
    assert indexes(fresh).open_built() == 0 and open_count(fresh) == 0


def test_a_damaged_index_is_not_opened_and_is_asked_for_again(
        make_app: Callable[..., Flask], published: Path) -> None:
    published.write_bytes(published.read_bytes()[:4096])  # truncated
    fresh = make_app()
    assert indexes(fresh).open_built() == 1
    assert jobs.wait_idle(60)
    assert sqlite_index.open_problem(published.parent) is None  # built again


def test_warm_up_logs_and_survives_a_failure(make_app: Callable[..., Flask], published: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    fresh = make_app()
    with caplog.at_level(logging.INFO, logger="geojson_api"):
        warm_up(fresh)
    assert "warm-up: 2 feature index(es) open" in caplog.text

    def broken(tick: object) -> int:
        raise OSError("the state folder is gone")

    monkeypatch.setattr(indexes(fresh), "open_built", broken)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="geojson_api"):
        warm_up(fresh)  # does not raise
    assert "the feature indexes were not opened" in caplog.text
