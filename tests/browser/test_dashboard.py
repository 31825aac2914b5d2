"""The dashboard in Chromium over small, medium and large (50 MB): layers on and off, what
MapLibre drew against the data, bytes the browser fetched, panning, clicking, filtering,
accessibility; and a page of another origin reading the service with fetch()."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ..conftest import copy_prepared
from ..integration.servers import GunicornServer, free_port
from .conftest import Watched, screenshot, serious_violations, watch

READY_TIMEOUT = 600  # seconds for the large sample's index or tiles on a busy machine


def _index_state(url: str, name: str) -> str:
    return str(requests.get(f"{url}/collections/{name}", timeout=30).json()["index"]["status"])


def _tiles_state(url: str, name: str) -> str:
    doc = requests.get(f"{url}/collections/{name}/tiles/WebMercatorQuad", timeout=30).json()
    return str(doc["tiles"]["status"])


def _wait(state: Callable[[str, str], str], url: str, name: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        found = state(url, name)
        if found == "ready":
            return
        assert found != "failed", f"{state.__name__} of {name}: failed"
        time.sleep(2)
    raise AssertionError(f"{state.__name__} of {name} was not ready in {READY_TIMEOUT} s")


@pytest.fixture(scope="module")
def server(prepared: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[GunicornServer]:
    """small, medium and large with their indexes but no tiles, which the workers build
    while the tests watch (the dashboard pages large until they are there)."""
    data = copy_prepared(prepared, tmp_path_factory.mktemp("dashboard-data"), tiles=False)
    log = tmp_path_factory.mktemp("dashboard-logs") / "gunicorn.log"
    srv = GunicornServer(data, log, workers=2,
                         env={"GEOJSON_API_PREPARE_ON_START": "false"}).start()
    try:
        for name in ("small", "medium", "large"):
            _wait(_index_state, srv.url, name)
        yield srv
    finally:
        srv.stop()
        assert "Traceback" not in srv.log()


def _features(server: GunicornServer, name: str) -> list[dict[str, Any]]:
    return json.loads((server.data_dir / f"{name}.geojson").read_bytes())["features"]  # type: ignore[no-any-return]


class Transfers:
    """Bytes of every response body the page received, by URL."""

    def __init__(self, page: Any) -> None:
        self.seen: list[tuple[str, int]] = []
        page.on("requestfinished", self._finished)

    def _finished(self, request: Any) -> None:
        self.seen.append((request.url, request.sizes()["responseBodySize"]))

    def total(self, part: str = "") -> int:
        return sum(size for url, size in self.seen if part in url)


def _open(watched: Watched, url: str) -> Any:
    page = watched.page
    response = page.goto(url + "/dashboard/")
    assert response is not None and response.status == 200
    page.evaluate("() => window.dashboard.started")
    return page


def _turn_on(page: Any, name: str) -> None:
    page.get_by_label(f"Show {name}", exact=True).check()
    page.wait_for_function("(name) => window.dashboard.mode(name) !== null", arg=name)
    page.evaluate("() => window.dashboard.settled()")


def _rendered(page: Any, name: str) -> set[Any]:
    return set(page.evaluate("(name) => window.dashboard.renderedIds(name)", name))


def test_large_is_paged_while_its_tiles_are_built_then_tiled(
        server: GunicornServer, watched: Watched) -> None:
    """First in this module: the index of large is ready, its tiles (made from the index,
    by the same job queue) are not yet."""
    assert _tiles_state(server.url, "large") != "ready"
    transfers = Transfers(watched.page)
    page = _open(watched, server.url)
    _turn_on(page, "large")
    assert page.evaluate("() => window.dashboard.mode('large')") == "pages"
    assert len(_rendered(page, "large")) == 1000  # one bbox page of the items in view
    status = page.locator("#status").inner_text()
    assert re.search(r"large: 1,000 of \d{2,3},\d{3} features in view", status), status
    _wait(_tiles_state, server.url, "large")
    page.wait_for_function("() => window.dashboard.mode('large') === 'tiles'",
                           timeout=60_000)  # the layer asks again every 10 s
    page.evaluate("() => window.dashboard.settled()")
    assert len(_rendered(page, "large")) > 1000
    assert not [url for url, _ in transfers.seen if "/geojson/large" in url]
    watched.assert_clean()


def test_lists_the_datasets_and_filters_them_by_name(server: GunicornServer,
                                                     watched: Watched) -> None:
    page = _open(watched, server.url)
    rows = page.locator("#datasets tbody tr")
    assert sorted(rows.evaluate_all("(rows) => rows.map((r) => r.dataset.name)")) == [
        "large", "medium", "small"]
    large = page.locator('#datasets tr[data-name="large"]')
    text = large.inner_text()
    listing = requests.get(f"{server.url}/api/datasets/large", timeout=30).json()
    for shown in ("ready", listing["version"][:8], f"{listing['features']}", "gzip, br"):
        assert shown in text, shown
    page.get_by_label("Filter by name").fill("med")
    assert page.locator("#datasets tbody tr:visible").count() == 1
    assert page.locator("#shown").inner_text() == "1 of 3 datasets"
    page.get_by_label("Filter by name").fill("")
    assert page.locator("#datasets tbody tr:visible").count() == 3
    watched.assert_clean()


def test_small_is_drawn_whole_and_every_feature_is_on_the_map(
        server: GunicornServer, watched: Watched) -> None:
    page = _open(watched, server.url)
    page.evaluate("() => window.dashboard.fit('small')")
    _turn_on(page, "small")
    assert page.evaluate("() => window.dashboard.mode('small')") == "file"
    ids = {f["id"] for f in _features(server, "small")}
    assert _rendered(page, "small") == ids
    page.get_by_label("Show small", exact=True).uncheck()
    assert _rendered(page, "small") == set()
    watched.assert_clean()


def test_large_draws_what_is_in_view_without_the_whole_file(
        server: GunicornServer, watched: Watched) -> None:
    transfers = Transfers(watched.page)
    page = _open(watched, server.url)
    _turn_on(page, "large")
    assert page.evaluate("() => window.dashboard.mode('large')") == "tiles"
    first = _rendered(page, "large")
    assert len(first) > 100
    size = (server.data_dir / "large.geojson").stat().st_size
    assert not [url for url, _ in transfers.seen if "/geojson/large" in url]
    assert transfers.total() < size / 10, transfers.seen
    # panning to another part of the extent loads features not drawn before
    page.evaluate("() => { const m = window.dashboard.map; m.jumpTo({zoom: m.getZoom() + 3}); }")
    page.evaluate("() => window.dashboard.settled()")
    before = _rendered(page, "large")
    page.evaluate("() => window.dashboard.map.panBy([500, 300], {animate: false})")
    page.evaluate("() => window.dashboard.settled()")
    after = _rendered(page, "large")
    assert after - before, "panning drew no new feature"
    assert transfers.total() < size / 10
    watched.assert_clean()


def _point_on_screen(page: Any, name: str) -> tuple[float, float, Any]:
    """The screen position and id of a drawn point feature of ``name``."""
    found = page.evaluate("""(name) => {
        const m = window.dashboard.map;
        const points = m.queryRenderedFeatures({layers: [`layer-${name}-circle`]});
        const f = points.find((p) => p.geometry.type === "Point");
        const px = m.project(f.geometry.coordinates);
        const box = m.getCanvas().getBoundingClientRect();
        return {x: box.left + px.x, y: box.top + px.y, id: f.id};
    }""", name)
    return found["x"], found["y"], found["id"]


def _as_javascript_shows(value: Any) -> str:
    """A JSON scalar as ``String(value)`` writes it in the page."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_clicking_a_feature_shows_its_properties(server: GunicornServer,
                                                 watched: Watched) -> None:
    page = _open(watched, server.url)
    page.evaluate("() => window.dashboard.fit('small')")
    _turn_on(page, "small")
    x, y, fid = _point_on_screen(page, "small")
    page.mouse.click(x, y)
    panel = page.locator("#feature table")
    panel.wait_for()
    feature = requests.get(f"{server.url}/collections/small/items/{fid}", timeout=30).json()
    assert panel.locator("caption").inner_text() == f"small {fid}"
    shown = dict(zip(panel.locator("tbody th").all_inner_texts(),
                     panel.locator("tbody td").all_inner_texts(), strict=True))
    for key, value in feature["properties"].items():
        assert shown[key] == _as_javascript_shows(value), key
    watched.assert_clean()


