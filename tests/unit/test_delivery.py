"""Whole-file delivery through the app factory (headers, conditionals, ranges, encodings)."""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Callable
from pathlib import Path

import brotli
import pytest
from flask import Flask
from flask.testing import FlaskClient

from geojson_api import cors, jobs
from geojson_api.catalog import Catalog, Version
from geojson_api.delivery import FastLane

from ..conftest import ROADS


@pytest.fixture(params=[65536, 0], ids=["from-memory", "from-file"])
def app(make_app: Callable[..., Flask], request: pytest.FixtureRequest) -> Flask:
    """Every delivery test runs with small files served from memory and from the file."""
    return make_app(small_file_bytes=request.param)


@pytest.fixture
def ready(client: FlaskClient) -> FlaskClient:
    """A client whose dataset has been published and its variants built."""
    assert client.get("/geojson/roads").status_code == 200
    assert jobs.wait_idle(30)
    return client


def test_plain_download(ready: FlaskClient) -> None:
    r = ready.get("/geojson/roads")
    assert r.status_code == 200
    assert r.data == ROADS
    assert r.mimetype == "application/geo+json"
    assert r.headers["Content-Length"] == str(len(ROADS))
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["Vary"] == "Accept-Encoding"
    assert r.headers["ETag"].startswith('"') and len(r.headers["ETag"]) == 18
    assert "Last-Modified" in r.headers
    assert "Content-Encoding" not in r.headers


def test_suffix_form(ready: FlaskClient) -> None:
    assert ready.get("/geojson/roads.geojson").data == ROADS


def test_cache_control_from_settings(make_app: object) -> None:
    app: Flask = make_app(cache_max_age=7, cache_s_maxage=99, cache_public=False)  # type: ignore[operator]
    r = app.test_client().get("/geojson/roads")
    assert set(r.headers["Cache-Control"].split(", ")) == {"private", "max-age=7", "s-maxage=99"}
    default = make_app().test_client().get("/geojson/roads")  # type: ignore[operator]
    assert set(default.headers["Cache-Control"].split(", ")) == {
        "public", "max-age=60", "s-maxage=300"}


@pytest.mark.parametrize(
    ("accept", "encoding"),
    [("gzip", "gzip"), ("br", "br"), ("gzip, br", "br"), ("br;q=0.5, gzip", "gzip"),
     ("gzip;q=0, br;q=0", None), ("identity", None), ("*", "br"), ("deflate", None)],
)
def test_encoding_negotiation(ready: FlaskClient, accept: str, encoding: str | None) -> None:
    r = ready.get("/geojson/roads", headers={"Accept-Encoding": accept})
    assert r.headers.get("Content-Encoding") == encoding
    assert r.headers["Vary"] == "Accept-Encoding"
    body = {"gzip": gzip.decompress, "br": brotli.decompress, None: bytes}[encoding](r.data)
    assert body == ROADS
    if encoding:
        assert r.headers["ETag"].endswith(f'.{encoding}"')


def test_identity_until_variants_exist(make_app: object) -> None:
    app: Flask = make_app(precompress="")  # type: ignore[operator]
    r = app.test_client().get("/geojson/roads", headers={"Accept-Encoding": "gzip, br"})
    assert "Content-Encoding" not in r.headers and r.data == ROADS


