"""Vector tiles against the truth: decoded with a real decoder, compared with the source.

One dataset made by the sample generator (about 2,000 features around Lyon)
is published and tiled once per module with the settings the service ships
(``builder.OPTIONS``, ``tiles_max_zoom``'s default). Hypothesis then draws
tiles over the extent at the complete zoom; each is fetched through the app,
decoded with ``mapbox-vector-tile`` and checked against Shapely on the
source file: the feature ids, the geometries (within one tile pixel) and the
property values.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mapbox_vector_tile
import orjson
import pytest
import shapely
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import shape

from geojson_api import create_app, jobs
from geojson_api.sample import generate
from geojson_api.settings import Settings
from geojson_api.tiles import builder, grid, mvt
from geojson_api.tiles.archive import Archive

from ..conftest import BufferedClient

NAME = "lyon"
TILES = f"/collections/{NAME}/tiles/WebMercatorQuad"
EXTENT = 4096  # tippecanoe's detail at the maximum zoom (-d12)
PIXEL = EXTENT / grid.TILE_PIXELS  # one pixel of a 256-pixel tile, in tile units


def _app(data: Path, **overrides: Any) -> Flask:
    values: dict[str, Any] = {"data_dir": data, "settle_seconds": 0.0, **overrides}
    app = create_app(Settings(**values))
    app.test_client_class = BufferedClient
    return app


@pytest.fixture(scope="module")
def tiled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    data = tmp_path_factory.mktemp("tiles-data")
    (data / f"{NAME}.geojson").write_bytes(b"".join(generate(NAME, 1_000_000)))
    app = _app(data)
    app.extensions["catalog"].prepare(NAME)  # publishes and builds every artifact, tiles too
    yield app
    jobs.wait_idle(60)


@pytest.fixture(scope="module")
def source(tiled: Flask) -> dict[int, dict[str, Any]]:
    data = Path(tiled.config["SETTINGS"].data_dir) / f"{NAME}.geojson"
    return {f["id"]: f for f in orjson.loads(data.read_bytes())["features"]}


@pytest.fixture(scope="module")
def shapes(source: dict[int, dict[str, Any]]) -> tuple[list[int], shapely.STRtree, list[Any]]:
    ids = [fid for fid, f in source.items() if f["geometry"]]
    geoms = [shape(source[fid]["geometry"]) for fid in ids]
    return ids, shapely.STRtree(geoms), geoms


@pytest.fixture(scope="module")
def tileset(tiled: Flask) -> dict[str, Any]:
    doc = tiled.test_client().get(TILES).json
    assert doc["tiles"]["status"] == "ready"
    return doc  # type: ignore[no-any-return]


def _decode(client: FlaskClient, tile: grid.Tile) -> dict[str, Any]:
    r = client.get(f"{TILES}/{tile.z}/{tile.row}/{tile.col}",
                   headers={"Accept-Encoding": "identity"})
    assert r.status_code in (200, 204), r.data[:200]
    if r.status_code == 204:
        return {}
    layers = mapbox_vector_tile.decode(r.data)
    return {f["id"]: f for f in layers[NAME]["features"]} if layers else {}


def _mercator_box(tile: grid.Tile, grow: float) -> Any:
    """The tile's square in fractional tile coordinates of its zoom, grown by ``grow`` units."""
    margin = grow / EXTENT
    return shapely.box(tile.col - margin, tile.row - margin, tile.col + 1 + margin,
                       tile.row + 1 + margin)


def _to_tile_space(geom: Any, z: int) -> Any:
    """A lon/lat geometry in fractional (col, row) coordinates of zoom ``z``."""
    return shapely.transform(geom, lambda xy: [_xy(x, y, z) for x, y in xy])


def _xy(lon: float, lat: float, z: int) -> tuple[float, float]:
    return grid.position(lon, lat, z)


def _touching(shapes: tuple[list[int], shapely.STRtree, list[Any]], tile: grid.Tile,
              grow: float) -> set[int]:
    ids, tree, geoms = shapes
    west, south, east, north = tile.bounds()
    candidates = tree.query(shapely.box(west - 0.01, south - 0.01, east + 0.01, north + 0.01))
    box = _mercator_box(tile, grow)
    return {ids[i] for i in candidates if _to_tile_space(geoms[i], tile.z).intersects(box)}


def _random_tile(tileset: dict[str, Any]) -> st.SearchStrategy[grid.Tile]:
    complete = tileset["completeTileMatrix"]
    limit = next(x for x in tileset["tileMatrixSetLimits"] if x["tileMatrix"] == complete)
    return st.builds(grid.Tile, st.just(int(complete)),
                     st.integers(limit["minTileRow"], limit["maxTileRow"]),
                     st.integers(limit["minTileCol"], limit["maxTileCol"]))


def test_the_build_says_which_zoom_is_complete(tileset: dict[str, Any]) -> None:
    assert tileset["completeTileMatrix"] == tileset["maxTileMatrix"] == "14"
    assert tileset["overzoom"]["by"] == "client" and tileset["overzoom"]["from"] == "15"
    assert tileset["featureIds"]["mapping"] == "itemId"


