"""The embedded feature backend: one SQLite file with an R*Tree per dataset version.

Layout of ``<version>/index.sqlite``::

    features(fid INTEGER PRIMARY KEY,  -- position in the file, 1-based
             fkey TEXT UNIQUE,         -- the feature id as text (the URL form)
             idjson, geom, props,      -- compact JSON of id, geometry, properties
             p0, p1, ...)              -- one column per scalar property, indexed
    shapes(fid INTEGER PRIMARY KEY,    -- features with a box (a geometry RFC 7946 knows)
           wkb)                        -- the geometry as GEOS reads it (NULL: GEOS could not)
    boxes(name, chunk, data)           -- their exact bounds and flags as arrays (boxscan.py)
    meta(key, value)                   -- JSON: format, columns, extent, counts, timings

The build streams the GeoJSON file feature by feature (memory is bounded by
the largest feature, not the file), writes a hidden temporary file, checks
it (``PRAGMA quick_check``), records its size and digest (``index.sqlite.sum``)
and renames it into place, so a reader sees no index or a complete one.
Files are never modified afterwards and are opened ``immutable``. An index
of an older ``FORMAT`` is deleted and built again (:func:`outdated`).

Readers open it without a memory map: a file truncated under a map kills the
process that touches the lost pages (SIGBUS), whereas a plain read of a
damaged file is an error SQLite reports. Opening checks the recorded size
and runs the quick check once per process; an error while reading reports
the index damaged (:class:`IndexDamaged`), and its owner quarantines it and
has it built again.

A bbox query is answered from the bounds arrays in memory
(:class:`boxscan.BoxScan`): features whose exact bounds settle the question
match without SQLite; only the rest (features across a corner of the box,
multi-part ones) are read as WKB and tested by GEOS (Shapely) in one
vectorised call, so results are exact. The matching fids, in file order, give
the count and the page, which is then read by primary key. A geometry GEOS
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
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import ijson
import numpy as np
import orjson
import shapely

from .. import integrity, tracing
from ..errors import IndexDamaged
from . import boxscan, geometry
from .query import FeatureBackend, FeaturePage, FeatureQuery, Queryable

INDEX_FILE = "index.sqlite"
FAILED_FILE = "index.failed.json"
FORMAT = 3
"""Bumped whenever the layout changes; an older index is built again."""
BATCH = 2000
SCALAR_TYPES = {"string": "string", "integer": "integer", "number": "number",
                "boolean": "boolean"}
POOL_SIZE = 16
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
            return
        if problem is not None and state_dir is not None:
            integrity.quarantine(state_dir, target, problem)
        remove(directory)
    for leftover in directory.glob(f".{INDEX_FILE}.*.tmp"):  # a build killed midway
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


def open_problem(directory: Path) -> str | None:
    """Why the index of ``directory`` cannot be opened (size, quick check), or None."""
    path = directory / INDEX_FILE
    recorded = integrity.read_sum(path)
    problem = integrity.size_problem(path, recorded.bytes if recorded else None)
    return problem if problem is not None else _quick_check(path)


def outdated(directory: Path) -> bool:
    """Whether a sound index of ``directory`` has another layout than this code reads."""
    try:
        con = _connect(directory / INDEX_FILE)
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return False  # damaged, not outdated: open_problem says so
    return row is None or orjson.loads(row[0]) != FORMAT


def remove(directory: Path) -> None:
    """Delete the index of ``directory`` and its recorded sum (an outdated one)."""
    path = directory / INDEX_FILE
    path.unlink(missing_ok=True)
    integrity.sum_path(path).unlink(missing_ok=True)


def verify(directory: Path) -> str | None:
    """Like :func:`open_problem`, comparing the whole file with its digest; None if absent."""
    path = directory / INDEX_FILE
    if not path.exists():
        return None
    problem = integrity.digest_problem(path, integrity.read_sum(path))
    return problem if problem is not None else _quick_check(path)


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
    """Index the GeoJSON file ``source`` into ``target``; returns the index's info."""
    started = time.monotonic()
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        info = _build_into(tmp, source, meta, started)
        problem = _quick_check(tmp)
        if problem is not None:
            raise OSError(f"the index just written is damaged: {problem}")
        integrity.write_sum(target, integrity.file_sum(tmp))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return info


