"""Vector tiles on real servers: Gunicorn alone, and Nginx offloading the tile bytes.

One data folder (the medium sample) is served by the local stack with
``--offload nginx`` (Nginx -> two Gunicorn instances, Redis, the Celery worker
that builds the tiles) and by a plain Gunicorn without offload over the same
state folder, so both answer from the same archive. Tiles offloaded to Nginx
must be the app's bytes with the app's headers.
"""

from __future__ import annotations

import gzip
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mapbox_vector_tile
import pytest
import requests

from ..conftest import copy_prepared, require
from .servers import GunicornServer, nginx_access
from .test_ogc_clients import wait_ready
from .test_stack import RunningStack, running_stack

NAME = "medium"
TILES = f"/collections/{NAME}/tiles/WebMercatorQuad"
COMPARED = ("etag", "content-encoding", "content-type", "cache-control", "vary",
            "last-modified", "content-length", "access-control-allow-origin",
            "access-control-expose-headers")


def wait_tiles(url: str, timeout: float = 300.0) -> dict[str, Any]:
    return wait_ready(url, NAME, "tiles", timeout)


@pytest.fixture(scope="module")
def data(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_prepared(prepared, tmp_path_factory.mktemp("tiles-served"), NAME)


@pytest.fixture(scope="module")
def stack(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with running_stack(data, tmp_path_factory.mktemp("tiles-stack"), "nginx", {}) as found:
        wait_tiles(found.url)
        yield found


@pytest.fixture(scope="module")
def direct(stack: RunningStack, data: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    log = tmp_path_factory.mktemp("tiles-logs") / "gunicorn.log"
    server = GunicornServer(data, log, env={"GEOJSON_API_OFFLOAD": "none"}).start()
    try:
        yield server
    finally:
        server.stop()
    assert "Traceback" not in server.log()


@pytest.fixture(scope="module")
def tiles(direct: GunicornServer) -> list[tuple[int, int, int]]:
    """Tiles with data at the complete zoom and one above, from the tileset's limits."""
    meta = requests.get(direct.url + TILES, timeout=10).json()
    found = []
    for limit in meta["tileMatrixSetLimits"][-2:]:
        z = int(limit["tileMatrix"])
        row = (limit["minTileRow"] + limit["maxTileRow"]) // 2
        col = (limit["minTileCol"] + limit["maxTileCol"]) // 2
        found += [(z, row, col), (z, row + 1, col)]
    return found


def _get(url: str, **headers: str) -> requests.Response:
    headers = {"Origin": "http://127.0.0.1:9", **headers}  # a page of another origin
    with requests.get(url, headers=headers, stream=True, timeout=30) as r:
        r.raw_bytes = r.raw.read(decode_content=False)  # type: ignore[attr-defined]
        return r


def _compared(r: requests.Response) -> dict[str, str | None]:
    return {k: r.headers.get(k) for k in COMPARED}


@pytest.mark.parametrize("encoding", ["gzip", "identity"])
def test_offloaded_tiles_are_the_apps(stack: RunningStack, direct: GunicornServer,
                                      tiles: list[tuple[int, int, int]], encoding: str) -> None:
    for z, row, col in tiles:
        path = f"{TILES}/{z}/{row}/{col}"
        app = _get(direct.url + path, **{"Accept-Encoding": encoding})
        nginx = _get(stack.url + path, **{"Accept-Encoding": encoding})
        assert app.status_code == nginx.status_code == 200, (path, nginx.text[:200])
        assert nginx.raw_bytes == app.raw_bytes  # type: ignore[attr-defined]
        assert _compared(nginx) == _compared(app), path
        assert nginx.headers["Access-Control-Allow-Origin"] == "*"
        assert nginx.headers.get("Content-Encoding") == (
            "gzip" if encoding == "gzip" else None)
        again = _get(stack.url + path, **{"Accept-Encoding": encoding,
                                          "If-None-Match": app.headers["ETag"]})
        assert again.status_code == 304


def test_offload_really_offloads_tiles(stack: RunningStack, tiles: list[tuple[int, int, int]]
                                       ) -> None:
    z, row, col = tiles[-1]
    path = f"{TILES}/{z}/{row}/{col}"
    r = _get(stack.url + path, **{"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    # The app answered first, then Nginx's tile-range server sent the bytes.
    entries = nginx_access(stack.run_dir, lambda e: path in e["path"]
                           and e["upstream"].rstrip().endswith("tiles.sock"))
    entry = entries[-1]
    assert entry["upstream"].startswith("127.0.0.1:") and entry["status"] == 200, entry


def test_tile_errors_through_nginx_are_json(stack: RunningStack) -> None:
    for path, status in (("/-1/0/0", 400), ("/25/0/0", 400), ("/15/0/0", 404)):
        r = requests.get(stack.url + TILES + path, timeout=10)
        assert r.status_code == status and r.json()["code"] in ("invalid-tile", "tile-not-found")


def test_the_archive_by_range_through_nginx(stack: RunningStack, direct: GunicornServer
                                            ) -> None:
    whole = _get(direct.url + TILES + ".pmtiles")
    part = _get(stack.url + TILES + ".pmtiles", Range="bytes=100-4195")
    assert part.status_code == 206
    assert part.raw_bytes == whole.raw_bytes[100:4196]  # type: ignore[attr-defined]
    size = len(whole.raw_bytes)  # type: ignore[attr-defined]
    assert part.headers["Content-Range"] == f"bytes 100-4195/{size}"
    assert part.headers["ETag"] == whole.headers["ETag"]


def test_gdal_mvt_driver_reads_a_downloaded_tile(direct: GunicornServer,
                                                 tiles: list[tuple[int, int, int]],
                                                 tmp_path: Path) -> None:
    z, row, col = tiles[0]
    r = _get(f"{direct.url}{TILES}/{z}/{row}/{col}", **{"Accept-Encoding": "gzip"})
    raw = gzip.decompress(r.raw_bytes)  # type: ignore[attr-defined]
    (tmp_path / "tile.mvt").write_bytes(raw)
    out = subprocess.run([require("ogrinfo"), "-ro", "-al", "-q", str(tmp_path / "tile.mvt"),
                          "-oo", f"Z={z}", "-oo", f"X={col}", "-oo", f"Y={row}"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    decoded = mapbox_vector_tile.decode(raw)[NAME]["features"]
    gdal_ids = {int(line.split("=")[1]) for line in out.splitlines()
                if line.strip().startswith("mvt_id (")}
    assert gdal_ids == {f["id"] for f in decoded} and len(gdal_ids) > 10
    assert "POLYGON" in out or "LINESTRING" in out
