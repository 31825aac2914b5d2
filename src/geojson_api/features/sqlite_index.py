"""The embedded feature backend: one SQLite file and one features file per dataset version.

Layout of ``<version>/index.sqlite``::

    features(fid INTEGER PRIMARY KEY,  -- position in the file, 1-based
             fkey TEXT UNIQUE,         -- the feature id as text (the URL form)
             idjson,                   -- compact JSON of the id
             p0, p1, ...)              -- one column per scalar property, indexed
    shapes(fid INTEGER PRIMARY KEY,    -- features with a box (a geometry RFC 7946 knows)
           wkb)                        -- the geometry as GEOS reads it (NULL: GEOS could not)
    boxes(name, chunk, data)           -- their exact bounds and flags as arrays (boxscan.py)
    spans(chunk, starts, props)        -- where each feature lies in index.features (arrays)
    meta(key, value)                   -- JSON: format, columns, extent, counts, timings

and ``<version>/index.features``: every feature exactly as an items page
writes it (``{"type":"Feature","id":...,"geometry":...,"properties":...}``),
in file order, each followed by ``,\n``. Features next to each other in the
file are one slice of it, separators included, so the first page of a
collection (or any run of neighbours) is one ``pread`` instead of a row per
feature; ``spans`` holds each feature's start and where its properties begin
(read into memory once per process: 12 bytes per feature).

The build streams the GeoJSON file feature by feature (memory is bounded by
the largest feature, not the file, plus two lengths per feature), writes
hidden temporary files, checks the SQLite one (``PRAGMA quick_check``),
records the size and digest of each (``*.sum``) and renames them into place,
the features file first, so a reader sees no index or a complete one. Files
are never modified afterwards; SQLite opens its file ``immutable``. An index
of an older ``FORMAT`` is deleted and built again (:func:`outdated`).

Readers open both without a memory map: a file truncated under a map kills
the process that touches the lost pages (SIGBUS), whereas a plain read of a
damaged file is an error. Opening checks the recorded sizes and runs the
quick check once per process; every query checks the features file's size
before its answer starts; an error while reading reports the index damaged
(:class:`IndexDamaged`), and its owner quarantines it and has it built again.

A bbox query is answered from the bounds arrays in memory
(:class:`boxscan.BoxScan`): features whose exact bounds settle the question
match without SQLite; only the rest (features across a corner of the box,
multi-part ones) are read as WKB and tested by GEOS (Shapely) in one
vectorised call, so results are exact. The matching fids, in file order, give
the count and the page, which is then read from the features file. A geometry GEOS
could not read has no WKB; its box comes from its GeoJSON positions and its
test from the pure-Python ``geometry.intersects``. A geometry type RFC 7946
does not define has no box: it is listed without a bbox and never matched by
one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import weakref
from array import array
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import ijson
import numpy as np
import orjson
import shapely

from .. import integrity, tracing
from ..errors import IndexDamaged
from . import boxscan, geometry
from .query import FeatureBackend, FeaturePage, FeatureQuery, Queryable

INDEX_FILE = "index.sqlite"
FEATURES_FILE = "index.features"
FAILED_FILE = "index.failed.json"
FORMAT = 4
"""Bumped whenever the layout changes; an older index is built again."""
BATCH = 2000
SCALAR_TYPES = {"string": "string", "integer": "integer", "number": "number",
                "boolean": "boolean"}
POOL_SIZE = 16
SEPARATOR = b",\n"
"""What follows every feature in the features file: an items page's separator."""
HEAD, GEOMETRY_KEY, PROPERTIES_KEY = b'{"type":"Feature","id":', b',"geometry":', b',"properties":'
RUN_BYTES = 1024 * 1024
"""The largest single read of neighbouring features (a long page is several)."""
STARTS, PROPS = "<i8", "<u4"
"""spans: where a feature starts in the features file; where its properties key starts in it."""
PAGE_CACHE_KIB = 16 * 1024
"""SQLite's page cache per open connection (its default is 2 MiB), filled as pages are read."""

log = logging.getLogger(__name__)

Column = tuple[str, str, str]  # property name, SQL column, JSON Schema type


