"""Vector tiles benchmark: our tiles (the app alone, and the stack with Nginx offload)
against tipg's MVT endpoint over PostGIS, side by side (issue #12).

What is compared
----------------
* ``ours``: ``geojson-api serve`` (featureservers.py), tiles read from the version's
  PMTiles archive and sent with sendfile;
* ``stack``: ``geojson-api stack up --offload nginx`` (lab.stacktarget) over the same
  data folder, once our tiles are built there: Nginx sends the tile's byte range of
  the archive after the app's X-Accel-Redirect;
* ``tipg``: tipg's ``/collections/public.large/tiles/WebMercatorQuad/{z}/{x}/{y}``
  over PostGIS, set up as for the feature benchmark (featureservers.py), with
  tipg's defaults (4096 units, 256-unit buffer, clipped, at most 10,000 features
  per tile). tipg makes each tile on request; ours are built once per version.

All serve the same 50 MB sample (``large.geojson``, integer ids; PostGIS keeps them
as its primary key ``id``, which tipg puts in each tile feature's properties, while
our MVT feature id is the OGC id).

Tile lists
----------
Seeded, so every run and every server gets the same tiles: up to ``--tiles`` random
tiles at each of zooms 8, 12 and 14 among those the dataset's extent touches (at
zoom 8 the extent touches only a few, so the list is all of them), plus ``view``:
the 20 tiles of a 5 x 4 map view at zoom 12 centred on the extent's centre. Each
list is cycled by a wrk Lua script (``-t2 -c10 --latency``) sending
``Accept-Encoding: gzip``; only the URL template differs between servers (ours is
``{tileMatrix}/{tileRow}/{tileCol}`` = z/y/x, tipg's is z/x/y).

Correctness first
-----------------
Before any load, every tile of our complete zoom (``completeTileMatrix`` in our
tileset metadata) in the lists is fetched from every server and decoded with
mapbox-vector-tile; the sets of feature ids are compared with ours, tile by tile,
and each difference is explained against a brute-force Shapely test of every
feature: ids that touch the tile, ids within one 256th of a tile (a pixel) of its
edge, ids that cannot be there. The stack's tile bytes must be ours.

Method
------
Like features.py (whose ``benchmark``, ``drive`` and summaries this reuses): for
each list and round every server is driven once, in rotated order, after waiting
until no server burns CPU; medians over rounds, CPU per tile over the server's whole
process tree (for tipg with PostgreSQL; for the stack Nginx, both Gunicorn
instances, Redis and the worker). Our tiles are built when ``serve`` starts
(Gunicorn's master prepares the dataset): the report gives the time from publish
to tiles ready from the version's own records, and the archive's size against the
source's.

Usage::

    python loadtest/tiles.py [--quick] [--servers ours,tipg,stack] [--out DIR]
        [--duration 10] [--rounds 3] [--tiles 100]

``--quick`` is a smoke run of our app only (3 s runs, one round, 10 check tiles).
This is not a test: no thresholds. Exit status 1 when a server cannot start or wrk
cannot connect; differences in the tiles are in the report.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sqlite3
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mapbox_vector_tile

# features.py and its siblings: Python puts this script's folder on sys.path.
from featurequeries import Features, brute_force, load_features
from features import (
    WRK_LUA,
    Run,
    Summary,
    add_common_options,
    benchmark,
    common_config,
    make_dataset,
    report_head,
    runs_table,
    summarize,
    summary_table,
    supervised_run,
)
from featureservers import DATASET, FeatureServer, get_json, start_server, wait_for_status
from geojson_api.lab import LabError
from geojson_api.lab.command import at_least_one, exit_code
from geojson_api.lab.procs import Supervisor
from geojson_api.lab.stacktarget import start_stack
from geojson_api.lab.tables import fmt, table, write_pair
from geojson_api.lab.targets import Target
from geojson_api.scan import scan
from geojson_api.tiles import grid
from geojson_api.tiles.grid import Tile

RESULTS_DIR = Path(__file__).resolve().parents[1] / "var" / "bench"
FULL_RUNS = (10, 3)  # seconds per wrk run, rounds
SERVERS = ("ours", "tipg", "stack")
ZOOMS = (8, 12, 14)
VIEW_ZOOM = 12
VIEW_SIZE = (5, 4)  # columns, rows: a 1280 x 1024 pixel map
TILE_COUNT = 100
SEED = 20261202
LISTS = (*(f"z{z}" for z in ZOOMS), "view")
LIST_TITLES = {**{f"z{z}": f"random tiles, zoom {z}" for z in ZOOMS},
               "view": f"{VIEW_SIZE[0]}x{VIEW_SIZE[1]} view, zoom {VIEW_ZOOM}"}
REQUEST_HEADERS = {"Accept-Encoding": "gzip"}
EDGE = 1 / grid.TILE_PIXELS  # a pixel of a 256-pixel tile, as a fraction of the tile
GOAL_RPS, GOAL_P99, GOAL_BUILD_SECONDS = 10.0, 0.1, 60.0
SURVEY_TILES = 2  # tiles of each list whose content is reported
TIPG_TILE_LIMIT = 10_000  # tipg's default TIPG_MAX_FEATURES_PER_TILE


# -- the tile lists ------------------------------------------------------------------------

def random_tiles(extent: grid.Box, z: int, count: int, seed: int = SEED) -> list[Tile]:
    """Up to ``count`` distinct tiles of zoom ``z`` that ``extent`` touches, drawn with a
    seeded generator (all of them, shuffled, when there are fewer)."""
    min_row, max_row, min_col, max_col = grid.limits(extent, z)
    cols = max_col - min_col + 1
    total = (max_row - min_row + 1) * cols
    picks = random.Random(f"{seed}/{z}").sample(range(total), min(count, total))
    return [Tile(z, min_row + i // cols, min_col + i % cols) for i in picks]


def view_tiles(extent: grid.Box, z: int = VIEW_ZOOM, size: tuple[int, int] = VIEW_SIZE
               ) -> list[Tile]:
    """The tiles a map of ``size`` tiles (columns, rows) centred on the extent's centre
    shows at zoom ``z``, row by row."""
    col, row = grid.position((extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2, z)
    first_col, first_row = round(col - size[0] / 2), round(row - size[1] / 2)
    last = (1 << z) - 1
    return [Tile(z, r, c) for r in range(first_row, first_row + size[1])
            for c in range(first_col, first_col + size[0]) if 0 <= r <= last and 0 <= c <= last]


def make_lists(extent: grid.Box, count: int = TILE_COUNT, seed: int = SEED
               ) -> dict[str, list[Tile]]:
    lists = {f"z{z}": random_tiles(extent, z, count, seed) for z in ZOOMS}
    lists["view"] = view_tiles(extent)
    return lists


def touches(tile: Tile, extent: grid.Box) -> bool:
    west, south, east, north = tile.bounds()
    return west <= extent[2] and east >= extent[0] and south <= extent[3] and north >= extent[1]


def lua_script(headers: dict[str, str]) -> str:
    """features.py's path-cycling script, every request carrying ``headers``."""
    lines = [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    return "\n".join(lines) + "\n" + WRK_LUA


@dataclass(frozen=True)
class TileFlavour:
    """How one server names the collection, orders a tile's indices and ids features."""

    collection: str
    column_first: bool  # tipg: {z}/{x}/{y}; OGC's {tileMatrix}/{tileRow}/{tileCol} is z/y/x
    id_property: str | None  # the property holding the feature id, None: the MVT id

    def tile(self, t: Tile) -> str:
        first, second = (t.col, t.row) if self.column_first else (t.row, t.col)
        return f"/collections/{self.collection}/tiles/{grid.ID}/{t.z}/{first}/{second}"

    def tileset(self) -> str:
        return f"/collections/{self.collection}/tiles/{grid.ID}"


FLAVOURS = {
    "ours": TileFlavour(DATASET, False, None),
    "stack": TileFlavour(DATASET, False, None),
    "tipg": TileFlavour(f"public.{DATASET}", True, "id"),
}


@dataclass
class TileLists:
    """The lists every server is given (``features.benchmark`` asks them for paths)."""

    lists: dict[str, list[Tile]]

    def paths(self, server: Any, name: str) -> list[str]:
        flavour = FLAVOURS[server.name]
        return [flavour.tile(t) for t in self.lists[name]]

    def as_dict(self) -> dict[str, list[list[int]]]:
        return {name: [list(t) for t in tiles] for name, tiles in self.lists.items()}


# -- servers ---------------------------------------------------------------------------------

@dataclass
class StackServer:
    """The stack, as features.py's runs see a server."""

    target: Target
    name: str = "stack"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.target.base_url

    @property
    def startup_seconds(self) -> float:
        return self.target.startup_seconds

    def check_alive(self) -> None:
        self.target.server.check_alive()

    def tree_roots(self) -> list[Any]:
        return self.target.tree_roots()

    def describe(self) -> str:
        return self.target.server.describe()


def tileset(server: FeatureServer) -> dict[str, Any] | None:
    """Our tileset metadata (its ``tiles`` member is the tiles' state)."""
    status, body = get_json(server.base + FLAVOURS["ours"].tileset(), timeout=10)
    return body if status == 200 and isinstance(body, dict) else None


def wait_for_tiles(server: FeatureServer, log: Path, timeout: float) -> dict[str, Any]:
    """Our tileset metadata once the tiles are ready (LabError when they failed)."""

    def state() -> dict[str, Any] | None:
        doc = tileset(server)
        return None if doc is None else doc["tiles"]

    wait_for_status(server, state, "our tiles", timeout, log)
    doc = tileset(server)
    if doc is None:
        raise LabError("our tileset metadata went away once the tiles were ready")
    return doc


def _index_meta(index: Path) -> dict[str, Any]:
    uri = index.resolve().as_uri() + "?mode=ro"
    with sqlite3.connect(uri, uri=True) as con:
        rows = dict(con.execute("SELECT key, value FROM meta WHERE key IN "
                                "('built', 'build_seconds')").fetchall())
    return {k: json.loads(v) for k, v in rows.items()}


def build_record(data_dir: Path, source: Path) -> dict[str, Any]:
    """From the version's own files: when it was published, when its index and tiles were
    built (and how long each took), the archive's size against the source's."""
    versions = data_dir / ".state" / "versions" / DATASET
    folder = next(p for p in sorted(versions.iterdir()) if (p / "tiles.json").is_file())
    meta = json.loads((folder / "meta.json").read_text())
    tiles = json.loads((folder / "tiles.json").read_text())
    index = _index_meta(folder / "index.sqlite")
    published = float(meta["published"])
    archive = (folder / "tiles.pmtiles").stat().st_size
    return {
        "version": folder.name, "source_bytes": source.stat().st_size, "archive_bytes": archive,
        "archive_vs_source": archive / source.stat().st_size,
        "index_bytes": (folder / "index.sqlite").stat().st_size,
        "publish_to_index_start": index["built"] - index["build_seconds"] - published,
        "index_seconds": index["build_seconds"],
        "publish_to_tiles_start": tiles["built"] - tiles["build_seconds"] - published,
        "tiles_seconds": tiles["build_seconds"],
        "tiles_steps": {k: tiles.get(f"{k}_seconds") for k in ("export", "tippecanoe",
                                                                "check")},
        "publish_to_tiles_ready": tiles["built"] - published,
        "complete_zoom": tiles.get("completeZoom"), "zooms": [tiles["minzoom"], tiles["maxzoom"]],
    }


def start_all(supervisor: Supervisor, config: Config, workdir: Path, source: Path,
              extent: list[float], meta: dict[str, Any]) -> list[Any]:
    """ours (its tiles built), tipg, then the stack over ours' data folder; in that order."""
    servers: dict[str, Any] = {}
    if "ours" in config.servers or "stack" in config.servers:
        print("starting ours (Gunicorn's master builds the index and the tiles first) ...",
              flush=True)
        ours = start_server(supervisor, "ours", workdir, source.parent, extent,
                            config.build_timeout)
        data_dir = workdir / "ours" / "data"
        ours.info["tileset"] = wait_for_tiles(ours, workdir / "ours" / "server.log",
                                              config.build_timeout)
        ours.info["build"] = build_record(data_dir, source)
        ours.startup_seconds = ours.info["seconds_until_ready"]
        servers["ours"] = ours
    if "tipg" in config.servers:
        print("starting tipg (PostgreSQL, loaded by ogr2ogr) ...", flush=True)
        servers["tipg"] = start_server(supervisor, "tipg", workdir, source.parent, extent,
                                       config.start_timeout)
    if "stack" in config.servers:
        print("starting the stack over ours' data folder ...", flush=True)
        target = start_stack(supervisor, workdir, data_dir, config.start_timeout)
        servers["stack"] = StackServer(target, info={"stack": target.server.record()})
    for name, server in servers.items():
        meta["servers"][name] = {"port": server.base.rsplit(":", 1)[1],
                                 "startup_seconds": server.startup_seconds,
                                 "pids": server.describe(), "info": server.info}
        print(f"  {name}: {server.describe()}, {server.base}, ready in "
              f"{server.startup_seconds:.1f} s", flush=True)
    supervisor.remember_descendants()
    return [servers[name] for name in config.servers]


# -- correctness -------------------------------------------------------------------------

def fetch_tile(base: str, path: str) -> tuple[int | None, bytes, str | None]:
    """(status, the tile's protobuf bytes, the Content-Encoding it came with)."""
    request = urllib.request.Request(base + path, headers=REQUEST_HEADERS)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            body, encoding = response.read(), response.headers.get("Content-Encoding")
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code), b"", None
    except (urllib.error.URLError, OSError):
        return None, b"", None
    return status, gzip.decompress(body) if encoding == "gzip" else body, encoding


