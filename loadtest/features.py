"""OGC API - Features benchmark: our server against pygeoapi and tipg, side by side.

What is compared
----------------
The servers of ``featureservers.py`` (ours, pygeoapi with its SQLiteGPKG provider
over SpatiaLite, pygeoapi with its GeoJSON provider, tipg over PostGIS) serve the
same 50 MB sample (``geojson-api sample``: ``large.geojson``, ~113k features,
integer ids in the GeoJSON ``id`` member) on 127.0.0.1, each on its own port.
Peers are installed by ``loadtest/peers/setup``.

Queries
-------
Three query types, each a list of request paths cycled by a wrk Lua script
(``-t2 -c10 --latency``), the same lists for every server (only the collection
name and the ``f=`` parameter differ):

* ``bbox``: ``items?bbox=...&limit=100`` over 200 boxes from
  ``featurequeries.make_boxes`` (each side 2-20 % of the extent's, every box
  intersecting at least 127 features; seeded, so every run uses the same boxes);
* ``item``: ``items/{id}`` over 200 ids (``featurequeries.pick_ids``);
* ``page``: ``items?limit=1000``, the first page of the collection.

Correctness first
-----------------
Before any load, every server answers a sample of the queries and the answers
are compared with a brute-force Shapely test of every feature: for the boxes
with the fewest matches, the full result (paged with ``offset``) must be the
exact set of intersecting feature ids (a server that returns the features whose
*bounding box* overlaps is reported as "envelope"); for other boxes the
``limit=100`` page must hold 100 distinct ids, all in the exact set, and
``numberMatched`` (when sent) must be the exact count; ``items/{id}`` must
return that feature (id and name); ``limit=1000`` must return 1,000 distinct
features. Failures are reported, not hidden: the run goes on.

Method
------
For each query type and round, every server is driven once, in an order
rotated from one block to the next; before each run the script waits until no
server burns CPU (in-flight requests of a slow server finish first). Figures
are medians over rounds (rps, latency percentiles, server CPU per request),
sums (socket errors, non-2xx answers) and maxima (peak RSS of the whole process
tree: master, workers and, for tipg, PostgreSQL's postmaster and backends).
"vs best peer" divides a figure by the best peer's in the same run. Servers in
``featureservers.SLOW`` (seconds per request) get one round of
``--slow-duration`` seconds per query type, with a wrk timeout to match.

Our index is built in the background after start: the script waits (bounded by
``--index-timeout``) until ``GET /collections/large`` shows
``"index": {"status": "ready"}`` and records the server's own figures, the wall
time from start until ready and the bytes under the state folder.

Usage::

    python loadtest/features.py [--quick] [--servers ours,tipg,...] [--out DIR]
        [--duration 15] [--rounds 3]

``--quick`` is a smoke run of our server only (3 s runs, one round).
This is not a test: no thresholds. Exit status 1 when a server cannot start or
wrk cannot connect; correctness failures are in the report.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

# featurequeries and featureservers: Python puts this script's folder on sys.path.
from featurequeries import (
    Box,
    Features,
    Truth,
    bbox_param,
    brute_force,
    classify,
    feature_ids,
    least_matching,
    load_features,
    make_boxes,
    pick_ids,
)
from featureservers import (
    DATASET,
    OURS,
    PEERS,
    SERVERS,
    SLOW,
    FeatureServer,
    get_json,
    peer_versions,
    start_server,
)
from geojson_api.lab import LabError
from geojson_api.lab.command import (
    add_run_options,
    at_least_one,
    exit_code,
    names_type,
    run_length,
)
from geojson_api.lab.machine import dist_version, machine_info
from geojson_api.lab.procs import Supervisor, die_with_parent, supervised
from geojson_api.lab.runner import rotated
from geojson_api.lab.sampling import MemoryStats, memory_stats, tree_pss
from geojson_api.lab.tables import fmt, median, table, write_pair
from geojson_api.lab.targets import wait_until_quiet
from geojson_api.lab.wrk import WRK_THREADS, WrkStats, run_wrk, wrk_command

RESULTS_DIR = Path(__file__).resolve().parent / "results"
FULL_RUNS = (15, 3)  # seconds per wrk run, rounds
GB = 1e9
QUERIES = ("bbox", "item", "page")
QUERY_TITLES = {"bbox": "bbox + limit=100", "item": "single feature by id",
                "page": "limit=1000 first page"}
CONNECTIONS = 10
PAGE_LIMIT = 1000
BBOX_LIMIT = 100
FULL_PAGE = 10_000  # page size when a box's whole result is fetched for the check

# Cycles through the request paths of a file, one per line; each wrk thread
# starts at its own place in the list.
WRK_LUA = """\
local paths = {}
local counter = 0
local thread_count = 0

