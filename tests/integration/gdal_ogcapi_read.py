"""Read a collection's vector tiles with GDAL's OGCAPI driver (pyogrio's GDAL); print JSON.

Run as a subprocess by ``test_tiles_gdal.py`` so that a hung HTTP read is bounded by the
subprocess timeout. Arguments: the collection URL, the tile matrix to read, an area
``minx,miny,maxx,maxy`` in EPSG:3857 metres, then ``NAME=VALUE`` open options.

The output: the GDAL version, the layer names (``list_layers`` takes no open options, so
layers are named by index until one is missing), the chosen layer's CRS, fields, feature
count and extent, and the distinct ``mvt_id`` values GDAL returns inside the area and over
the whole layer.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pyogrio
from pyogrio import raw


def layer_names(source: str, options: dict[str, str]) -> list[str]:
    names = []
    while True:
        try:
            names.append(pyogrio.read_info(source, layer=len(names), **options)["layer_name"])
        except (pyogrio.errors.DataLayerError, IndexError):
            return names


def ids(source: str, layer: str, options: dict[str, str],
        bbox: tuple[float, float, float, float] | None) -> list[int]:
    _meta, _fids, _geometry, fields = raw.read(source, layer=layer, columns=["mvt_id"],
                                               bbox=bbox, **options)
    return sorted({int(v) for v in fields[0]})


def main(argv: list[str]) -> dict[str, Any]:
    url, matrix, area, *rest = argv
    options = dict(item.split("=", 1) for item in rest)
    source = "OGCAPI:" + url
    layer = f"Zoom level {matrix}"
    box = tuple(float(v) for v in area.split(","))
    assert len(box) == 4
    info = pyogrio.read_info(source, layer=layer, force_feature_count=True,
                             force_total_bounds=True, **options)
    return {"gdal": pyogrio.__gdal_version_string__,
            "layers": layer_names(source, options),
            "crs": info["crs"], "fields": list(info["fields"]),
            "features": info["features"], "extent": list(info["total_bounds"]),
            "area_ids": ids(source, layer, options, box),  # type: ignore[arg-type]
            "all_ids": ids(source, layer, options, None)}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
