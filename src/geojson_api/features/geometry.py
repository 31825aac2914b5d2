"""Bounding boxes and a pure-Python "does this geometry touch this box" test.

The spatial index (``sqlite_index``) keeps each geometry as GEOS reads it
(WKB) and asks GEOS, through Shapely, whether the features across a query
box's edge intersect it. This module serves the geometries GEOS refuses to
read, which the scan reports but the file still serves (a ring of two
positions, a position with a measure): their box comes from :func:`bounds`
and their exact test from :func:`intersects`, on the GeoJSON coordinates,
with malformed parts skipped. Orientation tests fall back to exact rational
arithmetic when the floating-point result is too close to zero to trust; a
property test checks the routine against Shapely.

A geometry type RFC 7946 does not define (``"Circle"``) has no positions
here: no box, so no bbox query matches it (members of a collection
included).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from fractions import Fraction
from typing import Any

Box = tuple[float, float, float, float]
"""(min x, min y, max x, max y)."""

Position = Sequence[float]

_CLOSE_TO_ZERO = 1e-9


def positions(geometry: dict[str, Any]) -> Iterator[Position]:
    """Every position of a GeoJSON geometry (collections included; unknown types have none)."""
    kind = geometry.get("type")
    if kind == "GeometryCollection":
        for member in geometry.get("geometries") or ():
            if isinstance(member, dict):
                yield from positions(member)
        return
    depth = _DEPTH.get(kind) if isinstance(kind, str) else None
    if depth is not None:
        yield from _flatten(geometry.get("coordinates"), depth)


_DEPTH = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2,
          "Polygon": 2, "MultiPolygon": 3}


def _flatten(value: Any, depth: int) -> Iterator[Position]:
    if depth == 0:
        if isinstance(value, list | tuple) and len(value) >= 2 and _number(value[0]) \
                and _number(value[1]):
            yield value
        return
    if isinstance(value, list | tuple):
        for item in value:
            yield from _flatten(item, depth - 1)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def bounds(geometry: dict[str, Any] | None) -> Box | None:
    """The bounding box of a geometry, or None when it has no position."""
    if not geometry:
        return None
    xs: list[float] = []
    ys: list[float] = []
    for position in positions(geometry):
        xs.append(position[0])
        ys.append(position[1])
    if not xs:
        return None
    return (min(xs), min(ys), max(xs), max(ys))


def intersects(geometry: dict[str, Any] | None, box: Box) -> bool:
    """True when the geometry and the closed box share at least one point.

    Malformed parts (positions that are not pairs of numbers, rings of the wrong
    depth) are skipped: what remains is tested.
    """
    if not isinstance(geometry, dict):
        return False
    kind = geometry.get("type")
    if kind == "GeometryCollection":
        return any(intersects(g, box) for g in geometry.get("geometries") or ())
    depth = _DEPTH.get(str(kind))
    if depth is None:
        return False
    coordinates: Any = _clean(geometry.get("coordinates"), depth)
    if kind == "Point":
        return coordinates is not None and _inside(coordinates, box)
    if kind == "MultiPoint":
        return any(_inside(p, box) for p in coordinates)
    if kind == "LineString":
        return _path_hits(coordinates, box)
    if kind == "MultiLineString":
        return any(_path_hits(line, box) for line in coordinates)
    if kind == "Polygon":
        return _polygon_hits(coordinates, box)
    if kind == "MultiPolygon":
        return any(_polygon_hits(polygon, box) for polygon in coordinates)
    return False


def _clean(value: Any, depth: int) -> Any:
    """Coordinates of the given nesting depth with every malformed part dropped."""
    if depth == 0:
        return list(next(_flatten(value, 0), ())) or None
    if not isinstance(value, list | tuple):
        return []
    cleaned = (_clean(item, depth - 1) for item in value)
    return [item for item in cleaned if item]


def _inside(p: Position, box: Box) -> bool:
    return box[0] <= p[0] <= box[2] and box[1] <= p[1] <= box[3]


def _path_hits(path: Sequence[Position], box: Box) -> bool:
    if len(path) == 1:
        return _inside(path[0], box)
    return any(_segment_hits(a, b, box) for a, b in itertools.pairwise(path))


def _polygon_hits(rings: Sequence[Sequence[Position]], box: Box) -> bool:
    """The box touches a ring, or lies in the polygon's interior (outside its holes)."""
    if not rings:
        return False
    if any(_path_hits(ring, box) for ring in rings):
        return True
    corner = (box[0], box[1])
    return _in_ring(corner, rings[0]) and not any(_in_ring(corner, hole) for hole in rings[1:])


def _corners(box: Box) -> list[Position]:
    return [(box[0], box[1]), (box[2], box[1]), (box[2], box[3]), (box[0], box[3])]


def _segment_hits(a: Position, b: Position, box: Box) -> bool:
    if _inside(a, box) or _inside(b, box):
        return True
    if max(a[0], b[0]) < box[0] or min(a[0], b[0]) > box[2]:
        return False
    if max(a[1], b[1]) < box[1] or min(a[1], b[1]) > box[3]:
        return False
    corners = _corners(box)
    return any(
        _segments_cross(a, b, corners[i], corners[(i + 1) % 4]) for i in range(4)
    )


def _orientation(p: Position, q: Position, r: Position) -> int:
    """Sign of the turn p -> q -> r (1 left, -1 right, 0 collinear), exact near zero."""
    value = (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])
    scale = abs(q[0] - p[0]) + abs(q[1] - p[1]) + abs(r[0] - p[0]) + abs(r[1] - p[1])
    if abs(value) > _CLOSE_TO_ZERO * (scale * scale + 1e-300):
        return 1 if value > 0 else -1
    fp = [Fraction(v) for v in (p[0], p[1], q[0], q[1], r[0], r[1])]
    exact = (fp[2] - fp[0]) * (fp[5] - fp[1]) - (fp[3] - fp[1]) * (fp[4] - fp[0])
    return (exact > 0) - (exact < 0)


def _on_segment(p: Position, q: Position, r: Position) -> bool:
    """Given p, q, r collinear: does q lie on the segment p-r?"""
    return (min(p[0], r[0]) <= q[0] <= max(p[0], r[0])
            and min(p[1], r[1]) <= q[1] <= max(p[1], r[1]))


def _segments_cross(p1: Position, p2: Position, q1: Position, q2: Position) -> bool:
    """Closed segments p1-p2 and q1-q2 share a point."""
    o1, o2 = _orientation(p1, p2, q1), _orientation(p1, p2, q2)
    o3, o4 = _orientation(q1, q2, p1), _orientation(q1, q2, p2)
    if o1 != o2 and o3 != o4:
        return True
    return (
        (o1 == 0 and _on_segment(p1, q1, p2))
        or (o2 == 0 and _on_segment(p1, q2, p2))
        or (o3 == 0 and _on_segment(q1, p1, q2))
        or (o4 == 0 and _on_segment(q1, p2, q2))
    )


def _in_ring(point: Position, ring: Sequence[Position]) -> bool:
    """Even-odd rule; only called for points known not to lie on the ring."""
    y = point[1]
    inside = False
    for a, b in itertools.pairwise(ring):
        if (a[1] > y) != (b[1] > y):
            crossing = _orientation(a, b, point)
            if (crossing > 0) == (b[1] > a[1]):
                inside = not inside
    return inside


def split_antimeridian(box: Box) -> list[Box]:
    """A box whose west edge lies east of its east edge crosses 180°: two boxes."""
    if box[0] <= box[2]:
        return [box]
    return [(box[0], box[1], 180.0, box[3]), (-180.0, box[1], box[2], box[3])]
