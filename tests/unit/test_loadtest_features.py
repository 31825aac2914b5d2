"""The feature benchmark's query lists, truth and summaries (loadtest/features.py), no servers.

The scripts in loadtest/ are not a package: ``python loadtest/features.py`` finds
its siblings because Python puts the script's folder on ``sys.path``. Here each
script is loaded from its file under its own name instead, siblings first, so
that nothing edits ``sys.path``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from geojson_api.lab.sampling import MemoryStats
from geojson_api.lab.wrk import parse_wrk, wrk_command

LOADTEST = Path(__file__).resolve().parents[2] / "loadtest"


def load_script(name: str) -> ModuleType:
    """``loadtest/<name>.py`` as the module ``name`` (the import it makes of a sibling
    finds the sibling loaded before it)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, LOADTEST / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


fq = load_script("featurequeries")
FLAVOURS = load_script("featureservers").FLAVOURS
features = load_script("features")


def _point(fid: int, x: float, y: float) -> dict[str, Any]:
    return {"type": "Feature", "id": fid, "properties": {"name": f"p{fid}"},
            "geometry": {"type": "Point", "coordinates": [x, y]}}


def _grid(n: int = 30) -> fq.Features:
    """n x n points on a 0.01° grid, plus a diagonal line and a feature without geometry."""
    points = [_point(i * n + j + 1, 4.8 + i * 0.01, 45.7 + j * 0.01)
              for i in range(n) for j in range(n)]
    line = {"type": "Feature", "id": 10_000, "properties": {"name": "diagonal"},
            "geometry": {"type": "LineString", "coordinates": [[4.8, 45.7], [5.09, 45.99]]}}
    empty = {"type": "Feature", "id": 10_001, "properties": {"name": "nowhere"},
             "geometry": None}
    return fq.features_from_collection(
        {"type": "FeatureCollection", "features": [*points, line, empty]})


def test_boxes_are_deterministic_map_sized_and_match_enough() -> None:
    data = _grid()
    boxes = fq.make_boxes(data, 40, min_matches=12)
    assert boxes == fq.make_boxes(data, 40, min_matches=12)
    assert boxes != fq.make_boxes(data, 40, min_matches=12, seed=1)
    minx, miny, maxx, maxy = data.extent
    for (x0, y0, x1, y1), matches in boxes:
        assert minx <= x0 < x1 <= maxx and miny <= y0 < y1 <= maxy
        assert 0.02 - 1e-5 <= (x1 - x0) / (maxx - minx) <= 0.20 + 1e-5
        assert 0.02 - 1e-5 <= (y1 - y0) / (maxy - miny) <= 0.20 + 1e-5
        assert matches >= 12
        assert matches == len(fq.brute_force(data, (x0, y0, x1, y1)).exact)
        assert fq.bbox_param((x0, y0, x1, y1)).count(",") == 3


def test_boxes_give_up_when_too_few_features_match() -> None:
    with pytest.raises(ValueError, match="boxes with >= 10000 matches"):
        fq.make_boxes(_grid(5), 3, min_matches=10_000, max_tries=50)


def test_brute_force_tells_exact_intersection_from_envelope_overlap() -> None:
    data = _grid()
    # Below the diagonal, inside its bounding box, away from the grid's points.
    box = (5.005, 45.705, 5.015, 45.715)
    truth = fq.brute_force(data, box)
    assert 10_000 in truth.envelope and 10_000 not in truth.exact
    assert 10_001 not in truth.envelope  # no geometry: never selected
    on_line = fq.brute_force(data, (4.895, 45.795, 4.905, 45.805))
    assert {10_000, 10 * 30 + 10 + 1} <= on_line.exact


def test_classify() -> None:
    truth = fq.Truth(exact=frozenset({1, 2}), envelope=frozenset({1, 2, 3}))
    assert fq.classify([2, 1], truth).verdict == "exact"
    assert fq.classify([1, 2, 3], truth).verdict == "envelope"
    wrong = fq.classify([1, 1, 4], truth)
    assert (wrong.verdict, wrong.missing, wrong.extra, wrong.duplicates) == ("wrong", 1, 1, 1)


def test_ids_are_distinct_deterministic_and_from_the_data() -> None:
    data = _grid()
    ids = fq.pick_ids(data, 50)
    assert ids == fq.pick_ids(data, 50) and len(set(ids)) == 50
    assert set(ids) <= set(data.ids)
    assert fq.feature_ids([{"id": "7"}, {"id": 8}]) == [7, 8]


def test_least_matching_keeps_list_order() -> None:
    boxes = [((0.0, 0.0, 1.0, 1.0), m) for m in (500, 130, 900, 128, 130)]
    assert fq.least_matching(boxes, 3) == [1, 3, 4]