# -- build ----------------------------------------------------------------------
def ensure(directory: Path, source: Path, meta: dict[str, Any],
           state_dir: Path | None = None) -> None:
    """Build ``directory``'s index unless a sound one exists or a build already failed.

    The caller holds the version's index lock. A damaged index is quarantined
    (into ``state_dir``; deleted without one) and built again. A failure
    caused by the data is recorded in ``index.failed.json`` (and logged)
    instead of raised: the whole-file download of the version keeps working,
    and the same bytes would fail again. A failure of the disk (no space, I/O
    error) is only logged: the build is asked for again later.
    """
    target = directory / INDEX_FILE
    if (directory / FAILED_FILE).exists():
        return
    if target.exists():
        problem = open_problem(directory)
        if problem is None and not outdated(directory):
            return  # current, or newer than this code (left to the code that built it)
        if problem is not None and state_dir is not None:
            for path in files(directory):
                integrity.quarantine(state_dir, path, problem)
        remove(directory)
    for leftover in directory.glob(".index.*.tmp"):  # a build killed midway
        leftover.unlink(missing_ok=True)
    try:
        info = build(source, target, meta)
    except (OSError, sqlite3.OperationalError) as exc:  # the disk, not the data
        log.warning("index of %s not built, will retry: %s", directory, exc)
        return
    except Exception as exc:  # recorded for the collection's index status
        log.exception("index of %s failed", directory)
        first_line = next(iter(str(exc).splitlines()), "")  # ijson's are several lines
        failure = {"error": f"{type(exc).__name__}: {first_line}", "at": time.time()}
        (directory / FAILED_FILE).write_bytes(orjson.dumps(failure))
        return
    log.info("indexed %s: %d features in %.1f s", directory, info["features"],
             info["build_seconds"])


def files(directory: Path) -> list[Path]:
    """The files of the index of ``directory`` (whether they exist or not)."""
    return [directory / INDEX_FILE, directory / FEATURES_FILE]


def size(directory: Path) -> int:
    """Bytes of the index of ``directory`` on disk, its files together."""
    return sum(path.stat().st_size for path in files(directory) if path.exists())


def open_problem(directory: Path) -> str | None:
    """Why the index of ``directory`` cannot be opened (sizes, quick check), or None.

    An index of an older format is not damaged (it has no features file):
    :func:`outdated` says it is to be built again (:func:`newer`: left alone).
    """
    return _problem(directory, lambda path, recorded: integrity.size_problem(
        path, recorded.bytes if recorded else None))


def _problem(directory: Path,
             check: Callable[[Path, integrity.Sum | None], str | None]) -> str | None:
    path, features = files(directory)
    problem = check(path, integrity.read_sum(path)) or _quick_check(path)
    if problem is not None or _format(directory) != FORMAT:
        return problem  # another layout: outdated() or newer() says what becomes of it
    return check(features, integrity.read_sum(features))


def outdated(directory: Path) -> bool:
    """Whether a sound index of ``directory`` has an older layout than this code reads."""
    stored = _format(directory)
    return stored is not None and stored < FORMAT


def newer(directory: Path) -> bool:
    """Whether the index of ``directory`` was built by newer code, in a layout this code
    cannot read. It is left alone, not rebuilt: during a rolling upgrade the old and
    the new processes would otherwise build it over each other in turn."""
    stored = _format(directory)
    return stored is not None and stored > FORMAT


def _format(directory: Path) -> int | None:
    """The layout ``format`` an index records (0 for none); None when it cannot be read."""
    try:
        con = _connect(directory / INDEX_FILE)
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return None  # damaged, or gone: open_problem says so
    value = orjson.loads(row[0]) if row is not None else 0
    return value if isinstance(value, int) else 0


def remove(directory: Path) -> None:
    """Delete the index of ``directory`` and its recorded sums (an outdated one)."""
    for path in files(directory):  # SQLite's first: no reader opens a half-removed index
        path.unlink(missing_ok=True)
        integrity.sum_path(path).unlink(missing_ok=True)


def verify(directory: Path) -> str | None:
    """Like :func:`open_problem`, comparing whole files with their digests; None if absent."""
    if not (directory / INDEX_FILE).exists():
        return None
    return _problem(directory, integrity.digest_problem)


def _quick_check(path: Path) -> str | None:
    try:
        con = _connect(path)
        try:
            rows = con.execute("PRAGMA quick_check").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return f"{path.name}: {exc}"
    if rows != [("ok",)]:
        return f"{path.name} failed SQLite's quick check: {rows[0][0]}"
    return None