def test_the_property_filter_changes_what_is_drawn(server: GunicornServer,
                                                   watched: Watched) -> None:
    page = _open(watched, server.url)
    page.evaluate("() => window.dashboard.fit('small')")
    _turn_on(page, "small")
    kinds = Counter(f["properties"]["kind"] for f in _features(server, "small"))
    kind, count = kinds.most_common(2)[1]
    page.get_by_label("Layer", exact=True).select_option("small")
    page.get_by_label("Property", exact=True).select_option("kind")
    page.get_by_label("Value", exact=True).fill(kind)
    page.get_by_role("button", name="Apply").click()
    page.evaluate("() => window.dashboard.settled()")
    wanted = {f["id"] for f in _features(server, "small") if f["properties"]["kind"] == kind}
    assert len(wanted) == count and _rendered(page, "small") == wanted
    page.get_by_label("Value", exact=True).fill("x")
    page.get_by_label("Property", exact=True).select_option("rank")
    page.get_by_role("button", name="Apply").click()
    assert "expected an integer" in page.locator("#filter-note").inner_text()
    page.get_by_role("button", name="Clear").click()
    page.evaluate("() => window.dashboard.settled()")
    assert len(_rendered(page, "small")) == len(_features(server, "small"))
    watched.assert_clean()


def test_readiness_panel(server: GunicornServer, watched: Watched) -> None:
    page = _open(watched, server.url)
    page.locator("#ready .state-ready").wait_for()
    assert "cache backend" in page.locator("#ready table").inner_text()
    watched.assert_clean()


