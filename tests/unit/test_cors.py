"""CORS (geojson_api.cors): the policy, its settings, and the fields every answer gets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from geojson_api import cors
from geojson_api.settings import Settings, SettingsError

ORIGIN = "http://dash.example:8080"
OTHER = "https://elsewhere.example"
EXPOSED = ", ".join(cors.EXPOSED_HEADERS)


def preflight(client: Any, path: str, origin: str = ORIGIN, headers: str = "") -> Any:
    asked = {"Access-Control-Request-Headers": headers} if headers else {}
    return client.options(path, headers={"Origin": origin,
                                         "Access-Control-Request-Method": "GET", **asked})


def test_settings_accept_any_a_list_or_nothing() -> None:
    assert Settings().cors_origin_list == ("*",)
    listed = Settings(cors_origins=f"{ORIGIN}, {OTHER}", cors_credentials=True)
    assert listed.cors_origin_list == (ORIGIN, OTHER)
    assert Settings(cors_origins="").cors_origin_list == ()
    assert Settings(cors_origins="http://[::1]:9000").cors_origin_list == ("http://[::1]:9000",)


@pytest.mark.parametrize("value", ["dash.example", "http://dash.example/path", "ftp://x",
                                   "http://a b", '"http://x";'])
def test_settings_refuse_what_is_not_an_origin(value: str) -> None:
    with pytest.raises(SettingsError, match="GEOJSON_API_CORS_ORIGINS"):
        Settings(cors_origins=value)


def test_credentials_are_never_allowed_to_any_origin() -> None:
    with pytest.raises(SettingsError, match="GEOJSON_API_CORS_CREDENTIALS"):
        Settings(cors_credentials=True)
    with pytest.raises(ValueError, match="credentials"):
        cors.Policy(["*"], credentials=True)


@pytest.mark.parametrize("path", ["/geojson/roads", "/api/datasets", "/collections",
                                  "/collections/roads/items?limit=2", "/",
                                  "/geojson/missing", "/no/such/route"])
def test_every_answer_carries_the_fields(client: Any, path: str) -> None:
    """Whole files (the fast lane), listings, OGC documents, and errors too."""
    r = client.get(path, headers={"Origin": ORIGIN})
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert r.headers["Access-Control-Expose-Headers"] == EXPOSED
    assert "Access-Control-Allow-Credentials" not in r.headers
    assert "Origin" not in r.headers.get("Vary", "")  # the same answer for every origin


def test_exposed_headers_cover_what_a_dashboard_reads() -> None:
    for name in ("ETag", "Content-Range", "Content-Length", "Link"):
        assert name in cors.EXPOSED_HEADERS


def test_preflight_names_methods_headers_and_max_age(client: Any) -> None:
    r = preflight(client, "/geojson/roads", headers="Range, If-None-Match")
    assert r.status_code == 204 and r.data == b""
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert r.headers["Access-Control-Allow-Methods"] == "GET, HEAD, OPTIONS"
    allowed = {h.strip() for h in r.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"Range", "If-None-Match", "If-Modified-Since"} <= allowed
    assert r.headers["Access-Control-Max-Age"] == "600"


def test_preflight_asking_for_another_header_is_refused_clearly(client: Any) -> None:
    r = preflight(client, "/geojson/roads", headers="Range, X-Custom")
    assert r.status_code == 403
    body = r.get_json()
    assert body["code"] == "cross-origin-refused" and "x-custom" in body["description"]


def test_a_plain_options_is_not_a_preflight(client: Any) -> None:
    r = client.options("/api/datasets")
    assert r.status_code == 200 and "GET" in r.headers["Allow"]


@pytest.fixture
def listed(make_app: Callable[..., Flask]) -> Any:
    return make_app(cors_origins=f"{ORIGIN},{OTHER}", cors_credentials=True,
                    cors_max_age=30).test_client()


def test_a_listed_origin_is_echoed_and_varies(listed: Any) -> None:
    r = listed.get("/geojson/roads", headers={"Origin": ORIGIN})
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    # one Vary field, with both reasons (caches such as Nginx read one)
    assert r.headers.getlist("Vary") == ["Accept-Encoding, Origin"]
    r = listed.get("/api/datasets", headers={"Origin": OTHER})
    assert r.headers["Access-Control-Allow-Origin"] == OTHER
    assert r.headers.getlist("Vary") == ["Accept, Origin"]  # HTML or JSON, and CORS


def test_an_unlisted_origin_reads_nothing_but_is_still_served(listed: Any) -> None:
    r = listed.get("/geojson/roads", headers={"Origin": "http://evil.example"})
    assert r.status_code == 200  # non-browser clients are not CORS's business
    assert "Access-Control-Allow-Origin" not in r.headers
    assert r.headers.getlist("Vary") == ["Accept-Encoding, Origin"]
    r = preflight(listed, "/geojson/roads", origin="http://evil.example")
    assert r.status_code == 403 and r.get_json()["code"] == "cross-origin-refused"
    assert "http://evil.example" in r.get_json()["description"]


def test_a_listed_preflight(listed: Any) -> None:
    r = preflight(listed, "/collections/roads/items", headers="if-none-match")
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert r.headers["Access-Control-Max-Age"] == "30"
    assert r.headers["Vary"] == "Origin"


def test_cors_off_adds_nothing(make_app: Callable[..., Flask]) -> None:
    client = make_app(cors_origins="").test_client()
    r = client.get("/geojson/roads", headers={"Origin": ORIGIN})
    assert r.status_code == 200
    assert not [k for k, _ in r.headers if k.startswith("Access-Control")]
