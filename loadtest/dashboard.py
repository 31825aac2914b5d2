"""The dashboard with the 50 MB sample, in Chromium, against a naive dashboard that loads
``/geojson/large`` whole into the same MapLibre: time to the first drawn feature, bytes
the browser fetched, and the page's memory.

    python loadtest/dashboard.py [--url http://127.0.0.1:8000] [--rounds 3] [--out var/bench]

Without ``--url`` it serves the large sample itself (``geojson-api serve``, two gthread
workers) and waits until its index and tiles are built. Each round opens both pages in
turn, each in a fresh browser context (empty cache), in a 1280x900 viewport:

- **ours**: ``/dashboard/``, then the large layer turned on (what a person does);
- **naive**: a page with the same MapLibre build, the same layers and the same view,
  whose source is the whole file (the browser asks with its usual Accept-Encoding,
  so it gets the brotli variant).

Measured per page: milliseconds from navigation start to the first animation frame in
which MapLibre reports a drawn feature of the layer; bytes of every response (headers
and bodies as transferred; the MapLibre library itself is the same on both sides, so
the data bytes are also given without ``/assets/``); after the view has settled, the
main thread's JS heap (Chrome DevTools Protocol ``Performance.getMetrics``), the
resident memory of the renderer processes (the page and MapLibre's workers, where
GeoJSON is parsed), and the main thread's long tasks (over 50 ms: the longest, and the
time they blocked past 50 ms each, as Lighthouse's total blocking time counts it).
Results go to ``--out`` as JSON and Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from geojson_api.lab.machine import machine_info
from geojson_api.lab.tables import factor, fmt, median, table, write_pair
from geojson_api.sample import write_samples

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
VIEWPORT = {"width": 1280, "height": 900}
READY_SECONDS = 900.0
NAME = "large"

NAIVE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>naive dashboard</title>
<link rel="stylesheet" href="{css}"><style>#map {{ width: {width}px; height: {height}px; }}</style>
</head><body><div id="map"></div>
<script src="{js}"></script>
<script>
maplibregl.setWorkerUrl("{worker}");
const KINDS = {{fill: ["Polygon", "MultiPolygon"], line: ["LineString", "MultiLineString"],
               circle: ["Point", "MultiPoint"]}};
const map = new maplibregl.Map({{container: "map", bounds: {bounds},
  fitBoundsOptions: {{padding: 24}}, attributionControl: false,
  style: {{version: 8, sources: {{}}, layers: [{{id: "ground", type: "background",
           paint: {{"background-color": "#eef1f4"}}}}]}}}});
map.on("load", () => {{
  map.addSource("whole", {{type: "geojson", data: "/geojson/{name}"}});
  for (const [kind, types] of Object.entries(KINDS)) {{
    map.addLayer({{id: `layer-{name}-${{kind}}`, type: kind, source: "whole",
                  filter: ["in", ["geometry-type"], ["literal", types]]}});
  }}
}});
window.benchMap = map;
</script></body></html>
"""

FIRST_FEATURE = """(name) => new Promise((resolve) => {
    const layers = ["fill", "line", "circle"].map((k) => `layer-${name}-${k}`);
    const look = () => {
        const map = window.benchMap || (window.dashboard && window.dashboard.map);
        if (map && layers.every((id) => map.getLayer(id))
                && map.queryRenderedFeatures({layers}).length > 0) {
            resolve(performance.now());
        } else {
            requestAnimationFrame(look);
        }
    };
    look();
})"""

