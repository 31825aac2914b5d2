"""The tiles endpoints through the app: documents, errors, representations, versions."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mapbox_vector_tile
import pytest
from flask import Flask
from flask.testing import FlaskClient

from geojson_api import jobs
from geojson_api.tiles import builder, grid

TILES = "/collections/roads/tiles/WebMercatorQuad"
# The roads' line (4.8,45.7)-(4.9,45.8) and point (5.0,45.75), at zoom 14:
LINE_TILE = grid.Tile(14, *reversed(tuple(int(v) for v in grid.position(4.85, 45.75, 14))))
POINT_TILE = grid.Tile(14, *reversed(tuple(int(v) for v in grid.position(5.0, 45.75, 14))))


def _url(tile: grid.Tile) -> str:
    return f"{TILES}/{tile.z}/{tile.row}/{tile.col}"


def _prepared(make_app: Callable[..., Flask], **overrides: Any) -> Flask:
    app = make_app(**{"tiles": True, **overrides})
    app.extensions["catalog"].prepare("roads")
    return app


@pytest.fixture
def tiled(make_app: Callable[..., Flask]) -> FlaskClient:
    return _prepared(make_app).test_client()


def test_tiles_while_building_answer_503_with_retry_after(
        make_app: Callable[..., Flask]) -> None:
    client = make_app(tiles=True).test_client()
    r = client.get(_url(LINE_TILE))
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    assert r.json["code"] == "tiles-not-ready" and "queued" in r.json["description"]
    state = client.get("/collections/roads").json["tiles"]["status"]
    assert state in ("queued", "building", "ready")
    jobs.wait_idle(60)
    assert client.get(_url(LINE_TILE)).status_code == 200
    assert client.get("/collections/roads").json["tiles"]["status"] == "ready"


@pytest.mark.parametrize(("path", "status", "code"), [
    ("/-1/0/0", 400, "invalid-tile"), ("/1/-1/0", 400, "invalid-tile"),
    ("/a/0/0", 400, "invalid-tile"), ("/1/0/1.5", 400, "invalid-tile"),
    ("/01/0/0", 400, "invalid-tile"), ("/99999999999999999999/0/0", 400, "invalid-tile"),
    ("/25/0/0", 400, "invalid-tile"), ("/3/8/0", 400, "invalid-tile"),
    ("/3/0/8", 400, "invalid-tile"), ("/0/0/0x1", 400, "invalid-tile"),
    ("/15/0/0", 404, "tile-not-found"), ("/14/0/0", 404, "tile-not-found"),
])
def test_bad_tile_indices(tiled: FlaskClient, path: str, status: int, code: str) -> None:
    r = tiled.get(TILES + path)
    assert (r.status_code, r.json["code"]) == (status, code), r.json
    assert r.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", [
    "/collections/roads/tiles/Other", "/collections/roads/tiles/Other/0/0/0",
    "/tileMatrixSets/Other", "/collections/roads/tiles/Other.pmtiles",
])
def test_unknown_tile_matrix_set_is_404(tiled: FlaskClient, path: str) -> None:
    r = tiled.get(path)
    assert r.status_code == 404 and r.json["code"] == "tile-matrix-set-not-found"


def test_unknown_collection_and_parameters(tiled: FlaskClient) -> None:
    assert tiled.get("/collections/nope/tiles").json["code"] == "dataset-not-found"
    assert tiled.get(f"/collections/nope/tiles/WebMercatorQuad/{LINE_TILE.z}/0/0"
                     ).status_code == 404
    assert tiled.get(_url(LINE_TILE) + "?x=1").json["code"] == "unknown-parameter"
    assert tiled.get(TILES + "?f=xml").json["code"] == "invalid-parameter"


def test_a_tile_gzip_and_identity(tiled: FlaskClient) -> None:
    zipped = tiled.get(_url(LINE_TILE), headers={"Accept-Encoding": "gzip"})
    plain = tiled.get(_url(LINE_TILE), headers={"Accept-Encoding": "identity"})
    assert zipped.status_code == plain.status_code == 200
    assert zipped.headers["Content-Encoding"] == "gzip" and "Content-Encoding" not in plain.headers
    assert gzip.decompress(zipped.data) == plain.data
    for r in (zipped, plain):
        assert r.headers["Content-Type"] == "application/vnd.mapbox-vector-tile"
        assert r.headers["Vary"] == "Accept-Encoding"
        assert r.headers["Cache-Control"] == "public, max-age=60, s-maxage=300"
        assert int(r.headers["Content-Length"]) == len(r.data)
    assert zipped.headers["ETag"] != plain.headers["ETag"]
    assert zipped.headers["ETag"].startswith('"') and not zipped.headers["ETag"].startswith("W/")
    features = mapbox_vector_tile.decode(plain.data)["roads"]["features"]
    assert [(f["id"], f["properties"]) for f in features] == [
        (1, {"name": "A", "lanes": 2})]
    head = tiled.head(_url(LINE_TILE), headers={"Accept-Encoding": "gzip"})
    assert head.headers["Content-Length"] == zipped.headers["Content-Length"] and not head.data


def test_a_tile_without_data_is_204(tiled: FlaskClient) -> None:
    empty = grid.Tile(LINE_TILE.z, LINE_TILE.row - 1, POINT_TILE.col)  # inside the limits
    r = tiled.get(_url(empty))
    assert r.status_code == 204 and r.data == b"" and r.headers["ETag"]
    again = tiled.get(_url(empty), headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304


def test_conditional_tile_requests(tiled: FlaskClient) -> None:
    first = tiled.get(_url(POINT_TILE), headers={"Accept-Encoding": "gzip"})
    etag = first.headers["ETag"]
    r = tiled.get(_url(POINT_TILE), headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
    assert r.status_code == 304 and r.headers["ETag"] == etag and not r.data
    r = tiled.get(_url(POINT_TILE), headers={"Accept-Encoding": "gzip", "If-Match": '"x"'})
    assert r.status_code == 412


def test_a_new_version_publishes_new_tiles(make_app: Callable[..., Flask],
                                           data_dir: Path) -> None:
    app = _prepared(make_app, keep_versions=0)
    client = app.test_client()
    old = client.get(_url(LINE_TILE), headers={"Accept-Encoding": "gzip"})
    in_flight = app.test_client().get(_url(LINE_TILE), headers={"Accept-Encoding": "gzip"},
                                      buffered=False)  # its body is the open archive
    text = (data_dir / "roads.geojson").read_text().replace('"name":"A"', '"name":"A2"')
    (data_dir / "roads.geojson").write_text(text)
    os.utime(data_dir / "roads.geojson", (1, 1))
    app.extensions["catalog"].prepare("roads")  # the old version folder is removed
    new = client.get(_url(LINE_TILE), headers={"Accept-Encoding": "gzip",
                                               "If-None-Match": old.headers["ETag"]})
    assert new.status_code == 200 and new.headers["ETag"] != old.headers["ETag"]
    feature = mapbox_vector_tile.decode(gzip.decompress(new.data))["roads"]["features"][0]
    assert feature["properties"]["name"] == "A2"
    assert b"".join(in_flight.response) == old.data  # finished with the old bytes
    in_flight.close()


def test_the_archive_with_ranges(tiled: FlaskClient) -> None:
    whole = tiled.get(TILES + ".pmtiles")
    assert whole.status_code == 200 and whole.data[:7] == b"PMTiles"
    assert whole.headers["Content-Type"] == "application/vnd.pmtiles"
    part = tiled.get(TILES + ".pmtiles", headers={"Range": "bytes=7-126"})
    assert part.status_code == 206 and part.data == whole.data[7:127]
    assert part.headers["Content-Range"] == f"bytes 7-126/{len(whole.data)}"
    etag = whole.headers["ETag"]
    assert tiled.get(TILES + ".pmtiles", headers={"If-None-Match": etag}).status_code == 304
    stale = tiled.get(TILES + ".pmtiles", headers={"Range": "bytes=0-9", "If-Range": '"x"'})
    assert stale.status_code == 200
    miss = tiled.get(TILES + ".pmtiles", headers={"Range": f"bytes={len(whole.data)}-"})
    assert miss.status_code == 416


def test_documents_and_links(tiled: FlaskClient) -> None:
    landing = tiled.get("/").json
    assert any(link["href"].endswith("/tileMatrixSets") for link in landing["links"])
    assert "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/mvt" in tiled.get(
        "/conformance").json["conformsTo"]
    collection = tiled.get("/collections/roads").json
    # two features: every zoom holds both, so zoom 0 is already complete
    assert collection["tiles"]["status"] == "ready" and collection["tiles"]["completeZoom"] == 0
    rels = {link["rel"]: link["href"] for link in collection["links"]}
    assert rels["http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector"].endswith(
        "/collections/roads/tiles")
    tilesets = tiled.get("/collections/roads/tiles").json["tilesets"]
    assert tilesets[0]["dataType"] == "vector" and tilesets[0]["tileMatrixSetURI"] == grid.URI
    meta = tiled.get(TILES).json
    item = next(link for link in meta["links"] if link["rel"] == "item")
    assert item["href"].endswith("/WebMercatorQuad/{tileMatrix}/{tileRow}/{tileCol}")
    assert item["type"] == "application/vnd.mapbox-vector-tile"
    assert meta["completeTileMatrix"] == "0" and meta["maxTileMatrix"] == "14"
    limits = {x["tileMatrix"]: x for x in meta["tileMatrixSetLimits"]}
    assert limits["14"]["minTileRow"] <= LINE_TILE.row <= limits["14"]["maxTileRow"]
    tilejson = tiled.get(TILES + "?f=tilejson").json
    assert tilejson["tilejson"] == "3.0.0" and tilejson["tiles"][0].endswith("/{z}/{y}/{x}")
    assert tilejson["maxzoom"] == 14 and tilejson["vector_layers"][0]["id"] == "roads"
    tms = tiled.get("/tileMatrixSets/WebMercatorQuad").json
    assert len(tms["tileMatrices"]) == 25 and tms["tileMatrices"][14]["matrixWidth"] == 2**14
    style = tiled.get("/collections/roads/styles/default")
    assert style.headers["Content-Type"] == "application/vnd.mapbox.style+json"
    assert style.json["sources"]["roads"]["url"].endswith("?f=tilejson")


def test_string_ids_travel_as_a_property(make_app: Callable[..., Flask],
                                         data_dir: Path) -> None:
    (data_dir / "roads.geojson").write_text(json.dumps({"type": "FeatureCollection",
        "features": [{"type": "Feature", "id": "road-a", "properties": {"n": 1},
                      "geometry": {"type": "LineString",
                                   "coordinates": [[4.8, 45.7], [4.9, 45.8]]}}]}))
    client = _prepared(make_app).test_client()
    ids = client.get(TILES).json["featureIds"]
    assert ids["mapping"] == "property" and ids["property"] == "@id"
    r = client.get(_url(LINE_TILE), headers={"Accept-Encoding": "identity"})
    feature = mapbox_vector_tile.decode(r.data)["roads"]["features"][0]
    assert feature["properties"]["@id"] == "road-a" and feature["id"] == 1
    assert client.get("/collections/roads/items/road-a").status_code == 200


def test_a_dataset_without_geometries_gets_empty_tiles(make_app: Callable[..., Flask],
                                                       data_dir: Path) -> None:
    (data_dir / "roads.geojson").write_text(json.dumps({"type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {"n": 1}, "geometry": None}]}))
    client = _prepared(make_app).test_client()
    state = client.get("/collections/roads").json["tiles"]
    assert state["status"] == "ready" and state["features"] == 0
    assert client.get(TILES + "/0/0/0").status_code == 204
    assert client.get(TILES + ".pmtiles").data[:7] == b"PMTiles"


def test_a_failed_build_is_reported(make_app: Callable[..., Flask]) -> None:
    app = make_app(tiles=True)
    version = app.extensions["catalog"].current("roads")
    builder.record_failure(version.directory, "RuntimeError: tippecanoe failed: no")
    client = app.test_client()
    assert client.get("/collections/roads").json["tiles"] == {
        "status": "failed", "error": "RuntimeError: tippecanoe failed: no"}
    r = client.get(_url(LINE_TILE))
    assert r.status_code == 503 and r.json["code"] == "tiles-failed"


def test_tiles_off_means_no_builds_no_endpoints_no_links(make_app: Callable[..., Flask]) -> None:
    """GEOJSON_API_TILES=false: the other artifacts only, and nothing names tiles."""
    app = make_app(tiles=False)
    client = app.test_client()
    assert list(app.extensions["catalog"].artifacts.registry) == ["variants", "index"]
    assert client.get(_url(LINE_TILE)).status_code == 404
    assert client.get("/tileMatrixSets").status_code == 404
    collection = client.get("/collections/roads").json
    assert "tiles" not in collection
    assert not [link for link in collection["links"] if "tiles" in link["href"]]
    assert not [c for c in client.get("/conformance").json["conformsTo"] if "tiles" in c]
    assert not [p for p in client.get("/api").json["paths"] if "tile" in p.lower()]

