"""Real OGC API - Features clients (GDAL's OAPIF driver, OWSLib) against real Gunicorn."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import shapely

from ..conftest import require
from .servers import GunicornServer

NAME = "medium"
BOX = (4.82, 45.74, 4.86, 45.78)


def wait_index(url: str, name: str, timeout: float = 120.0) -> dict[str, Any]:
    return wait_ready(url, name, "index", timeout)


def wait_ready(url: str, name: str, member: str, timeout: float) -> dict[str, Any]:
    """The state of a collection's artifact (``index``, ``tiles``) once it is ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = requests.get(f"{url}/collections/{name}", timeout=10).json()[member]
        if state["status"] == "ready":
            return state  # type: ignore[no-any-return]
        assert state["status"] != "failed", state
        time.sleep(0.2)
    raise TimeoutError(f"the {member} of {name} was not ready within {timeout} s")


@pytest.fixture(scope="module")
def ogc(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    data = tmp_path_factory.mktemp("ogc-data")
    for name in ("small", NAME):
        shutil.copyfile(samples / f"{name}.geojson", data / f"{name}.geojson")
    log = tmp_path_factory.mktemp("logs") / "gunicorn-ogc.log"
    srv = GunicornServer(data, log, workers=2).start()
    try:
        wait_index(srv.url, NAME)
        yield srv
    finally:
        srv.stop()
        assert "Traceback" not in srv.log(), srv.log()


@pytest.fixture(scope="module")
def truth(samples: Path) -> set[int]:
    """Ids of the features that really intersect BOX (Shapely over the whole file)."""
    features = json.loads((samples / f"{NAME}.geojson").read_bytes())["features"]
    area = shapely.box(*BOX)
    return {f["id"] for f in features if shapely.geometry.shape(f["geometry"]).intersects(area)}


def run(*argv: str, timeout: float = 120) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def test_ogrinfo_lists_the_collections(ogc: GunicornServer) -> None:
    out = run(require("ogrinfo"), "-ro", "-q", f"OAPIF:{ogc.url}/")
    assert "small" in out and NAME in out


def test_ogrinfo_layer_summary(ogc: GunicornServer) -> None:
    out = run(require("ogrinfo"), "-ro", "-so", f"OAPIF:{ogc.url}/", NAME)
    count = requests.get(f"{ogc.url}/collections/{NAME}", timeout=10).json()["index"]["features"]
    assert f"Feature Count: {count}" in out
    assert "rank: Integer" in out and "kind: String" in out


def test_ogr2ogr_bbox_pages_through_next(ogc: GunicornServer, truth: set[int],
                                         tmp_path: Path) -> None:
    out = tmp_path / "out.geojson"
    run(require("ogr2ogr"), "-f", "GeoJSON", str(out), f"OAPIF:{ogc.url}/", NAME,
        "-spat", *map(str, BOX), "-oo", "PAGE_SIZE=100", "-preserve_fid")
    got = [f["id"] for f in json.loads(out.read_bytes())["features"]]
    assert len(got) == len(set(got)) and set(got) == truth and len(truth) > 300
    offsets = {line.split("offset=")[1].split()[0].split("&")[0]
               for line in ogc.log().splitlines() if "/items?" in line and "offset=" in line}
    assert len(offsets) >= len(truth) // 100, "GDAL should have followed the next links"


def test_ogr2ogr_attribute_filter(ogc: GunicornServer, tmp_path: Path) -> None:
    out = tmp_path / "roads.geojson"
    run(require("ogr2ogr"), "-f", "GeoJSON", str(out), f"OAPIF:{ogc.url}/", "small",
        "-where", "kind = 'road'")
    features = json.loads(out.read_bytes())["features"]
    assert features and all(f["properties"]["kind"] == "road" for f in features)


def test_owslib(ogc: GunicornServer, truth: set[int]) -> None:
    from owslib.ogcapi.features import Features

    api = Features(ogc.url + "/", timeout=30)
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in \
        api.conformance()["conformsTo"]
    ids = [c["id"] for c in api.collections()["collections"]]
    assert ids == [NAME, "small"]
    page = api.collection_items(NAME, bbox=list(BOX), limit=20)
    assert page["numberReturned"] == 20 and page["numberMatched"] == len(truth)
    assert {f["id"] for f in page["features"]} <= truth
    feature = api.collection_item(NAME, "5")
    assert feature["id"] == 5 and feature["type"] == "Feature"
    queryables = api.collection_queryables(NAME)
    assert queryables["properties"]["rank"]["type"] == "integer"
    clamped = api.collection_items(NAME, limit=20_000)
    assert clamped["numberReturned"] == 10_000


def test_big_page_streams_with_flat_memory(ogc: GunicornServer) -> None:
    from .servers import proc_status

    before = {pid: proc_status(pid, "VmRSS") for pid in ogc.worker_pids()}
    for offset in (0, 10_000):
        with requests.get(f"{ogc.url}/collections/{NAME}/items",
                          params={"limit": 10_000, "offset": offset}, stream=True,
                          timeout=60) as response:
            assert response.status_code == 200
            assert response.headers.get("Transfer-Encoding") == "chunked"
            body = b"".join(response.iter_content(1 << 16))
        assert json.loads(body)["numberReturned"] > 0
    grown = max(proc_status(pid, "VmRSS") - kb for pid, kb in before.items())
    assert grown < 40_000, f"a worker grew by {grown} kB serving 10,000-feature pages"
