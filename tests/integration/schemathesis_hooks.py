"""Schemathesis hooks for the OpenAPI run (tests/integration/test_openapi_fuzz.py).

One rule of ours is beyond what JSON Schema (in OpenAPI 3.0, which has no
tuple arrays) can say about a bbox: its latitudes (positions 1 and 3, or 1
and 4 with heights) lie within -90..90 with south <= north, and with heights
its longitudes (0 and 3) within -180..180. The OpenAPI document states it in
words; this hook keeps
Schemathesis from generating requests that break it, so a 400 for one of
those is not counted as "schema-valid data rejected". Every other rule is in
the schema itself.
"""

from __future__ import annotations

import math
from typing import Any

import schemathesis


def _corners(bbox: Any) -> tuple[float, float, float, float] | None:
    """West, south, east, north of a bbox as generated (a list, or already "a,b,c,d")."""
    parts = bbox.split(",") if isinstance(bbox, str) else bbox
    if not isinstance(parts, list) or len(parts) not in (4, 6):
        return None
    try:
        values = [float(v) for v in parts if not isinstance(v, bool)]
    except (TypeError, ValueError):
        return None  # not numbers: the server refuses it, as it should
    if len(values) != len(parts):
        return None
    if len(values) == 4:
        return values[0], values[1], values[2], values[3]
    return values[0], values[1], values[3], values[4]


def bbox_rule_holds(query: dict[str, Any] | None) -> bool:
    """False for a numeric bbox that breaks the rule above."""
    corners = _corners((query or {}).get("bbox"))
    if corners is None:
        return True
    west, south, east, north = corners
    return (all(math.isfinite(v) for v in corners) and -90 <= south <= north <= 90
            and -180 <= west <= 180 and -180 <= east <= 180)


@schemathesis.hook
def filter_query(ctx: Any, query: dict[str, Any] | None) -> bool:
    return bbox_rule_holds(query)


def tile_in_matrix(path: dict[str, Any] | None) -> bool:
    """False for a tile whose row or column is not below 2^tileMatrix: the tile matrix's
    size depends on the zoom, which JSON Schema cannot say (the document says it in words)."""
    values = path or {}
    try:
        z, row, col = int(values["tileMatrix"]), int(values["tileRow"]), int(values["tileCol"])
    except (KeyError, TypeError, ValueError):
        return True  # not a tile path, or not integers: the server refuses it, as it should
    return not 0 <= z <= 24 or (row < 1 << z and col < 1 << z)


@schemathesis.hook
def filter_path_parameters(ctx: Any, path_parameters: dict[str, Any] | None) -> bool:
    return tile_in_matrix(path_parameters)
