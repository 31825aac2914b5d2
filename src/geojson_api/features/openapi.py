"""The OpenAPI 3.0 definition of the service, self-contained (no remote ``$ref``).

It says exactly what the server does, so that a generated client (or
Schemathesis, which the test suite runs over it) never finds a request the
document allows and the server refuses, or the reverse:

- names carry the pattern and length that ``names.py`` enforces;
- numbers are 64-bit integers or JSON numbers, written as JSON writes them;
- every collection's items path lists its own queryables as parameters, with
  its property names for ``properties`` and ``sortby``;
- every operation lists each status it can answer, and every 4xx/5xx body is
  the ``Error`` document that ``errors.py`` renders.

One rule is beyond OpenAPI 3.0's JSON Schema (it has no tuple arrays) and is
stated in the text: a bbox's latitudes lie within -90..90 with south <=
north, and its longitudes within -180..180 (the schema says so for the
4-number form).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..delivery import DOWNLOAD_VALUES
from ..http import GEOJSON, HTML, JSON, OPENAPI, SCHEMA
from ..names import MAX_NAME_LENGTH
from ..settings import Settings
from ..tiles.documents import MVT, PMTILES, STYLE
from .documents import Url
from .params import CRS84, CRS84H, INT64_MAX, INT64_MIN, ITEMS_PARAMETERS
from .query import Queryable

REF = "#/components/"

# names.py's rule in ECMA-262 syntax: letters, digits, "-", "_" and single inner dots,
# starting with a letter or digit, not ending in .json or .geojson (any case).
NAME_PATTERN = (r"^(?!.*\.(?:[jJ][sS][oO][nN]|[gG][eE][oO][jJ][sS][oO][nN])$)"
                r"[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*$")
INT64 = {"type": "integer", "format": "int64", "minimum": INT64_MIN, "maximum": INT64_MAX}


@dataclass(frozen=True)
class CollectionInfo:
    """What the document says about one published collection."""

    name: str
    queryables: Sequence[Queryable]
    properties: Sequence[str]


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"{REF}{kind}/{name}"}


def _ok(description: str, schema: str, *media: str, page: bool = True) -> dict[str, Any]:
    """A 200 in the ``media`` types, and as a page (``f=html`` or ``Accept: text/html``)."""
    content: dict[str, Any] = {m: {"schema": _ref("schemas", schema)} for m in media}
    return {"description": description, "content": {**content, HTML: _PAGE} if page else content}


_PAGE = {"schema": {"type": "string"}}  # an HTML page (geojson_api.web)


def _operation(
    summary: str, op_id: str, ok: dict[str, Any], params: Sequence[Any], errors: list[str],
    tag: str, extra_ok: dict[str, Any] | None = None,
) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": ok, **(extra_ok or {})}
    for code in [*errors, *_ANY_REQUEST]:
        responses[code] = _ref("responses", _ERROR_RESPONSES[code])
    parameters = [_ref("parameters", p) if isinstance(p, str) else p for p in params]
    return {"summary": summary, "operationId": op_id, "tags": [tag],
            "parameters": parameters, "responses": responses}


_ERROR_RESPONSES = {"304": "NotModified", "400": "BadRequest", "404": "NotFound",
                    "412": "PreconditionFailed", "414": "UriTooLong", "416": "RangeNotSatisfiable",
                    "431": "HeadersTooLarge", "503": "Unavailable"}
_ANY_REQUEST = ["414", "431"]  # Gunicorn's (and Nginx's) own limits, on every URL
_COMMON = ["400"]
# Documents with an ETag (geojson_api.http): 304 for If-None-Match, 412 for If-Match.
_CONDITIONAL_JSON = ["304", "400", "404", "412", "503"]
OGC = "OGC API - Features"
TILES = "OGC API - Tiles"
WHOLE = "Whole files"
ITEMS_PARAMS = ["bbox", "bbox-crs", "limit", "offset", "f"]


def _paths(tiles: bool) -> dict[str, Any]:
    # properties, sortby and the filters depend on the collection: its own path has them.
    items_params = ["collectionId", *ITEMS_PARAMS]
    return {
        "/": {"get": _operation("Landing page", "getLandingPage",
                                _ok("Links to the API", "LandingPage", JSON), ["f"],
                                _COMMON, OGC)},
        "/conformance": {"get": _operation(
            "Conformance classes", "getConformance",
            _ok("The classes implemented", "Conformance", JSON), ["f"], _COMMON, OGC)},
        "/api": {"get": _operation(
            "This API definition", "getOpenAPI",
            {"description": "OpenAPI 3.0 JSON, or Swagger UI as a page",
             "content": {OPENAPI: {"schema": {"type": "object"}}, HTML: _PAGE}},
            ["f"], _COMMON, OGC)},
        "/collections": {"get": _operation(
            "The collections (one per dataset)", "getCollections",
            _ok("Every published dataset", "Collections", JSON), ["f"], _COMMON, OGC)},
        "/collections/{collectionId}": {"get": _operation(
            "One collection", "describeCollection",
            _ok("The collection, its extent and index state", "Collection", JSON),
            ["collectionId", "f"], ["400", "404", "503"], OGC)},
        "/collections/{collectionId}/queryables": {"get": _operation(
            "Properties to filter and sort on", "getQueryables",
            _ok("A JSON Schema", "Queryables", SCHEMA),
            ["collectionId", "f"], ["400", "404", "503"], OGC)},
        "/collections/{collectionId}/items": {"get": {
            **_operation("Features, filtered and paged", "getFeatures",
                         _ok("A page of features", "FeatureCollection", GEOJSON, JSON),
                         items_params, _CONDITIONAL_JSON, OGC),
            "description": _ITEMS_DESCRIPTION}},
        "/collections/{collectionId}/items/{featureId}": {"get": _operation(
            "One feature", "getFeature", _ok("The feature", "Feature", GEOJSON, JSON),
            ["collectionId", "featureId", "f"], _CONDITIONAL_JSON, OGC)},
        **(_tile_paths() if tiles else {}),
        "/geojson/{name}": {"get": _operation(
            "A dataset as one file (Range, ETag, gzip/br)", "getDatasetFile",
            {"description": "The whole file", "content": {GEOJSON: {"schema": {}}}},
            ["name", "download"], ["304", "400", "404", "412", "416", "503"], WHOLE,
            extra_ok={"206": {"description": "The requested byte range",
                              "content": {GEOJSON: {"schema": {}}}}})},
        "/api/datasets": {"get": _operation(
            "Every dataset with its metadata", "getDatasets",
            _ok("The datasets", "Datasets", JSON), ["f"], ["304", "400", "412"], WHOLE)},
        "/api/datasets/{name}": {"get": _operation(
            "One dataset's metadata", "getDataset",
            _ok("The dataset", "Dataset", JSON, page=False),
            ["name"], _CONDITIONAL_JSON, WHOLE)},
    }


def _tile_paths() -> dict[str, Any]:
    """OGC API - Tiles (geojson_api.tiles): tile matrix sets, tilesets, tiles, archive, style."""
    tms = ["collectionId", "tileMatrixSetId"]
    tile_ok = {"description": "The vector tile (gzip-encoded for clients that accept it)",
               "content": {MVT: {"schema": {"type": "string", "format": "binary"}}}}
    return {
        "/tileMatrixSets": {"get": _operation(
            "The tile matrix sets", "getTileMatrixSetsList",
            _ok("WebMercatorQuad", "Object", JSON), ["jsonFormat"], ["304", "400", "412"], TILES)},
        "/tileMatrixSets/{tileMatrixSetId}": {"get": _operation(
            "One tile matrix set (OGC 2D TMS 2.0 JSON)", "getTileMatrixSet",
            _ok("The tile matrix set", "Object", JSON), ["tileMatrixSetId", "jsonFormat"],
            ["304", "400", "404", "412"], TILES)},
        "/collections/{collectionId}/tiles": {"get": _operation(
            "The collection's vector tilesets", "getCollectionVectorTilesets",
            _ok("The tilesets", "Object", JSON), ["collectionId", "jsonFormat"],
            _CONDITIONAL_JSON, TILES)},
        "/collections/{collectionId}/tiles/{tileMatrixSetId}": {"get": {**_operation(
            "A tileset's metadata, or its TileJSON 3.0 (`f=tilejson`)",
            "describeCollectionVectorTileset", _ok("The tileset", "Object", JSON),
            [*tms, "tilesetFormat"], _CONDITIONAL_JSON, TILES),
            "description": "The metadata says which tile matrix is the first from which every "
                           "feature is in every tile it touches (`completeTileMatrix`) and that "
                           "deeper ones are overzoomed by the client. TileJSON needs the built "
                           "tiles: 503 with Retry-After while they are built."}},
        "/collections/{collectionId}/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/{tileCol}":
            {"get": {**_operation(
                "One vector tile", "getCollectionVectorTile", tile_ok,
                [*tms, "tileMatrix", "tileRow", "tileCol"], _CONDITIONAL_JSON, TILES,
                extra_ok={"204": {"description": "No feature touches this tile"}}),
                "description": "400 for indices that are not integers, negative, or outside "
                               "the tile matrix (rows and columns below 2^tileMatrix); 404 "
                               "outside the tileset's tileMatrixSetLimits (zooms not built: "
                               "overzoom); 503 `tiles-not-ready` with Retry-After while the "
                               "tiles are built, `tiles-failed` if they could not be."}},
        "/collections/{collectionId}/tiles/{tileMatrixSetId}.pmtiles": {"get": _operation(
            "Every tile in one PMTiles archive (Range, ETag)", "getCollectionTileArchive",
            {"description": "The archive", "content": {PMTILES: {"schema": {}}}},
            tms, ["304", "400", "404", "412", "416", "503"], TILES,
            extra_ok={"206": {"description": "The requested byte range",
                              "content": {PMTILES: {"schema": {}}}}})},
        "/collections/{collectionId}/styles/default": {"get": _operation(
            "A default MapLibre style for the collection's tiles", "getCollectionStyle",
            _ok("A MapLibre (Mapbox GL) style", "Object", STYLE), ["collectionId", "jsonFormat"],
            _CONDITIONAL_JSON, TILES)},
    }


_ITEMS_DESCRIPTION = (
    "`properties` (names to return), `sortby` (queryables, `-name` for descending) and "
    "an equality filter per queryable property (`?kind=road&rank=3`) depend on the "
    "collection: the path of each published collection lists them. "
    "Unknown parameters are answered with 400. `limit` above the maximum is clamped. "
    "bbox latitudes must lie within -90..90, south <= north (else 400). Results with "
    "`bbox` come in spatial-index order unless `sortby` is given; pages are stable, so "
    "following `next` links returns every matching feature exactly once."
)


def _collection_items(info: CollectionInfo) -> dict[str, Any]:
    """The items operation of one collection, with its own filters and property names."""
    filters = [{"name": q.name, "in": "query", "required": False,
                "description": f"Only features whose {q.name!r} equals this ({q.type}).",
                "schema": _scalar_schema(q.type)}
               for q in info.queryables if q.name not in ITEMS_PARAMETERS]
    names = [q.name for q in info.queryables]
    properties = _list_param("properties", "Comma list of the properties to return.",
                             list(info.properties))
    sortby = _list_param("sortby", "Comma list of queryables, `-name` for descending.",
                         [f"{sign}{n}" for n in names for sign in ("", "+", "-")])
    op = _operation(f"Features of {info.name}, filtered and paged", f"getFeatures.{info.name}",
                    _ok("A page of features", "FeatureCollection", GEOJSON, JSON),
                    [*ITEMS_PARAMS, properties, sortby, *filters],
                    _CONDITIONAL_JSON, OGC)
    return {"get": {**op, "description": _ITEMS_DESCRIPTION}}


def _scalar_schema(kind: str) -> dict[str, Any]:
    if kind == "integer":
        return dict(INT64)
    return {"type": kind}


def _list_param(name: str, description: str, values: list[str]) -> dict[str, Any]:
    # "" is an empty term, skipped: `?properties=` asks for none, `?sortby=` for no order.
    items = {"type": "string", "enum": [*values, ""]}
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "array", "items": items}, "style": "form", "explode": False}


def _parameters(settings: Settings) -> dict[str, Any]:
    def query(name: str, description: str, schema: dict[str, Any], **extra: Any) -> Any:
        return {"name": name, "in": "query", "required": False, "description": description,
                "schema": schema, **extra}

    def path(name: str, description: str, schema: dict[str, Any]) -> Any:
        return {"name": name, "in": "path", "required": True, "description": description,
                "schema": schema}

    dataset_name = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH,
                    "pattern": NAME_PATTERN}
    number = {"type": "number"}
    return {
        "collectionId": path("collectionId", "A dataset name.", dataset_name),
        "featureId": path("featureId", "A feature id (the feature's own id, or its "
                                        "1-based position when ids are missing or repeated).",
                          {"type": "string", "minLength": 1}),
        "name": path("name", "A dataset name (`/geojson/<name>.geojson` works too).",
                     dataset_name),
        "download": query("download", "Ask for `Content-Disposition: attachment`.",
                          {"type": "string", "enum": list(DOWNLOAD_VALUES)}),
        "bbox": query("bbox", "minLon,minLat,maxLon,maxLat (or 6 numbers with heights), "
                              "CRS84; west > east crosses the antimeridian; latitudes "
                              "within -90..90 with south <= north, longitudes within "
                              "-180..180.",
                      {"type": "array", "items": number,
                       "oneOf": [{"minItems": 4, "maxItems": 4,
                                  "items": {**number, "minimum": -180, "maximum": 180}},
                                 {"minItems": 6, "maxItems": 6}]},
                      style="form", explode=False),
        "bbox-crs": query("bbox-crs", "The CRS of bbox: only CRS84 (with or without "
                                      "heights) is supported.",
                          {"type": "string", "enum": [CRS84, CRS84H]}),
        "limit": query("limit", f"Features per page; above {settings.features_max_limit} "
                                "it is clamped.",
                       {**INT64, "minimum": 1, "default": settings.features_limit}),
        "offset": query("offset", "Features to skip (the `next` links carry it).",
                        {**INT64, "minimum": 0, "default": 0}),
        "f": query("f", "Response encoding: `html` for the page (also chosen by "
                        "`Accept: text/html`), else JSON.",
                   {"type": "string", "enum": ["json", "geojson", "html"]}),
        "jsonFormat": query("f", "Response encoding (JSON only here).",
                            {"type": "string", "enum": ["json"]}),
        "tilesetFormat": query("f", "`json` (OGC tileset metadata) or `tilejson` (TileJSON "
                                    "3.0).", {"type": "string", "enum": ["json", "tilejson"]}),
        "tileMatrixSetId": path("tileMatrixSetId", "The tile matrix set (only "
                                                   "WebMercatorQuad).",
                                {"type": "string", "enum": ["WebMercatorQuad"]}),
        "tileMatrix": path("tileMatrix", "The zoom level, 0-24.",
                           {"type": "integer", "minimum": 0, "maximum": 24}),
        "tileRow": path("tileRow", "The row from the north, below 2^tileMatrix.",
                        {"type": "integer", "minimum": 0, "maximum": 2**24 - 1}),
        "tileCol": path("tileCol", "The column from the west, below 2^tileMatrix.",
                        {"type": "integer", "minimum": 0, "maximum": 2**24 - 1}),
    }


def _schemas() -> dict[str, Any]:
    link = {"type": "object", "required": ["href", "rel"],
            "properties": {k: {"type": "string"} for k in ("href", "rel", "type", "title")}}
    links = {"type": "array", "items": _ref("schemas", "Link")}
    obj = {"type": "object"}
    return {
        "Link": link,
        "Object": {"type": "object"},
        "Error": {"type": "object", "required": ["code", "description"],
                  "properties": {"code": {"type": "string"},
                                 "description": {"type": "string"}}},
        "LandingPage": {"type": "object", "required": ["links"],
                        "properties": {"title": {"type": "string"}, "links": links}},
        "Conformance": {"type": "object", "required": ["conformsTo"],
                        "properties": {"conformsTo": {"type": "array",
                                                      "items": {"type": "string"}}}},
        "Collection": {"type": "object", "required": ["id", "links"],
                       "properties": {"id": {"type": "string"}, "title": {"type": "string"},
                                      "itemType": {"type": "string"}, "extent": obj,
                                      "index": obj, "links": links}},
        "Collections": {"type": "object", "required": ["collections", "links"],
                        "properties": {"collections": {"type": "array",
                                                       "items": _ref("schemas", "Collection")},
                                       "links": links}},
        "Feature": {"type": "object", "required": ["type", "geometry", "properties"],
                    "properties": {"type": {"type": "string", "enum": ["Feature"]},
                                   "id": {"oneOf": [{"type": "string"},
                                                    {"type": "number"}]},
                                   "geometry": {"type": "object", "nullable": True},
                                   "properties": {"type": "object", "nullable": True},
                                   "links": links}},
        "FeatureCollection": {
            "type": "object", "required": ["type", "features"],
            "properties": {"type": {"type": "string", "enum": ["FeatureCollection"]},
                           "features": {"type": "array", "items": _ref("schemas", "Feature")},
                           "numberMatched": {"type": "integer", "minimum": 0},
                           "numberReturned": {"type": "integer", "minimum": 0},
                           "timeStamp": {"type": "string", "format": "date-time"},
                           "links": links}},
        "Queryables": {"type": "object", "properties": {"properties": obj}},
        "Dataset": {"type": "object", "required": ["name", "status", "links"],
                    "properties": {"name": {"type": "string"}, "status": {"type": "string"},
                                   "error": {"type": "string"}, "refused": obj,
                                   "links": links}},
        "Datasets": {"type": "object", "required": ["datasets", "links"], "properties": {
            "datasets": {"type": "array", "items": _ref("schemas", "Dataset")},
            "links": links}},
    }


def _responses() -> dict[str, Any]:
    def error(description: str, retry: bool = False) -> dict[str, Any]:
        found: dict[str, Any] = {"description": description,
                                 "content": {JSON: {"schema": _ref("schemas", "Error")}}}
        if retry:
            found["headers"] = {"Retry-After": {"description": "Seconds to wait",
                                                "schema": {"type": "integer"}}}
        return found

    return {
        "NotModified": {"description": "The client's copy is current: If-None-Match "
                                       "matches the ETag (or, for whole files, nothing "
                                       "changed since If-Modified-Since)."},
        "BadRequest": error("A malformed name, unknown parameter or invalid value."),
        "NotFound": error("No such collection, dataset, feature or tile matrix set, or a tile "
                          "outside the tileset's limits."),
        "PreconditionFailed": error(
            "If-Match matched no current ETag (a weak ETag matches only `*`), or, for "
            "whole files, the file changed after If-Unmodified-Since."),
        "RangeNotSatisfiable": error("The Range lies beyond the end of the file."),
        "UriTooLong": error("The request line is over the server's limit."),
        "HeadersTooLarge": error("The request's headers are over the server's limits."),
        "Unavailable": error("The dataset, its copy, its index or its tiles are not ready "
                             "yet, or could not be published (storage-full) or built "
                             "(index-failed, tiles-failed); see Retry-After.", retry=True),
    }


def document(url: Url, settings: Settings,
             collections: Sequence[CollectionInfo] = ()) -> dict[str, Any]:
    """The whole OpenAPI document for this server and its published collections."""
    base = url("features.landing").rstrip("/")
    paths = _paths(settings.tiles)
    for info in collections:
        paths[f"/collections/{info.name}/items"] = _collection_items(info)
    return {
        "openapi": "3.0.3",
        "info": {"title": "geojson-api", "version": "1.0.0",
                 "description": "GeoJSON datasets as whole files, as OGC API - "
                                "Features collections and as vector tiles (OGC API - "
                                "Tiles).",
                 "license": {"name": "MIT"}},
        "servers": [{"url": base or "/"}],
        "tags": [{"name": OGC}, *([{"name": TILES}] if settings.tiles else []),
                 {"name": WHOLE}],
        "paths": paths,
        "components": {"parameters": _parameters(settings), "schemas": _schemas(),
                       "responses": _responses()},
    }

