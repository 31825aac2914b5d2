"""Shapely as the test oracle for bbox queries."""

from __future__ import annotations

from typing import Any

import shapely

Box = tuple[float, float, float, float]


def box_area(box: Box) -> Any:
    """The closed box as Shapely sees it: a box of zero width or height is a line or point."""
    minx, miny, maxx, maxy = box
    if (minx, miny) == (maxx, maxy):
        return shapely.Point(minx, miny)
    if minx == maxx or miny == maxy:
        return shapely.LineString([(minx, miny), (maxx, maxy)])
    return shapely.box(*box)