def decoded_ids(data: bytes, id_property: str | None) -> list[int]:
    """Feature ids of every layer of an MVT, decoded by mapbox-vector-tile."""
    ids = []
    for layer in mapbox_vector_tile.decode(data).values():
        for feature in layer["features"]:
            value = feature.get("id") if id_property is None else (
                feature["properties"].get(id_property))
            ids.append(int(value))
    return ids


def scaled_box(tile: Tile, margin: float) -> grid.Box:
    """The tile grown (``margin`` > 0) or shrunk by ``margin`` tiles on every side, in
    degrees (Web Mercator's squares are lon/lat rectangles)."""
    west, north = grid.lonlat(tile.col - margin, tile.row - margin, tile.z)
    east, south = grid.lonlat(tile.col + 1 + margin, tile.row + 1 + margin, tile.z)
    return west, south, east, north


@dataclass(frozen=True)
class TileTruth:
    """Which features touch a tile, by brute force over every geometry."""

    exact: frozenset[int]
    near_edge: frozenset[int]  # within a pixel of the edge, inside or outside

    @classmethod
    def of(cls, features: Features, tile: Tile) -> TileTruth:
        exact = brute_force(features, tile.bounds()).exact
        grown = brute_force(features, scaled_box(tile, EDGE)).exact
        inner = brute_force(features, scaled_box(tile, -EDGE)).exact
        return cls(exact, (grown - inner))


