"""The in-memory bounds scan against a brute-force comparison of every box."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geojson_api.features import boxscan
from geojson_api.features.boxscan import CONNECTED, HAS_WKB, UNKNOWN_SIDES, BoxScan, Sides

Box = tuple[float, float, float, float]
Item = tuple[Box, Sides, int]


def ordered(a: float, b: float, c: float, d: float) -> Box:
    return (min(a, b), min(c, d), max(a, b), max(c, d))


coordinate = st.integers(0, 40).map(lambda v: v / 4)
boxes = st.builds(ordered, coordinate, coordinate, coordinate, coordinate)


@st.composite
def items(draw: st.DrawFn) -> Item:
    """A feature's bounds, side vertices on those bounds (or unknown) and flags."""
    box = draw(boxes)
    flags = draw(st.sampled_from([0, HAS_WKB, HAS_WKB | CONNECTED]))
    if not flags & HAS_WKB:
        return box, UNKNOWN_SIDES, flags
    x0, y0, x1, y1 = box
    y, x = st.floats(y0, y1), st.floats(x0, x1)
    return box, (draw(y), draw(y), draw(x), draw(x)), flags


def scan_of(listed: list[Item]) -> BoxScan:
    rows = boxscan.chunk_rows(0, [(fid, box, sides, flags) for fid, (box, sides, flags) in
                                  enumerate(listed, 1)])
    return BoxScan.from_rows((name, data) for name, _, data in rows)


def inside(x: float, y: float, query: Box) -> bool:
    return query[0] <= x <= query[2] and query[1] <= y <= query[3]


def expected(listed: list[Item], query: Box) -> tuple[set[int], set[int], set[int]]:
    """Settled, to test with GEOS, to parse: the rules written out one feature at a time."""
    x0, y0, x1, y1 = query
    settled, to_test, to_parse = set(), set(), set()
    for fid, ((a, b, c, d), (ly, ry, bx, tx), flags) in enumerate(listed, 1):
        if a > x1 or c < x0 or b > y1 or d < y0:
            continue
        span_x, span_y = a >= x0 and c <= x1, b >= y0 and d <= y1
        vertex = (inside(a, ly, query) or inside(c, ry, query) or inside(bx, b, query)
                  or inside(tx, d, query))
        if (span_x and span_y) or ((span_x or span_y) and flags & CONNECTED) or vertex:
            settled.add(fid)
        elif flags & HAS_WKB:
            to_test.add(fid)
        else:
            to_parse.add(fid)
    return settled, to_test, to_parse


@settings(max_examples=300, deadline=None)
@given(listed=st.lists(items(), max_size=60), queries=st.lists(boxes, min_size=1, max_size=5))
def test_candidates_follow_the_rules_for_every_feature(
    listed: list[Item], queries: list[Box]
) -> None:
    scan = scan_of(listed)
    for query in queries:
        found = scan.candidates(query)
        got = (set(found.matched.tolist()), set(found.to_test.tolist()),
               set(found.to_parse.tolist()))
        assert got == expected(listed, query), query
        assert sum(len(part) for part in (found.matched, found.to_test, found.to_parse)) \
            == len(set().union(*got))  # no feature twice


def test_one_very_wide_feature_does_not_hide_the_narrow_ones() -> None:
    narrow: list[Item] = [((x, 0.0, x + 0.5, 0.5), UNKNOWN_SIDES, HAS_WKB | CONNECTED)
                          for x in range(200)]
    wide: list[Item] = [((-1000.0, 0.0, 1000.0, 0.1), UNKNOWN_SIDES, HAS_WKB | CONNECTED)]
    scan = scan_of(narrow + wide)
    found = scan.candidates((100.2, 0.0, 100.3, 1.0))
    assert sorted(found.matched.tolist()) == [101, 201]
    narrow_group, wide_group = scan._groups
    assert wide_group.fid.tolist() == [201] and narrow_group.width == 0.5


def test_a_side_vertex_inside_the_box_settles_a_feature_across_its_corner() -> None:
    # An L-shaped line from (0, 0) up to (0, 4) and right to (4, 4); the box holds its
    # leftmost vertex (0, 0) but no corner of its bounds lies inside the box's span.
    line: Item = ((0.0, 0.0, 4.0, 4.0), (0.0, 4.0, 0.0, 0.0), HAS_WKB | CONNECTED)
    found = scan_of([line]).candidates((-1.0, -1.0, 1.0, 1.0))
    assert found.matched.tolist() == [1] and len(found.to_test) == 0
    missed = scan_of([line]).candidates((3.0, -1.0, 5.0, 1.0))  # only its bounds reach it
    assert missed.to_test.tolist() == [1] and len(missed.matched) == 0


def test_side_vertices_are_read_from_the_coordinates() -> None:
    coordinates = np.array([[2.0, 5.0], [0.0, 3.0], [4.0, 1.0], [1.0, 7.0]])
    assert boxscan.sides(coordinates) == (3.0, 1.0, 4.0, 1.0)
    assert all(np.isnan(v) for v in boxscan.sides(np.empty((0, 2))))


def test_an_empty_scan_finds_nothing() -> None:
    found = scan_of([]).candidates((0.0, 0.0, 1.0, 1.0))
    assert len(found.matched) == len(found.to_test) == len(found.to_parse) == 0


def test_chunks_are_read_in_order() -> None:
    first = boxscan.chunk_rows(0, [(1, (0.0, 0.0, 1.0, 1.0), UNKNOWN_SIDES, HAS_WKB)])
    second = boxscan.chunk_rows(1, [(2, (5.0, 5.0, 6.0, 6.0), UNKNOWN_SIDES, 0)])
    scan = BoxScan.from_rows((name, data) for name, _, data in
                             sorted(first + second, key=lambda row: (row[0], row[1])))
    assert scan.count == 2
    assert scan.candidates((5.5, 5.5, 7.0, 7.0)).to_parse.tolist() == [2]
    assert scan.candidates((0.5, 0.5, 0.6, 0.6)).to_test.tolist() == [1]


@pytest.mark.parametrize("rows, problem", [
    ([("fid", np.arange(2, dtype="<i8").tobytes())], "differ in length"),
    ([("minx", b"\x00" * 7)], "partial entry"),
    ([("colour", b"")], "unknown bounds array"),
])
def test_arrays_that_do_not_fit_are_damage(rows: list[tuple[str, bytes]], problem: str) -> None:
    with pytest.raises(boxscan.Damaged, match=problem):
        BoxScan.from_rows(rows)