def test_every_zoom_below_complete_stays_under_500_kb(tiled: Flask) -> None:
    directory = tiled.extensions["catalog"].current(NAME).directory
    recorded = builder.info(directory)
    assert all(z["largestTile"] < 500_000 for z in recorded["zooms"].values())
    counted = recorded["zooms"][str(recorded["completeZoom"])]["features"]
    assert counted == recorded["features"] > 1000


def test_our_id_reader_agrees_with_a_real_decoder(tiled: Flask) -> None:
    archive = Archive(tiled.extensions["catalog"].current(NAME).directory
                      / builder.ARCHIVE_FILE)
    with open(archive.path, "rb") as f:
        for (_, _, _), where in list(archive.entries())[::7]:
            f.seek(where.offset)
            raw = gzip.decompress(f.read(where.length))
            decoded = mapbox_vector_tile.decode(raw)
            ids = {feat["id"] for layer in decoded.values() for feat in layer["features"]}
            assert mvt.feature_ids(raw) == ids


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_tiles_hold_exactly_the_features_that_touch_them(
        tiled: Flask, tileset: dict[str, Any], source: dict[int, dict[str, Any]],
        shapes: tuple[list[int], shapely.STRtree, list[Any]], data: st.DataObject) -> None:
    tile = data.draw(_random_tile(tileset))
    got = _decode(tiled.test_client(), tile)
    # A feature that touches the square is in the tile; one in the tile touches it; both up
    # to one tile pixel, where the tile's 4096 grid rounds positions.
    assert _touching(shapes, tile, -PIXEL) <= set(got) <= _touching(shapes, tile, PIXEL)
    for fid, feature in got.items():
        _check_geometry(source[fid]["geometry"], feature["geometry"], tile)
        _check_properties(source[fid]["properties"], feature["properties"])


def _check_geometry(original: dict[str, Any], decoded: dict[str, Any], tile: grid.Tile) -> None:
    """The decoded geometry lies within one pixel of the source clipped to the tile."""
    expected = shapely.clip_by_rect(_to_tile_space(shape(original), tile.z), tile.col,
                                    tile.row, tile.col + 1, tile.row + 1)
    units = shapely.transform(shape(decoded), lambda xy: [
        (tile.col + x / EXTENT, tile.row + 1 - y / EXTENT) for x, y in xy])
    if expected.is_empty:  # touches the square's edge only: within a pixel of it
        assert units.distance(_mercator_box(tile, 0).boundary) <= PIXEL / EXTENT
        return
    distance = shapely.hausdorff_distance(units.boundary if units.area else units,
                                          expected.boundary if expected.area else expected)
    assert distance * EXTENT <= PIXEL + 1, (distance * EXTENT, original["type"])


def _check_properties(original: dict[str, Any], decoded: dict[str, Any]) -> None:
    for key, value in original.items():
        if value is None:
            assert key not in decoded  # MVT has no null
        elif isinstance(value, float):
            assert math.isclose(decoded[key], value, rel_tol=1e-9)
        else:
            assert decoded[key] == value


def test_a_version_folder_gone_midway_is_no_failure(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """The state folder deleted under a build: logged as a disk problem, nothing recorded,
    nothing raised (the build is asked for again once the version is back)."""
    from geojson_api.tiles import builder

    gone = tmp_path / "versions" / "roads" / "0123456789abcdef"
    builder.ensure(gone, gone / "index.sqlite", "roads", 14, None)
    assert not gone.exists() and "Traceback" not in caplog.text
    assert "not built" in caplog.text


def test_an_index_damaged_under_the_export_is_no_failure(samples: Path, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    """The index truncated while the tiles are exported from it (sqlite3 says "database
    disk image is malformed"): logged in one line, no tiles.failed.json, nothing raised;
    the index's readers quarantine it, and the tiles are built from the new one."""
    from geojson_api.features import sqlite_index
    from geojson_api.scan import scan

    source = samples / "medium.geojson"
    version = tmp_path / "versions" / "medium" / "0123456789abcdef"
    version.mkdir(parents=True)
    index = version / sqlite_index.INDEX_FILE
    sqlite_index.build(source, index, scan(source).as_dict())
    with open(index, "r+b") as handle:
        handle.truncate(index.stat().st_size // 3)
    builder.ensure(version, index, "medium", 14, None)
    assert not (version / builder.FAILED_FILE).exists()
    assert "Traceback" not in caplog.text and "not built, will retry" in caplog.text


def test_tippecanoe_losing_its_files_is_a_disk_problem(tmp_path: Path) -> None:
    """Its input deleted under it (the state folder deleted, then made again): OSError,
    so the build is asked for again rather than recorded as failed."""
    from geojson_api.tiles import builder

    with pytest.raises(OSError, match="No such file"):
        builder.run_tippecanoe(tmp_path / "gone.geojsonl", tmp_path / "out.pmtiles", "roads",
                               14, tmp_path)