function setup(thread)
  thread:set("first", thread_count * 97)
  thread_count = thread_count + 1
end

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then paths[#paths + 1] = line end
  end
  counter = (first or 0) % #paths
end

function request()
  counter = counter % #paths + 1
  return wrk.format("GET", paths[counter])
end
"""


@dataclass
class QuerySet:
    """The lists every server is given."""

    boxes: list[tuple[Box, int]]
    ids: list[int]
    feature_count: int

    def paths(self, server: FeatureServer, query: str) -> list[str]:
        flavour = server.flavour
        if query == "bbox":
            return [flavour.items(f"bbox={bbox_param(box)}&limit={BBOX_LIMIT}")
                    for box, _ in self.boxes]
        if query == "item":
            return [flavour.item(i) for i in self.ids]
        return [flavour.items(f"limit={PAGE_LIMIT}")]


# -- correctness -----------------------------------------------------------------------

def fetch_all(server: FeatureServer, box: Box, expected: int) -> tuple[list[int], str | None]:
    """Every feature id a box selects, paged with ``offset``; (ids, problem)."""
    ids: list[int] = []
    offset = 0
    while True:
        path = server.flavour.items(f"bbox={bbox_param(box)}&limit={FULL_PAGE}&offset={offset}")
        status, body = get_json(server.base + path, timeout=600)
        if status != 200 or not isinstance(body, dict):
            return ids, f"HTTP {status} for {path}"
        page = feature_ids(body.get("features", []))
        ids += page
        offset += len(page)
        if not page or len(page) < FULL_PAGE or offset > expected + FULL_PAGE:
            return ids, None


def check_box_page(server: FeatureServer, box: Box, truth: Truth) -> dict[str, Any]:
    """The ``limit=100`` page that the benchmark requests."""
    path = server.flavour.items(f"bbox={bbox_param(box)}&limit={BBOX_LIMIT}")
    status, body = get_json(server.base + path, timeout=600)
    if status != 200 or not isinstance(body, dict):
        return {"path": path, "ok": False, "problem": f"HTTP {status}"}
    ids = feature_ids(body.get("features", []))
    matched = body.get("numberMatched")
    problems = []
    if len(ids) != BBOX_LIMIT or len(set(ids)) != len(ids):
        problems.append(f"{len(ids)} features ({len(set(ids))} distinct), expected {BBOX_LIMIT}")
    if not set(ids) <= truth.exact:
        problems.append(f"{len(set(ids) - truth.exact)} ids do not intersect the box")
    if matched is not None and matched != len(truth.exact):
        problems.append(f"numberMatched {matched}, brute force {len(truth.exact)}")
    return {"path": path, "ok": not problems, "problem": "; ".join(problems) or None,
            "number_matched": matched, "truth": len(truth.exact)}


def check_boxes(server: FeatureServer, queries: QuerySet, features: Features,
                full: int, pages: int) -> dict[str, Any]:
    boxes = queries.boxes
    full_set = least_matching(boxes, full)
    full_results = []
    for i in full_set:
        box, _ = boxes[i]
        truth = brute_force(features, box)
        ids, problem = fetch_all(server, box, len(truth.exact))
        comparison = asdict(classify(ids, truth))
        full_results.append({"box": i, "exact": len(truth.exact),
                             "envelope": len(truth.envelope), **comparison, "problem": problem})
    step = max(len(boxes) // max(pages, 1), 1)
    page_results = [{"box": i, **check_box_page(server, boxes[i][0],
                                                brute_force(features, boxes[i][0]))}
                    for i in range(0, len(boxes), step)[:pages]]
    verdicts = sorted({r["verdict"] for r in full_results})
    ok = (all(r["verdict"] == "exact" and r["problem"] is None for r in full_results)
          and all(r["ok"] for r in page_results))
    return {"ok": ok, "full_results": full_results, "verdicts": verdicts,
            "pages": page_results}


def check_items(server: FeatureServer, queries: QuerySet, features: Features,
                count: int) -> dict[str, Any]:
    names = dict(zip(features.ids, features.names, strict=True))
    problems = []
    for feature_id in queries.ids[:count]:
        path = server.flavour.item(feature_id)
        status, body = get_json(server.base + path)
        if status != 200 or not isinstance(body, dict):
            problems.append(f"{path}: HTTP {status}")
        elif str(body.get("id")) != str(feature_id):
            problems.append(f"{path}: id {body.get('id')!r}")
        elif (body.get("properties") or {}).get("name") != names[feature_id]:
            problems.append(f"{path}: name {(body.get('properties') or {}).get('name')!r}, "
                            f"expected {names[feature_id]!r}")
    return {"ok": not problems, "checked": min(count, len(queries.ids)), "problems": problems}


def check_page(server: FeatureServer, total: int) -> dict[str, Any]:
    path = server.flavour.items(f"limit={PAGE_LIMIT}")
    status, body = get_json(server.base + path, timeout=600)
    if status != 200 or not isinstance(body, dict):
        return {"ok": False, "problem": f"HTTP {status}"}
    ids = feature_ids(body.get("features", []))
    matched = body.get("numberMatched")
    problems = []
    if len(ids) != PAGE_LIMIT or len(set(ids)) != len(ids):
        problems.append(f"{len(ids)} features ({len(set(ids))} distinct)")
    if matched is not None and matched != total:
        problems.append(f"numberMatched {matched}, expected {total}")
    return {"ok": not problems, "problem": "; ".join(problems) or None,
            "number_matched": matched, "number_returned": body.get("numberReturned")}


def check_server(server: FeatureServer, queries: QuerySet, features: Features,
                 quick: bool) -> dict[str, Any]:
    slow = server.name in SLOW
    full, pages, items = (2, 3, 5) if quick or slow else (8, 20, 20)
    started = time.monotonic()
    result: dict[str, Any] = {
        "bbox": check_boxes(server, queries, features, full, pages),
        "item": check_items(server, queries, features, items),
        "page": check_page(server, len(features)),
    }
    result["ok"] = all(part["ok"] for part in result.values())
    result["seconds"] = time.monotonic() - started
    return result


def describe_check(check: dict[str, Any]) -> str:
    bbox = check["bbox"]
    full = bbox["full_results"]
    text = (f"full results of {len(full)} boxes: {', '.join(bbox['verdicts'])}; "
            f"{sum(p['ok'] for p in bbox['pages'])}/{len(bbox['pages'])} limit=100 pages right; "
            f"{check['item']['checked'] - len(check['item']['problems'])}/"
            f"{check['item']['checked']} features by id right; "
            f"first page {'right' if check['page']['ok'] else 'WRONG'}; numberMatched "
            f"{'sent' if check['page'].get('number_matched') is not None else 'not sent'}")
    problems = ([r["problem"] for r in full if r["problem"]]
                + [p["problem"] for p in bbox["pages"] if not p["ok"]]
                + check["item"]["problems"][:3] + [check["page"].get("problem")])
    problems = [p for p in problems if p]
    if problems:
        text += " (" + "; ".join(problems[:4]) + ")"
    return text


# -- runs ------------------------------------------------------------------------------

@dataclass
class Run:
    """One wrk run of one query type against one server."""

    query: str
    server: str
    round: int
    position: int
    command: list[str]
    wrk: WrkStats
    wall_seconds: float
    server_cpu_seconds: float
    wrk_cpu_seconds: float
    other_cpu_seconds: float
    memory: MemoryStats
    pss_after: int | None  # bytes, whole tree, just after the run
    loadavg_before: tuple[float, float, float]
    samples: list[tuple[float, int, float]] = field(repr=False)
    output: str = field(repr=False)

    @property
    def cpu_ms_per_request(self) -> float | None:
        if not self.wrk.requests:
            return None
        return self.server_cpu_seconds * 1e3 / self.wrk.requests

    @property
    def bytes_per_response(self) -> float | None:
        return self.wrk.bytes_read / self.wrk.requests if self.wrk.requests else None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["wrk"]["errors"] = self.wrk.errors
        data["derived"] = {"cpu_ms_per_request": self.cpu_ms_per_request,
                           "bytes_per_response": self.bytes_per_response}
        return data


def drive(server: FeatureServer, query: str, paths_file: Path, lua: Path, duration: int,
          wrk_timeout: str, round_no: int, position: int) -> Run:
    roots = server.tree_roots()
    command = wrk_command(server.base, CONNECTIONS, duration, timeout=wrk_timeout,
                          script=lua, script_args=[str(paths_file)])
    done = run_wrk(command, roots, limit=duration + 300, target=server.name)
    pss = tree_pss(roots)  # just after the load, outside the CPU accounting
    server.check_alive()
    watched = done.watched
    return Run(
        query=query, server=server.name, round=round_no, position=position, command=command,
        wrk=done.stats, wall_seconds=watched.wall_seconds,
        server_cpu_seconds=watched.target_cpu_seconds,
        wrk_cpu_seconds=watched.client_cpu_seconds,
        other_cpu_seconds=watched.other_cpu_seconds,
        memory=memory_stats(watched.idle, watched.samples), pss_after=pss,
        loadavg_before=done.loadavg_before, samples=watched.series(), output=done.output,
    )


@dataclass
class Summary:
    """One query type and server, over rounds."""

    query: str
    server: str
    rounds: int
    requests_per_s: float | None
    rps_min: float | None
    rps_max: float | None
    latency_ms: dict[str, float | None]
    socket_errors: int
    non_2xx_3xx: int
    requests: int
    cpu_ms_per_request: float | None
    peak_rss: int
    pss_after: int | None
    bytes_per_response: float | None
    rps_vs_best_peer: float | None = None
    p99_vs_best_peer: float | None = None


def summarize_one(query: str, server: str, runs: Sequence[Run]) -> Summary:
    rps = [r.wrk.requests_per_s for r in runs]
    return Summary(
        query=query, server=server, rounds=len(runs), requests_per_s=median(rps),
        rps_min=min(rps), rps_max=max(rps),
        latency_ms={k: median(r.wrk.latency_ms[k] for r in runs) for k in ("p50", "p90", "p99")},
        socket_errors=sum(sum(r.wrk.socket_errors.values()) for r in runs),
        non_2xx_3xx=sum(r.wrk.non_2xx_3xx for r in runs),
        requests=sum(r.wrk.requests for r in runs),
        cpu_ms_per_request=median(r.cpu_ms_per_request for r in runs),
        peak_rss=max(r.memory.peak_total for r in runs),
        pss_after=max((r.pss_after for r in runs if r.pss_after is not None), default=None),
        bytes_per_response=median(r.bytes_per_response for r in runs),
    )


def best_peer(rows: Sequence[Summary]) -> Summary | None:
    """The peer with the highest median rps (ties: lower p99)."""
    peers = [r for r in rows if r.server in PEERS and r.requests_per_s]
    return max(peers, key=lambda r: (r.requests_per_s or 0.0, -(r.latency_ms["p99"] or 0.0)),
               default=None)


def summarize(runs: Sequence[Run], servers: Sequence[str],
              queries: Sequence[str] = QUERIES) -> list[Summary]:
    summaries = []
    for query in queries:
        rows = [summarize_one(query, s, chosen) for s in servers
                if (chosen := [r for r in runs if r.query == query and r.server == s])]
        best = best_peer(rows)
        for row in rows:
            if best is not None and best.requests_per_s and row.requests_per_s is not None:
                row.rps_vs_best_peer = row.requests_per_s / best.requests_per_s
            best_p99, p99 = (best.latency_ms["p99"] if best else None), row.latency_ms["p99"]
            if best_p99 and p99 is not None:
                row.p99_vs_best_peer = p99 / best_p99
        summaries.extend(rows)
    return summaries


# -- reports ---------------------------------------------------------------------------

def summary_table(summaries: Sequence[Summary],
                  titles: dict[str, str] = QUERY_TITLES) -> str:
    header = ["Query", "Server", "rps (min-max)", "vs best peer", "p50 ms", "p99 ms",
              "p99 vs best peer", "errors / non-2xx", "CPU ms/req", "peak RSS MB",
              "PSS MB", "KB/response"]
    rows = [
        [titles[s.query], s.server,
         f"{fmt(s.requests_per_s)} ({fmt(s.rps_min)}-{fmt(s.rps_max)})",
         fmt(s.rps_vs_best_peer, "x"), fmt(s.latency_ms["p50"]), fmt(s.latency_ms["p99"]),
         fmt(s.p99_vs_best_peer, "x"), f"{s.socket_errors} / {s.non_2xx_3xx}",
         fmt(s.cpu_ms_per_request), fmt(s.peak_rss / 1e6),
         fmt(s.pss_after / 1e6 if s.pss_after is not None else None),
         fmt(s.bytes_per_response / 1e3 if s.bytes_per_response else None)]
        for s in summaries
    ]
    return table(header, rows, text_columns=2)


def runs_table(runs: Sequence[Run]) -> str:
    header = ["#", "Query", "Round", "Server", "rps", "p99 ms", "errors", "server cores",
              "wrk cores", "other cores", "load avg"]
    rows = [
        [str(i), r.query, str(r.round), r.server, fmt(r.wrk.requests_per_s),
         fmt(r.wrk.latency_ms["p99"]), str(r.wrk.errors),
         fmt(r.server_cpu_seconds / r.wall_seconds if r.wall_seconds else None),
         fmt(r.wrk_cpu_seconds / r.wall_seconds if r.wall_seconds else None),
         fmt(r.other_cpu_seconds / r.wall_seconds if r.wall_seconds else None),
         f"{r.loadavg_before[0]:.2f}"]
        for i, r in enumerate(runs, 1)
    ]
    return table(header, rows, text_columns=4)


def servers_section(meta: dict[str, Any]) -> str:
    lines = ["## Servers\n"]
    for name, info in meta["servers"].items():
        check = meta["checks"].get(name)
        verdict = ("not checked" if check is None else
                   ("**right**: " if check["ok"] else "**WRONG**: ") + describe_check(check))
        lines.append(f"- **{name}**: started and ready in {info['startup_seconds']:.1f} s; "
                     f"correctness: {verdict}.")
    for name in OURS:
        ours = meta["servers"].get(name, {}).get("info")
        if not ours:
            continue
        lines.append(f"\n{name}: index ready {ours['seconds_until_ready']:.1f} s after start "
                     f"(wall clock, including the server's own start); the server reports "
                     f"`{json.dumps(ours['index'])}`; index files under the state folder: "
                     f"{ours['index_bytes'] / 1e6:.1f} MB (whole state folder "
                     f"{ours['state_bytes'] / 1e6:.1f} MB).")
    return "\n".join(lines) + "\n"


def report_head(title: str, meta: dict[str, Any]) -> list[str]:
    """A report's title, whether the run was complete, the machine and the versions
    (loadtest/tiles.py's reports start the same way)."""
    machine = meta["machine"]
    parts = [f"# {title}\n"]
    if not meta["complete"]:
        parts.append(f"**INCOMPLETE RUN**: {meta['error']}\n")
    parts.append(
        f"{machine['date']}; {machine['nproc']} cores ({machine['cpu_model']}), "
        f"{machine['mem_total_bytes'] / GB:.1f} GB RAM, Linux {machine['kernel']}, "
        f"load average at start {', '.join(f'{x:.2f}' for x in machine['loadavg_at_start'])}; "
        f"Python {machine['python']}, {machine['wrk']}. Peers: "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v) + ".\n")
    return parts


def markdown_report(meta: dict[str, Any], summaries: Sequence[Summary],
                    runs: Sequence[Run]) -> str:
    config = meta["config"]
    parts = report_head("OGC API - Features: geojson-api vs peers", meta)
    parts.append(
        f"Dataset: `{DATASET}.geojson`, {meta['dataset']['bytes']:,} bytes, "
        f"{meta['dataset']['features']:,} features; {len(meta['queries']['boxes'])} boxes "
        f"(matches {meta['queries']['min_matches']:,}-{meta['queries']['max_matches']:,}, "
        f"median {meta['queries']['median_matches']:,}), {len(meta['queries']['ids'])} ids. "
        f"`wrk -t{WRK_THREADS} -c{CONNECTIONS} -d{config['duration']}s --latency` with a Lua "
        f"script cycling the paths; {config['rounds']} round(s) in rotated order, medians; "
        f"slow servers ({', '.join(SLOW)}): 1 round of {config['slow_duration']} s. CPU is "
        f"the server's whole process tree (for tipg including PostgreSQL); peak RSS is the "
        f"sum over that tree (shared pages counted in every process); PSS is the tree's "
        f"proportional set size just after the run (shared pages, e.g. mmap'ed index files "
        f"and PostgreSQL's shared buffers, split among the processes that map them).\n")
    parts += [servers_section(meta), "## Summary\n", summary_table(summaries),
              "\n## Runs, in the order they ran\n", runs_table(runs)]
    return "\n".join(parts)


def write_results(out_dir: Path, stamp: str, meta: dict[str, Any], runs: Sequence[Run],
                  summaries: Sequence[Summary]) -> tuple[Path, Path]:
    document = {**meta, "summary": [asdict(s) for s in summaries],
                "runs": [r.as_dict() for r in runs]}
    return write_pair(out_dir, f"features-{stamp}", document,
                      markdown_report(meta, summaries, runs))


# -- the benchmark ---------------------------------------------------------------------

@dataclass
class Config:
    servers: list[str]
    duration: int
    rounds: int
    slow_duration: int
    out: Path
    quick: bool
    start_timeout: float
    index_timeout: float
    skip_check: bool


def make_dataset(data_dir: Path) -> Path:
    print(f"writing {DATASET}.geojson into {data_dir} ...", flush=True)
    data_dir.mkdir(parents=True)
    code = ("import sys; from geojson_api.sample import write_samples; "
            f"write_samples(sys.argv[1], [{DATASET!r}])")
    done = subprocess.run([sys.executable, "-c", code, str(data_dir)], capture_output=True,
                          text=True, process_group=0, preexec_fn=die_with_parent)
    if done.returncode != 0:
        raise LabError(f"writing the sample failed:\n{done.stdout}{done.stderr}")
    return data_dir / f"{DATASET}.geojson"


def make_queries(features: Features) -> QuerySet:
    print(f"generating the query lists from {len(features):,} features ...", flush=True)
    return QuerySet(make_boxes(features), pick_ids(features), len(features))


def queries_meta(queries: QuerySet) -> dict[str, Any]:
    matches = sorted(m for _, m in queries.boxes)
    return {"boxes": [[*box, m] for box, m in queries.boxes], "ids": queries.ids,
            "min_matches": matches[0], "max_matches": matches[-1],
            "median_matches": matches[len(matches) // 2]}


def start_all(supervisor: Supervisor, config: Config, workdir: Path, data_dir: Path,
              features: Features, meta: dict[str, Any]) -> list[FeatureServer]:
    servers = []
    for name in config.servers:
        print(f"starting {name} ...", flush=True)
        timeout = config.index_timeout if name in OURS else config.start_timeout
        server = start_server(supervisor, name, workdir, data_dir, list(features.extent),
                              timeout)
        supervisor.remember_descendants()
        meta["servers"][name] = {"port": server.port, "startup_seconds": server.startup_seconds,
                                 "pids": server.describe(), "info": server.info}
        print(f"  {name}: {server.describe()}, port {server.port}, ready in "
              f"{server.startup_seconds:.1f} s", flush=True)
        servers.append(server)
    return servers


def check_all(servers: Sequence[FeatureServer], queries: QuerySet, features: Features,
              config: Config, meta: dict[str, Any]) -> None:
    for server in servers:
        print(f"checking {server.name} against brute force ...", flush=True)
        check = check_server(server, queries, features, config.quick)
        meta["checks"][server.name] = check
        print(f"  {server.name}: {'right' if check['ok'] else 'WRONG'}: "
              f"{describe_check(check)}", flush=True)


def benchmark(config: Config, servers: Sequence[FeatureServer], queries: QuerySet,
              workdir: Path, runs: list[Run], supervisor: Supervisor, *,
              names: Sequence[str] = QUERIES, script: str = WRK_LUA) -> None:
    """Every list of ``names`` (``queries.paths(server, name)``) on every server, rounds
    rotated; loadtest/tiles.py drives its tile lists with it too."""
    lua = workdir / "cycle.lua"
    lua.write_text(script)
    for query in names:
        files = {}
        for server in servers:
            files[server.name] = workdir / f"{query}-{server.name}.txt"
            files[server.name].write_text("\n".join(queries.paths(server, query)) + "\n")
        for round_no in range(1, config.rounds + 1):
            block = list(names).index(query) * config.rounds + round_no - 1
            for position, server in enumerate(rotated(servers, block), 1):
                slow = server.name in SLOW
                if slow and round_no > 1:
                    continue
                wait_until_quiet(servers, limit=300 if slow else 60)
                duration = config.slow_duration if slow else config.duration
                timeout = f"{max(duration, 30)}s"
                print(f"  uptime: {os.getloadavg()[0]:.2f} load", flush=True)
                run = drive(server, query, files[server.name], lua, duration, timeout,
                            round_no, position)
                supervisor.remember_descendants()
                runs.append(run)
                print(f"[{len(runs)}] {query} {server.name} round {round_no}: "
                      f"{fmt(run.wrk.requests_per_s)} rps, p50 {fmt(run.wrk.latency_ms['p50'])} "
                      f"ms, p99 {fmt(run.wrk.latency_ms['p99'])} ms, errors {run.wrk.errors}, "
                      f"CPU {fmt(run.cpu_ms_per_request)} ms/req", flush=True)


Work = Callable[[Path, Supervisor, dict[str, Any], list[Run]], None]
Report = Callable[[Any, str, dict[str, Any], Sequence[Run]], None]


def supervised_run(config: Any, prefix: str, work: Work, report: Report) -> int:
    """``work(workdir, supervisor, meta, runs)`` in a temporary folder; everything it
    started is stopped whatever happens, then ``report(config, stamp, meta, runs)``
    writes what was done (loadtest/tiles.py runs the same way)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    runs: list[Run] = []
    meta = start_meta(config)

    def finish() -> None:
        if runs or meta["servers"]:
            report(config, stamp, meta, runs)

    with (tempfile.TemporaryDirectory(prefix=prefix) as tmp,
          supervised(meta, finish) as supervisor):
        work(Path(tmp), supervisor, meta, runs)
    return 0


def run(config: Config) -> int:
    """Start everything, check, benchmark, write the reports."""

    def work(workdir: Path, supervisor: Supervisor, meta: dict[str, Any],
             runs: list[Run]) -> None:
        source = make_dataset(workdir / "data")
        features = load_features(source)
        meta["dataset"] = {"bytes": source.stat().st_size, "features": len(features),
                           "extent": features.extent}
        queries = make_queries(features)
        meta["queries"] = queries_meta(queries)
        servers = start_all(supervisor, config, workdir, source.parent, features, meta)
        if not config.skip_check:
            check_all(servers, queries, features, config, meta)
        benchmark(config, servers, queries, workdir, runs, supervisor)

    return supervised_run(config, "features-", work, report)


def report(config: Config, stamp: str, meta: dict[str, Any], runs: Sequence[Run]) -> None:
    summaries = summarize(runs, config.servers)
    json_path, md_path = write_results(config.out, stamp, meta, runs, summaries)
    print()
    print(summary_table(summaries), end="")
    print(f"\nresults: {json_path}\n         {md_path}")


def start_meta(config: Any) -> dict[str, Any]:
    """What a report says of the run before it starts: machine, options, versions."""
    return {"machine": machine_info(), "config": config_dict(config), "servers": {},
            "checks": {}, "versions": {"geojson-api": dist_version("geojson-api"),
                                       "gunicorn": dist_version("gunicorn"), **peer_versions()}}


def config_dict(config: Any) -> dict[str, Any]:
    data = asdict(config)
    data["out"] = str(config.out)
    return data


# -- command line ----------------------------------------------------------------------

def add_common_options(parser: argparse.ArgumentParser, servers: Sequence[str],
                       full: tuple[int, int], *, runs_of: str, results: Path, quick: str,
                       start: str, check: str) -> None:
    """``--servers``, the run options, ``--start-timeout`` and ``--skip-check``: the options
    of this script that loadtest/tiles.py has too."""
    parser.add_argument("--servers", type=names_type(servers, "server"), metavar="LIST",
                        help=f"comma list from {','.join(servers)} (default: all; "
                             "ours with --quick)")
    add_run_options(parser, full, runs_of=runs_of, results=results, quick=quick)
    parser.add_argument("--start-timeout", type=float, default=180.0, metavar="SECONDS",
                        help=f"how long {start} may take to start (default %(default)s)")
    parser.add_argument("--skip-check", action="store_true", help=check)


def common_config(args: argparse.Namespace, servers: Sequence[str],
                  full: tuple[int, int]) -> dict[str, Any]:
    """The configuration of :func:`add_common_options`' options (servers in their order)."""
    duration, rounds = run_length(args, full)
    chosen = args.servers or (["ours"] if args.quick else list(servers))
    return {"servers": [s for s in servers if s in chosen], "duration": duration,
            "rounds": rounds, "out": args.out.resolve(), "quick": args.quick,
            "start_timeout": args.start_timeout, "skip_check": args.skip_check}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark OGC API - Features queries: geojson-api vs pygeoapi and tipg.")
    add_common_options(parser, SERVERS, FULL_RUNS, runs_of="query type and server",
                       results=RESULTS_DIR,
                       quick="smoke run: our server only, 3 s runs, 1 round, fewer checks",
                       start="a peer (loading included)",
                       check="do not compare answers with the brute-force check")
    parser.add_argument("--slow-duration", type=at_least_one, default=60, metavar="SECONDS",
                        help="seconds of the one run of a slow server (default %(default)s)")
    parser.add_argument("--index-timeout", type=float, default=600.0, metavar="SECONDS",
                        help="how long our index may take to be ready (default %(default)s)")
    return parser


def parse_config(argv: Sequence[str] | None) -> Config:
    args = build_parser().parse_args(argv)
    common = common_config(args, SERVERS, FULL_RUNS)
    slow = min(args.slow_duration, common["duration"]) if args.quick else args.slow_duration
    return Config(**common, slow_duration=slow, index_timeout=args.index_timeout)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
    return exit_code("features", lambda: run(config))


if __name__ == "__main__":
    sys.exit(main())
