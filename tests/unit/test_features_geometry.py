"""The pure-Python exact test (used for geometries GEOS cannot read) against Shapely."""

from __future__ import annotations

from typing import Any

import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geojson_api.features import geometry

from ..oracle import box_area

coordinate = st.integers(0, 20).map(float)  # a coarse grid: touching happens often
position = st.tuples(coordinate, coordinate).map(list)


def _ring(points: list[list[float]]) -> list[list[float]]:
    return [*points, points[0]]


geometries = st.one_of(
    position.map(lambda p: {"type": "Point", "coordinates": p}),
    st.lists(position, min_size=1, max_size=5).map(
        lambda ps: {"type": "MultiPoint", "coordinates": ps}),
    st.lists(position, min_size=2, max_size=6).map(
        lambda ps: {"type": "LineString", "coordinates": ps}),
    st.lists(st.lists(position, min_size=2, max_size=4), min_size=1, max_size=3).map(
        lambda ls: {"type": "MultiLineString", "coordinates": ls}),
    st.tuples(coordinate, coordinate, st.integers(1, 8).map(float)).map(
        lambda t: {"type": "Polygon", "coordinates": [_ring(
            [[t[0], t[1]], [t[0] + t[2], t[1]], [t[0] + t[2], t[1] + t[2]],
             [t[0], t[1] + t[2]]])]}),
    st.tuples(coordinate, coordinate).map(  # a square with a square hole
        lambda t: {"type": "Polygon", "coordinates": [
            _ring([[t[0], t[1]], [t[0] + 9, t[1]], [t[0] + 9, t[1] + 9], [t[0], t[1] + 9]]),
            _ring([[t[0] + 3, t[1] + 3], [t[0] + 6, t[1] + 3], [t[0] + 6, t[1] + 6],
                   [t[0] + 3, t[1] + 6]])]}),
    st.lists(position, min_size=3, max_size=6).map(  # any simple polygon
        lambda ps: {"type": "Polygon", "coordinates": [_ring(ps)]}),
).filter(lambda g: shapely.geometry.shape(g).is_valid)  # Shapely is the truth for valid ones


def boxes() -> st.SearchStrategy[geometry.Box]:
    value = st.floats(-2, 32, allow_nan=False).map(lambda v: round(v * 2) / 2)
    return st.tuples(value, value, value, value).map(
        lambda t: (min(t[0], t[1]), min(t[2], t[3]), max(t[0], t[1]), max(t[2], t[3])))


def _shapely_says(geom: dict[str, Any], box: geometry.Box) -> bool:
    return bool(shapely.geometry.shape(geom).intersects(box_area(box)))


@settings(max_examples=1500, deadline=None)
@given(geom=geometries, box=boxes())
def test_intersects_agrees_with_shapely(geom: dict[str, Any], box: geometry.Box) -> None:
    assert geometry.intersects(geom, box) == _shapely_says(geom, box)


@given(geom=geometries)
def test_bounds_agree_with_shapely(geom: dict[str, Any]) -> None:
    assert geometry.bounds(geom) == tuple(shapely.geometry.shape(geom).bounds)


def test_malformed_parts_are_skipped() -> None:
    junk = {"type": "LineString", "coordinates": [[0, 0], ["x", 1], [2, 2], 5]}
    assert geometry.intersects(junk, (0.9, 0.9, 1.1, 1.1))
    assert geometry.bounds(junk) == (0, 0, 2, 2)
    assert not geometry.intersects({"type": "Point", "coordinates": "here"}, (0, 0, 1, 1))
    assert geometry.bounds({"type": "Nothing"}) is None


def test_collection_and_antimeridian_split() -> None:
    collection = {"type": "GeometryCollection", "geometries": [
        {"type": "Point", "coordinates": [10, 10]}]}
    assert geometry.intersects(collection, (9, 9, 11, 11))
    assert geometry.split_antimeridian((170, 0, -170, 1)) == [(170, 0, 180.0, 1),
                                                              (-180.0, 0, -170, 1)]


def test_unknown_geometry_types_have_no_box_and_touch_nothing() -> None:
    circle = {"type": "Circle", "coordinates": [10, 10], "radius": 5}
    assert list(geometry.positions(circle)) == [] and geometry.bounds(circle) is None
    assert not geometry.intersects(circle, (0, 0, 20, 20))
    point = {"type": "Point", "coordinates": [1, 1]}
    collection = {"type": "GeometryCollection", "geometries": [circle, "junk", point]}
    assert geometry.bounds(collection) == (1, 1, 1, 1)
    assert not geometry.intersects(collection, (5, 5, 15, 15))
    assert geometry.bounds({"type": 7, "coordinates": [1, 2]}) is None