def compare_tile(ids: Sequence[int], ours: set[int], truth: TileTruth) -> dict[str, int]:
    """How one server's ids differ from ours, and from the truth."""
    got = set(ids)
    extra, missing = got - ours, ours - got
    wrong = (got - truth.exact) - truth.near_edge, (truth.exact - got) - truth.near_edge
    return {"features": len(ids), "duplicates": len(ids) - len(got),
            "extra_vs_ours": len(extra), "missing_vs_ours": len(missing),
            "extra_at_edge": len(extra & truth.near_edge),
            "missing_at_edge": len(missing & truth.near_edge),
            "extra_touching": len(extra & truth.exact),
            "missing_touching": len(missing & truth.exact),
            "extra_ids": sorted(extra)[:20], "missing_ids": sorted(missing)[:20],
            "extra_vs_truth_inside": len(wrong[0]), "missing_vs_truth_inside": len(wrong[1]),
            "capped": int(len(ids) >= TIPG_TILE_LIMIT)}


def check_tiles(servers: Sequence[Any], tiles: Sequence[Tile], features: Features,
                id_property: str | None) -> dict[str, Any]:
    """Every tile from every server, decoded and compared with ours and with the truth."""
    flavours = {s.name: FLAVOURS[s.name] for s in servers}
    flavours["ours"] = TileFlavour(DATASET, False, id_property)
    flavours["stack"] = flavours["ours"]
    bases = {s.name: s.base for s in servers}
    per_server: dict[str, list[dict[str, Any]]] = {name: [] for name in bases}
    for tile in tiles:
        truth = TileTruth.of(features, tile)
        fetched = {name: fetch_tile(base, flavours[name].tile(tile))
                   for name, base in bases.items()}
        reference = fetched.get("ours")
        ours_ids = set(decoded_ids(reference[1], id_property)) if reference else truth.exact
        for name, (status, data, encoding) in fetched.items():
            row: dict[str, Any] = {"tile": list(tile), "status": status, "encoding": encoding,
                                   "bytes": len(data)}
            if status in (200, 204):
                row.update(compare_tile(decoded_ids(data, flavours[name].id_property),
                                        ours_ids, truth))
            if reference is not None and name != "ours":
                row["same_bytes_as_ours"] = data == reference[1]
            per_server[name].append(row)
    return {name: summarize_check(rows) for name, rows in per_server.items()}