def failure(directory: Path) -> str | None:
    """Why the index of a version could not be built, if it could not."""
    try:
        return str(orjson.loads((directory / FAILED_FILE).read_bytes())["error"])
    except FileNotFoundError:
        return None


def build(source: Path, target: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Index the GeoJSON file ``source`` into ``target`` (and the features file beside
    it); returns the index's info."""
    started = time.monotonic()
    suffix = f"{os.getpid()}.{threading.get_ident()}.tmp"
    features = target.with_name(FEATURES_FILE)
    tmp, features_tmp, bodies = (target.with_name(f".{name}.{suffix}")
                                 for name in (target.name, FEATURES_FILE, "index.bodies"))
    for path in (tmp, features_tmp, bodies):
        path.unlink(missing_ok=True)
    try:
        info = _build_into(tmp, features_tmp, bodies, source, meta, started)
        problem = _quick_check(tmp)
        if problem is not None:
            raise OSError(f"the index just written is damaged: {problem}")
        integrity.write_sum(features, integrity.file_sum(features_tmp))
        os.replace(features_tmp, features)  # first: an index.sqlite in place has its features
        integrity.write_sum(target, integrity.file_sum(tmp))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        features_tmp.unlink(missing_ok=True)
        raise
    finally:
        bodies.unlink(missing_ok=True)
    return info


def _build_into(tmp: Path, features_tmp: Path, bodies: Path, source: Path,
                meta: dict[str, Any], started: float) -> dict[str, Any]:
    columns = _columns(meta.get("properties") or {})
    con = sqlite3.connect(tmp, isolation_level=None)
    try:
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "temp_store=MEMORY",
                       "cache_size=-65536"):
            con.execute(f"PRAGMA {pragma}")
        con.execute("BEGIN")
        _create_schema(con, columns)
        with open(bodies, "wb") as out:
            count, with_geometry, lengths = _load(
                con, _features(source, meta.get("type", "")), columns, out)
        id_source = _settle_ids(con)
        features_bytes = _write_features(con, bodies, lengths, features_tmp)
        _create_indexes(con, columns)
        info = {"format": FORMAT, "features": count, "with_geometry": with_geometry,
                "extent": meta.get("bbox"), "id_source": id_source,
                "columns": [list(c) for c in columns], "features_bytes": features_bytes,
                "built": time.time()}
        info["build_seconds"] = round(time.monotonic() - started, 3)
        con.executemany("INSERT INTO meta VALUES (?, ?)",
                        [(k, orjson.dumps(v).decode()) for k, v in info.items()])
        con.execute("COMMIT")
        con.execute("ANALYZE")
    finally:
        con.close()
    for path in (tmp, features_tmp):
        with open(path, "rb+") as handle:
            os.fsync(handle.fileno())
    return info


def queryables_of(properties: dict[str, str]) -> list[Queryable]:
    """The queryables an index of a version with these property types will have."""
    return [Queryable(name, kind) for name, _, kind in _columns(properties)]


def _columns(properties: dict[str, str]) -> list[Column]:
    scalar = [(name, kind) for name, kind in properties.items() if kind in SCALAR_TYPES]
    return [(name, f"p{i}", SCALAR_TYPES[kind]) for i, (name, kind) in enumerate(scalar)]


def _create_schema(con: sqlite3.Connection, columns: list[Column]) -> None:
    extra = "".join(f", {col}" for _, col, _ in columns)
    con.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.execute(f"CREATE TABLE features(fid INTEGER PRIMARY KEY, fkey TEXT, idjson TEXT{extra})")
    con.execute("CREATE TABLE shapes(fid INTEGER PRIMARY KEY, wkb BLOB)")
    con.execute("CREATE TABLE boxes(name TEXT NOT NULL, chunk INTEGER NOT NULL, "
                "data BLOB NOT NULL, PRIMARY KEY (name, chunk))")
    con.execute("CREATE TABLE spans(chunk INTEGER PRIMARY KEY, starts BLOB NOT NULL, "
                "props BLOB NOT NULL)")


def _features(source: Path, top_type: str) -> Iterator[dict[str, Any]]:
    """The features of a GeoJSON document, one at a time."""
    with source.open("rb") as f:
        if top_type == "FeatureCollection":
            yield from ijson.items(f, "features.item", use_float=True)
        elif top_type == "Feature":
            yield from ijson.items(f, "", use_float=True)
        else:  # a bare geometry: one feature without properties
            for geom in ijson.items(f, "", use_float=True):
                yield {"type": "Feature", "geometry": geom, "properties": None}


