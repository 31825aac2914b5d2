"""Faults at the unit level: full disks, lost and damaged files, bad numbers, Host.

The same faults with real processes are in tests/integration/test_faults.py.
"""

from __future__ import annotations

import errno
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from geojson_api import catalog as catalog_module
from geojson_api import integrity, jobs
from geojson_api.catalog import STORAGE_RETRY, Catalog
from geojson_api.errors import StorageFull
from geojson_api.features import sqlite_index
from geojson_api.features.openapi import NAME_PATTERN
from geojson_api.gunicorn_workers import json_error_bytes
from geojson_api.names import is_valid_name
from geojson_api.nginxconf import render_site
from geojson_api.pipeline import open_catalog
from geojson_api.settings import Settings

from ..conftest import ROADS

OTHER = ROADS.replace(b'"A"', b'"Other"')


def no_space(*args: object) -> str:
    raise OSError(errno.ENOSPC, "No space left on device")


def publish(path: Path, data: bytes) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def make_catalog(data_dir: Path, **overrides: Any) -> Catalog:
    return open_catalog(Settings(data_dir=data_dir, settle_seconds=0.0, **overrides))


# -- a full state disk ---------------------------------------------------------------
def test_a_full_disk_keeps_the_previous_version_and_backs_off(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = make_catalog(data_dir, precompress="")
    old = catalog.current("roads")
    calls: list[object] = []
    monkeypatch.setattr(catalog_module, "_copy_and_hash",
                        lambda *a: calls.append(a) or no_space())
    publish(data_dir / "roads.geojson", OTHER)
    for _ in range(20):
        assert catalog.current("roads").id == old.id
        assert make_catalog(data_dir).current("roads").id == old.id  # another process too
    assert len(calls) == 1  # not one copy per request
    refusal = catalog.refusal("roads")
    assert refusal is not None and refusal["code"] == "storage-full"
    assert refusal["retry_at"] - refusal["at"] == pytest.approx(STORAGE_RETRY)


def test_backoff_doubles_per_content(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = make_catalog(data_dir, precompress="")
    catalog.current("roads")
    calls: list[object] = []
    monkeypatch.setattr(catalog_module, "_copy_and_hash",
                        lambda *a: calls.append(a) or no_space())
    publish(data_dir / "roads.geojson", OTHER)
    clock = [time.time()]
    monkeypatch.setattr(catalog_module.time, "time", lambda: clock[0])
    delays = []
    for attempt in range(1, 4):
        catalog.current("roads")
        assert len(calls) == attempt
        entry = catalog.pointer("roads").deferred
        assert entry is not None
        delays.append(round(entry["retry_at"] - entry["at"]))
        clock[0] += delays[-1] - 1  # not yet: no new attempt
        catalog.current("roads")
        assert len(calls) == attempt
        clock[0] += 2
    assert delays == [STORAGE_RETRY, 2 * STORAGE_RETRY, 4 * STORAGE_RETRY]


def test_a_first_version_on_a_full_disk_is_a_503_with_retry_after(
    make_app: Callable[..., Flask], data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog_module, "_copy_and_hash", no_space)
    (data_dir / "fresh.geojson").write_bytes(OTHER)
    client = make_app().test_client()
    r = client.get("/geojson/fresh")
    assert r.status_code == 503 and r.json["code"] == "storage-full"
    assert int(r.headers["Retry-After"]) >= 1
    listing = {d["name"]: d for d in client.get("/api/datasets").json["datasets"]}
    assert listing["fresh"]["status"] == "storage-full"
    assert listing["fresh"]["refused"]["code"] == "storage-full"
    assert client.get("/collections").status_code == 200
    with pytest.raises(StorageFull):
        open_catalog(client.application.config["SETTINGS"]).current("fresh")


def test_the_listing_says_why_a_newer_content_is_refused(
    make_app: Callable[..., Flask], data_dir: Path
) -> None:
    client = make_app().test_client()
    version = client.get("/api/datasets/roads").json["version"]
    (data_dir / "roads.geojson").write_bytes(OTHER[: len(OTHER) // 2])  # in place, torn
    entry = client.get("/api/datasets").json["datasets"][0]
    assert entry["status"] == "ready" and entry["version"] == version
    assert entry["refused"]["code"] == "invalid-geojson"
    assert "not valid JSON" in entry["refused"]["reason"]
    assert client.get("/api/datasets/roads").json["refused"]["code"] == "invalid-geojson"
    publish(data_dir / "roads.geojson", OTHER)  # the owner fixes it
    assert "refused" not in client.get("/api/datasets/roads").json


# -- lost and damaged files ---------------------------------------------------------------
@pytest.mark.parametrize("small_file_bytes", [0, 65536])
def test_a_lost_stored_copy_is_published_again(
    make_app: Callable[..., Flask], small_file_bytes: int
) -> None:
    client = make_app(small_file_bytes=small_file_bytes, precompress="").test_client()
    first = client.get("/geojson/roads")
    catalog: Catalog = client.application.extensions["catalog"]
    version = catalog.current("roads")
    assert jobs.wait_idle(30)
    version.path.unlink()
    again = client.get("/geojson/roads")
    assert again.status_code == 200 and again.data == first.data == ROADS
    if not small_file_bytes:  # (from memory, this process needs no copy: others publish)
        assert version.path.read_bytes() == ROADS  # published again


def test_a_truncated_variant_is_quarantined_and_identity_served(
    make_app: Callable[..., Flask], data_dir: Path
) -> None:
    client = make_app(small_file_bytes=0).test_client()
    assert client.get("/geojson/roads").status_code == 200
    assert jobs.wait_idle(30)
    catalog: Catalog = client.application.extensions["catalog"]
    version = catalog.current("roads")
    gz = version.directory / "data.geojson.gz"
    assert client.get("/geojson/roads", headers={"Accept-Encoding": "gzip"}).headers[
        "Content-Encoding"] == "gzip"
    with open(gz, "r+b") as handle:
        handle.truncate(5)
    r = client.get("/geojson/roads", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and "Content-Encoding" not in r.headers and r.data == ROADS
    quarantined = list((data_dir / ".state/quarantine").iterdir())
    assert any(p.name.endswith("data.geojson.gz") for p in quarantined)
    catalog.artifacts.forget()  # the rebuild was asked for; ask again without the throttle
    client.get("/geojson/roads", headers={"Accept-Encoding": "gzip"})
    assert jobs.wait_idle(30)
    rebuilt = client.get("/geojson/roads", headers={"Accept-Encoding": "gzip"})
    assert rebuilt.headers["Content-Encoding"] == "gzip"


def test_a_variant_without_its_sum_is_not_served(data_dir: Path) -> None:
    catalog = make_catalog(data_dir, precompress="gzip", compress_min_bytes=1)
    version = catalog.prepare("roads")
    integrity.sum_path(version.directory / "data.geojson.gz").unlink()
    fresh = make_catalog(data_dir, precompress="gzip", compress_min_bytes=1)
    assert fresh.current("roads").variant("gzip") is None


def test_an_index_built_by_newer_code_answers_503_and_is_kept(
    make_app: Callable[..., Flask], data_dir: Path, samples: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shutil.copy(samples / "small.geojson", data_dir / "small.geojson")
    client = make_app().test_client()
    client.get("/collections/small")
    assert jobs.wait_idle(60)
    index = client.application.extensions["catalog"].current("small").directory / (
        sqlite_index.INDEX_FILE)
    built = index.stat().st_mtime_ns
    monkeypatch.setattr(sqlite_index, "FORMAT", sqlite_index.FORMAT - 1)  # this code is older
    client = make_app().test_client()
    r = client.get("/collections/small/items?limit=2")
    assert r.status_code == 503 and r.json["code"] == "not-ready" and r.headers["Retry-After"]
    assert "newer version of geojson-api" in r.json["description"]
    assert jobs.wait_idle(60)
    assert index.stat().st_mtime_ns == built and not (data_dir / ".state/quarantine").exists()
    assert client.get("/geojson/small").status_code == 200  # the file itself is served


@pytest.mark.parametrize("damaged", [sqlite_index.INDEX_FILE, sqlite_index.FEATURES_FILE])
def test_a_damaged_index_answers_503_and_is_rebuilt(
    make_app: Callable[..., Flask], data_dir: Path, samples: Path, damaged: str
) -> None:
    shutil.copy(samples / "small.geojson", data_dir / "small.geojson")
    client = make_app().test_client()
    client.get("/collections/small")
    assert jobs.wait_idle(60)
    assert client.get("/collections/small/items?limit=1").status_code == 200
    folder = client.application.extensions["catalog"].current("small").directory
    with open(folder / damaged, "r+b") as handle:
        handle.truncate((folder / damaged).stat().st_size // 2)
    # This process may still answer from SQLite's page cache; a new one checks the file
    # when it opens it (reads of the lost pages: tests/integration/test_faults.py).
    client = make_app().test_client()
    r = client.get("/collections/small/items?limit=2")
    assert r.status_code == 503 and r.json["code"] == "not-ready" and r.headers["Retry-After"]
    assert any(p.name.endswith(damaged) for p in (data_dir / ".state/quarantine").iterdir())
    assert jobs.wait_idle(60)
    assert client.get("/collections/small/items?limit=2&offset=99").status_code == 200
    assert sqlite_index.open_problem(folder) is None


def test_a_disk_error_during_an_index_build_is_not_a_permanent_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "data.geojson"
    source.write_bytes(ROADS)
    monkeypatch.setattr(sqlite_index, "_build_into", no_space)
    sqlite_index.ensure(tmp_path, source, {"type": "FeatureCollection", "properties": {}})
    assert sqlite_index.failure(tmp_path) is None  # asked for again later, not given up


def test_a_deleted_state_folder_is_noticed_and_republished(data_dir: Path) -> None:
    catalog = make_catalog(data_dir)
    catalog.current("roads")
    assert catalog.readiness() == {}
    assert jobs.wait_idle(30)
    shutil.rmtree(data_dir / ".state")
    assert catalog.readiness() == {}  # made again, and noticed as a new one
    assert jobs.wait_idle(30)  # the background republish
    assert catalog.pointer("roads").version is not None
    assert catalog.current("roads").path.read_bytes() == ROADS


def test_an_unwritable_state_folder_is_not_ready(data_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert set(make_catalog(data_dir, state_dir=blocker / "state").readiness()) == {"state_dir"}


def test_quarantine_keeps_the_newest_few(tmp_path: Path) -> None:
    for i in range(integrity.QUARANTINE_KEEP + 3):
        damaged = tmp_path / "versions" / "x" / f"v{i}" / "file"
        damaged.parent.mkdir(parents=True)
        damaged.write_text(str(i))
        integrity.quarantine(tmp_path, damaged, "test")
        time.sleep(1.01 if i == integrity.QUARANTINE_KEEP else 0)
    kept = list((tmp_path / "quarantine").iterdir())
    assert len(kept) == integrity.QUARANTINE_KEEP


# -- numbers, names and Host -----------------------------------------------------------
@pytest.mark.parametrize(("query", "name"), [
    ("lanes=1e400", "lanes"), ("limit=100000000000000000000", "limit"),
    ("offset=100000000000000000000", "offset"), ("limit=+5", "limit"), ("limit= 5", "limit"),
    ("bbox=4.8,45.7,4.9,1e999", "bbox"), ("bbox=4.8,45.7,4.9,%2045.8", "bbox"),
    ("f=JSON", "f"), ("bbox-crs=%20http://www.opengis.net/def/crs/OGC/1.3/CRS84", "bbox-crs"),
])
def test_out_of_range_and_loose_numbers_are_a_400_naming_the_parameter(
    make_app: Callable[..., Flask], query: str, name: str
) -> None:
    client = make_app().test_client()
    client.get("/collections/roads")
    assert jobs.wait_idle(30)
    r = client.get(f"/collections/roads/items?{query}")
    assert r.status_code == 400, (query, r.json)
    assert name in r.json["description"]


def test_an_integer_filter_past_64_bits_is_a_400(
    make_app: Callable[..., Flask], data_dir: Path
) -> None:
    (data_dir / "ranked.geojson").write_bytes(
        b'{"type":"FeatureCollection","features":[{"type":"Feature","geometry":null,'
        b'"properties":{"rank":3}}]}')
    client = make_app().test_client()
    client.get("/collections/ranked")
    assert jobs.wait_idle(30)
    r = client.get("/collections/ranked/items?rank=100000000000000000000")
    assert r.status_code == 400 and "rank" in r.json["description"]
    assert client.get(f"/collections/ranked/items?rank={2**63 - 1}").status_code == 200


def test_http11_without_host_is_a_400(app: Flask) -> None:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/geojson/roads",
               "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
               "SERVER_NAME": "x", "SERVER_PORT": "80"}
    seen: list[str] = []
    body = b"".join(app.wsgi_app(environ, lambda status, headers: seen.append(status)))
    assert seen[0].startswith("400") and b'"bad-request"' in body
    seen.clear()
    twice = {**environ, "HTTP_HOST": "a,b"}
    b"".join(app.wsgi_app(twice, lambda status, headers: seen.append(status)))
    assert seen[0].startswith("400")


def test_gunicorn_error_pages_are_json() -> None:
    import json

    raw = json_error_bytes(414, "URI Too Long", "Request Line is too large (5000 > 4094)")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 414 URI Too Long\r\n")
    assert b"Content-Type: application/json" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert json.loads(body) == {"code": "uri-too-long",
                                "description": "Request Line is too large (5000 > 4094)"}


@pytest.mark.parametrize("name", ["roads", "a.b", "x-y.z_1", "9" * 128, "a", "x.json",
                                  "x.GeoJSON", "a..b", ".a", "a.", "-a", "a b", "é", "x.jsonl"])
def test_the_openapi_name_pattern_is_the_server_rule(name: str) -> None:
    matches = re.fullmatch(NAME_PATTERN.strip("^$"), name) is not None and len(name) <= 128
    assert matches == is_valid_name(name)


def test_nginx_retries_and_fails_instances_only_for_broken_ones() -> None:
    text = render_site(Settings(), ["127.0.0.1:8000", "127.0.0.1:8001"])
    retry = next(line for line in text.splitlines() if "proxy_next_upstream " in line)
    assert "http_503" not in retry and "error" in retry and "timeout" in retry
    cached = text[text.index("location /geojson/ {"):]
    cached = cached[:cached.index("\n    }")]
    assert "error_page 502 503 =503 /_errors/unavailable;" in cached  # not lost by the 418
