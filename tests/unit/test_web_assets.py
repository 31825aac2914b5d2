"""Static assets: content-hashed names, immutable caching, strong ETags, the CSP, and one
clear line when the built MapLibre files are missing."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable
from pathlib import Path

import brotli
import pytest
from flask import Flask
from flask.testing import FlaskClient

from geojson_api.errors import AssetsMissing
from geojson_api.web import assets as web_assets
from geojson_api.web.assets import Asset, Assets, check_built
from geojson_api.web.security import POLICY

from .test_cli import assert_one_line
from .test_install import run_blocked

ROOT = Path(__file__).resolve().parents[2]


def _url(app: Flask, name: str) -> str:
    return app.extensions["assets"].url(name)  # type: ignore[no-any-return]


def test_a_file_is_served_under_its_digest_for_a_year(app: Flask, client: FlaskClient) -> None:
    url = _url(app, "maplibre-gl.css")
    body = (web_assets.VENDOR / "maplibre-gl.css").read_bytes()
    digest = hashlib.sha256(body).hexdigest()
    assert url == f"/assets/maplibre-gl.{digest[:16]}.css"
    response = client.get(url)
    assert response.status_code == 200 and response.data == body
    assert response.mimetype == "text/css"
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response.headers["ETag"] == f'"{digest}"'  # strong: the bytes' digest
    assert "Content-Disposition" not in response.headers
    assert "Content-Security-Policy" not in response.headers  # not a page


def test_a_current_copy_gets_304(app: Flask, client: FlaskClient) -> None:
    url = _url(app, "maplibre-gl-csp.js")
    etag = client.get(url).headers["ETag"]
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag
    assert again.headers["Cache-Control"].endswith("immutable")
    assert client.get(url).mimetype == "text/javascript"


@pytest.mark.parametrize(("accept", "decode"), [("br", brotli.decompress),
                                               ("gzip", gzip.decompress),
                                               ("gzip;q=0.5, br", brotli.decompress)])
def test_text_assets_come_compressed_to_who_accepts_it(
        app: Flask, client: FlaskClient, accept: str, decode: Callable[[bytes], bytes]) -> None:
    url = _url(app, "maplibre-gl-csp.js")
    body = (web_assets.VENDOR / "maplibre-gl-csp.js").read_bytes()
    digest = hashlib.sha256(body).hexdigest()
    response = client.get(url, headers={"Accept-Encoding": accept})
    encoding = response.headers["Content-Encoding"]
    assert decode(response.data) == body and len(response.data) < len(body) / 3
    assert response.headers["ETag"] == f'"{digest}.{encoding}"'  # one per representation
    assert response.headers["Vary"] == "Accept-Encoding"
    again = client.get(url, headers={"Accept-Encoding": accept,
                                     "If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304
    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    assert plain.data == body and "Content-Encoding" not in plain.headers
    assert plain.headers["Vary"] == "Accept-Encoding"


@pytest.mark.parametrize("name", ["maplibre-gl.css", "maplibre-gl.0123456789abcdef.css",
                                  "nothing.js", "vendor", "..%2Fassets.py"])
def test_unknown_or_stale_names_are_404_json(client: FlaskClient, name: str) -> None:
    response = client.get(f"/assets/{name}")
    assert response.status_code == 404
    assert response.json is not None and response.json["code"] in ("asset-not-found",
                                                                     "not-found")
    assert response.headers["Cache-Control"] == "no-store"


def test_a_changed_file_gets_a_new_name(tmp_path: Path) -> None:
    path = tmp_path / "site.css"
    path.write_text("a{}")
    first = Assets.collect({tmp_path: None}).url("site.css")
    path.write_text("b{}")
    changed = Assets.collect({tmp_path: None})
    assert changed.url("site.css") != first
    assert changed.find(first.rpartition("/")[2]) is None


def test_names_must_be_unique_and_known(tmp_path: Path) -> None:
    one, two = tmp_path / "a", tmp_path / "b"
    for folder in (one, two):
        folder.mkdir()
        (folder / "x.js").write_text("1")
    with pytest.raises(ValueError, match=r"two static files are named x\.js"):
        Assets.collect({one: None, two: None})
    with pytest.raises(LookupError, match=r"no static file is named 'y\.js'"):
        Assets.collect({one: None}).url("y.js")
    assert Asset("LICENSE", one / "x.js", "ab" * 32).hashed_name == "LICENSE." + "ab" * 8


def test_html_responses_carry_the_policy(client: FlaskClient) -> None:
    page = client.get("/api.html")
    assert page.mimetype == "text/html"
    assert page.headers["Content-Security-Policy"] == POLICY
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    for directive in ("default-src 'self'", "script-src 'self'", "worker-src 'self'",
                      "connect-src 'self'", "object-src 'none'"):
        assert directive in POLICY
    assert "unsafe" not in POLICY and "blob:" not in POLICY and "http" not in POLICY
    assert "Content-Security-Policy" not in client.get("/collections").headers


def test_missing_vendor_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(AssetsMissing) as raised:
        check_built(tmp_path)
    message = str(raised.value)
    assert "\n" not in message
    assert "maplibre-gl-csp.js is missing" in message and "make assets" in message


def test_create_app_refuses_to_start_without_them(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data_dir: Path) -> None:
    from geojson_api import create_app
    from geojson_api.settings import Settings

    monkeypatch.setattr(web_assets, "VENDOR", tmp_path)
    with pytest.raises(AssetsMissing, match="scripts/build-assets"):
        create_app(Settings(data_dir=data_dir))


def test_gunicorn_config_says_it_in_one_line(data_dir: Path, tmp_path: Path) -> None:
    code = ("import geojson_api.web.assets as a, pathlib\n"
            f"a.VENDOR = pathlib.Path({str(tmp_path)!r})\n"
            "sys.argv = ['gunicorn', '-c', 'python:geojson_api.gunicorn_conf', '--check-config']\n"
            "from gunicorn.app.wsgiapp import run\nrun()\n")
    result = run_blocked([], code, env={"GEOJSON_API_DATA_DIR": str(data_dir)}, cwd=tmp_path)
    assert_one_line(result, "the web assets are not built", "make assets")


def test_the_wheel_ships_the_pages() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert '"geojson_api.web" = ["templates/**/*", "static/**/*"]' in text
    build = (ROOT / "scripts" / "build-assets").read_text()
    for name in web_assets.VENDOR_FILES:  # what the script copies is what the app checks
        assert f'"{name}":' in build, name
