"""OGC API - Features views through the Flask test client."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from geojson_api import jobs
from geojson_api.features import sqlite_index

from ..attacks import ATTACKS
from .test_metrics import cache_counts


@pytest.fixture
def client(make_app: Callable[..., Flask], data_dir: Path, samples: Path) -> FlaskClient:
    shutil.copy(samples / "small.geojson", data_dir / "small.geojson")
    app = make_app(features_max_limit=50)
    client = app.test_client()
    for name in ("roads", "small"):
        client.get(f"/collections/{name}")  # publishes; the index is built in the background
    assert jobs.wait_idle(60)
    return client


def rels(doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {link["rel"]: link for link in doc["links"]}


def test_landing_page_links(client: FlaskClient) -> None:
    doc = client.get("/").json
    links = rels(doc)  # type: ignore[arg-type]
    assert {"self", "service-desc", "service-doc", "conformance", "data"} <= set(links)
    for rel in ("service-desc", "service-doc", "conformance", "data"):
        assert client.get(links[rel]["href"]).status_code == 200, rel


def test_conformance_classes(client: FlaskClient) -> None:
    classes = client.get("/conformance").json["conformsTo"]  # type: ignore[index]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in classes
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson" in classes


def test_collections_and_collection(client: FlaskClient) -> None:
    listing = client.get("/collections").json
    assert [c["id"] for c in listing["collections"]] == ["roads", "small"]  # type: ignore[index]
    small = client.get("/collections/small").json
    assert small["itemType"] == "feature" and small["index"]["status"] == "ready"  # type: ignore[index]
    assert small["index"]["features"] > 10 and small["index"]["bytes"] > 0  # type: ignore[index]
    bbox = small["extent"]["spatial"]["bbox"][0]  # type: ignore[index]
    assert len(bbox) == 4 and bbox[0] < bbox[2]
    items = rels(small)["items"]  # type: ignore[arg-type]
    assert items["href"].endswith("/collections/small/items") and "?" not in items["href"]


def test_items_page_and_links(client: FlaskClient) -> None:
    response = client.get("/collections/small/items?limit=5&offset=5")
    assert response.status_code == 200
    assert response.mimetype == "application/geo+json"
    doc = response.json
    assert doc["type"] == "FeatureCollection" and doc["numberReturned"] == 5  # type: ignore[index]
    assert [f["id"] for f in doc["features"]] == [6, 7, 8, 9, 10]  # type: ignore[index]
    links = rels(doc)  # type: ignore[arg-type]
    assert "offset=10" in links["next"]["href"] and "offset=0" in links["prev"]["href"]
    assert doc["timeStamp"].endswith("Z")  # type: ignore[index]


def test_next_links_page_through_everything(client: FlaskClient) -> None:
    url: str | None = "/collections/small/items?limit=7&bbox=4.7,45.6,5.1,45.9&kind=road"
    seen: list[Any] = []
    matched = None
    while url:
        doc = client.get(url).json
        seen += [f["id"] for f in doc["features"]]  # type: ignore[index]
        matched = doc["numberMatched"]  # type: ignore[index]
        url = rels(doc).get("next", {}).get("href")  # type: ignore[arg-type]
    features = json.loads(client.get("/geojson/small").data)["features"]
    roads = {f["id"] for f in features if f["properties"]["kind"] == "road"}
    assert len(seen) == len(set(seen)) == matched == len(roads) and set(seen) == roads


def test_limit_is_clamped_not_refused(client: FlaskClient) -> None:
    doc = client.get("/collections/small/items?limit=100000").json
    assert doc["numberReturned"] == 50  # type: ignore[index]
    assert "limit=50" in rels(doc)["next"]["href"]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "query",
    ["bbox=1,2,3", "bbox=a,b,c,d", "bbox=0,50,1,40", "bbox=0,0,1,nan", "bbox=-200,0,1,1",
     "limit=0", "limit=-1", "limit=x", "offset=-3", "offset=1.5", "foo=bar",
     "properties=nope", "sortby=nope", "sortby=-", "rank=high", "active=maybe", "measure=inf",
     "limit=1&limit=2", "f=xml", "bbox-crs=EPSG:3857"],
)
def test_bad_parameters_are_400_with_a_reason(client: FlaskClient, query: str) -> None:
    response = client.get(f"/collections/small/items?{query}")
    assert response.status_code == 400, query
    assert response.json["code"] in {"invalid-parameter", "unknown-parameter"}  # type: ignore[index]
    assert response.json["description"]  # type: ignore[index]


def test_six_number_bbox_and_crs84(client: FlaskClient) -> None:
    four = client.get("/collections/small/items?bbox=4.8,45.7,4.9,45.8").json
    six = client.get("/collections/small/items?bbox=4.8,45.7,-10,4.9,45.8,10&bbox-crs="
                     "http://www.opengis.net/def/crs/OGC/1.3/CRS84").json
    assert four["numberMatched"] == six["numberMatched"] > 0  # type: ignore[index]


def test_filters_properties_and_sortby(client: FlaskClient) -> None:
    doc = client.get("/collections/small/items?kind=road&properties=name,rank"
                     "&sortby=-rank,name&limit=50").json
    features = doc["features"]  # type: ignore[index]
    assert features and all(set(f["properties"]) == {"name", "rank"} for f in features)
    ranks = [f["properties"]["rank"] for f in features]
    assert ranks == sorted(ranks, reverse=True)


def test_plus_in_sortby_survives_form_decoding(client: FlaskClient) -> None:
    assert client.get("/collections/small/items?sortby=+rank").status_code == 200


def test_single_feature(client: FlaskClient) -> None:
    response = client.get("/collections/roads/items/2")
    assert response.status_code == 200 and response.mimetype == "application/geo+json"
    doc = response.json
    assert doc["id"] == 2 and doc["properties"] == {"name": "B", "lanes": 2.5}  # type: ignore[index]
    assert {"self", "alternate", "collection"} <= set(rels(doc))  # type: ignore[arg-type]
    assert client.get("/collections/roads/items/2?f=json").mimetype == "application/json"
    missing = client.get("/collections/roads/items/99")
    assert missing.status_code == 404 and missing.json["code"] == "feature-not-found"  # type: ignore[index]


def test_feature_without_geometry(client: FlaskClient) -> None:
    assert client.get("/collections/roads/items/3").json["geometry"] is None  # type: ignore[index]
    everything = client.get("/collections/roads/items?bbox=-180,-90,180,90").json
    assert [f["id"] for f in everything["features"]] == [1, 2]  # type: ignore[index]


def test_queryables(client: FlaskClient) -> None:
    response = client.get("/collections/small/queryables")
    assert response.mimetype == "application/schema+json"
    props = response.json["properties"]  # type: ignore[index]
    assert props["rank"]["type"] == "integer" and props["kind"]["type"] == "string"


def test_etag_304_and_head(client: FlaskClient) -> None:
    url = "/collections/small/items?limit=3"
    first = client.get(url)
    etag = first.headers["ETag"]
    assert etag.startswith('W/"') and "max-age" in first.headers["Cache-Control"]
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    head = client.head(url)
    assert head.status_code == 200 and head.data == b"" and head.headers["ETag"] == etag
    other = client.get("/collections/small/items?limit=4")
    assert other.headers["ETag"] != etag


def test_pages_come_from_the_shared_cache(client: FlaskClient) -> None:
    url = "/collections/small/items?limit=3&kind=road"
    first = client.get(url).json
    before = cache_counts(client)
    assert client.get(url).json == first
    assert cache_counts(client, before)["hit"] == 1


def test_query_before_the_index_is_ready_is_503(
    make_app: Callable[..., Flask], data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs.Scheduler, "build", lambda self, request: None)  # nobody builds it
    client = make_app(features_retry_after=7).test_client()
    assert client.get("/collections/roads").json["index"]["status"] == "queued"  # type: ignore[index]
    response = client.get("/collections/roads/items")
    assert response.status_code == 503 and response.headers["Retry-After"] == "7"
    assert response.json["code"] == "not-ready"  # type: ignore[index]


def test_failed_index_is_reported(make_app: Callable[..., Flask], data_dir: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(sqlite_index, "build", broken)
    client = make_app().test_client()
    client.get("/collections/roads")
    assert jobs.wait_idle(30)
    state = client.get("/collections/roads").json["index"]  # type: ignore[index]
    assert state["status"] == "failed" and "disk on fire" in state["error"]
    response = client.get("/collections/roads/items")
    assert response.status_code == 503 and response.json["code"] == "index-failed"  # type: ignore[index]
    assert client.get("/geojson/roads").status_code == 200  # whole files still work


def test_unknown_collection_and_bad_names(client: FlaskClient) -> None:
    assert client.get("/collections/nope").status_code == 404
    assert client.get("/collections/nope/items").status_code == 404
    for attack in ATTACKS:
        response = client.get("/collections/x/items", query_string={"kind": attack})
        assert response.status_code == 404
        for path in (f"/collections/{attack}", f"/collections/{attack}/items"):
            response = client.get(path)
            assert response.status_code in (400, 404, 405), (attack, response.status_code)
            assert response.is_json


def test_openapi_is_self_contained(client: FlaskClient) -> None:
    response = client.get("/api")
    assert response.mimetype == "application/vnd.oai.openapi+json"
    doc = response.json
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert refs and all(ref.startswith("#/") for ref in refs)
    for ref in refs:  # every local reference resolves
        target = doc
        for part in ref[2:].split("/"):
            target = target[part]  # type: ignore[index]
    for path, item in doc["paths"].items():  # type: ignore[index]
        responses = item["get"]["responses"]
        assert "400" in responses, path
        if "{" in path:
            assert "404" in responses, path


TILE_PLACEHOLDERS = {"{tileMatrixSetId}": "WebMercatorQuad", "{tileMatrix}": "0",
                     "{tileRow}": "0", "{tileCol}": "0"}


def test_openapi_paths_exist(client: FlaskClient) -> None:
    doc = client.get("/api").json
    for path in doc["paths"]:  # type: ignore[index]
        concrete = path.replace("{collectionId}", "small").replace("{featureId}", "1")
        concrete = concrete.replace("{name}", "small")
        for name, value in TILE_PLACEHOLDERS.items():  # the tile paths (issue 12)
            concrete = concrete.replace(name, value)
        assert client.get(concrete).status_code == 200, path


def test_feature_etag_per_representation(client: FlaskClient) -> None:
    geojson = client.get("/collections/roads/items/2")
    plain = client.get("/collections/roads/items/2?f=json")
    assert geojson.headers["ETag"].startswith('W/"') and "max-age" in geojson.headers[
        "Cache-Control"]
    assert plain.headers["ETag"] != geojson.headers["ETag"]  # another media type
    again = client.get("/collections/roads/items/2",
                       headers={"If-None-Match": geojson.headers["ETag"]})
    assert again.status_code == 304 and again.headers["ETag"] == geojson.headers["ETag"]
    # RFC 9110 15.4.5: the validators, Cache-Control and Vary (HTML or JSON by Accept).
    assert set(again.headers.keys()) == {"ETag", "Cache-Control", "Vary",
                                         "Access-Control-Allow-Origin",
                                         "Access-Control-Expose-Headers"}
    assert again.headers["Vary"] == "Accept"


def test_operations_with_an_etag_answer_304_and_412_as_documented(client: FlaskClient) -> None:
    """Every operation the OpenAPI document gives a 304 answers one, and a 412 for If-Match;
    the others carry no ETag."""
    doc = client.get("/api").json
    for path, item in doc["paths"].items():  # type: ignore[index]
        concrete = path.replace("{collectionId}", "small").replace("{featureId}", "1")
        concrete = concrete.replace("{name}", "small")
        for name, value in TILE_PLACEHOLDERS.items():  # the tile paths (issue 12)
            concrete = concrete.replace(name, value)
        responses = item["get"]["responses"]
        first = client.get(concrete)
        if "304" not in responses:
            assert "ETag" not in first.headers, path
            continue
        assert "412" in responses, path
        etag = first.headers["ETag"]
        assert client.get(concrete, headers={"If-None-Match": etag}).status_code == 304, path
        failed = client.get(concrete, headers={"If-Match": '"not-it"'})
        assert failed.status_code == 412 and failed.is_json, path
