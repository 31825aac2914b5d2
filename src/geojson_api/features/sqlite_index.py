"""The embedded feature backend: one SQLite file with an R*Tree per dataset version.

Layout of ``<version>/index.sqlite``::

    features(fid INTEGER PRIMARY KEY,  -- position in the file, 1-based
             fkey TEXT UNIQUE,         -- the feature id as text (the URL form)
             idjson, geom, props,      -- compact JSON of id, geometry, properties
             p0, p1, ...)              -- one column per scalar property, indexed
    shapes(fid INTEGER PRIMARY KEY,    -- features with a geometry
           minx, miny, maxx, maxy,     -- its exact bounds (the R*Tree's are float32)
           connected,                  -- 1: one connected piece spanning its bounds
           wkb)                        -- the geometry as GEOS reads it
    bounds  R*Tree(fid, minx, maxx, miny, maxy)  -- features with a geometry
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

Queries select bbox candidates from the R*Tree; a candidate whose box lies
wholly inside the query box matches outright. Of the others (the features
across its edge), SQLite settles most on their exact bounds: a connected
geometry (a line, or a polygon whose shell spans its bounds) whose bounds lie
inside the box's span on one axis and overlap it on the other touches the box,
since its projection on the second axis is a whole interval. Only the rest
are read as WKB and tested by GEOS (Shapely) in one vectorised call, so
results are exact. A geometry GEOS could not read has no WKB; its box comes
from its GeoJSON positions and its test from the pure-Python
``geometry.intersects``. A geometry type RFC 7946 does not define has no box:
it is listed without a bbox and never matched by one.
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
import orjson
import shapely

from .. import integrity, tracing
from ..errors import IndexDamaged
from . import geometry
from .query import FeatureBackend, FeaturePage, FeatureQuery, Queryable

INDEX_FILE = "index.sqlite"
FAILED_FILE = "index.failed.json"
FORMAT = 2
"""Bumped whenever the layout changes; an older index is built again."""
BATCH = 2000
SCALAR_TYPES = {"string": "string", "integer": "integer", "number": "number",
                "boolean": "boolean"}
POOL_SIZE = 16

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
    con.execute("CREATE TABLE shapes(fid INTEGER PRIMARY KEY, minx REAL, miny REAL, "
                "maxx REAL, maxy REAL, connected INTEGER NOT NULL, wkb BLOB)")
    con.execute("CREATE VIRTUAL TABLE bounds USING rtree(fid, minx, maxx, miny, maxy)")


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
    for batch in _batches(features):
        rows, boxes = _rows(count + 1, batch, columns)
        con.executemany(insert_feature, rows)
        con.executemany("INSERT INTO shapes VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [(fid, *box, connected, wkb) for fid, box, connected, wkb in boxes])
        con.executemany("INSERT INTO bounds VALUES (?, ?, ?, ?, ?)",
                        [(fid, box[0], box[2], box[1], box[3]) for fid, box, _, _ in boxes])
        count += len(batch)
    with_geometry = con.execute("SELECT count(*) FROM bounds").fetchone()[0]
    return count, with_geometry


def _rows(
    first: int, batch: list[dict[str, Any]], columns: list[Column]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Feature rows and R*Tree rows of one batch; GEOS reads the geometries in bulk."""
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
            boxes.append((fid, box, int(wkb is not None and _connected(shape)), wkb))
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
        with self._connection() as con:
            source, where, params, count = self._where(con, query)
            if count is None and not query.filters and not query.boxes:
                count = self._info["features"]  # the whole collection: known since the build
            if count is None:
                count = con.execute(f"SELECT count(*) FROM {source}{where}",
                                    params).fetchone()[0]
        if count <= query.offset:
            return FeaturePage(count, iter(()))
        if query.boxes:  # fetch through the R*Tree, in its (stable) order unless sorted
            source = "bounds b CROSS JOIN features f ON f.fid = b.fid"
        order = f" ORDER BY {self._order(query)}" if query.sortby or not query.boxes else ""
        sql = f"SELECT f.idjson, f.geom, f.props FROM {source}{where}{order} LIMIT ? OFFSET ?"
        page = self._stream(sql, [*params, query.limit, query.offset], query.properties)
        return FeaturePage(count, page)

    def _where(
        self, con: sqlite3.Connection, query: FeatureQuery
    ) -> tuple[str, str, list[Any], int | None]:
        """FROM and WHERE of a query, with the exact test of edge features done already.

        For each box, the R*Tree candidates wholly inside it match outright; the
        others (features across its edge) are checked by GEOS in bulk, and the
        ids of those that touch it are passed back to SQLite as a JSON list.
        The match count comes along when it is cheaper to know it here.
        """
        clauses = [f"f.{self._columns[name][0]} = ?" for name, _ in query.filters]
        params: list[Any] = [value for _, value in query.filters]
        if not query.boxes:
            where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
            return "features f", where, params, None
        source = "bounds b CROSS JOIN features f ON f.fid = b.fid" if query.filters else "bounds b"
        touching = self._touching(con, query, clauses, params)
        count = None
        if len(query.boxes) == 1:  # inside the box, plus the edge features that touch it
            extra = "".join(f" AND {c}" for c in clauses)
            inside = con.execute(f"SELECT count(*) FROM {source} WHERE {_OVERLAP} AND {_INSIDE}"
                                 f"{extra}", [*_box_params(query.boxes[0]), *params])
            count = inside.fetchone()[0] + len(touching)
        ids = orjson.dumps(sorted(touching)).decode()
        terms = [f"({_OVERLAP} AND ({_INSIDE} OR b.fid IN (SELECT value FROM json_each(?))))"
                 for _ in query.boxes]
        box_params = [v for box in query.boxes for v in (*_box_params(box), ids)]
        clauses.insert(0, "(" + " OR ".join(terms) + ")")
        return source, " WHERE " + " AND ".join(clauses), box_params + params, count

    def _touching(
        self, con: sqlite3.Connection, query: FeatureQuery, clauses: list[str], params: list[Any]
    ) -> set[int]:
        """fids of the features across a box's edge whose geometry touches that box."""
        join = " CROSS JOIN features f ON f.fid = b.fid" if clauses else ""
        extra = "".join(f" AND {c}" for c in clauses)
        found: set[int] = set()
        for box in query.boxes:
            sql = (f"SELECT b.fid, {_SETTLED}, CASE WHEN NOT {_SETTLED} THEN s.wkb END "
                   f"FROM bounds b CROSS JOIN shapes s ON s.fid = b.fid{join}"
                   f" WHERE {_OVERLAP} AND NOT {_INSIDE} AND NOT {_APART}{extra}")
            rows = con.execute(sql, [*box, *_overlap_params(box), *_inside_params(box),
                                     *params])
            unsettled = []
            for fid, settled, wkb in rows:
                if settled:
                    found.add(fid)
                else:
                    unsettled.append((fid, wkb))
            found.update(_geos_hits(con, unsettled, box))
        return found

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


