"""OGC API - Features endpoints: parse, ask the index, render. Nothing else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, request, stream_with_context, url_for

from .. import http, requestinfo
from ..cache import shared_cache
from ..catalog import Catalog, Version
from ..errors import APIError, FeatureNotFound
from ..settings import Settings
from ..tiles import documents as tile_documents
from ..tiles.tilesets import Tilesets
from ..web import negotiation, pages
from ..web.negotiation import negotiate
from . import documents, lane, openapi, render, sqlite_index
from .indexes import Indexes
from .params import check_format, parse_items, reject_unknown, single
from .query import FeatureBackend, FeatureQuery

bp = Blueprint("features", __name__)


def _url(endpoint: str, **values: Any) -> str:
    return url_for(endpoint, _external=True, **values)


def _settings() -> Settings:
    return current_app.config["SETTINGS"]  # type: ignore[no-any-return]


def _catalog() -> Catalog:
    return current_app.extensions["catalog"]  # type: ignore[no-any-return]


def _indexes() -> Indexes:
    return current_app.extensions["feature_indexes"]  # type: ignore[no-any-return]


def _args(*known: str) -> dict[str, list[str]]:
    args = request.args.to_dict(flat=False)
    reject_unknown(args, {"f", *known})
    check_format(args)
    return args


def _json(body: Any, mimetype: str = http.JSON) -> Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return current_app.response_class(data, mimetype=mimetype)


def _geojson_type() -> str:
    """GeoJSON's own media type, or plain JSON when asked with ``f=json``."""
    return http.JSON if request.args.get("f") == "json" else http.GEOJSON


def _tilesets() -> Tilesets | None:
    """The tiles of every version, unless they are off (``GEOJSON_API_TILES=false``)."""
    return current_app.extensions.get("tilesets")


def _collection(name: str) -> tuple[Version, dict[str, Any]]:
    version = requestinfo.resolve(_catalog(), name)
    state = _indexes().state(version)
    tilesets = _tilesets()
    tiles = None if tilesets is None else {"tiles": tilesets.state(version).as_dict()}
    links = () if tilesets is None else tile_documents.collection_links(_url, version.name)
    doc = documents.collection(_url, version.name, version.meta.get("bbox"), state.as_dict(),
                               version.meta["features"], tiles, links)
    return version, doc


def _collections_crumb() -> list[tuple[str, str]]:
    return [("Collections", _url("features.collections", f="html"))]


def _collection_crumbs(name: str) -> list[tuple[str, str]]:
    return [*_collections_crumb(), (name, _url("features.collection", cid=name, f="html"))]


@bp.get("/")
def landing() -> Response:
    _args()
    tiled = _tilesets() is not None
    doc = documents.landing(_url, "geojson-api",
                            tile_documents.landing_links(_url) if tiled else ())
    return negotiate(doc, lambda: _json(doc), "landing.html", title="geojson-api")


@bp.get("/conformance")
def conformance() -> Response:
    _args()
    doc = documents.conformance(tile_documents.CONFORMANCE if _tilesets() is not None else ())
    return negotiate(doc, lambda: _json(doc), "conformance.html", title="Conformance",
                     crumbs=[])


@bp.get("/api", endpoint="openapi")
def openapi_document() -> Response:
    _args()
    doc = openapi.document(_url, _settings(), _published())
    return negotiate(doc, lambda: _json(doc, http.OPENAPI), "swagger.html", **_swagger())


def _swagger() -> dict[str, Any]:
    """The Swagger UI page's context: it reads /api, which is also its JSON alternate."""
    return {"title": "API", "crumbs": [], "swagger": True, "json_url": _url("features.openapi")}


def _published() -> list[openapi.CollectionInfo]:
    """Every collection with a published version, for its own items path in /api."""
    found = []
    catalog = _catalog()
    for name in catalog.names():
        try:
            properties = catalog.current(name).meta["properties"]
        except APIError:
            continue
        found.append(openapi.CollectionInfo(name, sqlite_index.queryables_of(properties),
                                            list(properties)))
    return found


@bp.get("/api.html")
def api_docs() -> Response:
    """Swagger UI over /api (served from our own origin, like every asset)."""
    return negotiation.page("swagger.html", ["swagger"], _swagger)


@bp.get("/collections")
def collections() -> Response:
    _args()
    entries = []
    for name in _catalog().names():
        try:
            entries.append(_collection(name)[1])
        except APIError:  # not published (yet): listed by /api/datasets with the reason
            continue
    doc = documents.collections(_url, entries)
    return negotiate(doc, lambda: _json(doc), "collections.html", title="Collections",
                     crumbs=[])


