"""HTML pages by content negotiation: the rules, ETags and 304s, alternates both ways."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from geojson_api import jobs
from geojson_api.features.documents import CONFORMANCE
from geojson_api.web.security import POLICY

from .test_features_api import rels

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
HTML_CLASS = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html"
# Every resource with a page, and the media type of its JSON document.
RESOURCES = {
    "/": "application/json",
    "/conformance": "application/json",
    "/collections": "application/json",
    "/collections/small": "application/json",
    "/collections/small/queryables": "application/schema+json",
    "/collections/small/items": "application/geo+json",
    "/collections/small/items/1": "application/geo+json",
    "/api/datasets": "application/json",
    "/api": "application/vnd.oai.openapi+json",
}


@pytest.fixture
def client(make_app: Callable[..., Flask], data_dir: Path, samples: Path) -> FlaskClient:
    shutil.copy(samples / "small.geojson", data_dir / "small.geojson")
    client = make_app().test_client()
    for name in ("roads", "small"):
        client.get(f"/collections/{name}")  # publishes; the index is built in the background
    assert jobs.wait_idle(60)
    return client


@pytest.mark.parametrize(("accept", "query", "html"), [
    (None, "", False),
    ("*/*", "", False),
    ("application/json", "", False),
    ("application/geo+json", "", False),
    ("text/html, application/json", "", False),  # a tie keeps the document
    (BROWSER, "", True),
    ("text/html", "", True),
    ("application/json;q=0.5, text/html", "", True),
    ("application/json", "?f=html", True),
    (BROWSER, "?f=json", False),
    (BROWSER, "?f=geojson", False),
])
def test_negotiation_rules(client: FlaskClient, accept: str | None, query: str,
                           html: bool) -> None:
    headers = {"Accept": accept} if accept else {}
    for path, json_type in RESOURCES.items():
        response = client.get(path + query, headers=headers)
        assert response.status_code == 200, (path, query, accept)
        assert response.headers["Vary"] == "Accept", path
        if html:
            assert response.mimetype == "text/html", (path, accept)
        else:
            assert response.mimetype in (json_type, "application/json"), (path, accept)


def test_json_documents_are_unchanged_but_for_their_page_link(client: FlaskClient) -> None:
    for path in RESOURCES:
        plain = client.get(path)
        assert plain.mimetype != "text/html"
        assert "Content-Security-Policy" not in plain.headers
        page = client.get(path + "?f=html")
        # the Link header names the page, and the page is that URL
        link = re.fullmatch(r'<([^>]+)>; rel="alternate"; type="text/html"',
                            plain.headers["Link"])
        assert link is not None, path
        assert link.group(1).endswith(path + "?f=html") or "?f=html" in link.group(1)
        assert client.get(link.group(1)).data == page.data
    # documents with links list their page among them
    for path in ("/", "/collections", "/collections/small", "/collections/small/items",
                 "/collections/small/items/1", "/api/datasets"):
        links = [link for link in client.get(path).json["links"]  # type: ignore[index]
                 if link["rel"] == "alternate" and link["type"] == "text/html"]
        assert len(links) == 1, path
        assert client.get(links[0]["href"]).mimetype == "text/html", path


def test_pages_link_their_json_alternate(client: FlaskClient) -> None:
    for path, json_type in RESOURCES.items():
        page = client.get(path, headers={"Accept": BROWSER})
        text = page.get_data(as_text=True)
        found = re.search(r'<link rel="alternate" type="application/json" href="([^"]+)"',
                          text)
        assert found is not None, path
        href = found.group(1).replace("&amp;", "&")
        assert f'href="{found.group(1)}" type="application/json">JSON</a>' in text, path
        document = client.get(href)
        assert document.status_code == 200 and document.mimetype in (
            json_type, "application/json"), path
        assert page.headers["Content-Security-Policy"] == POLICY
        assert "<script>" not in text and " style=" not in text and " on" + "click" not in text


def test_pages_answer_304_with_their_own_etag(client: FlaskClient) -> None:
    for path in RESOURCES:
        page = client.get(path + "?f=html")
        etag = page.headers["ETag"]
        assert etag.startswith('W/"'), path
        assert etag != client.get(path).headers.get("ETag"), path  # the format is in the key
        again = client.get(path, headers={"Accept": BROWSER, "If-None-Match": etag})
        assert again.status_code == 304 and again.data == b"", path
        assert again.headers["ETag"] == etag and again.headers["Vary"] == "Accept"
        assert "Cache-Control" in again.headers
        # the same page reached by f=html or by Accept is one resource: one tag
        assert client.get(path, headers={"Accept": BROWSER}).headers["ETag"] == etag


def test_a_new_version_changes_the_pages_etag(client: FlaskClient, data_dir: Path) -> None:
    before = {p: client.get(p + "?f=html").headers["ETag"] for p in RESOURCES}
    text = (data_dir / "small.geojson").read_text().replace('"Building 406"', '"Tower 1"', 1)
    (data_dir / "small.geojson").write_text(text)
    client.get("/collections/small")
    assert jobs.wait_idle(60)
    after = {p: client.get(p + "?f=html").headers["ETag"] for p in RESOURCES}
    for path in ("/collections/small", "/collections/small/items",
                 "/collections/small/items/1", "/api/datasets"):
        assert after[path] != before[path], path
    assert "Tower 1" in client.get("/collections/small/items?f=html").get_data(as_text=True)


def test_bad_formats_are_400(client: FlaskClient) -> None:
    for path in RESOURCES:
        response = client.get(path + "?f=xml")
        assert response.status_code == 400, path
        assert "use f=json or f=html" in response.json["description"]  # type: ignore[index]


def test_the_html_conformance_class_is_declared(client: FlaskClient) -> None:
    assert HTML_CLASS in CONFORMANCE
    assert HTML_CLASS in client.get("/conformance").json["conformsTo"]  # type: ignore[index]


def test_the_items_page_shows_the_document_features(client: FlaskClient) -> None:
    query = "/collections/small/items?limit=7&offset=7&kind=road"
    document = client.get(query).json
    text = client.get(query + "&f=html").get_data(as_text=True)
    for feature in document["features"]:  # type: ignore[index]
        assert f'/collections/small/items/{feature["id"]}?f=html">{feature["id"]}</a>' in text
        assert feature["properties"]["name"] in text
    nxt = rels(document)["next"]["href"]  # type: ignore[arg-type]
    assert 'rel="next" href="' in text and "offset=14" in nxt
    assert '<input type="hidden" name="kind" value="road">' in text  # kept by the form
    assert 'data-source="' in text and "f=json" in text


def test_the_collection_page_offers_the_whole_file(client: FlaskClient) -> None:
    doc = client.get("/api/datasets/small").json
    text = client.get("/collections/small?f=html").get_data(as_text=True)
    assert "/geojson/small" in text and f'{doc["bytes"]:,}' in text  # type: ignore[index]
    for encoding in doc["encodings"]:  # type: ignore[index]
        assert f"<td>{encoding}</td>" in text
    assert "data-bbox=" in text and "<code>kind</code>" in text


def test_openapi_lists_html(client: FlaskClient) -> None:
    doc = client.get("/api").json
    assert doc["components"]["parameters"]["f"]["schema"]["enum"] == [  # type: ignore[index]
        "json", "geojson", "html"]
    paths = doc["paths"]  # type: ignore[index]
    for path in ("/", "/conformance", "/api", "/collections", "/collections/{collectionId}",
                 "/collections/{collectionId}/queryables", "/collections/{collectionId}/items",
                 "/collections/small/items", "/collections/{collectionId}/items/{featureId}",
                 "/api/datasets"):
        assert "text/html" in paths[path]["get"]["responses"]["200"]["content"], path
    assert "text/html" not in paths["/api/datasets/{name}"]["get"]["responses"]["200"][
        "content"]


def test_swagger_ui_is_served_from_our_assets(client: FlaskClient) -> None:
    page = client.get("/api.html")
    text = page.get_data(as_text=True)
    assert page.mimetype == "text/html"
    urls = re.findall(r'(?:src|href)="(/assets/[^"]+)"', text)
    assert any("swagger-ui-bundle." in u for u in urls) and any("swagger." in u for u in urls)
    for url in urls:
        assert client.get(url).status_code == 200, url
    assert 'data-url="http://localhost/api"' in text