def _batches(features: Iterable[Any]) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for feature in features:
        batch.append(feature if isinstance(feature, dict) else {})
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


Lengths = tuple["array[int]", "array[int]"]
"""Per feature: its body's length, and its geometry's (with the key) at the body's start."""


def _load(
    con: sqlite3.Connection, features: Iterable[dict[str, Any]], columns: list[Column],
    bodies: BinaryIO,
) -> tuple[int, int, Lengths]:
    """Rows into SQLite; each feature's geometry and properties into ``bodies``, in order.

    Their ids are joined to them once the ids are settled (:func:`_write_features`).
    """
    marks = ", ".join("?" * (3 + len(columns)))
    insert_feature = f"INSERT INTO features VALUES ({marks})"
    count = 0
    lengths: Lengths = (array("Q"), array("Q"))
    for chunk, batch in enumerate(_batches(features)):
        rows, boxes = _rows(count + 1, batch, columns)
        for row in rows:
            geom, props = row[3], row[4]
            body = b"".join((GEOMETRY_KEY, geom, PROPERTIES_KEY, props, b"}"))
            bodies.write(body)
            lengths[0].append(len(body))
            lengths[1].append(len(GEOMETRY_KEY) + len(geom))
        con.executemany(insert_feature, [row[:3] + row[5:] for row in rows])
        con.executemany("INSERT INTO shapes VALUES (?, ?)",
                        [(fid, wkb) for fid, *_, wkb in boxes])
        con.executemany("INSERT INTO boxes VALUES (?, ?, ?)", boxscan.chunk_rows(
            chunk, [(fid, box, sides, flags) for fid, box, sides, flags, _ in boxes]))
        count += len(batch)
    with_geometry = con.execute("SELECT count(*) FROM shapes").fetchone()[0]
    return count, with_geometry, lengths


def _write_features(con: sqlite3.Connection, bodies: Path, lengths: Lengths,
                    target: Path) -> int:
    """The features file: each settled id joined to its body; spans recorded; its size."""
    body_lengths, geometry_lengths = lengths
    position = 0
    cursor = con.execute("SELECT idjson FROM features ORDER BY fid")
    with open(bodies, "rb") as source, open(target, "wb") as out:
        first = 0
        for chunk, rows in enumerate(iter(lambda: cursor.fetchmany(BATCH), [])):
            ends = first + len(rows)
            wanted = sum(body_lengths[first:ends])
            data = memoryview(source.read(wanted))
            if len(data) != wanted:  # the scratch file lost bytes: the disk, not the data
                raise OSError(f"{bodies.name} ended {wanted - len(data)} bytes early")
            starts: list[int] = []
            props: list[int] = []
            at = 0
            for (idjson,), length, geometry_length in zip(
                    rows, body_lengths[first:ends], geometry_lengths[first:ends], strict=True):
                head = HEAD + idjson.encode()
                out.write(head)
                out.write(data[at:at + length])
                out.write(SEPARATOR)
                starts.append(position)
                props.append(len(head) + geometry_length)
                position += len(head) + length + len(SEPARATOR)
                at += length
            con.execute("INSERT INTO spans VALUES (?, ?, ?)", (
                chunk, np.asarray(starts, dtype=STARTS).tobytes(),
                np.asarray(props, dtype=PROPS).tobytes()))
            first = ends
    return position


