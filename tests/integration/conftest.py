"""Integration fixtures: a data folder of real samples and Gunicorn servers over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import copy_prepared
from .servers import GunicornServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served_data(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the prepared samples, artifacts built (tests may publish new
    versions into it)."""
    return copy_prepared(prepared, tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="module", params=["gthread", "gevent"])
def server(request: pytest.FixtureRequest, served_data: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    log = tmp_path_factory.mktemp("logs") / f"gunicorn-{request.param}.log"
    srv = GunicornServer(served_data, log, worker_class=request.param).start()
    try:
        yield srv
    finally:
        srv.stop()
        errors = [line for line in srv.log().splitlines() if "Traceback" in line]
        assert not errors, srv.log()
