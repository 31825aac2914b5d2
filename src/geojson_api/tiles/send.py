"""Sending tiles and archives: one decision, then bytes that never pass through Python.

A tile is a byte range of its version's archive, stored gzip-compressed (as
tippecanoe writes it). A client that accepts gzip gets exactly those bytes
with ``Content-Encoding: gzip``: a part of the archive the server sends
itself (:func:`geojson_api.filebody.send`; Gunicorn with ``sendfile``),
or, with ``GEOJSON_API_OFFLOAD=nginx``, by Nginx after
``X-Accel-Redirect`` (the range travels in ``X-Tile-Range``; see
docs/tiles.md for how Nginx turns it into a 200). A client that does not
accept gzip gets the tile decompressed here (a tile is at most 500 KB).

An open file keeps its bytes when the version is removed meanwhile, so a
tile being sent finishes with the old version's bytes.

ETags are strong and name the version and the tile (and the coding), so a
new version means new tags; tiles never change under a tag.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from .. import filebody, http
from ..delivery import OFFLOAD_PREFIX, WSGIEnviron, from_file
from ..errors import TileNotFound
from ..http import Header, Reply
from ..settings import Settings
from ..versions import Version
from . import grid
from .archive import Archive
from .documents import MVT, PMTILES

TILE_OFFLOAD = f"{OFFLOAD_PREFIX}/tile"
"""Nginx's internal location for tile ranges (nginx/geojson-api.conf.j2)."""


class Sender:
    """Replies for tiles and archives, with one app's settings."""

    def __init__(self, settings: Settings) -> None:
        self.cache_control = http.cache_control(settings)
        self.offload = settings.offload == "nginx"
        self.versions_dir = Path(settings.state_path) / "versions"

    def _common(self, etag: str, version: Version) -> list[Header]:
        return [("ETag", etag), ("Last-Modified", version.http_date),
                ("Cache-Control", self.cache_control), ("Vary", http.VARY_ENCODING)]

    def tile(self, version: Version, archive: Archive, built: dict[str, object],
             tile: grid.Tile, environ: WSGIEnviron) -> Reply:
        """200 (the tile), 204 (no data there), 304, or 404 outside the tileset's limits."""
        _check_limits(tile, built, version.meta.get("bbox"))
        where = archive.locate(tile.z, tile.col, tile.row)
        gzipped = archive.gzip and "gzip" in http.accepted_encodings(
            environ.get("HTTP_ACCEPT_ENCODING"))
        part = f"{tile.z}-{tile.row}-{tile.col}"
        etag = http.part_etag(version.id, part, "gzip" if gzipped and where else None)
        if http.check_preconditions(environ, etag, version.http_date):
            return Reply(304, http.not_modified_headers(etag, self.cache_control,
                                                        http.VARY_ENCODING))
        headers = self._common(etag, version)
        if where is None:  # no feature touches this tile: 204 (docs/tiles.md says why)
            return Reply(204, headers)
        headers.insert(0, ("Content-Type", MVT))
        if gzipped:
            headers.append(("Content-Encoding", "gzip"))
            if self.offload and environ["REQUEST_METHOD"] != "HEAD":
                return self._offloaded_tile(archive, where.offset, where.length, headers)
            size = where.length
        else:
            data = _read(archive, where.offset, where.length)
            body = gzip.decompress(data) if archive.gzip else data
            size = len(body)
        headers.append(("Content-Length", str(size)))
        if environ["REQUEST_METHOD"] == "HEAD":
            return Reply(200, headers)
        if not gzipped:
            return Reply(200, headers, [body])
        handle = open(archive.path, "rb")  # noqa: SIM115 (the response closes it)
        return Reply(200, headers, filebody.send(environ, handle, (where.offset, where.length)))

    def _offloaded_tile(self, archive: Archive, offset: int, length: int,
                        headers: list[Header]) -> Reply:
        relative = archive.path.relative_to(self.versions_dir).as_posix()
        return Reply(200, [*headers,
                           ("X-Accel-Redirect", f"{TILE_OFFLOAD}/{relative}"),
                           ("X-Tile-Range", f"{offset}-{offset + length - 1}"),
                           ("X-Tile-Length", str(length)),
                           ("X-Tile-Last", str(length - 1))])

    def archive(self, version: Version, path: Path, environ: WSGIEnviron) -> Reply:
        """The whole archive (200, or 206 for a Range), for PMTiles-aware clients."""
        etag = http.part_etag(version.id, "pmtiles")
        if http.check_preconditions(environ, etag, version.http_date):
            return Reply(304, http.not_modified_headers(etag, self.cache_control))
        headers = [("Content-Type", PMTILES), ("ETag", etag),
                   ("Last-Modified", version.http_date), ("Cache-Control", self.cache_control),
                   ("Accept-Ranges", "bytes")]
        handle = open(path, "rb")  # noqa: SIM115 (the response closes it, or we do)
        try:
            size = os.fstat(handle.fileno()).st_size
            if environ["REQUEST_METHOD"] == "HEAD":
                handle.close()
                return Reply(200, [*headers, ("Content-Length", str(size))])
            bounds = http.byte_range(environ, etag, version.http_date, size)
            if self.offload:
                handle.close()
                kind = "full" if bounds is None else "range"
                relative = path.relative_to(self.versions_dir).as_posix()
                kept = [h for h in headers if h[0] != "Accept-Ranges"]  # Nginx adds it
                return Reply(200, [*kept, ("X-Accel-Redirect",
                                           f"{OFFLOAD_PREFIX}/{kind}/{relative}")])
        except BaseException:
            handle.close()
            raise
        return from_file(environ, handle, size, headers, bounds)


def _read(archive: Archive, offset: int, length: int) -> bytes:
    with open(archive.path, "rb") as f:
        return os.pread(f.fileno(), length, offset)


def _check_limits(tile: grid.Tile, built: dict[str, object], extent: object) -> None:
    """404 for a tile outside the tileset's tileMatrixSetLimits (as OGC API - Tiles says)."""
    minzoom, maxzoom = int(built["minzoom"]), int(built["maxzoom"])  # type: ignore[call-overload]
    if not minzoom <= tile.z <= maxzoom:
        raise TileNotFound(f"tile matrix {tile.z} is outside this tileset's {minzoom}-"
                           f"{maxzoom}; clients overzoom the tiles of {maxzoom}")
    box = extent if isinstance(extent, list) and extent else None
    if box is not None and not grid.inside(tile, grid.limits(grid.flat(box), tile.z)):
        raise TileNotFound(f"tile {tile.z}/{tile.row}/{tile.col} is outside the data's "
                           "extent (see tileMatrixSetLimits)")
