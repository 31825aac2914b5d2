"""CPU per uncached feature query in one process, and where a bbox query's CPU goes.

    python loadtest/bboxcost.py DATA_DIR [--rounds 5] [--stages] [--out FILE.json]

``DATA_DIR`` holds ``large.geojson`` (``geojson-api sample``). The app of the
source tree first on ``PYTHONPATH`` is built over it (``create_app``, page
cache off, tiles off) and its index built if missing (into ``DATA_DIR/.state``;
give each tree its own folder, the index format may differ). Then, in rounds,
each query list of the feature benchmark is answered twice over:

* ``index``: ``SQLiteIndex.query`` / ``feature`` with every feature consumed
  (no HTTP, no Flask);
* ``app``: the same request through the whole WSGI app (Flask's test client:
  routing, parsing, ETag, links, the streamed body), without Gunicorn.

The lists are ``featurequeries``' 200 map-sized boxes (``bbox`` +
``limit=100``), 200 ids and the ``limit=1000`` first page, as in
``loadtest/features.py``. CPU is ``time.process_time`` per query; the printed
figure is the median over rounds, with the range.

``--stages`` also times the pieces of a bbox query by hand, with the SQL the
index runs, so that the shares add up without a profiler's overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import shapely

from featurequeries import bbox_param, load_features, make_boxes, pick_ids
from geojson_api import Settings, create_app
from geojson_api.features import sqlite_index
from geojson_api.features.query import FeatureQuery

DATASET = "large"
READY_SECONDS = 600.0


def per_query_us(jobs: list[Callable[[], object]]) -> float:
    started = time.process_time()
    for job in jobs:
        job()
    return (time.process_time() - started) / len(jobs) * 1e6


def wait_ready(client: Any) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        doc = client.get(f"/collections/{DATASET}").get_json(silent=True) or {}
        index = doc.get("index") or {}
        if index.get("status") == "ready":
            return
        if index.get("status") == "failed":
            raise SystemExit(f"bboxcost: the index failed: {index}")
        time.sleep(0.5)
    raise SystemExit("bboxcost: the index was not ready in time")


def stages(index: sqlite_index.SQLiteIndex, boxes: list[tuple[float, ...]]) -> dict[str, float]:
    """CPU µs per box of each step of a bbox query, done one after the other by hand."""
    con = sqlite_index._connect(index.path)
    new_format = any(row[1] == "connected" for row in con.execute("PRAGMA table_info(shapes)"))
    overlap, inside = sqlite_index._OVERLAP, sqlite_index._INSIDE
    steps: dict[str, float] = {}

    def timed(name: str, work: Callable[[tuple[float, ...]], object]) -> list[Any]:
        results = []
        started = time.process_time()
        for box in boxes:
            results.append(work(box))
        steps[name] = (time.process_time() - started) / len(boxes) * 1e6
        return results

    def box_params(box: tuple[float, ...]) -> list[float]:
        return [*sqlite_index._overlap_params(box), *sqlite_index._inside_params(box)]  # type: ignore[arg-type]

    timed("count inside (R*Tree, SQL count)", lambda box: con.execute(
        f"SELECT count(*) FROM bounds b WHERE {overlap} AND {inside}", box_params(box)).fetchone())
    edges = timed("edge candidates with WKB (fid, wkb)", lambda box: con.execute(
        f"SELECT b.fid, s.wkb FROM bounds b CROSS JOIN shapes s ON s.fid = b.fid "
        f"WHERE {overlap} AND NOT {inside}", box_params(box)).fetchall())
    steps["edge candidates per box (mean)"] = statistics.mean(len(e) for e in edges)
    wkbs = iter(edges)
    shapes = timed("WKB -> GEOS (shapely.from_wkb)", lambda box: shapely.from_wkb(
        [w for _, w in next(wkbs) if w is not None]))
    geos = iter(shapes)

    def test(box: tuple[float, ...]) -> object:
        area = sqlite_index.box_shape(box)  # type: ignore[arg-type]
        shapely.prepare(area)
        return shapely.intersects(area, next(geos))

    timed("GEOS intersects (prepared box, vectorised)", test)
    if new_format:
        settled = sqlite_index._SETTLED
        apart = sqlite_index._APART
        rows = timed("edge candidates settled on exact bounds (this tree)", lambda box:
                     con.execute(f"SELECT b.fid, {settled}, CASE WHEN NOT {settled} THEN s.wkb "
                                 "END FROM bounds b CROSS JOIN shapes s ON s.fid = b.fid "
                                 f"WHERE {overlap} AND NOT {inside} AND NOT {apart}",
                                 [*box, *box_params(box)]).fetchall())
        steps["edge candidates left for GEOS per box (mean)"] = statistics.mean(
            sum(1 for _, s, _ in r if not s) for r in rows)
    page = f"SELECT f.idjson, f.geom, f.props FROM bounds b CROSS JOIN features f " \
           f"ON f.fid = b.fid WHERE {overlap} LIMIT 100"
    pages = timed("page of 100 rows (no edge filter)", lambda box: con.execute(
        page, sqlite_index._overlap_params(box)).fetchall())  # type: ignore[arg-type]
    rows_iter = iter(pages)
    timed("serialise 100 features", lambda box: [sqlite_index._serialise(r, None)
                                                 for r in next(rows_iter)])
    con.close()
    return steps


def measure(direct: dict[str, list[Any]], per_url: dict[str, list[Any]],
            rounds: int) -> dict[str, dict[str, Any]]:
    """CPU µs per query of each kind, in the index alone and through the app, per round."""
    for kind in direct:  # warm the page cache and the connections
        per_query_us(direct[kind])
        per_query_us(per_url[kind])
    results: dict[str, list[float]] = {}
    for round_no in range(rounds):
        for kind in direct:
            for layer, jobs in (("index", direct[kind]), ("app", per_url[kind])):
                results.setdefault(f"{kind} {layer}", []).append(per_query_us(jobs))
        print(f"round {round_no + 1}: " + ", ".join(
            f"{k} {v[-1]:,.0f}" for k, v in results.items()), flush=True)
    summary = {k: {"median_us": statistics.median(v), "min_us": min(v), "max_us": max(v),
                   "rounds": v} for k, v in results.items()}
    for key, value in summary.items():
        print(f"{key}: {value['median_us']:,.0f} us CPU per query "
              f"({value['min_us']:,.0f}-{value['max_us']:,.0f})")
    return summary


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stages", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    source = args.data / f"{DATASET}.geojson"
    features = load_features(source)
    boxes = [box for box, _ in make_boxes(features)]
    ids = [str(i) for i in pick_ids(features)]
    del features
    os.environ.pop("GEOJSON_API_PROFILE_DIR", None)
    app = create_app(Settings(data_dir=str(args.data), settle_seconds=0.0, tiles=False,
                              features_cache_max_bytes=0))
    client = app.test_client()
    wait_ready(client)
    catalog = app.extensions["catalog"]
    index = app.extensions["feature_indexes"].backend(catalog.current(DATASET))
    urls = {"bbox": [f"/collections/{DATASET}/items?bbox={bbox_param(b)}&limit=100"
                     for b in boxes],
            "id": [f"/collections/{DATASET}/items/{i}" for i in ids],
            "page": [f"/collections/{DATASET}/items?limit=1000"] * 20}

    def consume(query: FeatureQuery) -> int:
        return sum(1 for _ in index.query(query).features)

    def get(url: str) -> int:
        response = client.get(url)
        if response.status_code != 200:
            raise SystemExit(f"bboxcost: {url} answered {response.status_code}")
        return len(response.get_data())

    direct = {"bbox": [lambda b=b: consume(FeatureQuery(boxes=(b,), limit=100)) for b in boxes],
              "id": [lambda i=i: index.feature(i) for i in ids],
              "page": [lambda: consume(FeatureQuery(limit=1000))] * 20}
    per_url = {kind: [lambda u=u: get(u) for u in urls[kind]] for kind in urls}
    summary = measure(direct, per_url, args.rounds)
    out: dict[str, Any] = {"summary": summary, "load_average": os.getloadavg(),
                           "format": index.info().get("format"), "boxes": len(boxes)}
    if args.stages:
        out["stages"] = stages(index, boxes)  # type: ignore[arg-type]
        for name, value in out["stages"].items():
            print(f"stage {name}: {value:,.1f}")
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
