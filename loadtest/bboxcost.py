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

``--stages`` also times the pieces of a bbox query by hand, with the calls and
the SQL the index makes, so that the shares add up without a profiler's
overhead. They follow the current index design (the in-memory bounds scan of
format 3, the features file of format 4); a tree of an older format has no
stages to time.
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
    con.execute(f"PRAGMA cache_size=-{sqlite_index.PAGE_CACHE_KIB}")
    steps: dict[str, float] = {}

    def timed(name: str, work: Callable[[Any], Any], inputs: list[Any]) -> list[Any]:
        started = time.process_time()
        results = [work(item) for item in inputs]
        steps[name] = (time.process_time() - started) / len(boxes) * 1e6
        return results

    found = timed("scan the bounds arrays (settled + left to test)", index._boxes.candidates,
                  boxes)
    steps["settled per box (mean)"] = statistics.mean(len(c.matched) for c in found)
    steps["left for GEOS per box (mean)"] = statistics.mean(len(c.to_test) for c in found)
    wkbs = timed("read their WKB (SQLite, by fid)", lambda c: con.execute(
        f"SELECT fid, wkb FROM shapes WHERE fid IN {sqlite_index._FIDS}",
        (sqlite_index._fid_list(c.to_test),)).fetchall(), found)
    shapes = timed("WKB -> GEOS (shapely.from_wkb)", lambda rows: shapely.from_wkb(
        [w for _, w in rows]), wkbs)

    def test(pair: tuple[tuple[float, ...], Any]) -> object:
        return shapely.intersects(sqlite_index.box_shape(pair[0]), pair[1])  # type: ignore[arg-type]

    timed("GEOS intersects (vectorised)", test, list(zip(boxes, shapes, strict=True)))
    matched = timed("the whole match (scan + WKB + GEOS, numpy union)", lambda box:
                    index.matching((box,)), boxes)
    timed("page of 100 from the features file (runs of neighbours)", lambda fids: list(
        index._features.runs(fids[:100])), matched)
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