def _build_into(tmp: Path, source: Path, meta: dict[str, Any], started: float) -> dict[str, Any]:
    columns = _columns(meta.get("properties") or {})
    con = sqlite3.connect(tmp, isolation_level=None)
    try:
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "temp_store=MEMORY",
                       "cache_size=-65536"):
            con.execute(f"PRAGMA {pragma}")
        con.execute("BEGIN")
        _create_schema(con, columns)
        count, with_geometry = _load(con, _features(source, meta.get("type", "")), columns)
        id_source = _settle_ids(con)
        _create_indexes(con, columns)
        info = {"format": FORMAT, "features": count, "with_geometry": with_geometry,
                "extent": meta.get("bbox"), "id_source": id_source,
                "columns": [list(c) for c in columns], "built": time.time()}
        info["build_seconds"] = round(time.monotonic() - started, 3)
        con.executemany("INSERT INTO meta VALUES (?, ?)",
                        [(k, orjson.dumps(v).decode()) for k, v in info.items()])
        con.execute("COMMIT")
        con.execute("ANALYZE")
    finally:
        con.close()
    with open(tmp, "rb+") as handle:
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
    con.execute("CREATE TABLE features(fid INTEGER PRIMARY KEY, fkey TEXT, idjson TEXT, "
                f"geom BLOB NOT NULL, props BLOB NOT NULL{extra})")
    con.execute("CREATE TABLE shapes(fid INTEGER PRIMARY KEY, wkb BLOB)")
    con.execute("CREATE TABLE boxes(name TEXT NOT NULL, chunk INTEGER NOT NULL, "
                "data BLOB NOT NULL, PRIMARY KEY (name, chunk))")


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


def _load(
    con: sqlite3.Connection, features: Iterable[dict[str, Any]], columns: list[Column]
) -> tuple[int, int]:
    marks = ", ".join("?" * (5 + len(columns)))
    insert_feature = f"INSERT INTO features VALUES ({marks})"
    count = 0
    for chunk, batch in enumerate(_batches(features)):
        rows, boxes = _rows(count + 1, batch, columns)
        con.executemany(insert_feature, rows)
        con.executemany("INSERT INTO shapes VALUES (?, ?)",
                        [(fid, wkb) for fid, *_, wkb in boxes])
        con.executemany("INSERT INTO boxes VALUES (?, ?, ?)", boxscan.chunk_rows(
            chunk, [(fid, box, sides, flags) for fid, box, sides, flags, _ in boxes]))
        count += len(batch)
    with_geometry = con.execute("SELECT count(*) FROM shapes").fetchone()[0]
    return count, with_geometry


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


