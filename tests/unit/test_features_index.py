"""The SQLite spatial index against brute force: Shapely over every feature."""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geojson_api import integrity
from geojson_api.errors import IndexDamaged
from geojson_api.features import geometry, sqlite_index
from geojson_api.features.query import FeatureQuery, SortKey
from geojson_api.scan import scan

from ..oracle import box_area

# The medium sample's extent, a little widened so boxes also fall outside it.
LON = (4.70, 5.10)
LAT = (45.60, 45.90)


class Dataset:
    """An index and the brute-force truth for one GeoJSON file."""

    def __init__(self, source: Path, target: Path) -> None:
        self.meta = scan(source).as_dict()
        self.info = sqlite_index.build(source, target, self.meta)
        self.index = sqlite_index.SQLiteIndex(target)
        features = json.loads(source.read_bytes())["features"]
        self.features = features
        self.ids = [f.get("id") for f in features]
        self.shapes = [shapely.geometry.shape(f["geometry"]) if f.get("geometry") else None
                       for f in features]

    def truth(self, box: geometry.Box) -> set[Any]:
        area = box_area(box)
        return {fid for fid, shape in zip(self.ids, self.shapes, strict=True)
                if shape is not None and shape.intersects(area)}


def ids_of(chunks: Iterator[bytes]) -> list[Any]:
    return [orjson.loads(chunk)["id"] for chunk in chunks]


