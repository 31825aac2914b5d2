"""GDAL's OGCAPI driver reads a collection's vector tiles from a real Gunicorn.

GDAL 3.6's OGCAPI driver cannot (its vector-tile code is not compiled in: see
docs/tiles.md, "GDAL"), so the client is the GDAL that pyogrio's wheel bundles (3.7.1 or
later), run in a subprocess (``gdal_ogcapi_read.py``) so a hung read is bounded. What
GDAL reads at the complete zoom is checked against our own items endpoint.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ..conftest import copy_prepared, require_module
from .servers import GunicornServer
from .test_ogc_clients import wait_ready

NAME = "medium"
R = 6378137.0
PIXEL = 2 * math.pi * R / 256  # metres per pixel of a 256-pixel tile at zoom 0
READER = Path(__file__).with_name("gdal_ogcapi_read.py")

Box = tuple[float, float, float, float]


def to_mercator(box: Box) -> Box:
    def y(lat: float) -> float:
        return R * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))
    return R * math.radians(box[0]), y(box[1]), R * math.radians(box[2]), y(box[3])


def to_lonlat(box: Box) -> Box:
    def lat(y: float) -> float:
        return math.degrees(2 * math.atan(math.exp(y / R)) - math.pi / 2)
    return math.degrees(box[0] / R), lat(box[1]), math.degrees(box[2] / R), lat(box[3])


def grown(box: Box, by: float) -> Box:
    return box[0] - by, box[1] - by, box[2] + by, box[3] + by


@pytest.fixture(scope="module")
def server(prepared: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[GunicornServer]:
    require_module("pyogrio")
    data = copy_prepared(prepared, tmp_path_factory.mktemp("tiles-gdal"), NAME)
    log = tmp_path_factory.mktemp("tiles-gdal-logs") / "gunicorn.log"
    srv = GunicornServer(data, log, env={"GEOJSON_API_OFFLOAD": "none"}).start()
    try:
        wait_ready(srv.url, NAME, "tiles", 300.0)
        yield srv
    finally:
        srv.stop()
    assert "Traceback" not in srv.log()


def item_ids(url: str, bbox: Box) -> set[int]:
    """Every feature id our items endpoint returns for a CRS84 bbox, following ``next``."""
    found: set[int] = set()
    page: str | None = (f"{url}/collections/{NAME}/items?limit=1000&bbox="
                        + ",".join(f"{v:.9f}" for v in bbox))
    while page:
        body = requests.get(page, timeout=30).json()
        found |= {f["id"] for f in body["features"]}
        page = next((ln["href"] for ln in body["links"] if ln["rel"] == "next"), None)
    return found


def read_with_gdal(url: str, matrix: str, area: Box, extent: Box) -> dict[str, Any]:
    options = dict(zip(("MINX", "MINY", "MAXX", "MAXY"), extent, strict=True))
    argv = [sys.executable, str(READER), url, matrix, ",".join(repr(v) for v in area),
            *(f"{k}={v!r}" for k, v in options.items())]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_gdal_ogcapi_driver_reads_the_tiles(server: GunicornServer) -> None:
    collection = requests.get(f"{server.url}/collections/{NAME}", timeout=10).json()
    meta = requests.get(f"{server.url}/collections/{NAME}/tiles/WebMercatorQuad",
                        timeout=10).json()
    assert meta["featureIds"]["mapping"] == "itemId"
    complete = int(meta["completeTileMatrix"])
    extent = to_mercator(tuple(collection["extent"]["spatial"]["bbox"][0]))
    # a few tiles near the middle of the data, not aligned with tile edges
    cx, cy = (extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2
    tile = PIXEL * 256 / 2 ** complete
    area = (cx - 0.7 * tile, cy - 0.4 * tile, cx + 0.9 * tile, cy + 0.8 * tile)

    found = read_with_gdal(f"{server.url}/collections/{NAME}", str(complete), area, extent)

    zooms = range(int(meta["minTileMatrix"]), int(meta["maxTileMatrix"]) + 1)
    assert found["layers"] == [f"Zoom level {z}" for z in zooms], found["gdal"]
    assert found["crs"] == "EPSG:3857"
    properties = meta["layers"][0]["propertiesSchema"]["properties"]
    assert found["fields"][0] == "mvt_id" and set(found["fields"][1:]) == set(properties)
    assert found["extent"] == pytest.approx(list(extent))
    # every feature with a geometry is in the complete zoom, some in several tiles
    everything = item_ids(server.url, tuple(collection["extent"]["spatial"]["bbox"][0]))
    assert set(found["all_ids"]) == everything
    assert found["features"] >= len(everything) == meta["tiles"]["features"]
    # in the area: what the items endpoint finds, up to two tile pixels at its edges
    # (tile coordinates are rounded to the pixel grid)
    edge = 2 * PIXEL / 2 ** complete
    inner = item_ids(server.url, to_lonlat(grown(area, -edge)))
    outer = item_ids(server.url, to_lonlat(grown(area, edge)))
    assert len(inner) > 20
    assert inner <= set(found["area_ids"]) <= outer
