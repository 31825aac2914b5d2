"""The JSON documents of OGC API - Tiles, TileJSON 3.0 and the default MapLibre style.

Pure functions of data plus a ``url`` callable (endpoint, **values) ->
absolute URL, like :mod:`geojson_api.features.documents`. Templates in hrefs
(``{tileMatrix}``...) are written literally: ``url`` builds the URL of a
placeholder tile and the placeholders are put in afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..features.documents import link
from ..features.params import CRS84
from ..http import JSON
from . import grid

Url = Callable[..., str]

MVT = "application/vnd.mapbox-vector-tile"
PMTILES = "application/vnd.pmtiles"
STYLE = "application/vnd.mapbox.style+json"
TILEJSON_VERSION = "3.0.0"
REL_TILESETS = "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector"
REL_TILING_SCHEMES = "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes"
REL_TILING_SCHEME = "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme"
REL_GEODATA = "http://www.opengis.net/def/rel/ogc/1.0/geodata"
REL_STYLE = "stylesheet"

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tileset",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tilesets-list",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/geodata-tilesets",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/mvt",
    "http://www.opengis.net/spec/tms/2.0/conf/tilematrixset",
    "http://www.opengis.net/spec/tms/2.0/conf/json-tilematrixset",
    "http://www.opengis.net/spec/tms/2.0/conf/tilesetmetadata",
    "http://www.opengis.net/spec/tms/2.0/conf/json-tilesetmetadata",
]

OVERZOOM = ("Tile matrices deeper than maxTileMatrix are not served (404): clients overzoom "
            "the tiles of maxTileMatrix, which hold every feature at full detail.")
COMPLETE = ("From completeTileMatrix down to maxTileMatrix every feature with a geometry is "
            "in every tile it touches (counted by id after the build); shallower tile matrices "
            "drop the densest features to keep each tile under 500 KB.")
_FIELD_TYPES = {"string": "String", "integer": "Number", "number": "Number",
                "boolean": "Boolean"}


def _template(url: Url, endpoint: str, **values: Any) -> str:
    """A tile URL with ``{tileMatrix}/{tileRow}/{tileCol}`` left as placeholders."""
    href = url(endpoint, tms=grid.ID, matrix="888", row="777", col="666", **values)
    return (href.replace("/888/777/666", "/{tileMatrix}/{tileRow}/{tileCol}"))


def landing_links(url: Url) -> list[dict[str, str]]:
    return [link(url("tiles.matrix_sets"), REL_TILING_SCHEMES, JSON, "Tile matrix sets")]


def collection_links(url: Url, name: str) -> list[dict[str, str]]:
    return [link(url("tiles.tilesets", cid=name), REL_TILESETS, JSON, "Vector tilesets"),
            link(url("tiles.style", cid=name), REL_STYLE, STYLE, "Default MapLibre style")]


def matrix_sets(url: Url) -> dict[str, Any]:
    href = url("tiles.matrix_set", tms=grid.ID)
    return {"tileMatrixSets": [{"id": grid.ID, "title": "Google Maps Compatible for the World",
                                "uri": grid.URI,
                                "links": [link(href, "self", JSON, grid.ID)]}],
            "links": [link(url("tiles.matrix_sets"), "self", JSON, "Tile matrix sets")]}


def matrix_set(url: Url) -> dict[str, Any]:
    return {**grid.matrix_set(),
            "links": [link(url("tiles.matrix_set", tms=grid.ID), "self", JSON, grid.ID)]}


def _tileset_links(url: Url, name: str) -> list[dict[str, Any]]:
    self_href = url("tiles.tileset", cid=name, tms=grid.ID)
    item: dict[str, Any] = {**link(_template(url, "tiles.tile", cid=name), "item", MVT,
                                   "Mapbox vector tiles"), "templated": True}
    return [
        link(self_href, "self", JSON, "This tileset"),
        link(self_href + "?f=tilejson", "alternate", JSON, "This tileset as TileJSON 3.0"),
        link(url("tiles.matrix_set", tms=grid.ID), REL_TILING_SCHEME, JSON, grid.ID),
        item,
        link(url("tiles.archive", cid=name, tms=grid.ID), "enclosure", PMTILES,
             "Every tile in one PMTiles archive (Range requests)"),
        link(url("tiles.style", cid=name), REL_STYLE, STYLE, "Default MapLibre style"),
        link(url("features.collection", cid=name), REL_GEODATA, JSON, "The collection"),
    ]


def tilesets(url: Url, name: str) -> dict[str, Any]:
    entry = {"title": name, "dataType": "vector", "crs": grid.CRS,
             "tileMatrixSetURI": grid.URI, "links": _tileset_links(url, name)[:4]}
    return {"tilesets": [entry],
            "links": [link(url("tiles.tilesets", cid=name), "self", JSON, "The tilesets")]}


def _bbox(extent: list[float] | None) -> grid.Box | None:
    return grid.flat(extent) if extent else None


def limits(extent: list[float] | None, minzoom: int, maxzoom: int) -> list[dict[str, Any]]:
    """tileMatrixSetLimits: the tiles of each built zoom that the extent touches."""
    box = _bbox(extent)
    if box is None:
        return []
    found = []
    for z in range(minzoom, maxzoom + 1):
        min_row, max_row, min_col, max_col = grid.limits(box, z)
        found.append({"tileMatrix": str(z), "minTileRow": min_row, "maxTileRow": max_row,
                      "minTileCol": min_col, "maxTileCol": max_col})
    return found


def tileset(url: Url, name: str, extent: list[float] | None, state: dict[str, Any],
            built: dict[str, Any] | None, fields: dict[str, str]) -> dict[str, Any]:
    """The tileset metadata (OGC TMS 2.0 JSON); zooms and limits once the tiles are built."""
    doc: dict[str, Any] = {
        "title": name, "description": f"Vector tiles of dataset {name}.",
        "dataType": "vector", "crs": grid.CRS, "tileMatrixSetURI": grid.URI,
        # the draft's member, which older GDAL (3.5 and before) follows to the tile matrix set
        # (3.6.2 and later follow the tiling-scheme link; docs/tiles.md, "GDAL")
        "tileMatrixSetDefinition": url("tiles.matrix_set", tms=grid.ID),
        "tiles": state,
    }
    box = _bbox(extent)
    if box is not None:
        doc["boundingBox"] = {"lowerLeft": [box[0], box[1]], "upperRight": [box[2], box[3]],
                              "crs": CRS84}
    if built is not None:
        minzoom, maxzoom = built["minzoom"], built["maxzoom"]
        doc["tileMatrixSetLimits"] = limits(extent, minzoom, maxzoom)
        doc["layers"] = [{"id": built["layer"], "dataType": "vector",
                          "minTileMatrix": str(minzoom), "maxTileMatrix": str(maxzoom),
                          "propertiesSchema": {"type": "object", "properties": {
                              k: {"type": v} for k, v in fields.items()}}}]
        doc["minTileMatrix"], doc["maxTileMatrix"] = str(minzoom), str(maxzoom)
        complete = built["completeZoom"]
        doc["completeTileMatrix"] = None if complete is None else str(complete)
        doc["completeDescription"] = COMPLETE
        doc["overzoom"] = {"from": str(maxzoom + 1), "by": "client", "description": OVERZOOM}
        doc["featureIds"] = feature_ids(url, name, built)
    doc["links"] = _tileset_links(url, name)
    return doc


def feature_ids(url: Url, name: str, built: dict[str, Any]) -> dict[str, Any]:
    """How a tile feature leads to ``/collections/{id}/items/{featureId}``."""
    items = url("features.items", cid=name) + "/{featureId}"
    if built["ids"] == "itemId":
        return {"mapping": "itemId", "property": None, "item": items,
                "description": "The MVT feature id is the collection's feature id."}
    return {"mapping": "property", "property": built["idProperty"], "item": items,
            "description": f"The collection's feature ids are not all integers: the MVT id "
                           f"is the feature's position, and its id is the property "
                           f"{built['idProperty']!r}."}


def tilejson(url: Url, name: str, extent: list[float] | None, built: dict[str, Any],
             fields: dict[str, str], version: str) -> dict[str, Any]:
    """TileJSON 3.0.0 of a built tileset, for map libraries."""
    tiles = _template(url, "tiles.tile", cid=name).replace(
        "{tileMatrix}/{tileRow}/{tileCol}", "{z}/{y}/{x}")
    minzoom, maxzoom = built["minzoom"], built["maxzoom"]
    doc: dict[str, Any] = {
        "tilejson": TILEJSON_VERSION, "name": name, "version": "1.0.0",
        "description": f"Vector tiles of dataset {name} (version {version}). {OVERZOOM}",
        "scheme": "xyz", "tiles": [tiles], "minzoom": minzoom, "maxzoom": maxzoom,
        "vector_layers": [{"id": built["layer"], "minzoom": minzoom, "maxzoom": maxzoom,
                           "fields": {k: _FIELD_TYPES.get(v, "String")
                                      for k, v in fields.items()}}],
        "fillzoom": maxzoom,
        "completezoom": built["completeZoom"],
    }
    box = _bbox(extent)
    if box is not None:
        doc["bounds"] = list(box)
        doc["center"] = [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2,
                         built["completeZoom"] if built["completeZoom"] is not None
                         else maxzoom]
    return doc


def style(url: Url, name: str, layer: str) -> dict[str, Any]:
    """A MapLibre style drawing the collection's polygons, lines and points."""
    source = {"type": "vector", "url": url("tiles.tileset", cid=name, tms=grid.ID)
              + "?f=tilejson"}

    def of(kinds: list[str]) -> list[Any]:
        return ["match", ["geometry-type"], kinds, True, False]

    polygons, lines, points = (of(["Polygon", "MultiPolygon"]),
                               of(["LineString", "MultiLineString"]),
                               of(["Point", "MultiPoint"]))
    common = {"source": name, "source-layer": layer}
    return {
        "version": 8, "name": name, "sources": {name: source},
        "layers": [
            {"id": f"{name}-fill", "type": "fill", **common, "filter": polygons,
             "paint": {"fill-color": "#3b82f6", "fill-opacity": 0.3}},
            {"id": f"{name}-outline", "type": "line", **common, "filter": polygons,
             "paint": {"line-color": "#1d4ed8", "line-width": 1}},
            {"id": f"{name}-line", "type": "line", **common, "filter": lines,
             "paint": {"line-color": "#b45309", "line-width": 1.5}},
            {"id": f"{name}-point", "type": "circle", **common, "filter": points,
             "paint": {"circle-color": "#be123c", "circle-radius": 3}},
        ],
    }