def summarize_check(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if "features" in r]
    total = {k: sum(r[k] for r in ok) for k in (
        "features", "duplicates", "extra_vs_ours", "missing_vs_ours", "extra_at_edge",
        "missing_at_edge", "extra_touching", "missing_touching", "extra_vs_truth_inside",
        "missing_vs_truth_inside", "capped")}
    differing = [r for r in ok if r["extra_vs_ours"] or r["missing_vs_ours"]]
    return {
        "tiles": len(rows), "http_problems": len(rows) - len(ok),
        "identical": len(ok) - len(differing), "differing": len(differing), **total,
        "statuses": sorted({str(r["status"]) for r in rows}),
        "encodings": sorted({str(r["encoding"]) for r in rows}),
        "same_bytes_as_ours": (None if not rows or "same_bytes_as_ours" not in rows[0]
                               else sum(r["same_bytes_as_ours"] for r in rows)),
        "verdict": "identical" if ok and not differing and len(ok) == len(rows) else "differs",
        "rows": rows,
    }


def describe_check(name: str, check: dict[str, Any]) -> str:
    text = (f"**{name}**: {check['verdict']}: {check['identical']} of {check['tiles']} tiles "
            f"hold ours' ids exactly ({check['features']:,} features in all)")
    if check["differing"]:
        text += (f"; {check['differing']} tiles differ: {check['extra_vs_ours']} ids more "
                 f"({check['extra_at_edge']} within a pixel of the tile's edge, "
                 f"{check['extra_touching']} touching the tile by brute force), "
                 f"{check['missing_vs_ours']} ids fewer ({check['missing_at_edge']} within a "
                 f"pixel of the edge, {check['missing_touching']} touching the tile)")
    text += (f". Against brute force, away from the edge: {check['extra_vs_truth_inside']} "
             f"ids that do not touch the tile, {check['missing_vs_truth_inside']} touching "
             f"ids absent")
    if check["capped"]:
        text += f"; {check['capped']} tiles at tipg's {TIPG_TILE_LIMIT:,}-feature limit"
    if check["http_problems"]:
        text += f"; {check['http_problems']} tiles not 200/204 ({check['statuses']})"
    if check["same_bytes_as_ours"] is not None:
        text += f"; byte-identical to ours: {check['same_bytes_as_ours']} of {check['tiles']}"
    return text + f"; Content-Encoding {', '.join(check['encodings'])}."


