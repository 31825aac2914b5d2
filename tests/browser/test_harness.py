"""The browser harness itself: requests off 127.0.0.1 never leave, MapLibre runs under our CSP."""

from __future__ import annotations

from typing import Any

from geojson_api.web.assets import Assets, sources

from ..integration.servers import GunicornServer
from .conftest import Watched

# A map in the page, its worker from our own origin, the items of `small` drawn as
# circles; returns how many features MapLibre rendered.
DRAW_SMALL = """async ([worker, items]) => {
    maplibregl.setWorkerUrl(worker);
    const box = document.createElement("div");
    box.style.width = "600px";
    box.style.height = "400px";
    document.body.append(box);
    const map = new maplibregl.Map({container: box, center: [4.9, 45.75], zoom: 9,
        style: {version: 8, sources: {}, layers: [
            {id: "ground", type: "background", paint: {"background-color": "#eee"}}]}});
    await new Promise((resolve) => map.once("load", resolve));
    map.addSource("small", {type: "geojson", data: items});
    map.addLayer({id: "dots", type: "circle", source: "small"});
    await new Promise((resolve) => map.once("idle", resolve));
    return map.queryRenderedFeatures({layers: ["dots"]}).length;
}"""


def test_requests_off_loopback_are_aborted_and_recorded(
        server: GunicornServer, watched: Watched) -> None:
    watched.expect_problems = True
    page = watched.page
    page.goto(server.url + "/healthz")
    outcome = page.evaluate("""() => fetch("http://example.com/x.js").then(
        () => "reached", () => "failed")""")
    assert outcome == "failed"
    assert watched.offsite == ["http://example.com/x.js"]
    assert watched.failed_requests and "example.com" in watched.failed_requests[0]
    watched.offsite.clear()
    watched.failed_requests.clear()
    watched.console_errors.clear()
    watched.assert_clean()


def test_maplibre_draws_under_the_content_security_policy(
        server: GunicornServer, watched: Watched) -> None:
    assets = Assets.collect(sources())  # the same files, so the same hashed names
    page = watched.page
    response = page.goto(server.url + "/api.html")
    assert response is not None
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.add_style_tag(url=assets.url("maplibre-gl.css"))
    page.add_script_tag(url=assets.url("maplibre-gl-csp.js"))
    drawn: Any = page.evaluate(DRAW_SMALL, [assets.url("maplibre-gl-csp-worker.js"),
                                            "/collections/small/items?limit=100"])
    assert drawn > 0
    watched.assert_clean()