def test_if_none_match_gives_304(ready: FlaskClient) -> None:
    etag = ready.get("/geojson/roads").headers["ETag"]
    r = ready.get("/geojson/roads", headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.data == b""
    assert r.headers["ETag"] == etag
    assert "Cache-Control" in r.headers
    other = ready.get("/geojson/roads", headers={"If-None-Match": '"nope"'})
    assert other.status_code == 200
    star = ready.get("/geojson/roads", headers={"If-None-Match": "*"})
    assert star.status_code == 304


def test_if_match(ready: FlaskClient) -> None:
    etag = ready.get("/geojson/roads").headers["ETag"]
    assert ready.get("/geojson/roads", headers={"If-Match": etag}).status_code == 200
    failed = ready.get("/geojson/roads", headers={"If-Match": '"old"'})
    assert failed.status_code == 412 and failed.json["code"] == "precondition-failed"  # type: ignore[index]


def test_etag_is_per_representation(ready: FlaskClient) -> None:
    etag = ready.get("/geojson/roads").headers["ETag"]
    r = ready.get("/geojson/roads", headers={"If-None-Match": etag, "Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["Content-Encoding"] == "gzip"


def test_if_modified_since(ready: FlaskClient) -> None:
    last_modified = ready.get("/geojson/roads").headers["Last-Modified"]
    assert ready.get("/geojson/roads",
                     headers={"If-Modified-Since": last_modified}).status_code == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert ready.get("/geojson/roads", headers={"If-Modified-Since": old}).status_code == 200


@pytest.mark.parametrize("value", ["yesterday", "", "Mon, 99 Foo 2001", "0" * 300, "\x7f"])
def test_bad_if_modified_since_is_ignored(ready: FlaskClient, value: str) -> None:
    r = ready.get("/geojson/roads", headers={"If-Modified-Since": value})
    assert r.status_code == 200 and r.data == ROADS


def test_single_range(ready: FlaskClient) -> None:
    r = ready.get("/geojson/roads", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206
    assert r.data == ROADS[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(ROADS)}"
    assert r.headers["Content-Length"] == "10"


@pytest.mark.parametrize(
    ("header", "expected"),
    [("bytes=0-0", slice(0, 1)), ("bytes=-5", slice(-5, None)), ("bytes=100-", slice(100, None)),
     ("bytes=0-999999", slice(0, None))],
)
def test_range_forms(ready: FlaskClient, header: str, expected: slice) -> None:
    r = ready.get("/geojson/roads", headers={"Range": header})
    assert r.status_code == 206 and r.data == ROADS[expected]


def test_range_applies_to_the_chosen_encoding(ready: FlaskClient) -> None:
    whole = ready.get("/geojson/roads", headers={"Accept-Encoding": "gzip"}).data
    part = ready.get("/geojson/roads", headers={"Accept-Encoding": "gzip", "Range": "bytes=0-9"})
    assert part.status_code == 206 and part.data == whole[:10]
    assert part.headers["Content-Range"] == f"bytes 0-9/{len(whole)}"


@pytest.mark.parametrize("start", [str(len(ROADS)), "1" * 500])
def test_unsatisfiable_range(ready: FlaskClient, start: str) -> None:
    r = ready.get("/geojson/roads", headers={"Range": f"bytes={start}-"})
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{len(ROADS)}"
    assert r.json["code"] == "requested-range-not-satisfiable"  # type: ignore[index]


@pytest.mark.parametrize(
    "header", ["bytes=a-b", "bytes=5-1", "items=0-5", "bytes", "bytes=--1", "bytes=0-1,3-4",
               "\x00"])
def test_malformed_or_multiple_ranges_get_the_whole_file(ready: FlaskClient, header: str) -> None:
    r = ready.get("/geojson/roads", headers={"Range": header})
    assert r.status_code == 200 and r.data == ROADS


def test_if_range(ready: FlaskClient) -> None:
    etag = ready.get("/geojson/roads").headers["ETag"]
    hit = ready.get("/geojson/roads", headers={"Range": "bytes=0-3", "If-Range": etag})
    assert hit.status_code == 206 and hit.data == ROADS[:4]
    miss = ready.get("/geojson/roads", headers={"Range": "bytes=0-3", "If-Range": '"old"'})
    assert miss.status_code == 200 and miss.data == ROADS


def test_head(ready: FlaskClient) -> None:
    r = ready.head("/geojson/roads")
    assert r.status_code == 200 and r.data == b""
    assert r.headers["Content-Length"] == str(len(ROADS))


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_other_methods(ready: FlaskClient, method: str) -> None:
    r = getattr(ready, method)("/geojson/roads")
    assert r.status_code == 405
    assert "GET" in r.headers["Allow"]
    assert r.json["code"] == "method-not-allowed"  # type: ignore[index]


def test_download_disposition(ready: FlaskClient) -> None:
    r = ready.get("/geojson/roads?download=1")
    assert r.headers["Content-Disposition"] == 'attachment; filename="roads.geojson"'
    assert "Content-Disposition" not in ready.get("/geojson/roads").headers
    bad = ready.get("/geojson/roads?download=maybe")
    assert bad.status_code == 400 and bad.json["code"] == "bad-request"  # type: ignore[index]


def test_unknown_dataset(client: FlaskClient) -> None:
    r = client.get("/geojson/nothing")
    assert r.status_code == 404
    assert r.json == {"code": "dataset-not-found",
                      "description": "no dataset named 'nothing'",
                      "request_id": r.headers["X-Request-ID"]}  # errors name their request


def test_unknown_route_is_json(client: FlaskClient) -> None:
    r = client.get("/no/such/page")
    assert r.status_code == 404 and r.json["code"] == "not-found"  # type: ignore[index]


def test_served_bytes_do_not_change_when_the_file_is_rewritten(
    client: FlaskClient, data_dir: Path
) -> None:
    first = client.get("/geojson/roads")
    (data_dir / "roads.geojson").write_bytes(ROADS.replace(b'"A"', b'"Z"'))
    second = client.get("/geojson/roads")
    assert first.data == ROADS
    assert second.data == ROADS.replace(b'"A"', b'"Z"')
    assert first.headers["ETag"] != second.headers["ETag"]


LONG_AGO = "Mon, 01 Jan 2001 00:00:00 GMT"
FAR_AHEAD = "Fri, 01 Jan 2100 00:00:00 GMT"

REQUESTS = [
    {}, {"Accept-Encoding": "gzip"}, {"Accept-Encoding": "br;q=0.1, gzip"},
    {"Range": "bytes=3-30"}, {"Range": "bytes=-1", "Accept-Encoding": "br"},
    {"Range": "bytes=9999-"}, {"Range": "bytes=0-1,4-5"}, {"If-None-Match": "*"},
    {"If-Match": '"nope"'}, {"If-Range": '"nope"', "Range": "bytes=1-2"},
    {"If-Modified-Since": LONG_AGO},
    {"If-Unmodified-Since": LONG_AGO}, {"If-Unmodified-Since": FAR_AHEAD},
]


PATHS = ["/geojson/roads", "/geojson/roads.geojson?download=1", "/geojson/missing",
         "/geojson/..%2f", "/geojson/roads?download=x"]

Answer = tuple[str, list[tuple[str, str]], bytes]


def call(wsgi: object, path: str, method: str = "GET",
         headers: dict[str, str] | None = None) -> Answer:
    """Status, headers (sorted, without Date) and body of one request to a WSGI app."""
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    environ = EnvironBuilder(path=path, method=method, headers=headers).get_environ()
    body, status, got = run_wsgi_app(wsgi, environ, buffered=True)  # type: ignore[arg-type]
    kept = sorted((k, v) for k, v in got.items() if k not in ("Date",))
    return status, kept, b"".join(body)


def fast_lane(app: Flask) -> FastLane:
    """The fast-lane layer of the app's WSGI stack (under CORS, profiling)."""
    layer = app.wsgi_app
    while not isinstance(layer, FastLane):
        layer = layer.app  # type: ignore[attr-defined]
    return layer


def both_paths(app: Flask, path: str, method: str = "GET",
               headers: dict[str, str] | None = None) -> tuple[Answer, Answer]:
    """The same request through the fast lane and through the Flask view alone."""
    lane = fast_lane(app)
    fast = call(lane, path, method, headers)
    flask_only = call(lane.app, path, method, headers)
    return fast, flask_only


@pytest.mark.parametrize("headers", REQUESTS)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("path", PATHS)
def test_fast_lane_and_flask_view_agree(ready: FlaskClient, app: Flask, method: str,
                                        path: str, headers: dict[str, str]) -> None:
    """The WSGI fast lane and the Flask view give the same status, headers and body."""
    fast, flask_only = both_paths(app, path, method, headers)
    assert fast == flask_only


class CountingCatalog(Catalog):
    """The app's own catalog, counting its lookups, and failing them when told to."""

    calls: list[str]
    failure: Exception | None

    def current(self, name: str) -> Version:
        self.calls.append(name)
        if self.failure is not None:
            raise self.failure
        return super().current(name)


def counting(app: Flask, failure: Exception | None = None) -> CountingCatalog:
    """Turn the app's catalog (shared by the fast lane and the view) into a counting one."""
    catalog = app.extensions["catalog"]
    catalog.__class__ = CountingCatalog
    catalog.calls, catalog.failure = [], failure
    return catalog  # type: ignore[no-any-return]


def test_api_errors_agree(app: Flask, data_dir: Path) -> None:
    (data_dir / "broken.geojson").write_bytes(b"{")
    fast, flask_only = both_paths(app, "/geojson/broken")
    assert fast == flask_only
    status, headers, body = fast
    assert status == "503 SERVICE UNAVAILABLE" and ("Cache-Control", "no-store") in headers
    assert json.loads(body)["code"] == "dataset-unavailable"


def test_http_exceptions_agree_with_their_headers(ready: FlaskClient, app: Flask) -> None:
    fast, flask_only = both_paths(app, "/geojson/roads", headers={"Range": "bytes=9999-"})
    assert fast == flask_only
    status, headers, body = fast
    assert status == "416 REQUESTED RANGE NOT SATISFIABLE"
    assert ("Content-Range", f"bytes */{len(ROADS)}") in headers
    assert json.loads(body)["code"] == "requested-range-not-satisfiable"
    head_fast, head_flask = both_paths(app, "/geojson/roads", "HEAD", {"If-Match": '"x"'})
    assert head_fast == head_flask and head_fast[0].startswith("412") and head_fast[2] == b""


def test_unexpected_errors_agree_and_are_logged(app: Flask,
                                                caplog: pytest.LogCaptureFixture) -> None:
    counting(app, RuntimeError("disk on fire"))
    with caplog.at_level(logging.ERROR, logger="geojson_api.errors"):
        fast, flask_only = both_paths(app, "/geojson/roads")
    assert fast == flask_only
    status, headers, body = fast
    assert ("Cache-Control", "no-store") in headers
    assert status == "500 INTERNAL SERVER ERROR" and b"disk on fire" not in body
    assert json.loads(body) == {"code": "internal-error",
                                "description": "The server hit an unexpected error."}
    logged = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert len(logged) == 2 and all("disk on fire" in str(r.exc_info) for r in logged)


@pytest.mark.parametrize(
    ("path", "failure", "status"),
    [("/geojson/broken", None, 503), ("/geojson/roads", RuntimeError("disk on fire"), 500),
     ("/geojson/roads", None, 200)],
)
def test_a_request_is_handled_once(app: Flask, data_dir: Path, path: str,
                                   failure: Exception | None, status: int) -> None:
    """A failed fast-lane request is answered, not replayed through Flask (where the
    catalog would be asked, and a publish waited for, a second time)."""
    (data_dir / "broken.geojson").write_bytes(b"{")
    catalog = counting(app, failure)
    response = app.test_client().get(path)
    assert response.status_code == status
    assert catalog.calls == [path.rpartition("/")[2]]


def test_a_304_carries_the_fields_rfc_9110_asks_for(ready: FlaskClient, app: Flask) -> None:
    first = ready.get("/geojson/roads", headers={"Accept-Encoding": "gzip"})
    for validator in ({"If-None-Match": first.headers["ETag"]},
                      {"If-Modified-Since": first.headers["Last-Modified"]}):
        status, headers, body = call(app.wsgi_app, "/geojson/roads", "GET",
                                     {"Accept-Encoding": "gzip", "X-Request-ID": "r304",
                                      **validator})
        assert status == "304 NOT MODIFIED" and body == b""
        assert dict(headers) == {"ETag": first.headers["ETag"],
                                 "Cache-Control": first.headers["Cache-Control"],
                                 "Vary": "Accept-Encoding",
                                 "X-Request-ID": "r304",  # every answer names its request
                                 # CORS (a page revalidating its copy must read the 304)
                                 **dict(cors.Policy(["*"]).any_headers)}


def test_if_unmodified_since(ready: FlaskClient) -> None:
    last_modified = ready.get("/geojson/roads").headers["Last-Modified"]
    for date in (last_modified, FAR_AHEAD):
        assert ready.get("/geojson/roads",
                         headers={"If-Unmodified-Since": date}).status_code == 200
    changed = ready.get("/geojson/roads", headers={"If-Unmodified-Since": LONG_AGO})
    assert changed.status_code == 412 and changed.json["code"] == "precondition-failed"  # type: ignore[index]
    assert "If-Unmodified-Since" in changed.json["description"]  # type: ignore[index]
    etag = ready.get("/geojson/roads").headers["ETag"]
    with_if_match = ready.get("/geojson/roads",  # If-Match decides; the date is ignored
                              headers={"If-Match": etag, "If-Unmodified-Since": LONG_AGO})
    assert with_if_match.status_code == 200
    for value in ("tomorrow", "", "Mon, 99 Foo 2001"):
        assert ready.get("/geojson/roads",
                         headers={"If-Unmodified-Since": value}).status_code == 200


def test_head_ignores_range(ready: FlaskClient) -> None:
    """RFC 9110 14.2: range handling is defined for GET only."""
    for header in ("bytes=0-3", "bytes=9999-"):
        r = ready.head("/geojson/roads", headers={"Range": header})
        assert r.status_code == 200 and r.headers["Content-Length"] == str(len(ROADS))
        assert "Content-Range" not in r.headers


def test_if_range_date_must_match_exactly(ready: FlaskClient) -> None:
    last_modified = ready.get("/geojson/roads").headers["Last-Modified"]
    hit = ready.get("/geojson/roads", headers={"Range": "bytes=0-3", "If-Range": last_modified})
    assert hit.status_code == 206 and hit.data == ROADS[:4]
    later = ready.get("/geojson/roads", headers={"Range": "bytes=0-3", "If-Range": FAR_AHEAD})
    assert later.status_code == 200 and later.data == ROADS


def test_small_files_memory_budget(tmp_path: Path) -> None:
    from geojson_api.delivery import SmallFiles

    paths = []
    for i, size in enumerate([10, 20, 30, 100]):
        path = tmp_path / f"f{i}"
        path.write_bytes(b"x" * size)
        paths.append(path)
    memory = SmallFiles(file_limit=50, total_limit=40)
    assert memory.get(paths[0]) == b"x" * 10 and memory.get(paths[1]) == b"x" * 20
    assert memory.get(paths[3]) is None  # too big: sent from the file
    assert memory.get(paths[2]) == b"x" * 30  # over budget: memory cleared first
    assert list(memory._data) == [paths[2]]  # the clear dropped everything before
    assert SmallFiles(0, 100).get(paths[0]) is None


def test_offload_hands_the_bytes_to_nginx(make_app: Callable[..., Flask]) -> None:
    client = make_app(offload="nginx", small_file_bytes=0).test_client()
    r = client.get("/geojson/roads", headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200 and r.data == b""
    version = r.headers["ETag"].strip('"')
    assert r.headers["X-Accel-Redirect"] == f"/_offload/full/roads/{version}/data.geojson"
    assert "Accept-Ranges" not in r.headers  # Nginx's offload location adds it
    assert r.headers["Content-Type"] == "application/geo+json"
    ranged = client.get("/geojson/roads", headers={"Range": "bytes=0-3"})
    assert ranged.headers["X-Accel-Redirect"].startswith("/_offload/range/")
    multi = client.get("/geojson/roads", headers={"Range": "bytes=0-1,3-4"})
    assert multi.headers["X-Accel-Redirect"].startswith("/_offload/full/")
    assert client.get("/geojson/roads", headers={"If-None-Match": r.headers["ETag"]}
                      ).status_code == 304
    assert client.get("/geojson/roads", headers={"Range": "bytes=9999-"}).status_code == 416
    head = client.head("/geojson/roads")
    assert "X-Accel-Redirect" not in head.headers
    assert head.headers["Content-Length"] == str(len(ROADS))


def test_offload_keeps_small_files_for_the_micro_cache(make_app: Callable[..., Flask]) -> None:
    client = make_app(offload="nginx").test_client()
    r = client.get("/geojson/roads", headers={"Accept-Encoding": "identity"})
    assert "X-Accel-Redirect" not in r.headers and r.data == ROADS