# -- goals and reports ---------------------------------------------------------------------

def goals(summaries: Sequence[Summary]) -> list[dict[str, Any]]:
    """Each list, ours and the stack against tipg: 10x the tiles/s, a tenth of the p99."""
    found = []
    for s in summaries:
        if s.server == "tipg" or s.rps_vs_best_peer is None:
            continue
        found.append({"list": s.query, "server": s.server, "rps_ratio": s.rps_vs_best_peer,
                      "p99_ratio": s.p99_vs_best_peer,
                      "rps_met": s.rps_vs_best_peer >= GOAL_RPS,
                      "p99_met": s.p99_vs_best_peer is not None
                      and s.p99_vs_best_peer <= GOAL_P99})
    return found


def goals_table(rows: Sequence[dict[str, Any]]) -> str:
    header = ["List", "Server", "tiles/s vs tipg", f">= {GOAL_RPS:.0f}x?", "p99 vs tipg",
              f"<= {GOAL_P99}x?"]
    return table(header, [[LIST_TITLES[r["list"]], r["server"], fmt(r["rps_ratio"], "x"),
                           "yes" if r["rps_met"] else "**no**", fmt(r["p99_ratio"], "x"),
                           "yes" if r["p99_met"] else "**no**"] for r in rows], text_columns=2)


