"""The tile benchmark's pure parts (loadtest/tiles.py): tile lists, URLs, the wrk script,
id comparison and goals. No server but a tiny local one that wrk sends its requests to."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import mapbox_vector_tile
import pytest

from geojson_api.lab.wrk import run_wrk, wrk_command
from geojson_api.tiles import grid
from geojson_api.tiles.grid import Tile

from ..conftest import require
from .test_loadtest_features import _run, fq, load_script

tiles = load_script("tiles")

EXTENT = (4.70, 45.60, 5.10, 45.90)  # the samples' extent (around Lyon)


def test_random_tiles_touch_the_extent_are_distinct_and_deterministic() -> None:
    for z in (8, 12, 14):
        chosen = tiles.random_tiles(EXTENT, z, 50)
        assert chosen == tiles.random_tiles(EXTENT, z, 50)
        assert len(set(chosen)) == len(chosen) >= 1
        assert all(t.z == z and tiles.touches(t, EXTENT) for t in chosen)
    assert tiles.random_tiles(EXTENT, 14, 50) != tiles.random_tiles(EXTENT, 14, 50, seed=1)
    # Fewer tiles than asked for: every one of them, once.
    min_row, max_row, min_col, max_col = grid.limits(EXTENT, 12)
    every = {Tile(12, r, c) for r in range(min_row, max_row + 1)
             for c in range(min_col, max_col + 1)}
    assert set(tiles.random_tiles(EXTENT, 12, 10_000)) == every
    # A tile just beside the extent does not touch it.
    assert not tiles.touches(Tile(12, min_row, max_col + 1), EXTENT)


def test_the_view_is_twenty_contiguous_tiles_around_the_centre() -> None:
    view = tiles.view_tiles(EXTENT)
    assert len(view) == len(set(view)) == 20
    rows, cols = sorted({t.row for t in view}), sorted({t.col for t in view})
    assert len(cols) == 5 and cols == list(range(cols[0], cols[0] + 5))
    assert len(rows) == 4 and rows == list(range(rows[0], rows[0] + 4))
    col, row = grid.position((EXTENT[0] + EXTENT[2]) / 2, (EXTENT[1] + EXTENT[3]) / 2, 12)
    assert cols[0] + 2 <= col < cols[0] + 3  # the centre lies in the middle column
    assert rows[0] + 1 <= row < rows[0] + 3
    assert all(t.z == 12 and tiles.touches(t, EXTENT) for t in view)
    # At the corner of the world the view keeps only the tiles that exist.
    assert len(tiles.view_tiles((-180.0, 84.0, -179.0, 85.0), z=3)) == 6


def test_every_list_and_its_urls_per_server() -> None:
    lists = tiles.TileLists(tiles.make_lists(EXTENT, 30))
    assert list(lists.lists) == ["z8", "z12", "z14", "view"] == list(tiles.LISTS)
    assert lists.lists == tiles.make_lists(EXTENT, 30)
    tile = Tile(14, 5852, 8417)
    assert tiles.FLAVOURS["ours"].tile(tile) == (
        "/collections/large/tiles/WebMercatorQuad/14/5852/8417")  # z/row/col
    assert tiles.FLAVOURS["tipg"].tile(tile) == (
        "/collections/public.large/tiles/WebMercatorQuad/14/8417/5852")  # z/x/y

    class Named:
        name = "tipg"

    paths = lists.paths(Named(), "view")
    assert len(paths) == 20 and paths[0].startswith("/collections/public.large/tiles/")


class _Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Accept-Encoding")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[http.server.ThreadingHTTPServer]:
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_wrk_script_cycles_the_tiles_with_gzip_accepted(
        tmp_path: Path, recorder: http.server.ThreadingHTTPServer) -> None:
    require("wrk")
    script = tiles.lua_script(tiles.REQUEST_HEADERS)
    assert script.startswith('wrk.headers["Accept-Encoding"] = "gzip"\n')
    paths = [tiles.FLAVOURS["ours"].tile(t) for t in tiles.view_tiles(EXTENT)]
    (tmp_path / "cycle.lua").write_text(script)
    (tmp_path / "paths.txt").write_text("\n".join(paths) + "\n")
    port = recorder.server_address[1]
    command = wrk_command(f"http://127.0.0.1:{port}", 2, 1, script=tmp_path / "cycle.lua",
                          script_args=[str(tmp_path / "paths.txt")])
    done = run_wrk(command, [], limit=60, target="recorder")
    assert done.stats.requests > 0 and done.stats.non_2xx_3xx == 0
    seen = list(_Recorder.seen)
    assert {path for path, _ in seen} == set(paths)
    assert {encoding for _, encoding in seen} == {"gzip"}


def _point(fid: int, x: float, y: float) -> dict[str, Any]:
    return {"type": "Feature", "id": fid, "properties": {"name": f"p{fid}"},
            "geometry": {"type": "Point", "coordinates": [x, y]}}


def test_ids_are_compared_with_ours_and_explained_by_the_truth() -> None:
    tile = Tile(14, 5852, 8417)
    west, south, east, north = tile.bounds()
    width = east - west
    features = fq.features_from_collection({"type": "FeatureCollection", "features": [
        _point(1, west + width / 2, (south + north) / 2),  # in the middle
        _point(2, west + width / 1000, (south + north) / 2),  # inside, a hair from the edge
        _point(3, west - width / 1000, (south + north) / 2),  # outside, a hair from the edge
        _point(4, west - width / 4, (south + north) / 2),  # well outside
        _point(5, west + width / 3, south + (north - south) / 3),  # inside
    ]})
    truth = tiles.TileTruth.of(features, tile)
    assert truth.exact == {1, 2, 5} and truth.near_edge == {2, 3}
    same = tiles.compare_tile([1, 2, 5], {1, 2, 5}, truth)
    assert same["extra_vs_ours"] == same["missing_vs_ours"] == 0
    off = tiles.compare_tile([1, 3, 4, 4], {1, 2, 5}, truth)
    assert (off["features"], off["duplicates"]) == (4, 1)
    assert (off["extra_vs_ours"], off["extra_at_edge"]) == (2, 1)  # 3 at the edge, 4 not
    assert (off["missing_vs_ours"], off["missing_at_edge"]) == (2, 1)  # 2 at the edge, 5 not
    assert (off["extra_vs_truth_inside"], off["missing_vs_truth_inside"]) == (1, 1)
    assert (off["extra_touching"], off["missing_touching"]) == (0, 2)
    assert (off["extra_ids"], off["missing_ids"]) == ([3, 4], [2, 5])
    summary = tiles.summarize_check([{"tile": list(tile), "status": 200, "encoding": "gzip",
                                      "bytes": 9, **same},
                                     {"tile": list(tile), "status": 200, "encoding": "gzip",
                                      "bytes": 9, **off}])
    assert (summary["identical"], summary["differing"], summary["verdict"]) == (
        1, 1, "differs")
    assert "1 tiles differ: 2 ids more (1 within a pixel of the tile's edge, 0 touching" in (
        tiles.describe_check("x", summary))


def test_ids_are_read_from_the_mvt_id_or_a_property() -> None:
    data = mapbox_vector_tile.encode([{"name": "large", "features": [
        {"geometry": "POINT(10 10)", "properties": {"id": 7}, "id": 3},
        {"geometry": "POINT(20 20)", "properties": {"id": 8}, "id": 4}]}])
    assert tiles.decoded_ids(data, None) == [3, 4]
    assert tiles.decoded_ids(data, "id") == [7, 8]
    assert tiles.decoded_ids(b"", None) == []  # a 204: no layer at all


def test_goals_compare_ours_and_the_stack_with_tipg() -> None:
    runs = [_run("z14", "tipg", 100, 200), _run("z14", "ours", 1500, 10),
            _run("z14", "stack", 900, 30), _run("view", "ours", 50, 5)]
    summaries = load_script("features").summarize(runs, ["ours", "tipg", "stack"], tiles.LISTS)
    found = {(g["list"], g["server"]): g for g in tiles.goals(summaries)}
    assert set(found) == {("z14", "ours"), ("z14", "stack")}  # no tipg run of "view"
    assert found["z14", "ours"]["rps_met"] and found["z14", "ours"]["p99_met"]
    assert not found["z14", "stack"]["rps_met"] and not found["z14", "stack"]["p99_met"]
    assert "| random tiles, zoom 14 | stack | 9.00x | **no** |" in tiles.goals_table(
        list(found.values()))


def test_command_line_defaults() -> None:
    quick = tiles.parse_config(["--quick"])
    assert (quick.servers, quick.duration, quick.rounds, quick.check_tiles) == (
        ["ours"], 3, 1, 10)
    full = tiles.parse_config([])
    assert (full.servers, full.duration, full.rounds, full.tiles) == (
        ["ours", "tipg", "stack"], 10, 3, 100)
    with pytest.raises(SystemExit):
        tiles.parse_config(["--servers", "martin"])


def test_the_survey_asks_each_server_for_the_first_tiles_of_each_list(
        recorder: http.server.ThreadingHTTPServer) -> None:
    class Server:
        name = "tipg"
        base = f"http://127.0.0.1:{recorder.server_address[1]}"

    lists = tiles.TileLists(tiles.make_lists(EXTENT, 5))
    rows = tiles.survey([Server()], lists, None, per_list=2)
    assert [r["list"] for r in rows] == ["z8", "z12", "z12", "z14", "z14", "view", "view"]
    assert {(r["status"], r["features"]) for r in rows} == {(204, 0)}  # the recorder's 204s
    assert [path for path, _ in _Recorder.seen] == [
        tiles.FLAVOURS["tipg"].tile(Tile(*r["tile"])) for r in rows]
    assert "| random tiles, zoom 8 | 8/" in tiles.survey_table(rows)
