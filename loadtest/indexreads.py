"""What reading the spatial index without a memory map costs, in one process.

The index is read with ``PRAGMA mmap_size=0`` since a file truncated under a
map kills its reader with SIGBUS (docs/reliability.md). This script answers
the same bbox pages (``limit=100``, map-sized boxes from
``featurequeries.make_boxes``) and features by id from one index, with reads
and with a memory map, alternating rounds, and prints CPU microseconds per
query (``time.process_time``; the page cache is warm for both).

Usage::

    python loadtest/indexreads.py INDEX.sqlite SOURCE.geojson [--rounds 5]

where INDEX.sqlite is a version's ``index.sqlite`` and SOURCE.geojson the
same version's data (for the boxes and ids).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from featurequeries import load_features, make_boxes, pick_ids
from geojson_api.features import sqlite_index
from geojson_api.features.query import FeatureQuery

MMAP_BYTES = 1 << 34


def open_index(path: Path, mmap: bool) -> sqlite_index.SQLiteIndex:
    index = sqlite_index.SQLiteIndex(path)
    if mmap:  # what the index did before: pages straight from the page cache
        connect = sqlite_index._connect

        def mapped(p: Path) -> object:
            con = connect(p)
            con.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
            return con

        index.close()
        sqlite_index._connect = mapped  # type: ignore[assignment]
        try:
            index = sqlite_index.SQLiteIndex(path)
            for _ in range(4):  # fill the pool with mapped connections
                with index._connection():
                    pass
        finally:
            sqlite_index._connect = connect
    return index


def per_query_us(work: list[Callable[[], object]]) -> float:
    started = time.process_time()
    for job in work:
        job()
    return (time.process_time() - started) / len(work) * 1e6


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("index", type=Path)
    parser.add_argument("source", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    features = load_features(args.source)
    boxes = [box for box, _ in make_boxes(features)]
    ids = [str(i) for i in pick_ids(features)]
    results: dict[str, dict[str, list[float]]] = {"read": {}, "mmap": {}}
    for round_no in range(args.rounds):
        for mode in (("read", "mmap") if round_no % 2 == 0 else ("mmap", "read")):
            index = open_index(args.index, mode == "mmap")

            def page(box: tuple[float, ...], index: sqlite_index.SQLiteIndex = index) -> int:
                found = index.query(FeatureQuery(boxes=(box,), limit=100))  # type: ignore[arg-type]
                return sum(1 for _ in found.features)

            per_query_us([lambda b=b: page(b) for b in boxes[:20]])  # warm its cache
            bbox = per_query_us([lambda b=b: page(b) for b in boxes])
            by_id = per_query_us([lambda i=i, x=index: x.feature(i) for i in ids])
            results[mode].setdefault("bbox", []).append(bbox)
            results[mode].setdefault("id", []).append(by_id)
            index.close()
            print(f"round {round_no + 1} {mode}: bbox+limit=100 {bbox:,.0f} us, "
                  f"by id {by_id:,.0f} us", flush=True)
    for kind in ("bbox", "id"):
        read, mmap = (statistics.median(results[m][kind]) for m in ("read", "mmap"))
        print(f"{kind}: median CPU per query, reads {read:,.0f} us, mmap {mmap:,.0f} us, "
              f"reads/mmap {read / mmap:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