def build_section(meta: dict[str, Any]) -> str:
    ours = meta["servers"].get("ours", {}).get("info", {})
    lines = ["## Building\n"]
    if "build" in ours:
        b = ours["build"]
        steps = ", ".join(f"{k} {fmt(v)} s" for k, v in b["tiles_steps"].items())
        met = "met" if b["publish_to_tiles_ready"] <= GOAL_BUILD_SECONDS else "**not met**"
        lines.append(
            f"- **ours**: tiles ready {fmt(b['publish_to_tiles_ready'])} s after publish "
            f"(goal {GOAL_BUILD_SECONDS:.0f} s: {met}): the index started "
            f"{fmt(b['publish_to_index_start'])} s after publish and took "
            f"{fmt(b['index_seconds'])} s, the tiles started "
            f"{fmt(b['publish_to_tiles_start'])} s after publish and took "
            f"{fmt(b['tiles_seconds'])} s ({steps}). Archive {b['archive_bytes'] / 1e6:.1f} MB "
            f"= {100 * b['archive_vs_source']:.0f} % of the source's "
            f"{b['source_bytes'] / 1e6:.1f} MB (goal: no larger: "
            f"{'met' if b['archive_vs_source'] <= 1 else '**not met**'}); zooms "
            f"{b['zooms'][0]}-{b['zooms'][1]}, complete from {b['complete_zoom']}. "
            f"`serve` answered {fmt(ours['seconds_until_ready'])} s after it was started.")
    tipg = meta["servers"].get("tipg", {}).get("info", {}).get("postgres")
    if tipg:
        lines.append(f"- **tipg**: nothing to build; PostGIS loaded by ogr2ogr and VACUUM "
                     f"ANALYZE in {fmt(tipg['load_seconds'])} s, table and indexes "
                     f"{int(tipg['table_bytes']) / 1e6:.1f} MB; every tile is made on request.")
    return "\n".join(lines) + "\n"