# Every main-thread task over 50 ms, from the first byte on (how responsive the page is).
LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) window.__longTasks.push(entry.duration);
}).observe({type: "longtask", buffered: true});
"""

SETTLED = """() => new Promise((resolve) => {
    const map = window.benchMap || window.dashboard.map;
    let calm = 0;
    const check = () => {
        calm = map.loaded() && map.areTilesLoaded() && !map.isMoving() ? calm + 1 : 0;
        if (calm >= 3) resolve(); else setTimeout(check, 100);
    };
    check();
})"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def wait_built(url: str) -> str:
    """Wait until the dataset's index (and tiles, when the server has them) are built;
    returns how a big layer will be drawn."""
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        try:
            index = get_json(f"{url}/collections/{NAME}")["index"]["status"]
            tiles = get_json(f"{url}/collections/{NAME}/tiles/WebMercatorQuad")["tiles"]["status"]
        except OSError:
            time.sleep(1)
            continue
        if index == "ready" and tiles in ("ready", "failed"):
            return "tiles" if tiles == "ready" else "pages"
        time.sleep(2)
    raise SystemExit(f"dashboard: {NAME} was not built in {READY_SECONDS:.0f} s")


def serve(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    write_samples(work / "data", [NAME])
    port = free_port()
    argv = [sys.executable, "-m", "geojson_api", "serve", "--data", str(work / "data"),
            "--bind", f"127.0.0.1:{port}", "--workers", "2"]
    env = {**os.environ, "GEOJSON_API_SETTLE_SECONDS": "0"}
    with open(work / "serve.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        try:
            get_json(f"{url}/readyz")
            return proc, url
        except OSError:
            if proc.poll() is not None:
                where = work / "serve.log"
                raise SystemExit(f"dashboard: the server exited; see {where}") from None
            time.sleep(0.5)
    raise SystemExit("dashboard: the server did not start")


def naive_page(url: str) -> str:
    """The naive page, with the dashboard's own MapLibre files and the same view."""
    with urllib.request.urlopen(f"{url}/dashboard/", timeout=30) as response:
        html = response.read().decode()
    found = {name: re.search(rf'"(/assets/{re.escape(name)}\.[0-9a-f]+\.{ext})"', html)
             for name, ext in (("maplibre-gl", "css"), ("maplibre-gl-csp", "js"),
                               ("maplibre-gl-csp-worker", "js"))}
    missing = [name for name, match in found.items() if match is None]
    if missing:
        raise SystemExit(f"dashboard: /dashboard/ links no {', '.join(missing)}")
    bbox = get_json(f"{url}/api/datasets/{NAME}")["bbox"]
    return NAIVE.format(css=found["maplibre-gl"][1], js=found["maplibre-gl-csp"][1],  # type: ignore[index]
                        worker=found["maplibre-gl-csp-worker"][1],  # type: ignore[index]
                        bounds=json.dumps([[bbox[0], bbox[1]], [bbox[2], bbox[3]]]),
                        name=NAME, width=900, height=544)


def renderer_rss(browser_pid: int) -> int:
    """Resident bytes of the browser's renderer processes (pages and their workers)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"--type=renderer" not in cmdline or not _descends(int(entry.name), browser_pid):
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return False


def one_page(browser: Any, browser_pid: int, url: str, side: str, naive: str) -> dict[str, Any]:
    context = browser.new_context(viewport=VIEWPORT)
    seen: list[tuple[str, int]] = []
    context.on("requestfinished", lambda request: seen.append((request.url, _size(request))))
    if side == "naive":
        context.route(f"{url}/naive-dashboard.html",
                      lambda route: route.fulfill(body=naive, content_type="text/html"))
    context.add_init_script(LONG_TASKS)
    page = context.new_page()
    try:
        if side == "ours":
            page.goto(f"{url}/dashboard/")
            page.evaluate("() => window.dashboard.started")
            page.evaluate(f"() => {{ window.dashboard.show('{NAME}'); }}")
        else:
            page.goto(f"{url}/naive-dashboard.html")
        first_ms = page.evaluate(FIRST_FEATURE, NAME)
        page.evaluate(SETTLED)
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        drawn = page.evaluate("""(name) => {
            const map = window.benchMap || window.dashboard.map;
            const layers = ["fill", "line", "circle"].map((k) => `layer-${name}-${k}`);
            return new Set(map.queryRenderedFeatures({layers}).map((f) => f.id)).size;
        }""", NAME)
        rss = renderer_rss(browser_pid)
        tasks = page.evaluate("() => window.__longTasks")
    finally:
        context.close()
    return {"first_feature_ms": first_ms, "bytes": sum(size for _, size in seen),
            "data_bytes": sum(size for u, size in seen if "/assets/" not in u),
            "requests": len(seen), "js_heap_bytes": metrics.get("JSHeapUsedSize"),
            "renderer_rss_bytes": rss, "drawn_features": drawn,
            "longest_task_ms": max(tasks, default=0.0),
            # Lighthouse's "total blocking time": what each long task holds past 50 ms
            "blocking_ms": sum(t - 50 for t in tasks)}


def _size(request: Any) -> int:
    sizes = request.sizes()
    return int(sizes["responseBodySize"] + sizes["responseHeadersSize"])


def run(url: str, rounds: int) -> dict[str, list[dict[str, Any]]]:
    from playwright.sync_api import sync_playwright

    naive = naive_page(url)
    results: dict[str, list[dict[str, Any]]] = {"ours": [], "naive": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        browser_pid = _browser_pid()
        try:
            for side in ("ours", "naive"):  # warm-up: the server's page cache, both paths
                one_page(browser, browser_pid, url, side, naive)
            for _ in range(rounds):
                for side in ("ours", "naive"):
                    results[side].append(one_page(browser, browser_pid, url, side, naive))
        finally:
            browser.close()
    return results


def _browser_pid() -> int:
    """The newest Chromium browser process started by this one (Playwright's)."""
    mine = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
            and _descends(int(p.name), os.getpid()) and int(p.name) != os.getpid()]
    for pid in sorted(mine, reverse=True):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"chromium" in cmdline and b"--type=" not in cmdline:
            return pid
    return os.getpid()


def report(results: dict[str, list[dict[str, Any]]], mode: str) -> str:
    def med(side: str, key: str) -> float | None:
        return median(r[key] for r in results[side])

    rows = []
    for key, label, scale, unit in (
            ("first_feature_ms", "first drawn feature", 1, " ms"),
            ("bytes", "bytes fetched (all)", 1e6, " MB"),
            ("data_bytes", "bytes fetched (data, not /assets/)", 1e6, " MB"),
            ("js_heap_bytes", "JS heap (main thread)", 1e6, " MB"),
            ("renderer_rss_bytes", "renderer memory (RSS)", 1e6, " MB"),
            ("longest_task_ms", "longest main-thread task", 1, " ms"),
            ("blocking_ms", "main thread blocked (tasks past 50 ms)", 1, " ms"),
            ("drawn_features", "features drawn in the view", 1, "")):
        ours, naive = med("ours", key), med("naive", key)
        ratio = factor(naive, ours) if key != "drawn_features" else "—"
        rows.append([label, fmt(None if ours is None else ours / scale, unit),
                     fmt(None if naive is None else naive / scale, unit), ratio])
    return table([f"{NAME}, median of {len(results['ours'])} rounds (ours: {mode})",
                  "ours", "naive", "naive / ours"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url",
                        help="a running server with the large sample (else one is started)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("var/bench"))
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not Path(CHROMIUM).is_file():
        raise SystemExit(f"dashboard: {CHROMIUM} is missing (apt-get install chromium)")
    work = Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
    proc = None
    try:
        if args.url:
            url = args.url.rstrip("/")
        else:
            proc, url = serve(work)
        mode = wait_built(url)
        results = run(url, args.rounds)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    markdown = report(results, mode)
    write_pair(args.out, "dashboard", {"machine": machine_info(), "mode": mode,
                                       "rounds": results, "load_average": os.getloadavg()},
               markdown)
    print(markdown, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