def _rows(
    first: int, batch: list[dict[str, Any]], columns: list[Column]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Feature rows and shape rows of one batch; GEOS reads the geometries in bulk."""
    geoms = [g if isinstance(g := f.get("geometry"), dict) else None for f in batch]
    texts = [orjson.dumps(g) for g in geoms]
    shapes = shapely.from_geojson([t for t, g in zip(texts, geoms, strict=True) if g],
                                  on_invalid="ignore")
    parsed = iter(shapes)
    rows, boxes = [], []
    for fid, (feature, geom, text) in enumerate(zip(batch, geoms, texts, strict=True), first):
        shape = next(parsed) if geom else None
        wkb, box = _shape_parts(shape, geom)
        props = p if isinstance(p := feature.get("properties"), dict) else None
        fkey, idjson = _id_of(feature.get("id"))
        values = [_scalar((props or {}).get(name)) for name, _, _ in columns]
        rows.append((fid, fkey, idjson, text, orjson.dumps(props), *values))
        if box is not None:
            boxes.append((fid, box, *_scan_parts(shape if wkb is not None else None), wkb))
    return rows, boxes


def _shape_parts(
    shape: shapely.Geometry | None, geom: dict[str, Any] | None
) -> tuple[bytes | None, geometry.Box | None]:
    """WKB and bounds of a geometry; GeoJSON that GEOS rejects keeps bounds only.

    An unknown geometry type (GEOS rejects it) has no bounds either: no R*Tree
    row, so no bbox query matches it.
    """
    if shape is None or shape.is_empty:
        return None, geometry.bounds(geom)
    return shapely.to_wkb(shape), tuple(shapely.bounds(shape).tolist())


def _scan_parts(shape: shapely.Geometry | None) -> tuple[boxscan.Sides, int]:
    """The side vertices and flags the bounds scan keeps of a geometry GEOS read (or not)."""
    if shape is None:
        return boxscan.UNKNOWN_SIDES, 0
    flags = boxscan.HAS_WKB | (boxscan.CONNECTED if _connected(shape) else 0)
    if not shapely.is_valid(shape):  # a hole outside its shell, a line of one position:
        return boxscan.UNKNOWN_SIDES, flags  # GEOS may not count every vertex as a point of it
    return boxscan.sides(shapely.get_coordinates(shape)), flags


def _connected(shape: shapely.Geometry) -> bool:
    """One connected piece that reaches every side of its bounds (a line, most polygons).

    Its projection on either axis is then the whole span of its bounds, which
    the bbox query uses to settle edge features without GEOS. A polygon counts
    only if its shell alone has the polygon's bounds (a hole outside the shell
    of an invalid polygon would not be reached by the shell).
    """
    if shapely.get_num_geometries(shape) == 1 and shapely.get_type_id(shape) in _MULTI:
        shape = shapely.get_geometry(shape, 0)
    kind = shapely.get_type_id(shape)
    if kind in (_LINESTRING, _LINEARRING):
        return not shape.is_empty
    if kind == _POLYGON:
        shell = shapely.get_exterior_ring(shape)
        return bool(not shell.is_empty and shapely.bounds(shell).tolist()
                    == shapely.bounds(shape).tolist())
    return False


_LINESTRING, _LINEARRING, _POLYGON = 1, 2, 3
_MULTI = (5, 6)  # MultiLineString, MultiPolygon


def _id_of(value: Any) -> tuple[str | None, str | None]:
    if isinstance(value, str):
        return value, orjson.dumps(value).decode()
    if isinstance(value, int | float) and not isinstance(value, bool):
        text = orjson.dumps(value).decode()
        return text, text
    return None, None


def _scalar(value: Any) -> Any:
    return value if isinstance(value, str | int | float) else None


def _settle_ids(con: sqlite3.Connection) -> str:
    """Keep the features' own ids when each has a distinct one; else number them 1..N."""
    missing, duplicates = con.execute(
        "SELECT count(*) - count(fkey), count(fkey) - count(DISTINCT fkey) FROM features"
    ).fetchone()
    source = "id"
    if missing or duplicates:
        con.execute("UPDATE features SET fkey = CAST(fid AS TEXT), idjson = CAST(fid AS TEXT)")
        source = "position"
    con.execute("CREATE UNIQUE INDEX features_fkey ON features(fkey)")
    return source


def _create_indexes(con: sqlite3.Connection, columns: list[Column]) -> None:
    for _, col, _ in columns:
        con.execute(f"CREATE INDEX features_{col} ON features({col})")


# -- query ----------------------------------------------------------------------
def _connect(path: Path) -> sqlite3.Connection:
    uri = path.resolve().as_uri() + "?mode=ro&immutable=1"
    con = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
    con.execute("PRAGMA mmap_size=0")  # reads, never a map: no SIGBUS from a damaged file
    con.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
    return con


class FeaturesDamaged(sqlite3.DatabaseError):
    """The features file is not what its index recorded (shorter, or its spans are)."""