def markdown_report(meta: dict[str, Any], summaries: Sequence[Summary],
                    runs: Sequence[Run]) -> str:
    config = meta["config"]
    parts = report_head("Vector tiles: geojson-api vs tipg", meta)
    lists = meta.get("lists", {})
    parts.append(
        f"Dataset: `{DATASET}.geojson`, {meta.get('dataset', {}).get('bytes', 0):,} bytes. "
        "Tile lists: " + ", ".join(f"{LIST_TITLES[k]} ({len(v)})" for k, v in lists.items())
        + f". `wrk -t2 -c10 -d{config['duration']}s --latency`, `Accept-Encoding: gzip`, a "
        f"Lua script cycling the tiles; {config['rounds']} round(s) in rotated order, "
        "medians (min-max); CPU per tile over each server's whole process tree.\n")
    parts.append(build_section(meta))
    checks = meta.get("checks", {})
    if checks:
        parts.append(f"## Correctness (zoom {meta['check_zoom']}, our complete zoom)\n")
        parts += [f"- {describe_check(n, c)}" for n, c in checks.items()]
        parts.append("")
    if meta.get("survey"):
        parts += ["## What a tile holds (the first tiles of each list, one request at a "
                  "time)\n", survey_table(meta["survey"])]
    parts += ["## Summary (tiles/s)\n", summary_table(summaries, LIST_TITLES)]
    if found := goals(summaries):
        parts += ["## Goals\n", goals_table(found)]
    parts += ["## Runs, in the order they ran\n", runs_table(runs)]
    return "\n".join(parts)


# -- the benchmark ---------------------------------------------------------------------------

@dataclass
class Config:
    servers: list[str]
    duration: int
    rounds: int
    tiles: int
    check_tiles: int
    out: Path
    quick: bool
    start_timeout: float
    build_timeout: float
    skip_check: bool

    @property
    def slow_duration(self) -> int:
        return self.duration  # features.benchmark's setting for slow peers: none here


def complete_zoom(servers: Sequence[Any]) -> tuple[int, str | None]:
    """Our complete zoom and how our tiles carry ids, from the tileset metadata."""
    ours = next(s for s in servers if s.name == "ours")
    doc = ours.info["tileset"]
    if doc.get("completeTileMatrix") is None:
        raise LabError("our tileset has no complete zoom: nothing to compare ids at")
    mapping = doc["featureIds"]
    return int(doc["completeTileMatrix"]), (None if mapping["mapping"] == "itemId"
                                             else mapping["property"])


def survey(servers: Sequence[Any], lists: TileLists, id_property: str | None,
           per_list: int = SURVEY_TILES) -> list[dict[str, Any]]:
    """The first tiles of each list from each server, one request at a time: features,
    compressed bytes, seconds (what the load runs cannot show: what a tile holds)."""
    rows = []
    for name, tiles in lists.lists.items():
        for tile in tiles[:per_list]:
            for server in servers:
                flavour = FLAVOURS[server.name]
                started = time.monotonic()
                status, data, _ = fetch_tile(server.base, flavour.tile(tile))
                seconds = time.monotonic() - started
                key = id_property if flavour.id_property is None else flavour.id_property
                rows.append({"list": name, "tile": list(tile), "server": server.name,
                             "status": status, "bytes": len(gzip.compress(data)),
                             "features": len(decoded_ids(data, key)), "seconds": seconds})
    return rows


def survey_table(rows: Sequence[dict[str, Any]]) -> str:
    header = ["List", "Tile (z/row/col)", "Server", "status", "features", "KB (gzip)",
              "seconds, alone"]
    return table(header, [[LIST_TITLES[r["list"]], "/".join(map(str, r["tile"])), r["server"],
                           str(r["status"]), f"{r['features']:,}", fmt(r["bytes"] / 1e3),
                           fmt(r["seconds"])] for r in rows], text_columns=3)


