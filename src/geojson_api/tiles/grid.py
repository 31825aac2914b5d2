"""WebMercatorQuad, the one tile matrix set served: tile math and its OGC definition.

Tiles are addressed as OGC API - Tiles does, ``{tileMatrix}/{tileRow}/{tileCol}``,
which for WebMercatorQuad is the XYZ scheme every web map uses: ``z/y/x`` with
row 0 at the north. Nothing here knows datasets or HTTP.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

ID = "WebMercatorQuad"
URI = "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad"
CRS = "http://www.opengis.net/def/crs/EPSG/0/3857"
MAX_MATRIX = 24
"""The deepest tile matrix of the OGC definition (0..24)."""
EXTENT = 20037508.3427892
"""Half the width of the world in EPSG:3857 metres."""
MAX_LATITUDE = 85.0511287798066
TILE_PIXELS = 256


class Tile(NamedTuple):
    """One tile of WebMercatorQuad: matrix (zoom), row (from the north), column."""

    z: int
    row: int
    col: int

    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in degrees (CRS84)."""
        west, north = lonlat(self.col, self.row, self.z)
        east, south = lonlat(self.col + 1, self.row + 1, self.z)
        return west, south, east, north


def lonlat(col: float, row: float, z: int) -> tuple[float, float]:
    """Longitude and latitude of a (fractional) tile position at zoom ``z``."""
    n = 1 << z
    lon = col / n * 360.0 - 180.0
    lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))
    return lon, lat


def position(lon: float, lat: float, z: int) -> tuple[float, float]:
    """The fractional (col, row) of a position at zoom ``z`` (latitudes clamped)."""
    n = 1 << z
    lat = max(-MAX_LATITUDE, min(MAX_LATITUDE, lat))
    col = (lon + 180.0) / 360.0 * n
    rad = math.radians(lat)
    row = (1 - math.log(math.tan(rad) + 1 / math.cos(rad)) / math.pi) / 2 * n
    return col, row


Box = tuple[float, float, float, float]


def flat(bbox: list[float] | tuple[float, ...]) -> Box:
    """(west, south, east, north) of a GeoJSON bbox of 4 numbers or 6 (with heights)."""
    if len(bbox) == 6:
        return bbox[0], bbox[1], bbox[3], bbox[4]
    return bbox[0], bbox[1], bbox[2], bbox[3]


def limits(box: Box, z: int) -> tuple[int, int, int, int]:
    """(minRow, maxRow, minCol, maxCol) of the tiles of zoom ``z`` that ``box`` touches."""
    west, south, east, north = box
    last = (1 << z) - 1

    def clamp(value: float) -> int:
        return max(0, min(last, math.floor(value)))

    min_col, min_row = position(west, north, z)
    max_col, max_row = position(east, south, z)
    return clamp(min_row), clamp(max_row), clamp(min_col), clamp(max_col)


def inside(tile: Tile, bounds: tuple[int, int, int, int]) -> bool:
    min_row, max_row, min_col, max_col = bounds
    return min_row <= tile.row <= max_row and min_col <= tile.col <= max_col


def matrix_set() -> dict[str, Any]:
    """The tile matrix set as OGC 2D TMS 2.0 JSON, with the 1.0 names beside (``identifier``,
    ``supportedCRS``, ``topLeftCorner``, ``lowerCorner``): GDAL before 3.7 reads only those."""
    matrices = []
    for z in range(MAX_MATRIX + 1):
        cell = 2 * EXTENT / TILE_PIXELS / (1 << z)
        matrices.append({
            "id": str(z),
            "identifier": str(z),
            "topLeftCorner": [-EXTENT, EXTENT],
            "scaleDenominator": cell / 0.00028,
            "cellSize": cell,
            "cornerOfOrigin": "topLeft",
            "pointOfOrigin": [-EXTENT, EXTENT],
            "tileWidth": TILE_PIXELS,
            "tileHeight": TILE_PIXELS,
            "matrixWidth": 1 << z,
            "matrixHeight": 1 << z,
        })
    return {
        "id": ID,
        "identifier": ID,
        "title": "Google Maps Compatible for the World",
        "uri": URI,
        "crs": CRS,
        "supportedCRS": "EPSG:3857",
        "orderedAxes": ["E", "N"],
        "wellKnownScaleSet": "http://www.opengis.net/def/wkss/OGC/1.0/GoogleMapsCompatible",
        "boundingBox": {"lowerLeft": [-EXTENT, -EXTENT], "upperRight": [EXTENT, EXTENT],
                        "lowerCorner": [-EXTENT, -EXTENT], "upperCorner": [EXTENT, EXTENT],
                        "crs": CRS},
        "tileMatrices": matrices,
    }
