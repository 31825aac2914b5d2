"""Dataset API and health endpoints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from ..conftest import ROADS
from .test_metrics import cache_counts


def test_listing(client: FlaskClient, data_dir: Path) -> None:
    (data_dir / "parks.json").write_bytes(ROADS)
    (data_dir / "notes.txt").write_text("ignored")
    body = client.get("/api/datasets").json
    assert [d["name"] for d in body["datasets"]] == ["parks", "roads"]  # type: ignore[index]
    roads = body["datasets"][1]  # type: ignore[index]
    assert roads["status"] == "ready"
    assert roads["features"] == 3 and roads["bytes"] == len(ROADS)
    assert roads["bbox"] == [4.8, 45.7, 5.0, 45.8]
    assert roads["geometry_types"] == ["LineString", "Point"]
    assert roads["properties"] == {"lanes": "number", "name": "string"}
    assert roads["modified"].endswith("Z")
    hrefs = {link["rel"]: link["href"] for link in roads["links"]}
    assert hrefs == {"self": "http://localhost/api/datasets/roads",
                     "enclosure": "http://localhost/geojson/roads"}


def test_listing_reports_broken_datasets_without_failing(client: FlaskClient,
                                                         data_dir: Path) -> None:
    (data_dir / "broken.geojson").write_bytes(b"{")
    response = client.get("/api/datasets")
    assert response.status_code == 200
    broken = response.json["datasets"][0]  # type: ignore[index]
    assert broken["name"] == "broken" and broken["status"] == "dataset-unavailable"
    assert "not valid JSON" in broken["error"]


def test_one_dataset(client: FlaskClient) -> None:
    body = client.get("/api/datasets/roads").json
    etag = client.get("/geojson/roads").headers["ETag"]
    assert body["version"] == etag.strip('"')  # type: ignore[index]
    assert client.get("/api/datasets/roads.geojson").json == body


def test_one_dataset_errors(client: FlaskClient, data_dir: Path) -> None:
    assert client.get("/api/datasets/none").status_code == 404
    assert client.get("/api/datasets/..%2fx").status_code == 400
    (data_dir / "broken.geojson").write_bytes(b"[]")
    broken = client.get("/api/datasets/broken")
    assert broken.status_code == 503
    assert broken.json["code"] == "dataset-unavailable"  # type: ignore[index]


def test_health(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    before = cache_counts(client)
    ready = client.get("/readyz").json
    assert ready["status"] == "ready"  # type: ignore[index]
    assert ready["cache"] == {"backend": "simple", "backoff_seconds": 0.0}  # type: ignore[index]
    assert cache_counts(client) == before  # hits, misses, errors: in /metrics now


def test_not_ready_when_state_is_not_writable(make_app: object, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    app: Flask = make_app(state_dir=blocker / "state")  # type: ignore[operator]
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert set(response.json["checks"]) == {"state_dir"}  # type: ignore[index]


def test_index_links(client: FlaskClient) -> None:
    rels = {link["rel"] for link in client.get("/").json["links"]}  # type: ignore[index]
    assert {"data", "health", "ready"} <= rels


def test_responses_are_cached_per_version(make_app: object, data_dir: Path) -> None:
    # No compressed variants: their appearance in the background would change the key.
    client = make_app(precompress="").test_client()  # type: ignore[operator]
    before = cache_counts(client)
    first = client.get("/api/datasets/roads").json
    again = client.get("/api/datasets/roads").json
    assert again == first
    stats = cache_counts(client, before)
    assert stats["hit"] == 1 and stats["miss"] == 1
    (data_dir / "roads.geojson").write_bytes(ROADS.replace(b'"A"', b'"Q"'))
    changed = client.get("/api/datasets/roads").json
    assert changed["version"] != first["version"]  # type: ignore[index]
    listing = client.get("/api/datasets").json
    assert listing["datasets"][0]["version"] == changed["version"]  # type: ignore[index]


def test_a_dead_redis_degrades_to_uncached(make_app: object) -> None:
    app: Flask = make_app(redis_url="redis://127.0.0.1:1/0")  # type: ignore[operator]
    client = app.test_client()
    before = cache_counts(client)
    for _ in range(3):
        response = client.get("/api/datasets/roads")
        assert response.status_code == 200 and response.json["name"] == "roads"  # type: ignore[index]
    stats = client.get("/readyz").json["cache"]  # type: ignore[index]
    assert stats["backend"] == "redis" and cache_counts(client, before)["error"] == 1  # backs off
    assert 0 < stats["backoff_seconds"] <= 5


def test_listing_etag_and_304(make_app: object, data_dir: Path) -> None:
    client = make_app(precompress="").test_client()  # type: ignore[operator]
    first = client.get("/api/datasets")
    etag = first.headers["ETag"]
    assert etag.startswith('W/"') and first.headers["Cache-Control"] == "no-cache"
    again = client.get("/api/datasets", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag and again.headers["Cache-Control"] == "no-cache"
    failed = client.get("/api/datasets", headers={"If-Match": etag})  # weak: never matches
    assert failed.status_code == 412 and failed.json["code"] == "precondition-failed"  # type: ignore[index]
    assert client.get("/api/datasets", headers={"If-Match": "*"}).status_code == 200
    other_host = client.get("/api/datasets", base_url="http://example.org")
    assert other_host.headers["ETag"] != etag  # its links are absolute


def test_listing_etag_follows_versions_and_refusals(make_app: object, data_dir: Path) -> None:
    client = make_app(precompress="").test_client()  # type: ignore[operator]
    seen = [client.get("/api/datasets").headers["ETag"]]

    def changed() -> bool:
        response = client.get("/api/datasets", headers={"If-None-Match": seen[-1]})
        seen.append(response.headers["ETag"])
        return response.status_code == 200 and seen[-1] != seen[-2]

    assert not changed()  # nothing happened
    (data_dir / "parks.geojson").write_bytes(ROADS)
    assert changed()  # a new dataset
    (data_dir / "parks.geojson").write_bytes(ROADS.replace(b'"A"', b'"P"'))
    assert changed()  # a new version
    (data_dir / "parks.geojson").write_bytes(b"{")
    assert changed()  # the new content is refused: the listing says so
    assert client.get("/api/datasets").json["datasets"][0]["refused"]  # type: ignore[index]
    assert not changed()


def test_one_dataset_etag(make_app: object, data_dir: Path) -> None:
    client = make_app(precompress="").test_client()  # type: ignore[operator]
    first = client.get("/api/datasets/roads")
    etag = first.headers["ETag"]
    assert etag.startswith('W/"')
    assert client.get("/api/datasets/roads",
                      headers={"If-None-Match": etag}).status_code == 304
    (data_dir / "roads.geojson").write_bytes(ROADS.replace(b'"A"', b'"Q"'))
    fresh = client.get("/api/datasets/roads", headers={"If-None-Match": etag})
    assert fresh.status_code == 200 and fresh.headers["ETag"] != etag


def test_the_listing_counts_problems_by_kind(make_app: Callable[..., Flask],
                                             data_dir: Path) -> None:
    bow_tie = (b'{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},'
               b'"geometry":{"type":"Polygon","coordinates":[[[0,0],[2,2],[2,0],[0,2],[0,0]]]}}]}')
    (data_dir / "bowtie.geojson").write_bytes(bow_tie)
    found = make_app().test_client().get("/api/datasets/bowtie").json
    assert found["problem_count"] == 1 and found["problem_features"] == 1
    assert found["problem_counts"] == {"invalid-geometry": 1}
    assert "feature 0" in found["problems"][0]