def test_traffic_panel(server: GunicornServer, watched: Watched) -> None:
    page = _open(watched, server.url)
    page.locator("#traffic table").wait_for()
    first = page.locator("#traffic table").inner_text()
    assert "since start" in first and "instance" in first, first
    # Each poll puts the page's own next one 15 s away: none falls between the polls here.
    page.evaluate("() => window.dashboard.traffic()")
    page.wait_for_timeout(1100)  # the next digest is at least a second later
    for _ in range(5):
        assert requests.get(f"{server.url}/no/such/page", timeout=5).status_code == 404
    # A worker adds its counts to the shared files once a second (a scrape flushes only
    # the worker answering it), so the 404s show in the first interval after the flush
    # of the worker that answered them: poll until one shows them, for at most 10 s.
    cell = page.locator("#traffic tr", has_text="client errors (4xx)").locator("td")
    deadline = time.monotonic() + 10
    while True:
        page.evaluate("() => window.dashboard.traffic()")
        text = page.locator("#traffic table").inner_text()
        if cell.inner_text() not in ("0.0 %", "\u2013") or time.monotonic() > deadline:
            break
        page.wait_for_timeout(300)
    assert "requests/s" in text and "p95 time" in text, text
    assert cell.inner_text() not in ("0.0 %", "\u2013"), text  # the 404s of an interval
    watched.assert_clean()


def test_dashboard_has_no_serious_accessibility_violation(
        server: GunicornServer, axe_context: Any, axe_source: str, artifact_dir: Path) -> None:
    watched = watch(axe_context)
    page = _open(watched, server.url)
    _turn_on(page, "small")
    _turn_on(page, "large")
    page.evaluate("() => window.dashboard.map.jumpTo({zoom: 13, center: [4.85, 45.76]})")
    page.evaluate("() => window.dashboard.settled()")
    assert serious_violations(page, axe_source) == []
    screenshot(page, artifact_dir / "dashboard.png")
    watched.assert_clean()


@pytest.fixture(scope="module")
def other_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A plain page on a second port: another origin for the browser."""
    folder = tmp_path_factory.mktemp("other-origin")
    (folder / "index.html").write_text("<!doctype html><title>elsewhere</title><p>elsewhere")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


CROSS_ORIGIN_READ = """async (base) => {
    const out = {};
    for (const path of ["/geojson/small", "/collections/small/items?limit=3"]) {
        const r = await fetch(base + path, {headers: {"If-None-Match": '"nothing"'}});
        const body = await r.json();
        out[path] = {status: r.status, etag: r.headers.get("ETag"),
                     length: r.headers.get("Content-Length"),
                     features: body.features.length};
    }
    const part = await fetch(base + "/geojson/small", {headers: {Range: "bytes=0-9"}});
    out.range = {status: part.status, range: part.headers.get("Content-Range"),
                 text: await part.text()};
    return out;
}"""


def test_a_page_of_another_origin_reads_files_and_items(
        server: GunicornServer, watched: Watched, other_origin: str) -> None:
    page = watched.page
    page.goto(other_origin + "/index.html")
    got = page.evaluate(CROSS_ORIGIN_READ, server.url)
    small = requests.get(f"{server.url}/geojson/small", timeout=30)
    assert got["/geojson/small"]["status"] == 200
    assert got["/geojson/small"]["etag"] == small.headers["ETag"]
    assert got["/geojson/small"]["features"] == len(_features(server, "small"))
    items = got["/collections/small/items?limit=3"]
    assert items["status"] == 200 and items["features"] == 3
    assert items["etag"].startswith('W/"')
    assert got["range"]["status"] == 206
    assert got["range"]["range"].startswith("bytes 0-9/")
    assert got["range"]["text"] == small.content[:10].decode()
    watched.assert_clean()