class SQLiteIndex(FeatureBackend):
    """Read side of one index file; safe to share between threads.

    Any SQLite error while reading means the file is damaged (it is immutable
    and was checked when built and opened): ``on_damage`` is told why, once,
    and the call raises :class:`IndexDamaged` (503 with Retry-After).
    """

    def __init__(self, path: Path, on_damage: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.on_damage = on_damage
        self.damaged = False
        self._pool: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        with self._connection() as con:
            rows = con.execute("SELECT key, value FROM meta").fetchall()
            try:
                self._boxes = boxscan.BoxScan.from_rows(con.execute(
                    "SELECT name, data FROM boxes ORDER BY name, chunk"))
            except boxscan.Damaged as exc:
                raise self._damage(str(exc)) from None
        self._info = {key: orjson.loads(value) for key, value in rows}
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
        except sqlite3.DatabaseError as exc:
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
            row = con.execute("SELECT idjson, geom, props FROM features WHERE fkey = ?",
                              (feature_id,)).fetchone()
        return None if row is None else _serialise(row, None)

    @tracing.traced("index.query", lambda self, query: _about(query),
                    lambda page: {"matched": page.number_matched})
    def query(self, query: FeatureQuery) -> FeaturePage:
        where, params, fids = self._where(query)
        if fids is not None and not query.filters and not query.sortby:
            return self._by_position(fids, query)  # a box alone: count and page from the scan
        if not where:
            count = self._info["features"]  # the whole collection: known since the build
        else:
            with self._connection() as con:
                count = con.execute(f"SELECT count(*) FROM features f{where}",
                                    params).fetchone()[0]
        if count <= query.offset:
            return FeaturePage(count, iter(()))
        sql = (f"SELECT f.idjson, f.geom, f.props FROM features f{where} "
               f"ORDER BY {self._order(query)} LIMIT ? OFFSET ?")
        page = self._stream(sql, [*params, query.limit, query.offset], query.properties)
        return FeaturePage(count, page)

    def _where(self, query: FeatureQuery) -> tuple[str, list[Any], np.ndarray[Any, Any] | None]:
        """WHERE and its parameters; with boxes, the matching fids found for them."""
        clauses = [f"f.{self._columns[name][0]} = ?" for name, _ in query.filters]
        params: list[Any] = [value for _, value in query.filters]
        fids = None
        if query.boxes:
            fids = self.matching(query.boxes)
            clauses.insert(0, f"f.fid IN {_FIDS}")
            params.insert(0, _fid_list(fids))
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params, fids

    def _by_position(self, fids: np.ndarray[Any, Any], query: FeatureQuery) -> FeaturePage:
        count = len(fids)
        if count <= query.offset:
            return FeaturePage(count, iter(()))
        page = fids[query.offset:query.offset + query.limit]
        sql = f"SELECT idjson, geom, props FROM features WHERE fid IN {_FIDS} ORDER BY fid"
        return FeaturePage(count, self._stream(sql, [_fid_list(page)], query.properties))

    def matching(self, boxes: Iterable[geometry.Box]) -> np.ndarray[Any, Any]:
        """The fids, ascending, of the features whose geometry touches any of ``boxes``."""
        found = []
        boxes = tuple(boxes)
        with self._connection() as con:
            for box in boxes:
                candidates = self._boxes.candidates(box)
                found += [candidates.matched, _geos_hits(con, candidates.to_test, box),
                          _python_hits(con, candidates.to_parse, box)]
        if not found:
            return np.empty(0, dtype=np.int64)
        fids = np.concatenate(found)  # one box finds each feature once; boxes may overlap
        return np.sort(fids) if len(boxes) == 1 else np.unique(fids)

    def _stream(
        self, sql: str, params: list[Any], selected: tuple[str, ...] | None
    ) -> Iterator[bytes]:
        with self._connection() as con:
            cursor = con.execute(sql, params)
            try:
                while rows := cursor.fetchmany(256):
                    for row in rows:
                        yield _serialise(row, selected)
            finally:
                cursor.close()

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


def _python_hits(con: sqlite3.Connection, fids: np.ndarray[Any, Any],
                 box: geometry.Box) -> np.ndarray[Any, Any]:
    """The same for GeoJSON that GEOS could not read: the pure-Python test."""
    if not len(fids):
        return fids
    rows = con.execute(f"SELECT fid, geom FROM features WHERE fid IN {_FIDS}",
                       (_fid_list(fids),))
    return np.asarray([fid for fid, geom in rows if geometry.intersects(orjson.loads(geom), box)],
                      dtype=np.int64)


def _serialise(row: tuple[str, bytes, bytes], selected: tuple[str, ...] | None) -> bytes:
    idjson, geom, props = row
    if selected is not None and props != b"null":
        values = orjson.loads(props)
        props = orjson.dumps({k: values[k] for k in selected if k in values})
    return b"".join((b'{"type":"Feature","id":', idjson.encode(), b',"geometry":', geom,
                     b',"properties":', props, b"}"))