@bp.get("/collections/<cid>")
def collection(cid: str) -> Response:
    _args()
    version, doc = _collection(cid)
    downloads = pages.downloads(version)
    return negotiate(doc, lambda: _json(doc), "collection.html",
                     key=[negotiation.digest_of(doc), version.id, repr(downloads)],
                     title=version.name, crumbs=_collections_crumb(), map=True,
                     downloads=downloads,
                     queryables=sqlite_index.queryables_of(version.meta["properties"]))


@bp.get("/collections/<cid>/queryables")
def queryables(cid: str) -> Response:
    _args()
    version = requestinfo.resolve(_catalog(), cid)
    backend = _indexes().backend(version)
    doc = documents.queryables(_url, version.name, backend.queryables())
    return negotiate(doc, lambda: _json(doc, http.SCHEMA), "queryables.html",
                     title=f"Queryables of {version.name}",
                     crumbs=_collection_crumbs(version.name))


@bp.get("/collections/<cid>/items/<path:fid>")
def item(cid: str, fid: str) -> Response:
    _args()
    version = requestinfo.resolve(_catalog(), cid)
    feature = _indexes().backend(version).feature(fid)
    if feature is None:
        raise FeatureNotFound(f"collection {version.name!r} has no feature {fid!r}")
    body = render.with_links(feature, documents.feature_links(_url, version.name, fid))
    if negotiation.wants_html():
        return negotiation.page(
            "item.html", [version.id, fid], lambda: {
                "feature": orjson.loads(body), "fid": fid, "title": f"Feature {fid}",
                "map": True, "crumbs": [*_collection_crumbs(version.name), (
                    "Items", _url("features.items", cid=version.name, f="html"))]},
            http.cache_control(_settings()))
    etag = http.weak_etag(request.host_url, version.id, fid, request.args.get("f", ""))
    return negotiation.as_json(_conditional(etag, lambda: _json(body, _geojson_type())))


@bp.get("/collections/<cid>/items")
def items(cid: str) -> Response:
    version = requestinfo.resolve(_catalog(), cid)
    backend = _indexes().backend(version)
    settings = _settings()
    args = request.args.to_dict(flat=False)
    query = parse_items(args, backend.queryables(), list(version.meta["properties"]),
                        settings.features_limit, settings.features_max_limit)
    if negotiation.wants_html():
        return negotiation.page("items.html", [version.id, query.key()],
                                lambda: _items_page(version, backend, query, args),
                                http.cache_control(settings))
    etag = http.weak_etag(request.host_url, version.id, query.key(), single(args, "f") or "")
    return negotiation.as_json(
        _conditional(etag, lambda: _page(version, backend, query, f"items:{etag}")))


def _items_page(version: Version, backend: FeatureBackend, query: FeatureQuery,
                args: dict[str, list[str]]) -> dict[str, Any]:
    """What the items page shows: the same page of features as the document, as a table."""
    result = backend.query(query)
    links = render.page_links(_url, version.name, list(request.args.items(multi=True)), query,
                              result.number_matched)
    return {
        "title": f"Features of {version.name}", "map": True, "cid": version.name,
        "crumbs": _collection_crumbs(version.name),
        "number_matched": result.number_matched, "offset": query.offset,
        "number_returned": render.number_returned(result.number_matched, query),
        "limit": query.limit, "bbox": single(args, "bbox") or "",
        "kept": pages.form_fields(request.args.items(multi=True)),
        **pages.items(result.features, links, lambda fid: _url(
            "features.item", cid=version.name, fid=str(fid), f="html")),
    }


def _page(version: Version, backend: FeatureBackend, query: FeatureQuery, key: str) -> Response:
    """An items page from the shared cache, or streamed from the index (and then kept)."""
    found = shared_cache().get(key)
    if isinstance(found, bytes):
        return _json(found, _geojson_type())
    result = backend.query(query)
    links = render.page_links(_url, version.name, list(request.args.items(multi=True)), query,
                              result.number_matched)
    body = render.items_body(result, query, links)
    stream = render.tee(body, _settings().features_cache_max_bytes, _keeper(key))
    return current_app.response_class(stream_with_context(stream), mimetype=_geojson_type())


def _keeper(key: str) -> Any:
    cache = shared_cache()
    return lambda body: cache.set(key, body)


def _conditional(etag: str, build: Callable[[], Response]) -> Response:
    """304 for a client whose copy is current, else ``build()``; both with the validators."""
    return http.conditional(etag, http.cache_control(_settings()), build)


def init_app(app: Any, catalog: Catalog) -> None:
    app.extensions["feature_indexes"] = indexes = Indexes(catalog)
    app.register_blueprint(bp)
    # A feature by id, its plain case answered before Flask (the same answer as item()).
    lane.init_app(app, catalog, indexes, http.cache_control(app.config["SETTINGS"]))