@pytest.fixture(scope="module")
def medium(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    target = tmp_path_factory.mktemp("index") / sqlite_index.INDEX_FILE
    return Dataset(samples / "medium.geojson", target)


def boxes() -> st.SearchStrategy[geometry.Box]:
    """Boxes from a point to the whole area, on the data's micro-degree grid or not."""
    lon = st.floats(*LON, allow_nan=False)
    lat = st.floats(*LAT, allow_nan=False)
    grid = st.integers(4_700_000, 5_100_000).map(lambda v: v / 1e6)

    def box(a: float, b: float, c: float, d: float) -> geometry.Box:
        return (min(a, b), min(c, d), max(a, b), max(c, d))

    return st.one_of(
        st.builds(box, lon, lon, lat, lat),
        st.builds(box, grid, grid, grid.map(lambda v: v - 4.7 + 45.6),
                  grid.map(lambda v: v - 4.7 + 45.6)),
    )


def test_build_info(medium: Dataset) -> None:
    assert medium.info["features"] == len(medium.features) == medium.meta["features"]
    assert medium.info["id_source"] == "id"
    assert {q.name for q in medium.index.queryables()} == set(medium.meta["properties"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(box=boxes())
def test_bbox_matches_brute_force(medium: Dataset, box: geometry.Box) -> None:
    page = medium.index.query(FeatureQuery(boxes=(box,), limit=100_000))
    found = ids_of(page.features)
    assert len(found) == len(set(found)) == page.number_matched
    assert set(found) == medium.truth(box)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(box=boxes(), limit=st.integers(1, 700))
def test_paging_returns_every_feature_once(
    medium: Dataset, box: geometry.Box, limit: int
) -> None:
    seen: list[Any] = []
    offset = 0
    while True:
        page = medium.index.query(FeatureQuery(boxes=(box,), limit=limit, offset=offset))
        chunk = ids_of(page.features)
        seen += chunk
        if offset + limit >= page.number_matched:
            break
        assert len(chunk) == limit
        offset += limit
    assert len(seen) == len(set(seen)) == page.number_matched
    assert set(seen) == medium.truth(box)


def test_whole_collection_paging_in_id_order(medium: Dataset) -> None:
    seen: list[Any] = []
    for offset in range(0, len(medium.features), 4000):
        seen += ids_of(medium.index.query(FeatureQuery(limit=4000, offset=offset)).features)
    assert seen == medium.ids


def test_filters_sort_and_properties(medium: Dataset) -> None:
    query = FeatureQuery(filters=(("kind", "road"), ("active", True)), limit=100_000,
                         sortby=(SortKey("rank", descending=True), SortKey("name")),
                         properties=("name", "rank"))
    page = medium.index.query(query)
    got = [orjson.loads(c) for c in page.features]
    expected = [f for f in medium.features
                if f["properties"]["kind"] == "road" and f["properties"]["active"] is True]
    expected.sort(key=lambda f: (-f["properties"]["rank"], f["properties"]["name"], f["id"]))
    assert page.number_matched == len(expected) > 0
    assert [f["id"] for f in got] == [f["id"] for f in expected]
    assert all(set(f["properties"]) == {"name", "rank"} for f in got)


def test_filter_with_bbox(medium: Dataset) -> None:
    box = (4.80, 45.70, 4.90, 45.80)
    page = medium.index.query(FeatureQuery(boxes=(box,), filters=(("rank", 3),), limit=10**6))
    truth = {fid for fid in medium.truth(box)
             if medium.features[medium.ids.index(fid)]["properties"]["rank"] == 3}
    assert set(ids_of(page.features)) == truth and page.number_matched == len(truth)


def test_feature_by_id_is_the_original(medium: Dataset) -> None:
    original = medium.features[41]
    found = orjson.loads(medium.index.feature(str(original["id"])) or b"null")
    assert found == {"type": "Feature", "id": original["id"], "geometry": original["geometry"],
                     "properties": original["properties"]}
    assert medium.index.feature("no-such-id") is None


def test_offset_past_the_end(medium: Dataset) -> None:
    page = medium.index.query(FeatureQuery(limit=10, offset=10**6))
    assert page.number_matched == len(medium.features) and list(page.features) == []


def write(path: Path, features: list[Any]) -> Path:
    path.write_bytes(orjson.dumps({"type": "FeatureCollection", "features": features}))
    return path


def build(tmp_path: Path, features: list[Any]) -> sqlite_index.SQLiteIndex:
    source = write(tmp_path / "in.geojson", features)
    target = tmp_path / sqlite_index.INDEX_FILE
    sqlite_index.build(source, target, scan(source).as_dict())
    return sqlite_index.SQLiteIndex(target)


def point(x: float, y: float, **extra: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [x, y]},
            "properties": {"n": x}, **extra}


def test_missing_or_repeated_ids_number_the_features(tmp_path: Path) -> None:
    index = build(tmp_path, [point(1, 1, id="a"), point(2, 2, id="a"), point(3, 3)])
    assert index.info()["id_source"] == "position"
    assert ids_of(index.query(FeatureQuery()).features) == [1, 2, 3]
    assert orjson.loads(index.feature("2") or b"")["geometry"]["coordinates"] == [2, 2]


def test_string_ids_are_kept(tmp_path: Path) -> None:
    index = build(tmp_path, [point(1, 1, id="a/b"), point(2, 2, id="c")])
    assert ids_of(index.query(FeatureQuery()).features) == ["a/b", "c"]
    assert index.feature("a/b") is not None


def test_features_without_geometry_are_listed_but_never_in_a_bbox(tmp_path: Path) -> None:
    nothing = {"type": "Feature", "id": 9, "geometry": None, "properties": {"n": 0}}
    index = build(tmp_path, [point(1, 1, id=1), nothing])
    assert ids_of(index.query(FeatureQuery()).features) == [1, 9]
    page = index.query(FeatureQuery(boxes=((-180, -90, 180, 90),)))
    assert ids_of(page.features) == [1] and page.number_matched == 1
    assert orjson.loads(index.feature("9") or b"")["geometry"] is None


def test_antimeridian_box(tmp_path: Path) -> None:
    index = build(tmp_path, [point(179.5, 0, id=1), point(-179.5, 0, id=2), point(0, 0, id=3)])
    boxes = tuple(geometry.split_antimeridian((179.0, -1.0, -179.0, 1.0)))
    page = index.query(FeatureQuery(boxes=boxes))
    assert sorted(ids_of(page.features)) == [1, 2] and page.number_matched == 2


def test_geometry_geos_cannot_read_is_tested_in_python(tmp_path: Path) -> None:
    # A polygon ring of two positions: GEOS refuses it, the file is still served.
    odd = {"type": "Feature", "id": 1, "properties": {},
           "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [2, 2]]]}}
    index = build(tmp_path, [odd, point(5, 5, id=2)])
    assert ids_of(index.query(FeatureQuery(boxes=((0.5, 0.0, 1.5, 1.5),))).features) == [1]
    assert ids_of(index.query(FeatureQuery(boxes=((1.5, 0.0, 1.9, 0.5),))).features) == []


def test_broken_file_records_a_failure(tmp_path: Path) -> None:
    source = tmp_path / "data.geojson"
    source.write_bytes(b'{"type":"FeatureCollection","features":[{"type":"Feature",')
    sqlite_index.ensure(tmp_path, source, {"type": "FeatureCollection", "properties": {}})
    assert not (tmp_path / sqlite_index.INDEX_FILE).exists()
    assert "IncompleteJSONError" in (sqlite_index.failure(tmp_path) or "")
    assert sqlite_index.failure(tmp_path) == "IncompleteJSONError: parse error: premature EOF"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []



def test_leftover_of_a_killed_build_is_removed(tmp_path: Path) -> None:
    source = write(tmp_path / "data.geojson", [point(1, 1, id=1)])
    leftover = tmp_path / f".{sqlite_index.INDEX_FILE}.999.1.tmp"
    leftover.write_bytes(b"half an index")
    sqlite_index.ensure(tmp_path, source, scan(source).as_dict())
    assert not leftover.exists() and (tmp_path / sqlite_index.INDEX_FILE).exists()


def test_unknown_geometry_types_are_listed_but_never_in_a_bbox(tmp_path: Path) -> None:
    circle = {"type": "Feature", "id": 7, "properties": {"n": 0},
              "geometry": {"type": "Circle", "coordinates": [1, 1], "radius": 5}}
    mixed = {"type": "Feature", "id": 8, "properties": {"n": 0},
             "geometry": {"type": "GeometryCollection", "geometries": [
                 {"type": "Circle", "coordinates": [1, 1]},
                 {"type": "Point", "coordinates": [3, 3]}]}}
    index = build(tmp_path, [point(1, 1, id=1), circle, mixed])
    assert ids_of(index.query(FeatureQuery()).features) == [1, 7, 8]
    assert index.info()["with_geometry"] == 2  # the circle has no R*Tree row
    world = index.query(FeatureQuery(boxes=((-180, -90, 180, 90),)))
    assert sorted(ids_of(world.features)) == [1, 8] and world.number_matched == 2
    around_the_circle = index.query(FeatureQuery(boxes=((0.5, 0.5, 1.5, 1.5),)))  # edge test too
    assert ids_of(around_the_circle.features) == [1]
    assert ids_of(index.query(FeatureQuery(boxes=((0.9, 0.9, 2.0, 2.0),))).features) == [1]
    assert orjson.loads(index.feature("7") or b"")["geometry"]["type"] == "Circle"


def shapes_on_a_grid() -> st.SearchStrategy[dict[str, Any]]:
    """Lines, polygons (holes outside the shell and bow ties too) and one-part multis."""
    position = st.tuples(st.integers(0, 12), st.integers(0, 12)).map(list)
    path = st.lists(position, min_size=2, max_size=6)
    ring = st.lists(position, min_size=3, max_size=6).map(lambda r: [*r, r[0]])
    line = path.map(lambda p: {"type": "LineString", "coordinates": p})
    polygon = st.lists(ring, min_size=1, max_size=2).map(
        lambda rings: {"type": "Polygon", "coordinates": rings})
    multi_line = path.map(lambda p: {"type": "MultiLineString", "coordinates": [p]})
    multi_polygon = ring.map(lambda r: {"type": "MultiPolygon", "coordinates": [[r]]})
    # Without zero-length ones: GEOS says a line of one repeated position misses a query
    # line through it, while any index matches it as a candidate inside the box.
    return st.one_of(line, polygon, multi_line, multi_polygon).filter(
        lambda g: shapely.geometry.shape(g).length > 0)


_grid_box = st.tuples(*[st.integers(0, 12).map(lambda v: v / 2)] * 4).map(
    lambda v: (min(v[0], v[1]), min(v[2], v[3]), max(v[0], v[1]), max(v[2], v[3])))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(geometries=st.lists(shapes_on_a_grid(), min_size=1, max_size=12),
       queries=st.lists(_grid_box, min_size=1, max_size=8))
def test_edge_features_settled_without_geos_match_brute_force(
    tmp_path_factory: pytest.TempPathFactory, geometries: list[dict[str, Any]],
    queries: list[geometry.Box],
) -> None:
    """Features across a box's edge settled on their exact bounds (connected ones) or by GEOS."""
    features = [{"type": "Feature", "id": i, "geometry": g, "properties": {}}
                for i, g in enumerate(geometries, 1)]
    index = build(tmp_path_factory.mktemp("grid"), features)
    try:
        for box in queries:
            area = box_area(box)
            truth = {f["id"] for f in features
                     if shapely.geometry.shape(f["geometry"]).intersects(area)}
            page = index.query(FeatureQuery(boxes=(box,), limit=1000))
            found = ids_of(page.features)
            assert set(found) == truth and page.number_matched == len(truth), box
    finally:
        index.close()


def test_an_index_of_an_older_format_is_built_again(tmp_path: Path) -> None:
    source = write(tmp_path / "data.geojson", [point(1, 1, id=1)])
    meta = scan(source).as_dict()
    sqlite_index.ensure(tmp_path, source, meta)
    target = tmp_path / sqlite_index.INDEX_FILE
    old = sqlite_index.build(source, target, meta)  # rewrite it as an older format would
    con = sqlite3.connect(target)
    con.execute("UPDATE meta SET value = '3' WHERE key = 'format'")
    con.commit()
    con.close()
    integrity.write_sum(target, integrity.file_sum(target))
    features = tmp_path / sqlite_index.FEATURES_FILE  # format 3 had no features file
    features.unlink()
    integrity.sum_path(features).unlink()
    assert old["format"] == sqlite_index.FORMAT and sqlite_index.outdated(tmp_path)
    assert sqlite_index.open_problem(tmp_path) is None  # sound, only old: not quarantined
    state = tmp_path / "state"
    sqlite_index.ensure(tmp_path, source, meta, state)
    assert not sqlite_index.outdated(tmp_path) and sqlite_index.open_problem(tmp_path) is None
    assert not state.exists() and features.exists()


def test_an_index_of_a_newer_format_is_left_alone(tmp_path: Path) -> None:
    """A process of older code beside newer ones (a rolling upgrade) does not rebuild it."""
    source = write(tmp_path / "data.geojson", [point(1, 1, id=1)])
    meta = scan(source).as_dict()
    sqlite_index.ensure(tmp_path, source, meta)
    target = tmp_path / sqlite_index.INDEX_FILE
    con = sqlite3.connect(target)
    con.execute("UPDATE meta SET value = ? WHERE key = 'format'", (str(sqlite_index.FORMAT + 1),))
    con.commit()
    con.close()
    integrity.write_sum(target, integrity.file_sum(target))
    built = target.stat().st_mtime_ns
    assert sqlite_index.newer(tmp_path) and not sqlite_index.outdated(tmp_path)
    assert sqlite_index.open_problem(tmp_path) is None
    sqlite_index.ensure(tmp_path, source, meta)
    assert target.stat().st_mtime_ns == built and sqlite_index.newer(tmp_path)


def tricky_features() -> list[dict[str, Any]]:
    """Ids and geometries holding the keys the features file is split on."""
    return [
        {"type": "Feature", "id": 'a,"geometry":{"x"', "properties": {"k": 1, "j": "x"},
         "geometry": {"type": "Point", "coordinates": [1, 1], "properties": {"fake": 1}}},
        {"type": "Feature", "id": "b", "properties": None,
         "geometry": {"type": "Point", "coordinates": [2, 2]}},
        {"type": "Feature", "id": "c", "properties": {"k": 3}, "geometry": None},
    ]


def test_the_features_file_holds_each_feature_as_a_page_writes_it(tmp_path: Path) -> None:
    index = build(tmp_path, tricky_features())
    stored = (tmp_path / sqlite_index.FEATURES_FILE).read_bytes()
    docs = [orjson.dumps({"type": "Feature", "id": f["id"], "geometry": f["geometry"],
                          "properties": f["properties"]}) for f in tricky_features()]
    assert stored == b"".join(doc + b",\n" for doc in docs)
    assert [index.feature(f["id"]) for f in tricky_features()] == docs
    page = index.query(FeatureQuery(limit=10))
    assert page.runs is not None and list(page.runs) == [b",\n".join(docs)]
    chosen = [orjson.loads(f) for f in index.query(
        FeatureQuery(limit=10, properties=("j", "missing"))).features]
    assert [f["properties"] for f in chosen] == [{"j": "x"}, None, {}]
    assert [f["geometry"] for f in chosen] == [f["geometry"] for f in tricky_features()]
    tiles_rows = list(sqlite_index.with_geometry(tmp_path / sqlite_index.INDEX_FILE))
    assert [(fid, fkey, orjson.loads(g), orjson.loads(p)) for fid, fkey, g, p in tiles_rows] == [
        (1, 'a,"geometry":{"x"', tricky_features()[0]["geometry"], {"k": 1, "j": "x"}),
        (2, "b", tricky_features()[1]["geometry"], None)]
    index.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # no scratch file is left
        "in.geojson", "index.features", "index.features.sum", "index.sqlite", "index.sqlite.sum"]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fids=st.lists(st.integers(1, 40), max_size=60), run_bytes=st.sampled_from([1, 300, 10**6]))
def test_runs_are_the_features_one_by_one_joined(
    small_index: sqlite_index.SQLiteIndex, fids: list[int], run_bytes: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Neighbours read as one slice (split at RUN_BYTES) give the bytes of single reads."""
    monkeypatch.setattr(sqlite_index, "RUN_BYTES", run_bytes)
    features = small_index._features  # the reader under test
    wanted = np.asarray(fids, dtype=np.int64)
    runs = list(features.runs(wanted))
    assert b",\n".join(runs) == b",\n".join(features.each(wanted))
    if run_bytes == 10**6:  # every run of consecutive fids in one read
        breaks = sum(b != a + 1 for a, b in itertools.pairwise(fids))
        assert len(runs) == (len(fids) and 1 + breaks)


@pytest.fixture(scope="module")
def small_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite_index.SQLiteIndex]:
    folder = tmp_path_factory.mktemp("forty")
    index = build(folder, [point(i, i, id=i, properties={"n": "x" * (i % 7)})
                           for i in range(1, 41)])
    yield index
    index.close()


def test_a_truncated_features_file_is_damage_before_a_page_starts(tmp_path: Path) -> None:
    build(tmp_path, [point(i, i, id=i) for i in range(1, 30)]).close()
    reasons: list[str] = []
    index = sqlite_index.SQLiteIndex(tmp_path / sqlite_index.INDEX_FILE,
                                     on_damage=reasons.append)
    features = tmp_path / sqlite_index.FEATURES_FILE
    os.truncate(features, features.stat().st_size // 2)
    with pytest.raises(IndexDamaged, match=r"index\.features has"):
        index.query(FeatureQuery(limit=5))  # raised by the query, not by the body's stream
    assert len(reasons) == 1 and "were recorded" in reasons[0]
    with pytest.raises(IndexDamaged, match="ends before byte"):
        index.feature("29")  # a read past the end is damage too
    assert len(reasons) == 1  # told once
    with pytest.raises(IndexDamaged, match=r"index\.features has"):
        sqlite_index.SQLiteIndex(tmp_path / sqlite_index.INDEX_FILE)  # as is a new open
    assert "index.features has" in (sqlite_index.open_problem(tmp_path) or "")


def test_a_missing_features_file_is_quarantined_and_built_again(tmp_path: Path) -> None:
    source = write(tmp_path / "data.geojson", [point(1, 1, id=1), point(2, 2, id=2)])
    meta = scan(source).as_dict()
    sqlite_index.ensure(tmp_path, source, meta)
    (tmp_path / sqlite_index.FEATURES_FILE).unlink()
    assert sqlite_index.open_problem(tmp_path) == "index.features is missing"
    with pytest.raises(IndexDamaged, match=r"index\.features is missing"):
        sqlite_index.SQLiteIndex(tmp_path / sqlite_index.INDEX_FILE)
    state = tmp_path / "state"
    sqlite_index.ensure(tmp_path, source, meta, state)
    assert sqlite_index.open_problem(tmp_path) is None
    assert [p.name.split("-")[-1] for p in sorted((state / "quarantine").iterdir())
            if not p.name.endswith(".sum")] == ["index.sqlite"]
    index = sqlite_index.SQLiteIndex(tmp_path / sqlite_index.INDEX_FILE)
    assert ids_of(index.query(FeatureQuery()).features) == [1, 2]


def test_bounds_arrays_that_do_not_fit_report_damage(tmp_path: Path) -> None:
    build(tmp_path, [point(1, 1, id=1), point(2, 2, id=2)]).close()
    target = tmp_path / sqlite_index.INDEX_FILE
    con = sqlite3.connect(target)
    con.execute("UPDATE boxes SET data = substr(data, 1, 5) WHERE name = 'maxy'")
    con.commit()
    con.close()
    reasons: list[str] = []
    with pytest.raises(IndexDamaged, match="partial entry"):
        sqlite_index.SQLiteIndex(target, on_damage=reasons.append)
    assert reasons == ["the bounds array 'maxy' has a partial entry"]


def test_a_box_with_a_filter_or_a_sort_pages_through_sql(medium: Dataset) -> None:
    box = (4.80, 45.70, 4.95, 45.80)
    truth = medium.truth(box)
    by_rank = medium.index.query(FeatureQuery(boxes=(box,), limit=10_000,
                                              sortby=(SortKey("rank", True),)))
    ranks = [orjson.loads(f)["properties"]["rank"] for f in by_rank.features]
    assert by_rank.number_matched == len(truth) and ranks == sorted(ranks, reverse=True)
    plain = medium.index.query(FeatureQuery(boxes=(box,), limit=10_000))
    assert ids_of(plain.features) == [i for i in medium.ids if i in truth]  # in file order


def test_an_invalid_polygon_is_tested_as_geos_tests_it_unprepared(tmp_path: Path) -> None:
    # A shell of zero area and a hole of one repeated position: plain GEOS says it misses
    # the line x = 0, y 0..0.5, while a prepared line says it touches; the brute force
    # (and every client comparing with Shapely) uses the plain test.
    odd = {"type": "Feature", "id": 2, "properties": {}, "geometry": {"type": "Polygon",
           "coordinates": [[[0, 1], [0, 1], [1, 0], [0, 1]], [[0, 0], [0, 0], [0, 0], [0, 0]]]}}
    line = {"type": "Feature", "id": 1, "properties": {},
            "geometry": {"type": "LineString", "coordinates": [[0, 0], [0, 1]]}}
    index = build(tmp_path, [line, odd])
    page = index.query(FeatureQuery(boxes=((0.0, 0.0, 0.0, 0.5),)))
    assert ids_of(page.features) == [1] and page.number_matched == 1