_OVERLAP = "b.minx <= ? AND b.maxx >= ? AND b.miny <= ? AND b.maxy >= ?"
# On the exact bounds in ``shapes``, with the box as ?1-?4 (min x, min y, max x, max y):
# an edge candidate is settled (touches the box) when its bounds lie inside the box's span
# on one axis and it is connected, or on both axes; apart when its bounds miss the box
# (the R*Tree's float32 bounds are rounded outwards, so they may overlap it).
_SPAN_X = "(s.minx >= ?1 AND s.maxx <= ?3)"
_SPAN_Y = "(s.miny >= ?2 AND s.maxy <= ?4)"
_SETTLED = (f"(({_SPAN_X} OR {_SPAN_Y}) AND (s.connected OR ({_SPAN_X} AND {_SPAN_Y})))")
_APART = "(s.minx > ?3 OR s.maxx < ?1 OR s.miny > ?4 OR s.maxy < ?2)"
_INSIDE = "(b.minx >= ? AND b.maxx <= ? AND b.miny >= ? AND b.maxy <= ?)"


def _about(query: FeatureQuery) -> dict[str, int]:
    """A query's span attributes: its shape, not its values (low cardinality)."""
    return {"boxes": len(query.boxes), "filters": len(query.filters),
            "sorted": len(query.sortby), "limit": query.limit, "offset": query.offset}


def _overlap_params(box: geometry.Box) -> list[float]:
    return [box[2], box[0], box[3], box[1]]


def _inside_params(box: geometry.Box) -> list[float]:
    return [box[0], box[2], box[1], box[3]]


def _box_params(box: geometry.Box) -> list[Any]:
    return [*_overlap_params(box), *_inside_params(box)]


def box_shape(box: geometry.Box) -> shapely.Geometry:
    """A query box for GEOS; a box of zero width or height is a line or a point."""
    minx, miny, maxx, maxy = box
    if minx == maxx and miny == maxy:
        return shapely.Point(minx, miny)
    if minx == maxx or miny == maxy:
        return shapely.LineString([(minx, miny), (maxx, maxy)])
    return shapely.box(*box)


def _geos_hits(
    con: sqlite3.Connection, rows: list[tuple[int, bytes | None]], box: geometry.Box
) -> list[int]:
    """The fids among ``rows`` (fid, WKB) whose geometry touches the box."""
    read = [(fid, wkb) for fid, wkb in rows if wkb is not None]
    area = box_shape(box)
    shapely.prepare(area)
    hits = shapely.intersects(area, shapely.from_wkb([w for _, w in read])) if read else []
    kept = [fid for (fid, _), hit in zip(read, hits, strict=True) if hit]
    for fid, wkb in rows:  # GeoJSON that GEOS could not read: the pure-Python test
        if wkb is None:
            geom = con.execute("SELECT geom FROM features WHERE fid = ?", (fid,)).fetchone()[0]
            if geometry.intersects(orjson.loads(geom), box):
                kept.append(fid)
    return kept


def _serialise(row: tuple[str, bytes, bytes], selected: tuple[str, ...] | None) -> bytes:
    idjson, geom, props = row
    if selected is not None and props != b"null":
        values = orjson.loads(props)
        props = orjson.dumps({k: values[k] for k in selected if k in values})
    return b"".join((b'{"type":"Feature","id":', idjson.encode(), b',"geometry":', geom,
                     b',"properties":', props, b"}"))
