"""The same app under a real uWSGI: stored files go out with uWSGI's own sendfile, and
every file answer (whole, variants, ranges, tiles, the tile archive) is byte for byte
and header for header the one Gunicorn gives (geojson_api.filebody says why this needs
care: uWSGI sends only the very object its file wrapper returned, from offset 0)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ..conftest import copy_prepared, require
from .servers import GunicornServer, Process, children, free_port, proc_io, wait_http
from .test_gunicorn import wait_until_no_build
from .test_ogc_clients import wait_ready

TIMEOUT = 60
TILES = "/collections/medium/tiles/WebMercatorQuad"
COMPARED = ("etag", "content-type", "content-length", "content-range", "content-encoding",
            "cache-control", "vary", "last-modified", "accept-ranges",
            "access-control-allow-origin", "access-control-expose-headers")


def uwsgi_program() -> str:
    """uWSGI of this environment (the test extra installs it), else the one on PATH."""
    beside = Path(sys.executable).with_name("uwsgi")
    return str(beside) if beside.exists() else require("uwsgi")


class UwsgiServer(Process):
    port: int
    url: str
    data_dir: Path

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        return children(self.proc.pid)


@pytest.fixture(scope="module")
def data(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_prepared(prepared, tmp_path_factory.mktemp("uwsgi-served"), "medium", "large")


@pytest.fixture(scope="module")
def uwsgi(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UwsgiServer]:
    port = free_port()
    argv = [uwsgi_program(), "--master", "--http11-socket", f"127.0.0.1:{port}",
            "--processes", "2", "--threads", "4", "--lazy-apps", "--single-interpreter",
            "--need-app", "--die-on-term", "--disable-logging",
            "--module", "geojson_api.wsgi:app"]
    env = {"GEOJSON_API_DATA_DIR": str(data), "GEOJSON_API_SETTLE_SECONDS": "0",
           "GEOJSON_API_METRICS": "false"}  # its worker folder is Gunicorn's hooks' job
    server = UwsgiServer(argv, tmp_path_factory.mktemp("uwsgi-logs") / "uwsgi.log", env)
    server.port, server.url, server.data_dir = port, f"http://127.0.0.1:{port}", data
    server.start()
    try:
        wait_http(server.url + "/readyz", proc=server.proc)
        wait_ready(server.url, "medium", "tiles", 300)
        yield server
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()


@pytest.fixture(scope="module")
def gunicorn(uwsgi: UwsgiServer, data: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    log = tmp_path_factory.mktemp("uwsgi-logs") / "gunicorn.log"
    server = GunicornServer(data, log).start()
    try:
        yield server
    finally:
        server.stop()


def test_whole_files_go_out_with_uwsgis_sendfile(uwsgi: UwsgiServer) -> None:
    """50 MB with a handful of read calls: the body was not iterated in Python."""
    wait_until_no_build(uwsgi.data_dir)  # a build's reads would count
    before = {pid: proc_io(pid) for pid in uwsgi.worker_pids()}
    r = requests.get(f"{uwsgi.url}/geojson/large", headers={"Accept-Encoding": "identity"},
                     timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.content == (uwsgi.data_dir / "large.geojson").read_bytes()
    after = {pid: proc_io(pid) for pid in uwsgi.worker_pids()}
    reads = sum(after[p]["syscr"] - before[p]["syscr"] for p in after)
    writes = sum(after[p]["syscw"] - before[p]["syscw"] for p in after)
    # Iterated, the body is one write per GeoJSON line (about 100,000 here).
    assert reads < 100 and writes < 100, (reads, writes)


def _tile_path(gunicorn: GunicornServer) -> str:
    """A tile with data at the complete zoom, from the tileset's limits."""
    meta = requests.get(gunicorn.url + TILES, timeout=10).json()
    limit = meta["tileMatrixSetLimits"][-1]
    row = (limit["minTileRow"] + limit["maxTileRow"]) // 2
    col = (limit["minTileCol"] + limit["maxTileCol"]) // 2
    return f"{TILES}/{limit['tileMatrix']}/{row}/{col}"


CASES = [
    ("/geojson/medium", {"Accept-Encoding": "identity"}),
    ("/geojson/medium", {"Accept-Encoding": "gzip"}),
    ("/geojson/medium", {"Accept-Encoding": "br"}),
    ("/geojson/medium", {"Accept-Encoding": "identity", "Range": "bytes=1000-1999"}),
    ("/geojson/medium", {"Accept-Encoding": "identity", "Range": "bytes=-500"}),
    ("/geojson/medium", {"Accept-Encoding": "gzip", "Range": "bytes=0-99"}),
    ("/geojson/medium", {"Accept-Encoding": "identity", "Range": "bytes=4999000-"}),
    (TILES + ".pmtiles", {"Range": "bytes=100-4195"}),
    (TILES + ".pmtiles", {}),
]


def _get(url: str, headers: dict[str, str]) -> requests.Response:
    with requests.get(url, headers={"Origin": "http://127.0.0.1:9", **headers}, stream=True,
                      timeout=TIMEOUT) as r:
        r.raw_bytes = r.raw.read(decode_content=False)  # type: ignore[attr-defined]
        return r


@pytest.mark.parametrize("path, headers", CASES, ids=[
    "identity", "gzip", "br", "range", "suffix-range", "gzip-range", "open-range",
    "archive-range", "archive"])
def test_file_answers_are_gunicorns(uwsgi: UwsgiServer, gunicorn: GunicornServer, path: str,
                                    headers: dict[str, str]) -> None:
    ours, theirs = _get(uwsgi.url + path, headers), _get(gunicorn.url + path, headers)
    assert ours.status_code == theirs.status_code and ours.status_code in (200, 206)
    assert {k: ours.headers.get(k) for k in COMPARED} == {
        k: theirs.headers.get(k) for k in COMPARED}
    assert ours.raw_bytes == theirs.raw_bytes  # type: ignore[attr-defined]
    assert len(ours.raw_bytes) == int(ours.headers["Content-Length"])  # type: ignore[attr-defined]


@pytest.mark.parametrize("encoding", ["gzip", "identity"])
def test_tiles_are_gunicorns(uwsgi: UwsgiServer, gunicorn: GunicornServer,
                             encoding: str) -> None:
    """A tile is a part of the archive: under uWSGI it is read, not sent from offset 0."""
    path = _tile_path(gunicorn)
    ours = _get(uwsgi.url + path, {"Accept-Encoding": encoding})
    theirs = _get(gunicorn.url + path, {"Accept-Encoding": encoding})
    assert ours.status_code == theirs.status_code == 200
    assert ours.raw_bytes == theirs.raw_bytes  # type: ignore[attr-defined]
    assert {k: ours.headers.get(k) for k in COMPARED} == {
        k: theirs.headers.get(k) for k in COMPARED}

