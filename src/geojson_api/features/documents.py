"""The JSON documents of OGC API - Features: landing page, conformance, collections.

Pure functions of data plus a ``url`` callable (endpoint, **values) -> absolute
URL, so they are tested without HTTP. Link hrefs never carry a query string
(GDAL appends ``/{featureId}`` to a collection's items href).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..http import GEOJSON, HTML, JSON, OPENAPI, SCHEMA
from .params import CRS84
from .query import Queryable

Url = Callable[..., str]

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    # Every resource has its page (geojson_api.web): landing, conformance, collections,
    # collection, items, feature, and queryables and datasets beside them.
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
]


def link(href: str, rel: str, type: str, title: str | None = None) -> dict[str, str]:
    found = {"href": href, "rel": rel, "type": type}
    if title:
        found["title"] = title
    return found


def html_alternate(href: str, title: str = "This document as HTML") -> dict[str, str]:
    """The ``rel=alternate`` link of a document to its page (``href`` has no query)."""
    return link(href + "?f=html", "alternate", HTML, title)


def landing(url: Url, title: str, extra: Iterable[dict[str, str]] = ()) -> dict[str, Any]:
    """The landing page; ``extra`` are the links of other parts (the tiles)."""
    return {
        "title": title,
        "description": "GeoJSON datasets as whole files, as OGC API - Features collections "
                       "and as vector tiles (OGC API - Tiles).",
        "links": [
            link(url("features.landing"), "self", JSON, "This document"),
            html_alternate(url("features.landing")),
            link(url("features.openapi"), "service-desc", OPENAPI, "The API definition"),
            link(url("features.api_docs"), "service-doc", HTML, "The API documentation"),
            link(url("features.conformance"), "conformance", JSON, "Conformance classes"),
            link(url("features.collections"), "data", JSON, "The collections"),
            link(url("api.datasets"), "datasets", JSON, "Datasets as whole files"),
            link(url("api.healthz"), "health", JSON, "Liveness"),
            link(url("api.readyz"), "ready", JSON, "Readiness"),
            *extra,
        ],
    }


def conformance(extra: Iterable[str] = ()) -> dict[str, Any]:
    return {"conformsTo": [*CONFORMANCE, *extra]}


def collection(
    url: Url, name: str, extent: list[float] | None, index: dict[str, Any],
    features: int, extra: dict[str, Any] | None = None,
    extra_links: Iterable[dict[str, str]] = (),
) -> dict[str, Any]:
    """One collection: a dataset's current version seen as features.

    ``extra`` members and ``extra_links`` come from other parts (the tiles' state
    and links)."""
    doc: dict[str, Any] = {
        "id": name,
        "title": name,
        "description": f"The features of dataset {name} ({features} features).",
        "itemType": "feature",
        "crs": [CRS84],
        "storageCrs": CRS84,
        "index": index,
        **(extra or {}),
        "links": [
            link(url("features.collection", cid=name), "self", JSON, "This collection"),
            html_alternate(url("features.collection", cid=name)),
            link(url("features.items", cid=name), "items", GEOJSON, "The features"),
            link(url("features.queryables", cid=name),
                 "http://www.opengis.net/def/rel/ogc/1.0/queryables", SCHEMA,
                 "Properties to filter and sort on"),
            link(url("delivery.geojson", raw=name), "enclosure", GEOJSON, "The whole file"),
            *extra_links,
        ],
    }
    if extent:
        doc["extent"] = {"spatial": {"bbox": [list(extent)], "crs": CRS84}}
    return doc


def collections(url: Url, entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {
        "collections": list(entries),
        "links": [link(url("features.collections"), "self", JSON, "The collections"),
                  html_alternate(url("features.collections"))],
    }


def queryables(url: Url, name: str, items: Iterable[Queryable]) -> dict[str, Any]:
    """A JSON Schema of the properties that items may be filtered and sorted by."""
    properties: dict[str, Any] = {
        "geometry": {"title": "geometry", "format": "geometry-any",
                     "description": "Filtered with bbox."},
    }
    for q in items:
        properties[q.name] = {"title": q.name, "type": q.type}
    return {
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "$id": url("features.queryables", cid=name),
        "type": "object",
        "title": name,
        "properties": properties,
        "additionalProperties": True,
    }


def feature_links(url: Url, name: str, feature_id: str) -> list[dict[str, str]]:
    href = url("features.item", cid=name, fid=feature_id)
    return [
        link(href, "self", GEOJSON, "This feature"),
        link(href + "?f=json", "alternate", JSON, "This feature as JSON"),
        html_alternate(href, "This feature as HTML"),
        link(url("features.collection", cid=name), "collection", JSON, "The collection"),
    ]
