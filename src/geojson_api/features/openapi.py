"""The OpenAPI 3.0 definition of the service, self-contained (no remote ``$ref``).

Every operation lists each status it can answer; every 4xx/5xx body is the
same ``Error`` document that ``errors.py`` renders.
"""

from __future__ import annotations

import html as html_lib
from typing import Any

from ..settings import Settings
from .documents import GEOJSON, JSON, SCHEMA, Url

REF = "#/components/"


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"{REF}{kind}/{name}"}


def _ok(description: str, media: str, schema: str) -> dict[str, Any]:
    return {"description": description,
            "content": {media: {"schema": _ref("schemas", schema)}}}


def _operation(
    summary: str, op_id: str, ok: dict[str, Any], params: list[str], errors: list[str],
    tag: str,
) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": ok}
    for code in errors:
        responses[code] = _ref("responses", _ERROR_RESPONSES[code])
    return {"summary": summary, "operationId": op_id, "tags": [tag],
            "parameters": [_ref("parameters", p) for p in params], "responses": responses}


_ERROR_RESPONSES = {"304": "NotModified", "400": "BadRequest", "404": "NotFound",
                    "412": "PreconditionFailed", "416": "RangeNotSatisfiable",
                    "503": "Unavailable"}
_COMMON = ["400"]


def _paths() -> dict[str, Any]:
    ogc = "OGC API - Features"
    whole = "Whole files"
    items_params = ["collectionId", "bbox", "bbox-crs", "limit", "offset", "properties",
                    "sortby", "f"]
    return {
        "/": {"get": _operation("Landing page", "getLandingPage",
                                _ok("Links to the API", JSON, "LandingPage"), ["f"],
                                _COMMON, ogc)},
        "/conformance": {"get": _operation(
            "Conformance classes", "getConformance",
            _ok("The classes implemented", JSON, "Conformance"), ["f"], _COMMON, ogc)},
        "/api": {"get": _operation(
            "This API definition", "getOpenAPI",
            {"description": "OpenAPI 3.0 JSON",
             "content": {"application/vnd.oai.openapi+json;version=3.0": {
                 "schema": {"type": "object"}}}}, ["f"], _COMMON, ogc)},
        "/collections": {"get": _operation(
            "The collections (one per dataset)", "getCollections",
            _ok("Every published dataset", JSON, "Collections"), ["f"], _COMMON, ogc)},
        "/collections/{collectionId}": {"get": _operation(
            "One collection", "describeCollection",
            _ok("The collection, its extent and index state", JSON, "Collection"),
            ["collectionId", "f"], ["400", "404", "503"], ogc)},
        "/collections/{collectionId}/queryables": {"get": _operation(
            "Properties to filter and sort on", "getQueryables",
            _ok("A JSON Schema", SCHEMA, "Queryables"),
            ["collectionId", "f"], ["400", "404", "503"], ogc)},
        "/collections/{collectionId}/items": {"get": {
            **_operation("Features, filtered and paged", "getFeatures",
                         _ok("A page of features", GEOJSON, "FeatureCollection"),
                         items_params, ["304", "400", "404", "503"], ogc),
            "description": _ITEMS_DESCRIPTION}},
        "/collections/{collectionId}/items/{featureId}": {"get": _operation(
            "One feature", "getFeature", _ok("The feature", GEOJSON, "Feature"),
            ["collectionId", "featureId", "f"], ["304", "400", "404", "503"], ogc)},
        "/geojson/{name}": {"get": _operation(
            "A dataset as one file (Range, ETag, gzip/br)", "getDatasetFile",
            {"description": "The whole file", "content": {GEOJSON: {"schema": {}}}},
            ["name"], ["304", "400", "404", "412", "416", "503"], whole)},
        "/api/datasets": {"get": _operation(
            "Every dataset with its metadata", "getDatasets",
            _ok("The datasets", JSON, "Datasets"), [], _COMMON, whole)},
        "/api/datasets/{name}": {"get": _operation(
            "One dataset's metadata", "getDataset", _ok("The dataset", JSON, "Dataset"),
            ["name"], ["400", "404", "503"], whole)},
    }


_ITEMS_DESCRIPTION = (
    "Besides the listed parameters, every queryable property (see the collection's "
    "queryables) is an equality filter: `?kind=road&rank=3`. Unknown parameters are "
    "answered with 400. `limit` above the maximum is clamped. Results with `bbox` come "
    "in spatial-index order unless `sortby` is given; pages are stable, so following "
    "`next` links returns every matching feature exactly once."
)