class FeaturesFile:
    """Reads of ``index.features``: one feature, or runs of neighbours as one slice.

    The file stays open as long as this object lives (requests still
    streaming from it hold it); a file replaced meanwhile is not seen.
    """

    def __init__(self, path: Path, starts: np.ndarray[Any, Any], props: np.ndarray[Any, Any],
                 recorded: int) -> None:
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise FeaturesDamaged(f"{path.name} is missing") from None
        weakref.finalize(self, os.close, self._fd)
        self.name = path.name
        self.size = recorded
        self.bounds = np.append(starts, np.int64(recorded))  # feature i: bounds[i]..[i+1] - 2
        self.props = props
        if len(starts) and (starts[0] != 0 or np.any(np.diff(self.bounds) <= len(SEPARATOR))):
            raise FeaturesDamaged(f"the spans of {self.name} are not in order")
        self.check()

    @classmethod
    def of(cls, con: sqlite3.Connection, path: Path, info: dict[str, Any]) -> FeaturesFile:
        """The features file of the index ``con`` reads (its spans loaded from it)."""
        starts, props = [], []
        for start, prop in con.execute("SELECT starts, props FROM spans ORDER BY chunk"):
            starts.append(np.frombuffer(start, dtype=STARTS))
            props.append(np.frombuffer(prop, dtype=PROPS))
        all_starts = np.concatenate(starts) if starts else np.empty(0, dtype=np.int64)
        all_props = np.concatenate(props) if props else np.empty(0, dtype=np.uint32)
        if not len(all_starts) == len(all_props) == info["features"]:
            raise FeaturesDamaged(f"{len(all_starts)} spans for {info['features']} features")
        return cls(path, all_starts.astype(np.int64), all_props,
                   int(info["features_bytes"]))

    def check(self) -> None:
        """Raise :class:`FeaturesDamaged` unless the file still has its recorded size."""
        actual = os.fstat(self._fd).st_size
        if actual != self.size:
            raise FeaturesDamaged(f"{self.name} has {actual} bytes, {self.size} were recorded")

    def _read(self, first: int, stop: int) -> bytes:
        """Features first..stop-1 (0-based), separators between them included."""
        start, end = int(self.bounds[first]), int(self.bounds[stop]) - len(SEPARATOR)
        data = os.pread(self._fd, end - start, start)
        if len(data) != end - start:
            raise FeaturesDamaged(f"{self.name} ends before byte {end}")
        return data

    def one(self, fid: int) -> bytes:
        return self._read(fid - 1, fid)

    def each(self, fids: Iterable[int]) -> Iterator[bytes]:
        for fid in fids:
            yield self.one(int(fid))

    def runs(self, fids: np.ndarray[Any, Any]) -> Iterator[bytes]:
        """The features ``fids`` (in that order) as slices of neighbours, at most
        :data:`RUN_BYTES` each (a single feature may be longer)."""
        positions = np.asarray(fids, dtype=np.int64) - 1
        breaks = np.flatnonzero(np.diff(positions) != 1) + 1
        for run in np.split(positions, breaks) if len(positions) else ():
            first, last = int(run[0]), int(run[-1])
            while first <= last:
                fit = int(np.searchsorted(self.bounds, self.bounds[first] + RUN_BYTES,
                                          side="right")) - 1
                stop = min(max(fit, first + 1), last + 1)
                yield self._read(first, stop)
                first = stop

    def properties_at(self, fid: int) -> int:
        """Where the properties key starts in the bytes of feature ``fid``."""
        return int(self.props[fid - 1])

    def parts(self, fid: int) -> tuple[bytes, bytes]:
        """The geometry JSON and the properties JSON of feature ``fid``."""
        doc = self.one(fid)
        split = self.properties_at(fid)
        return doc[doc.index(GEOMETRY_KEY, len(HEAD)) + len(GEOMETRY_KEY):split], \
            doc[split + len(PROPERTIES_KEY):-1]


def with_geometry(index: Path) -> Iterator[tuple[int, str, bytes, bytes]]:
    """(fid, OGC id, geometry JSON, properties JSON) of every feature with a box, in file
    order: what the vector tiles are made of. sqlite3.DatabaseError when damaged."""
    con = _connect(index)
    try:
        info = {key: orjson.loads(value)
                for key, value in con.execute("SELECT key, value FROM meta")}
        features = FeaturesFile.of(con, index.with_name(FEATURES_FILE), info)
        cursor = con.execute("SELECT f.fid, f.fkey FROM features f "
                             "WHERE f.fid IN (SELECT fid FROM shapes) ORDER BY f.fid")
        while rows := cursor.fetchmany(BATCH):
            for fid, fkey in rows:
                yield (fid, fkey, *features.parts(fid))
    finally:
        con.close()


