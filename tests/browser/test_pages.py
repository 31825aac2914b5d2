"""Every HTML page in Chromium: opens cleanly, offline, links to its JSON; the items page's map
and bbox drawing; axe-core on the items page; a screenshot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ..integration.servers import GunicornServer
from .conftest import Watched, screenshot, serious_violations, watch

PAGES = ["/", "/conformance", "/collections", "/collections/small",
         "/collections/small/queryables", "/collections/small/items",
         "/collections/medium/items?limit=50&kind=road", "/collections/small/items/1",
         "/api/datasets", "/api.html", "/api", "/dashboard/"]
FEATURE_LAYERS = ["features-fill", "features-line", "features-point"]
# The ids MapLibre drew on the first map of the page (rendered, not merely loaded).
RENDERED_IDS = """(layers) => {
    const map = window.pageMaps[0];
    const ids = map.queryRenderedFeatures({layers}).map((f) => f.id);
    return [...new Set(ids)].sort((a, b) => a - b);
}"""


def _open(watched: Watched, url: str) -> Any:
    """Go to ``url`` as a browser does (Accept: text/html...) and wait until its maps and
    Swagger UI have drawn."""
    page = watched.page
    response = page.goto(url)
    assert response is not None and response.status == 200, url
    assert response.headers["content-type"].startswith("text/html")
    return _drawn(page)


def _drawn(page: Any) -> Any:
    """``page`` once its maps and Swagger UI have drawn."""
    for element in page.locator("[data-map]").all():
        element.and_(page.locator("[data-state=ready]")).wait_for()
    if page.locator("#swagger-ui").count():
        page.locator("#swagger-ui .opblock").first.wait_for()
    return page


def _table_ids(page: Any) -> list[int]:
    return sorted(int(text) for text in
                  page.locator("table.items tbody td:first-child a").all_inner_texts())


@pytest.mark.parametrize("path", PAGES)
def test_every_page_opens_cleanly_and_links_its_json(
        server: GunicornServer, watched: Watched, path: str) -> None:
    page = _open(watched, server.url + path)
    assert page.locator("main h1").count() == 1
    alternate = page.locator('head link[rel=alternate][type="application/json"]')
    assert alternate.count() == 1
    href = alternate.get_attribute("href")
    assert href is not None
    visible = page.get_by_role("link", name="JSON", exact=True)
    assert visible.get_attribute("href") == href
    document = page.request.get(href)
    assert document.ok and "json" in document.headers["content-type"], href
    assert isinstance(json.loads(document.body()), dict)
    # and back: the JSON names this page as its text/html alternate
    assert 'rel="alternate"; type="text/html"' in document.headers["link"] or path == "/api.html"
    watched.assert_clean()


def test_items_map_shows_the_features_of_the_page(
        server: GunicornServer, watched: Watched) -> None:
    page = _open(watched, server.url + "/collections/small/items?limit=25")
    in_table = _table_ids(page)
    assert len(in_table) == 25
    assert page.evaluate(RENDERED_IDS, FEATURE_LAYERS) == in_table


def test_drawing_a_box_on_the_map_becomes_the_query(
        server: GunicornServer, watched: Watched) -> None:
    page = _open(watched, server.url + "/collections/small/items?limit=100")
    before = page.locator("p.count").inner_text()
    page.get_by_role("button", name="Draw a box").click()
    box = page.locator("[data-map]").bounding_box()
    assert box is not None
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    with page.expect_navigation():
        page.mouse.move(x + w * 0.35, y + h * 0.35)
        page.mouse.down()
        page.mouse.move(x + w * 0.5, y + h * 0.5, steps=5)
        page.mouse.move(x + w * 0.65, y + h * 0.65, steps=5)
        page.mouse.up()
    query = parse_qs(urlsplit(page.url).query)
    west, south, east, north = (float(v) for v in query["bbox"][0].split(","))
    assert west < east and south < north
    assert query["f"] == ["html"] and query["limit"] == ["100"]
    _drawn(page)  # the new page: its map drawn, its table filled
    after = page.locator("p.count").inner_text()
    assert after != before
    shown = _table_ids(page)
    document = page.request.get(page.url.replace("f=html", "f=json")).json()
    assert shown == sorted(f["id"] for f in document["features"])
    assert 0 < document["numberMatched"] < 113  # fewer than the whole of small
    assert page.locator("#bbox").input_value() == query["bbox"][0]
    watched.assert_clean()


def test_items_page_has_no_serious_accessibility_violation(
        server: GunicornServer, axe_context: Any, axe_source: str, artifact_dir: Path) -> None:
    watched = watch(axe_context)
    page = watched.page
    page.goto(server.url + "/collections/small/items?limit=20")
    page.locator("[data-map][data-state=ready]").wait_for()
    assert serious_violations(page, axe_source) == []
    screenshot(page, artifact_dir / "items.png")
    watched.assert_clean()
