"""OGC API - Tiles endpoints: parse, find the version's archive, answer. Nothing else."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, current_app, request, url_for

from .. import http, requestinfo
from ..catalog import Catalog, Version
from ..errors import InvalidParameter, InvalidTile, TileMatrixSetNotFound, TilesNotReady
from ..features.params import reject_unknown, single
from ..http import Reply
from ..settings import Settings
from . import builder, documents, grid
from .send import Sender
from .tilesets import Tilesets

bp = Blueprint("tiles", __name__)

INDEX = re.compile(r"0|[1-9][0-9]{0,9}")
"""A tile index as written in URLs: a decimal integer without sign or leading zeros."""


def _url(endpoint: str, **values: Any) -> str:
    return url_for(endpoint, _external=True, **values)


def _catalog() -> Catalog:
    return current_app.extensions["catalog"]  # type: ignore[no-any-return]


def _tilesets() -> Tilesets:
    return current_app.extensions["tilesets"]  # type: ignore[no-any-return]


def _sender() -> Sender:
    return current_app.extensions["tile_sender"]  # type: ignore[no-any-return]


def _settings() -> Settings:
    return current_app.config["SETTINGS"]  # type: ignore[no-any-return]


def _format(*formats: str) -> str:
    """The ``f`` asked for (the first of ``formats`` by default); no other parameter."""
    args = request.args.to_dict(flat=False)
    reject_unknown(args, {"f"})
    value = single(args, "f")
    value = formats[0] if value is None else value  # given empty, it is refused
    if value not in formats:
        raise InvalidParameter(f"f={value!r} is not served here; use f={' or f='.join(formats)}")
    return value


def _json(etag_parts: list[str], body: Callable[[], Any], mimetype: str = http.JSON,
          cache: str = http.REVALIDATE) -> Response:
    etag = http.weak_etag(request.host_url, request.path, *etag_parts)
    return http.conditional(etag, cache, lambda: current_app.response_class(
        orjson.dumps(body()), mimetype=mimetype))


def _matrix_set(tms: str) -> None:
    if tms != grid.ID:
        raise TileMatrixSetNotFound(f"no tile matrix set {tms!r}; this server has {grid.ID}")


def _version(cid: str) -> Version:
    return requestinfo.resolve(_catalog(), cid)


def parse_tile(matrix: str, row: str, col: str) -> grid.Tile:
    """The tile of WebMercatorQuad named by a URL; 400 for anything else."""
    for name, value in (("tileMatrix", matrix), ("tileRow", row), ("tileCol", col)):
        if not INDEX.fullmatch(value):
            raise InvalidTile(f"{name} must be a non-negative integer without sign or leading "
                              f"zeros, not {value[:40]!r}")
    z, y, x = int(matrix), int(row), int(col)
    if z > grid.MAX_MATRIX:
        raise InvalidTile(f"tileMatrix {z} is not in {grid.ID} (0-{grid.MAX_MATRIX})")
    last = (1 << z) - 1
    if y > last or x > last:
        raise InvalidTile(f"tile matrix {z} has rows and columns 0-{last}; "
                          f"{y}/{x} is outside it")
    return grid.Tile(z, y, x)


def _reply(reply: Reply) -> Response:
    return current_app.response_class(reply.body, reply.status, reply.headers,
                                      direct_passthrough=True)


@bp.get("/tileMatrixSets")
def matrix_sets() -> Response:
    _format("json")
    return _json([], lambda: documents.matrix_sets(_url), cache=http.cache_control(_settings()))


@bp.get("/tileMatrixSets/<tms>")
def matrix_set(tms: str) -> Response:
    _format("json")
    _matrix_set(tms)
    return _json([], lambda: documents.matrix_set(_url), cache=http.cache_control(_settings()))


@bp.get("/collections/<cid>/tiles")
def tilesets(cid: str) -> Response:
    _format("json")
    version = _version(cid)
    return _json([version.id], lambda: documents.tilesets(_url, version.name))


@bp.get("/collections/<cid>/tiles/<tms>")
def tileset(cid: str, tms: str) -> Response:
    """The tileset metadata (``f=json``, OGC) or TileJSON 3.0 (``f=tilejson``)."""
    kind = _format("json", "tilejson")
    _matrix_set(tms)
    version = _version(cid)
    fields = version.meta.get("properties") or {}
    if kind == "tilejson":
        _, built = _tilesets().archive(version)  # 503 until built: TileJSON needs the zooms
        return _json([version.id, kind], lambda: documents.tilejson(
            _url, version.name, version.meta.get("bbox"), built, fields, version.id))
    state = _tilesets().state(version)
    recorded = builder.info(version.directory) if state.status == "ready" else None
    return _json([version.id, kind, state.status], lambda: documents.tileset(
        _url, version.name, version.meta.get("bbox"), state.as_dict(), recorded, fields))


@bp.get("/collections/<cid>/tiles/<tms>/<matrix>/<row>/<col>")
def tile(cid: str, tms: str, matrix: str, row: str, col: str) -> Response:
    """One vector tile: 200, 204 (no data), 304; 400, 404, 503 as the OpenAPI document says."""
    reject_unknown(request.args.to_dict(flat=False), set())
    _matrix_set(tms)
    wanted = parse_tile(matrix, row, col)
    version = _version(cid)
    archive, built = _tilesets().archive(version)
    try:
        reply = _sender().tile(version, archive, built, wanted, request.environ)
    except FileNotFoundError:  # the archive went away under this process (quarantined)
        _tilesets().damaged(version, "the archive is missing")
        raise TilesNotReady(f"the tiles of {version.name!r} are being built again",
                            _settings().tiles_retry_after) from None
    return _reply(reply)


@bp.get("/collections/<cid>/tiles/<tms>.pmtiles")
def archive(cid: str, tms: str) -> Response:
    """The whole archive, with Range support (PMTiles clients read it directly)."""
    reject_unknown(request.args.to_dict(flat=False), set())
    _matrix_set(tms)
    version = _version(cid)
    found, _ = _tilesets().archive(version)
    return _reply(_sender().archive(version, found.path, request.environ))


@bp.get("/collections/<cid>/styles/default")
def style(cid: str) -> Response:
    """A default MapLibre style for the collection's tiles."""
    _format("json")
    version = _version(cid)
    return _json([version.id], lambda: documents.style(_url, version.name, version.name),
                 documents.STYLE)


def init_app(app: Flask, catalog: Catalog, settings: Settings) -> None:
    app.extensions["tilesets"] = Tilesets(catalog)
    app.extensions["tile_sender"] = Sender(settings)
    app.register_blueprint(bp)