def check_all(servers: Sequence[Any], config: Config, source: Path, extent: grid.Box,
              lists: TileLists, meta: dict[str, Any]) -> None:
    zoom, id_property = complete_zoom(servers)
    tiles = random_tiles(extent, zoom, config.check_tiles)
    print(f"loading {source.name} for the brute-force truth; checking {len(tiles)} tiles at "
          f"zoom {zoom} ...", flush=True)
    features = load_features(source)
    started = time.monotonic()
    meta["check_zoom"] = zoom
    meta["checks"] = check_tiles(servers, tiles, features, id_property)
    meta["check_seconds"] = time.monotonic() - started
    for name, check in meta["checks"].items():
        print(f"  {describe_check(name, check)}", flush=True)
    meta["survey"] = survey(servers, lists, id_property)
    print(survey_table(meta["survey"]), flush=True)


def dataset_extent(source: Path) -> grid.Box:
    """The extent our scan finds in the file: the bbox our tiles are limited to."""
    bbox = scan(source).bbox
    if not bbox:
        raise LabError(f"{source} has no geometry: no tiles to ask for")
    return grid.flat(bbox)


def run(config: Config) -> int:
    """Start everything, check, benchmark, write the reports (features.py's way)."""

    def work(workdir: Path, supervisor: Supervisor, meta: dict[str, Any],
             runs: list[Run]) -> None:
        meta["versions"]["nginx"] = meta["machine"]["nginx"]
        source = make_dataset(workdir / "data")
        extent = dataset_extent(source)
        lists = TileLists(make_lists(extent, config.tiles))
        meta["dataset"] = {"bytes": source.stat().st_size, "extent": list(extent)}
        meta["lists"] = lists.as_dict()
        servers = start_all(supervisor, config, workdir, source, list(extent), meta)
        if not config.skip_check and "ours" in config.servers:
            check_all(servers, config, source, extent, lists, meta)
        benchmark(config, servers, lists, workdir, runs, supervisor,
                  names=LISTS, script=lua_script(REQUEST_HEADERS))

    return supervised_run(config, "tiles-", work, report)


def report(config: Config, stamp: str, meta: dict[str, Any], runs: Sequence[Run]) -> None:
    summaries = summarize(runs, config.servers, LISTS)
    document = {**meta, "summary": [asdict(s) for s in summaries], "goals": goals(summaries),
                "runs": [r.as_dict() for r in runs]}
    json_path, md_path = write_pair(config.out, f"tiles-{stamp}", document,
                                    markdown_report(meta, summaries, runs))
    print()
    print(summary_table(summaries, LIST_TITLES), end="")
    print(f"\nresults: {json_path}\n         {md_path}")


# -- command line ------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark vector tiles: geojson-api (app, stack with offload) vs tipg.")
    add_common_options(parser, SERVERS, FULL_RUNS, runs_of="tile list and server",
                       results=RESULTS_DIR,
                       quick="smoke run: our app only, 3 s runs, 1 round, 10 check tiles",
                       start="tipg (loading included) or the stack",
                       check="do not compare the tiles' feature ids before the load")
    parser.add_argument("--tiles", type=at_least_one, default=TILE_COUNT, metavar="N",
                        help="random tiles per zoom (default %(default)s)")
    parser.add_argument("--check-tiles", type=at_least_one, metavar="N",
                        help="tiles of the complete zoom compared before the load "
                             f"(default {TILE_COUNT}, 10 with --quick)")
    parser.add_argument("--build-timeout", type=float, default=1200.0, metavar="SECONDS",
                        help="how long our index and tiles may take (default %(default)s)")
    return parser


def parse_config(argv: Sequence[str] | None) -> Config:
    args = build_parser().parse_args(argv)
    return Config(**common_config(args, SERVERS, FULL_RUNS), tiles=args.tiles,
                  check_tiles=args.check_tiles or (10 if args.quick else TILE_COUNT),
                  build_timeout=args.build_timeout)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
    return exit_code("tiles", lambda: run(config))


if __name__ == "__main__":
    sys.exit(main())