def _parameters(settings: Settings) -> dict[str, Any]:
    def query(name: str, description: str, schema: dict[str, Any], **extra: Any) -> Any:
        return {"name": name, "in": "query", "required": False, "description": description,
                "schema": schema, **extra}

    def path(name: str, description: str) -> Any:
        return {"name": name, "in": "path", "required": True, "description": description,
                "schema": {"type": "string"}}

    return {
        "collectionId": path("collectionId", "A dataset name."),
        "featureId": path("featureId", "A feature id (the feature's own id, or its "
                                        "1-based position when ids are missing or repeated)."),
        "name": path("name", "A dataset name (an optional `.geojson` suffix is accepted)."),
        "bbox": query("bbox", "minLon,minLat,maxLon,maxLat (or 6 numbers with heights), "
                              "CRS84; west > east crosses the antimeridian.",
                      {"type": "array", "minItems": 4, "maxItems": 6,
                       "items": {"type": "number"}}, style="form", explode=False),
        "bbox-crs": query("bbox-crs", "Only CRS84 is supported.",
                          {"type": "string", "format": "uri"}),
        "limit": query("limit", f"Features per page; above {settings.features_max_limit} "
                                "it is clamped.",
                       {"type": "integer", "minimum": 1,
                        "maximum": settings.features_max_limit,
                        "default": settings.features_limit}),
        "offset": query("offset", "Features to skip (the `next` links carry it).",
                        {"type": "integer", "minimum": 0, "default": 0}),
        "properties": query("properties", "Comma list of the properties to return.",
                            {"type": "array", "items": {"type": "string"}},
                            style="form", explode=False),
        "sortby": query("sortby", "Comma list of queryables, `-name` for descending.",
                        {"type": "array", "items": {"type": "string"}},
                        style="form", explode=False),
        "f": query("f", "Response encoding.", {"type": "string",
                                               "enum": ["json", "geojson"]}),
    }


def _schemas() -> dict[str, Any]:
    link = {"type": "object", "required": ["href", "rel"],
            "properties": {k: {"type": "string"} for k in ("href", "rel", "type", "title")}}
    links = {"type": "array", "items": _ref("schemas", "Link")}
    obj = {"type": "object"}
    return {
        "Link": link,
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
        "Dataset": obj,
        "Datasets": {"type": "object", "properties": {
            "datasets": {"type": "array", "items": _ref("schemas", "Dataset")},
            "links": links}},
    }


def _responses() -> dict[str, Any]:
    def error(description: str) -> dict[str, Any]:
        return {"description": description,
                "content": {JSON: {"schema": _ref("schemas", "Error")}}}

    return {
        "NotModified": {"description": "The client's copy (If-None-Match) is current."},
        "BadRequest": error("A malformed name, unknown parameter or invalid value."),
        "NotFound": error("No such collection, dataset or feature."),
        "PreconditionFailed": error("If-Match or If-Unmodified-Since did not hold."),
        "RangeNotSatisfiable": error("The Range lies beyond the end of the file."),
        "Unavailable": error("The dataset or its index is not ready yet (see Retry-After)."),
    }


def document(url: Url, settings: Settings) -> dict[str, Any]:
    """The whole OpenAPI document for this server."""
    base = url("features.landing").rstrip("/")
    return {
        "openapi": "3.0.3",
        "info": {"title": "geojson-api", "version": "1.0.0",
                 "description": "GeoJSON datasets as whole files and as OGC API - "
                                "Features collections.",
                 "license": {"name": "MIT"}},
        "servers": [{"url": base or "/"}],
        "tags": [{"name": "OGC API - Features"}, {"name": "Whole files"}],
        "paths": _paths(),
        "components": {"parameters": _parameters(settings), "schemas": _schemas(),
                       "responses": _responses()},
    }


def html(url: Url, settings: Settings) -> str:
    """A plain page listing the operations (the landing page's ``service-doc``)."""
    doc = document(url, settings)
    rows = []
    for path, item in doc["paths"].items():
        op = item["get"]
        codes = ", ".join(op["responses"])
        rows.append(f"<tr><td><code>GET {html_lib.escape(path)}</code></td>"
                    f"<td>{html_lib.escape(op['summary'])}</td><td>{codes}</td></tr>")
    return (
        "<!doctype html><html lang=en><meta charset=utf-8><title>geojson-api API</title>"
        "<h1>geojson-api</h1><p>Machine-readable definition: "
        f"<a href=\"{html_lib.escape(url('features.openapi'))}\">OpenAPI 3.0 JSON</a>.</p>"
        "<table><tr><th>Operation</th><th>What</th><th>Statuses</th></tr>"
        + "".join(rows) + "</table></html>"
    )