def test_each_server_gets_the_same_queries_in_its_own_dialect() -> None:
    assert FLAVOURS["ours"].items("limit=1000") == "/collections/large/items?limit=1000"
    assert FLAVOURS["ours"].item(5) == "/collections/large/items/5"
    assert FLAVOURS["tipg"].items("limit=1000") == (
        "/collections/public.large/items?limit=1000&f=geojson")
    assert FLAVOURS["tipg"].item(5) == "/collections/public.large/items/5?f=geojson"
    assert FLAVOURS["pygeoapi-spatialite"].item(5) == "/collections/large/items/5?f=json"
    assert FLAVOURS["tipg"].collection_path() == "/collections/public.large"


WRK_OUTPUT = """\
Running 15s test @ http://127.0.0.1:40057
  2 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    59.12ms   30.01ms 401.22ms   71.00%
    Req/Sec    80.50     20.11   150.00     70.00%
  Latency Distribution
     50%   55.10ms
     75%   70.00ms
     90%   95.50ms
     99%  164.00ms
  2403 requests in 15.02s, 186.71MB read
  Socket errors: connect 0, read 0, write 0, timeout 2
  Non-2xx or 3xx responses: 3
Requests/sec:    159.99
Transfer/sec:     12.43MB
"""


def test_wrk_output_is_parsed_into_plain_units() -> None:
    stats = parse_wrk(WRK_OUTPUT)
    assert stats.requests == 2403 and stats.requests_per_s == pytest.approx(159.99)
    assert stats.latency_ms == {"p50": 55.1, "p75": 70.0, "p90": 95.5, "p99": 164.0}
    assert stats.bytes_read == pytest.approx(186.71 * 2**20)
    assert stats.socket_errors["timeout"] == 2 and stats.non_2xx_3xx == 3
    assert stats.errors == 5


def test_wrk_command_passes_the_path_list_to_the_lua_script(tmp_path: Path) -> None:
    command = wrk_command("http://127.0.0.1:1", 10, 15, timeout="60s",
                                   script=tmp_path / "cycle.lua",
                                   script_args=[str(tmp_path / "paths.txt")])
    assert command == ["wrk", "-t2", "-c10", "-d15s", "--timeout", "60s", "--latency",
                       "-s", str(tmp_path / "cycle.lua"), "http://127.0.0.1:1", "--",
                       str(tmp_path / "paths.txt")]


def _run(query: str, server: str, rps: float, p99: float) -> features.Run:
    stats = parse_wrk(WRK_OUTPUT)
    stats.requests_per_s = rps
    stats.latency_ms = {**stats.latency_ms, "p99": p99}
    memory = MemoryStats(100, 200, 100, 50, [], 0)
    return features.Run(query, server, 1, 1, [], stats, 15.0, 3.0, 1.0, 0.5, memory, 150,
                        (0.1, 0.1, 0.1), [], "")


def test_summaries_compare_with_the_best_peer() -> None:
    runs = [_run("bbox", "tipg", 160, 164), _run("bbox", "tipg", 150, 170),
            _run("bbox", "tipg", 170, 150), _run("bbox", "pygeoapi-spatialite", 118, 149),
            _run("bbox", "ours", 800, 30), _run("item", "ours", 10, 10)]
    rows = {(s.query, s.server): s for s in features.summarize(
        runs, ["ours", "pygeoapi-spatialite", "tipg"])}
    tipg = rows["bbox", "tipg"]
    assert (tipg.requests_per_s, tipg.rps_min, tipg.rps_max, tipg.rounds) == (160, 150, 170, 3)
    assert tipg.latency_ms["p99"] == 164 and tipg.rps_vs_best_peer == 1.0
    assert rows["bbox", "ours"].rps_vs_best_peer == pytest.approx(5.0)
    assert rows["bbox", "ours"].p99_vs_best_peer == pytest.approx(30 / 164)
    assert rows["bbox", "ours"].cpu_ms_per_request == pytest.approx(3.0 * 1e3 / 2403)
    assert rows["item", "ours"].rps_vs_best_peer is None  # no peer ran that query
    assert "| bbox + limit=100 | ours | 800 (800-800) | 5.00x |" in features.summary_table(
        list(rows.values()))


def test_command_line_defaults() -> None:
    quick = features.parse_config(["--quick"])
    assert (quick.servers, quick.duration, quick.rounds) == (["ours"], 3, 1)
    full = features.parse_config([])
    assert (full.duration, full.rounds, full.slow_duration) == (15, 3, 60)
    assert full.servers == ["ours", "ours-nocache", "pygeoapi-spatialite",
                            "pygeoapi-geojson", "tipg"]
    with pytest.raises(SystemExit):
        features.parse_config(["--servers", "mapserver"])