class SQLiteIndex(FeatureBackend):
    """Read side of one index (its SQLite file and features file); safe to share between
    threads.

    Any error while reading means the index is damaged (it is immutable and
    was checked when built and opened): ``on_damage`` is told why, once, and
    the call raises :class:`IndexDamaged` (503 with Retry-After).
    """

    def __init__(self, path: Path, on_damage: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.on_damage = on_damage
        self.damaged = False
        self._pool: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        with self._connection() as con:
            rows = con.execute("SELECT key, value FROM meta").fetchall()
            self._info = {key: orjson.loads(value) for key, value in rows}
            try:
                self._boxes = boxscan.BoxScan.from_rows(con.execute(
                    "SELECT name, data FROM boxes ORDER BY name, chunk"))
            except boxscan.Damaged as exc:
                raise self._damage(str(exc)) from None
            self._features = FeaturesFile.of(con, path.with_name(FEATURES_FILE), self._info)
        self._columns = {name: (col, kind) for name, col, kind in self._info["columns"]}

    # -- connections --------------------------------------------------------
    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            con = self._pool.pop() if self._pool else None
        try:
            if con is None:
                con = _connect(self.path)
            yield con
        except sqlite3.DatabaseError as exc:  # FeaturesDamaged too
            raise self._damage(str(exc)) from None
        finally:
            if con is not None:
                with self._lock:
                    keep = len(self._pool) < POOL_SIZE and not self.damaged
                    if keep:
                        self._pool.append(con)
                if not keep:
                    con.close()

    def _damage(self, reason: str) -> IndexDamaged:
        with self._lock:
            first, self.damaged = not self.damaged, True
        if first:
            log.warning("index %s failed a read: %s", self.path, reason)
            if self.on_damage is not None:
                self.on_damage(reason)
        return IndexDamaged(f"the index of this collection is damaged ({reason}); it is "
                            "being built again")

    def _reading(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """``chunks`` from the features file, a failed read reported as damage."""
        try:
            yield from chunks
        except FeaturesDamaged as exc:
            raise self._damage(str(exc)) from None

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, []
        for con in pool:
            con.close()

    # -- FeatureBackend -----------------------------------------------------
    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def extent(self) -> list[float] | None:
        return self._info.get("extent")

    def queryables(self) -> list[Queryable]:
        return [Queryable(name, kind) for name, (_, kind) in self._columns.items()]

    @tracing.traced("index.feature", result=lambda found: {"found": found is not None})
    def feature(self, feature_id: str) -> bytes | None:
        with self._connection() as con:
            row = con.execute("SELECT fid FROM features WHERE fkey = ?",
                              (feature_id,)).fetchone()
            return None if row is None else self._features.one(row[0])

    @tracing.traced("index.query", lambda self, query: _about(query),
                    lambda page: {"matched": page.number_matched})
    def query(self, query: FeatureQuery) -> FeaturePage:
        if query.boxes and not query.filters and not query.sortby:  # count, page: the scan's
            fids = self.matching(query.boxes)
            return self._page(len(fids), fids[query.offset:query.offset + query.limit], query)
        where, params = self._where(query)
        if not where:
            count = self._info["features"]  # the whole collection: known since the build
            if not query.sortby:  # in file order: one slice of the features file
                last = min(count, query.offset + query.limit)
                return self._page(count, np.arange(query.offset + 1, last + 1), query)
        else:
            with self._connection() as con:
                count = con.execute(f"SELECT count(*) FROM features f{where}",
                                    params).fetchone()[0]
        if count <= query.offset:
            return FeaturePage(count, iter(()))
        sql = (f"SELECT f.fid FROM features f{where} "
               f"ORDER BY {self._order(query)} LIMIT ? OFFSET ?")
        with self._connection() as con:
            rows = con.execute(sql, [*params, query.limit, query.offset]).fetchall()
        return self._page(count, np.asarray([fid for fid, in rows], dtype=np.int64), query)

    def _page(self, count: int, fids: np.ndarray[Any, Any], query: FeatureQuery) -> FeaturePage:
        """The page of ``fids`` (in their order), read from the features file as it is
        sent; its size is checked first, so that a damaged file answers 503 before a
        page starts."""
        if not len(fids):
            return FeaturePage(count, iter(()))
        try:
            self._features.check()
        except FeaturesDamaged as exc:
            raise self._damage(str(exc)) from None
        selected = query.properties
        if selected is not None:
            return FeaturePage(count, self._reading(self._selected(fids, selected)))
        return FeaturePage(count, self._reading(self._features.each(fids)),
                           self._reading(self._features.runs(fids)))

    def _selected(self, fids: np.ndarray[Any, Any], selected: tuple[str, ...]) -> Iterator[bytes]:
        """Features with only the ``selected`` properties (in the order asked)."""
        for fid, doc in zip(fids, self._features.each(fids), strict=True):
            at = self._features.properties_at(int(fid)) + len(PROPERTIES_KEY)
            props = doc[at:-1]
            if props == b"null":
                yield doc
                continue
            values = orjson.loads(props)
            kept = orjson.dumps({k: values[k] for k in selected if k in values})
            yield b"".join((doc[:at], kept, b"}"))

    def _where(self, query: FeatureQuery) -> tuple[str, list[Any]]:
        """WHERE and its parameters (with boxes, over the fids that match them)."""
        clauses = [f"f.{self._columns[name][0]} = ?" for name, _ in query.filters]
        params: list[Any] = [value for _, value in query.filters]
        if query.boxes:
            clauses.insert(0, f"f.fid IN {_FIDS}")
            params.insert(0, _fid_list(self.matching(query.boxes)))
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def matching(self, boxes: Iterable[geometry.Box]) -> np.ndarray[Any, Any]:
        """The fids, ascending, of the features whose geometry touches any of ``boxes``."""
        found = []
        boxes = tuple(boxes)
        with self._connection() as con:
            for box in boxes:
                candidates = self._boxes.candidates(box)
                found += [candidates.matched, _geos_hits(con, candidates.to_test, box),
                          self._python_hits(candidates.to_parse, box)]
        if not found:
            return np.empty(0, dtype=np.int64)
        fids = np.concatenate(found)  # one box finds each feature once; boxes may overlap
        return np.sort(fids) if len(boxes) == 1 else np.unique(fids)

    def _python_hits(self, fids: np.ndarray[Any, Any], box: geometry.Box) -> np.ndarray[Any, Any]:
        """The fids among ``fids`` (GeoJSON that GEOS could not read) whose geometry touches
        the box, by the pure-Python test."""
        hits = [fid for fid in fids
                if geometry.intersects(orjson.loads(self._features.parts(int(fid))[0]), box)]
        return np.asarray(hits, dtype=np.int64)

    def _order(self, query: FeatureQuery) -> str:
        terms = [f"f.{self._columns[s.name][0]} {'DESC' if s.descending else 'ASC'}"
                 for s in query.sortby]
        return ", ".join([*terms, "f.fid"])


_FIDS = "(SELECT value FROM json_each(?))"


def _fid_list(fids: np.ndarray[Any, Any]) -> str:
    """fids as the JSON array that ``_FIDS`` reads."""
    return orjson.dumps(fids, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _about(query: FeatureQuery) -> dict[str, int]:
    """A query's span attributes: its shape, not its values (low cardinality)."""
    return {"boxes": len(query.boxes), "filters": len(query.filters),
            "sorted": len(query.sortby), "limit": query.limit, "offset": query.offset}


def box_shape(box: geometry.Box) -> shapely.Geometry:
    """A query box for GEOS; a box of zero width or height is a line or a point."""
    minx, miny, maxx, maxy = box
    if minx == maxx and miny == maxy:
        return shapely.Point(minx, miny)
    if minx == maxx or miny == maxy:
        return shapely.LineString([(minx, miny), (maxx, maxy)])
    return shapely.box(*box)


def _geos_hits(con: sqlite3.Connection, fids: np.ndarray[Any, Any],
               box: geometry.Box) -> np.ndarray[Any, Any]:
    """The fids among ``fids`` (features with WKB) whose geometry touches the box."""
    if not len(fids):
        return fids
    rows = con.execute(f"SELECT fid, wkb FROM shapes WHERE fid IN {_FIDS}",
                       (_fid_list(fids),)).fetchall()
    # Not prepared: as fast for a box (GEOS has a rectangle path), and a prepared box can
    # disagree with GEOS's plain test on an invalid geometry (a shell of zero area).
    hits = shapely.intersects(box_shape(box), shapely.from_wkb([wkb for _, wkb in rows]))
    return np.asarray([fid for (fid, _), hit in zip(rows, hits, strict=True) if hit],
                      dtype=np.int64)
