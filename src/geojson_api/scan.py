"""Streaming GeoJSON validation and metadata.

One pass over a file with ijson's C parser, feature by feature: memory is
bounded by the largest single feature (plus one batch of polygon
coordinates), never by the file. The result carries what the catalog
publishes about a version (feature count, bbox, geometry types, property
names and types) and what ``geojson-api check`` reports.

Fatal problems (not JSON, not GeoJSON at the top level) raise
:class:`~geojson_api.errors.InvalidGeoJSON` with a one-line description; a
JSON syntax error names the byte offset where the parser stopped. Problems
inside single features do not stop publishing (the file's bytes are still
what its owner published); each is counted by kind, and the first
:data:`MAX_PROBLEMS` of each kind are kept with the feature's index
(0-based, in file order) and the reason:

``malformed``
    not a Feature, a bad ``id`` or ``properties``, coordinates that are not
    positions, an unclosed ring, too few positions.
``invalid-geometry``
    GEOS (Shapely's ``is_valid_reason``) refuses the geometry: a bow-tie
    polygon's self-intersection, a line of one repeated point.
``out-of-range``
    a position outside WGS 84 longitude -180..180 / latitude -90..90
    (RFC 7946); projected coordinates are the usual cause.
``legacy-crs``
    a ``crs`` member (GeoJSON 2008), at the top level or in a feature.
``unknown-geometry-type``
    a geometry ``type`` RFC 7946 does not define (``Circle``); bbox queries
    never match it.

Speed: positions are checked with C-level passes (``map``, ``min``, ``max``)
instead of a Python loop per number, and only polygons are handed to GEOS,
in one vectorised validity call per batch of features; lines reach GEOS only
when all their positions are equal.
"""

from __future__ import annotations

import ast
import contextlib
import io
import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import ijson
import numpy as np
import shapely

from .errors import InvalidGeoJSON

GEOMETRY_TYPES = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
     "GeometryCollection"}
)
MAX_PROBLEMS = 20
"""Examples kept per kind of problem; the counts are always complete."""
BATCH = 2000
"""Features per vectorised GEOS validity check."""

MALFORMED = "malformed"
INVALID_GEOMETRY = "invalid-geometry"
OUT_OF_RANGE = "out-of-range"
LEGACY_CRS = "legacy-crs"
UNKNOWN_TYPE = "unknown-geometry-type"

Progress = Callable[[int], None]
Box = tuple[float, float, float, float]
"""(min x, min y, max x, max y)."""
Where = tuple[int | None, str]
"""Where a problem is: (feature index, 0-based) or (None, "top level"/"geometry")."""


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 feature``, ``2 features``."""
    return f"{count} {word if count == 1 else words or word + 's'}"


@dataclass(frozen=True)
class Problem:
    """One problem inside a document that does not stop it being served."""

    kind: str
    reason: str
    feature: int | None = None
    where: str = ""

    def __str__(self) -> str:
        place = self.where if self.feature is None else f"feature {self.feature}"
        return f"{place}: {self.reason}"


@dataclass
class ScanResult:
    """What one streaming pass learned about a GeoJSON document."""

    top_type: str = ""
    feature_count: int = 0
    bbox: list[float] | None = None
    geometry_types: set[str] = field(default_factory=set)
    properties: dict[str, str] = field(default_factory=dict)
    examples: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    problem_counts: dict[str, int] = field(default_factory=dict)
    problem_features: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    @property
    def problems(self) -> list[str]:
        """The kept examples as one-line texts, top-level ones first, then by feature."""
        ordered = sorted(self.examples, key=lambda p: -1 if p.feature is None else p.feature)
        return [str(p) for p in ordered]

    def add(self, problem: Problem) -> None:
        self.problem_count += 1
        seen = self.problem_counts.get(problem.kind, 0) + 1
        self.problem_counts[problem.kind] = seen
        if seen <= MAX_PROBLEMS:
            self.examples.append(problem)

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.top_type,
            "features": self.feature_count,
            "bbox": self.bbox,
            "geometry_types": sorted(self.geometry_types),
            "properties": dict(sorted(self.properties.items())),
            "problems": self.problems,
            "problem_count": self.problem_count,
            "problem_counts": dict(sorted(self.problem_counts.items())),
            "problem_features": self.problem_features,
        }


class _Bounds:
    """Running min/max over boxes."""

    def __init__(self) -> None:
        self.min_x = self.min_y = math.inf
        self.max_x = self.max_y = -math.inf

    def add(self, box: Box) -> None:
        self.min_x = min(self.min_x, box[0])
        self.min_y = min(self.min_y, box[1])
        self.max_x = max(self.max_x, box[2])
        self.max_y = max(self.max_y, box[3])

    def as_list(self) -> list[float] | None:
        if self.min_x == math.inf:
            return None
        return [self.min_x, self.min_y, self.max_x, self.max_y]


class _CountingReader(io.RawIOBase):
    """A file wrapper that counts what was read, where the last chunk began, and "crs" keys.

    ijson parses each chunk as soon as it is read, so a syntax error lies in
    the last chunk (or at the end of the file).
    """

    CRS = b'"crs"'

    def __init__(self, raw: BinaryIO, progress: Progress | None = None) -> None:
        self._raw = raw
        self._progress = progress
        self._tail = b""
        self.count = 0
        self.chunk_start = 0
        self.crs_mentions = 0

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()
        super().close()

    def readinto(self, buffer: Any) -> int:
        n = int(self._raw.readinto(buffer))  # type: ignore[attr-defined]
        if n:
            chunk = buffer if isinstance(buffer, bytearray) else memoryview(buffer).tobytes()
            across = (self._tail + bytes(chunk[:min(n, 4)])).count(self.CRS)  # chunk boundary
            self.crs_mentions += chunk.count(self.CRS, 0, n) + across
            self._tail = (self._tail + bytes(chunk[max(0, n - 4):n]))[-4:]
            self.chunk_start = self.count
        self.count += n
        if self._progress is not None:
            self._progress(self.count)
        return n


class _Source:
    """The file, opened once per pass; remembers the reader of the current pass."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reader = _CountingReader(io.BytesIO())

    def open(self, progress: Progress | None = None) -> _CountingReader:
        self.reader = _CountingReader(self.path.open("rb"), progress)
        return self.reader

    def member(self, name: str) -> Any:
        """A top-level member found by a full pass (ijson skips everything else), or None."""
        with self.open() as reader:
            return next(ijson.items(reader, name, use_float=True), None)

    def head(self) -> dict[str, Any]:
        """The top-level "type" and "crs" members that come before "features"."""
        with self.path.open("rb") as f:
            if f.read(1024).lstrip()[:1] != b"{":
                raise InvalidGeoJSON("a GeoJSON document must be a JSON object")
        members: dict[str, Any] = {}
        builder, key = None, ""
        with self.open() as reader:
            for prefix, event, value in ijson.parse(reader, use_float=True):
                if prefix == "" and event in ("map_key", "end_map"):
                    if builder is not None:
                        members[key], builder = builder.value, None
                    if event == "end_map" or value == "features":
                        break
                    key = value
                    builder = ijson.ObjectBuilder() if key in ("type", "crs") else None
                elif builder is not None:
                    builder.event(event, value)
        return members


# -- positions ----------------------------------------------------------------

class _Part(NamedTuple):
    """One checked list of positions: its x and y values, its box, and x, y, x, y, ..."""

    xs: list[float]
    ys: list[float]
    box: Box
    values: list[float] | None  # the positions' values, when they are x, y, x, y, ...

    def xy(self) -> list[float]:
        if self.values is not None:
            return self.values
        return list(itertools.chain.from_iterable(zip(self.xs, self.ys, strict=True)))


_NUMBERS = {int, float}  # bool is not a number here, as in JSON
_POSITION_LENGTHS = {2, 3, 4}
_NOT_POSITIONS = "expected an array of positions [x, y]"


def _finite(*values: float) -> bool:
    try:
        return all(map(math.isfinite, values))
    except OverflowError:  # an integer literal too large for a float
        return False


def _check_part(coords: Any, minimum: int, closed: bool) -> tuple[str | None, _Part | None]:
    """Why a list of positions is malformed (or None), and the part when it has positions.

    Each test is one C-level pass over the list instead of a Python loop per
    number: this is most of the scan's time on a big file. The values of a
    list whose items are all arrays of numbers are numbers; an item that is an
    object or a string would give strings.
    """
    if type(coords) is not list:
        return _NOT_POSITIONS, None
    if not coords:
        return (f"needs at least {minimum} positions, has 0" if minimum else None), None
    try:
        values = list(itertools.chain.from_iterable(coords))
    except TypeError:  # an item that is a number or null
        return _NOT_POSITIONS, None
    lengths = set(map(len, coords))
    if not set(map(type, values)) <= _NUMBERS or not lengths <= _POSITION_LENGTHS:
        return _NOT_POSITIONS, None
    if lengths == {2}:
        xs, ys = values[0::2], values[1::2]
    elif len(lengths) == 1:  # all with a height (and a measure): every value must be finite
        stride = next(iter(lengths))
        xs, ys = values[0::stride], values[1::stride]
    else:  # a mixture
        xs, ys = [p[0] for p in coords], [p[1] for p in coords]
    box = (min(xs), min(ys), max(xs), max(ys))
    if not (_finite(*box) and (lengths == {2} or _finite(min(values), max(values)))):
        return _NOT_POSITIONS, None
    if len(coords) < minimum:
        return f"needs at least {minimum} positions, has {len(coords)}", None
    if closed and coords[0][:2] != coords[-1][:2]:
        return "linear ring is not closed (first and last positions differ)", None
    return None, _Part(xs, ys, box, values if lengths == {2} else None)


def _as_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError("expected an array")
    return value


def _groups(gtype: str, coords: Any) -> Iterator[list[Any]]:
    """The position lists of a geometry, grouped by polygon (a single group otherwise)."""
    if gtype == "Point":
        yield [[coords]]
    elif gtype in ("MultiPoint", "LineString"):
        yield [coords]
    elif gtype in ("MultiLineString", "Polygon"):
        yield _as_list(coords)
    else:  # MultiPolygon
        for polygon in _as_list(coords):
            yield _as_list(polygon)


_SHAPES = {"Point": (1, "point"), "MultiPoint": (0, "point"), "LineString": (2, "line"),
           "MultiLineString": (2, "line"), "Polygon": (4, "polygon"),
           "MultiPolygon": (4, "polygon")}
"""Per geometry type: the fewest positions in a part, and what its parts are."""


def _union(boxes: list[Box]) -> Box:
    min_xs, min_ys, max_xs, max_ys = zip(*boxes, strict=True)
    return (min(min_xs), min(min_ys), max(max_xs), max(max_ys))


class _Polygons:
    """The polygons of a batch of features, for one vectorised GEOS validity check."""

    def __init__(self) -> None:
        self.xy: list[float] = []
        self.offsets: tuple[list[int], list[int], list[int]] = ([0], [0], [0])
        self.owners: list[Where] = []

    def clear(self) -> None:
        self.xy, self.offsets, self.owners = [], ([0], [0], [0]), []

    def add(self, owner: Where, polygons: list[list[_Part]]) -> None:
        """One geometry (a multipolygon of these polygons; validity reasons are the same)."""
        rings, shells, geometries = self.offsets
        for polygon in filter(None, polygons):
            for ring in polygon:
                self.xy.extend(ring.xy())
                rings.append(len(self.xy) // 2)
            shells.append(len(rings) - 1)
        if len(shells) - 1 > geometries[-1]:
            geometries.append(len(shells) - 1)
            self.owners.append(owner)

    def invalid(self) -> list[tuple[Where, str]]:
        """(owner, GEOS's reason) of each invalid geometry; empties the batch."""
        if not self.owners:
            return []
        coords = np.fromiter(self.xy, dtype=np.float64, count=len(self.xy)).reshape(-1, 2)
        offsets = tuple(np.asarray(o, dtype=np.int64) for o in self.offsets)
        shapes = shapely.from_ragged_array(shapely.GeometryType.MULTIPOLYGON, coords, offsets)
        bad = np.flatnonzero(~shapely.is_valid(shapes))
        reasons = shapely.is_valid_reason(shapes[bad]) if len(bad) else []
        found = [(self.owners[i], str(reason)) for i, reason in zip(bad, reasons, strict=True)]
        self.clear()
        return found


def _line_problem(parts: list[_Part]) -> str | None:
    """GEOS's reason for a line whose positions are all equal (the only invalid lines)."""
    for part in parts:
        min_x, min_y, max_x, max_y = part.box
        if min_x == max_x and min_y == max_y:
            line = shapely.linestrings(np.reshape(part.xy(), (-1, 2)))
            return f"invalid geometry: {shapely.is_valid_reason(line)}"
    return None


# -- reasons --------------------------------------------------------------------

def _number(value: float) -> str:
    return f"{value:.10g}"


def _span(low: float, high: float) -> str:
    return _number(low) if low == high else f"{_number(low)}..{_number(high)}"


def _range_reason(box: Box) -> str:
    min_x, min_y, max_x, max_y = box
    swapped = abs(min_x) <= 90 and abs(max_x) <= 90 and min_y >= -180 and max_y <= 180
    hint = "; longitude and latitude may be swapped (GeoJSON is [lon, lat])" if swapped else ""
    return (f"coordinates outside longitude/latitude range (x {_span(min_x, max_x)}, "
            f"y {_span(min_y, max_y)}): GeoJSON positions are WGS 84 longitude "
            f"-180..180, latitude -90..90 (RFC 7946); projected coordinates (metres, e.g. UTM "
            f"or Web Mercator) are the usual cause{hint}")


def _crs_reason(crs: Any) -> str:
    properties = crs.get("properties") if isinstance(crs, dict) else None
    name = properties.get("name") if isinstance(properties, dict) else None
    named = f" ({name})" if isinstance(name, str) else ""
    if isinstance(name, str) and name.upper().endswith(("CRS84", ":4326")):
        return (f'legacy "crs" member{named}: RFC 7946 removed it; it names WGS 84 '
                "longitude/latitude, so it is harmless, but can be deleted")
    return (f'legacy "crs" member{named}: RFC 7946 removed it; positions are read as WGS 84 '
            "longitude/latitude whatever it says, so other data must be reprojected")


# -- features -----------------------------------------------------------------

_JSON_TYPES = {type(None): "null", bool: "boolean", int: "integer", float: "number",
               str: "string", list: "array", dict: "object"}


def _merge_type(known: str | None, new: str) -> str:
    if known is None or known == "null" or known == new:
        return new
    if new == "null":
        return known
    if {known, new} == {"integer", "number"}:
        return "number"
    return "mixed"


def _record_properties(props: dict[str, Any], seen: dict[str, str]) -> None:
    for name, value in props.items():
        kind = _JSON_TYPES.get(type(value), "object")
        known = seen.get(name)
        if known != kind:
            seen[name] = _merge_type(known, kind)


class _Properties:
    """Property names and JSON types; a shape of properties already seen costs one lookup."""

    SHAPES = 4096  # most files have a handful; past this many, every feature is merged

    def __init__(self, seen: dict[str, str]) -> None:
        self.seen = seen
        self._shapes: set[tuple[tuple[str, ...], tuple[type, ...]]] = set()

    def record(self, props: dict[str, Any]) -> None:
        shape = (tuple(props), tuple(map(type, props.values())))
        if shape in self._shapes:
            return
        _record_properties(props, self.seen)
        if len(self._shapes) < self.SHAPES:
            self._shapes.add(shape)


class _Scanner:
    """Checks features and geometries, gathering problems and the extent."""

    def __init__(self, result: ScanResult) -> None:
        self.result = result
        self.extent = _Bounds()
        self.polygons = _Polygons()
        self.properties = _Properties(result.properties)
        self.crs_members = 0
        self._flagged: set[int] = set()  # features of the current batch with a problem

    def problem(self, kind: str, reason: str, where: Where) -> None:
        self.result.add(Problem(kind, reason, *where))
        if where[0] is not None:
            self._flagged.add(where[0])

    def flush(self) -> None:
        for where, reason in self.polygons.invalid():
            self.problem(INVALID_GEOMETRY, f"invalid geometry: {reason}", where)
        self.result.problem_features += len(self._flagged)
        self._flagged.clear()

    def features(self, features: Iterable[Any]) -> None:
        for feature in features:
            self.feature(feature, (self.result.feature_count, ""))
            self.result.feature_count += 1
            if self.result.feature_count % BATCH == 0:
                self.flush()
        self.flush()

    def crs(self, crs: Any, where: Where) -> None:
        self.crs_members += 1
        self.problem(LEGACY_CRS, _crs_reason(crs), where)

    def feature(self, feature: Any, where: Where) -> None:
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            self.problem(MALFORMED, 'not an object with "type": "Feature"', where)
            return
        if "id" in feature and not isinstance(feature["id"], str | int | float):
            self.problem(MALFORMED, "id must be a string or a number", where)
        if "crs" in feature:
            self.crs(feature["crs"], where)
        props = feature.get("properties")
        if isinstance(props, dict):
            self.properties.record(props)
        elif props is not None:
            self.problem(MALFORMED, "properties must be an object or null", where)
        geometry = feature.get("geometry", ...)
        if geometry is ...:
            self.problem(MALFORMED, "missing member 'geometry' (use null for none)", where)
        elif geometry is not None:
            self.geometry(geometry, where)

    def geometry(self, geometry: Any, where: Where) -> None:
        boxes: list[Box] = []
        found = self._shape(geometry, boxes, where)
        if found is not None:
            self.problem(*found, where)
        if boxes:
            box = boxes[0] if len(boxes) == 1 else _union(boxes)
            self.extent.add(box)
            if box[0] < -180 or box[2] > 180 or box[1] < -90 or box[3] > 90:
                self.problem(OUT_OF_RANGE, _range_reason(box), where)

    def _shape(self, geometry: Any, boxes: list[Box], where: Where) -> tuple[str, str] | None:
        """(kind, reason) of the first problem of a geometry; polygons wait for GEOS."""
        if not isinstance(geometry, dict):
            return MALFORMED, "geometry must be an object or null"
        gtype = geometry.get("type")
        if gtype not in GEOMETRY_TYPES:
            return UNKNOWN_TYPE, (f"unknown geometry type {gtype!r} (RFC 7946 defines "
                                  "seven; bbox queries never match it)")
        self.result.geometry_types.add(gtype)
        if "crs" in geometry:
            self.crs(geometry["crs"], where)
        if gtype == "GeometryCollection":
            return self._collection(geometry.get("geometries"), boxes, where)
        minimum, shape = _SHAPES[gtype]
        checked: list[list[_Part]] = []
        try:
            for group in _groups(gtype, geometry.get("coordinates")):
                checked.append([])
                for coords in group:
                    problem, part = _check_part(coords, minimum, shape == "polygon")
                    if problem is not None:
                        return MALFORMED, f"{gtype}: {problem}"
                    if part is not None:
                        boxes.append(part.box)
                        checked[-1].append(part)
        except ValueError as exc:
            return MALFORMED, f"{gtype}: coordinates: {exc}"
        if shape == "polygon":
            self.polygons.add(where, checked)
        elif shape == "line" and (reason := _line_problem(checked[0])):
            return INVALID_GEOMETRY, reason
        return None

    def _collection(self, members: Any, boxes: list[Box], where: Where) -> tuple[str, str] | None:
        if not isinstance(members, list):
            return MALFORMED, "GeometryCollection needs a 'geometries' array"
        for member in members:
            found = self._shape(member, boxes, where)
            if found is not None:
                return found
        return None


# -- the file -------------------------------------------------------------------

def _top_type(source: _Source, head: dict[str, Any]) -> str:
    top = head["type"] if "type" in head else source.member("type")
    if top != "FeatureCollection" and top != "Feature" and top not in GEOMETRY_TYPES:
        raise InvalidGeoJSON(f"top-level \"type\" must be FeatureCollection, Feature or "
                             f"a geometry type, not {top!r}")
    return str(top)


def _scan_document(source: _Source, scanner: _Scanner, progress: Progress | None) -> int:
    """The main pass; returns how many ``"crs"`` strings the file holds."""
    top = scanner.result.top_type
    with source.open(progress) as reader:
        if top == "FeatureCollection":
            scanner.features(ijson.items(reader, "features.item", use_float=True))
        elif top == "Feature":
            scanner.features(ijson.items(reader, "", use_float=True))
        else:
            scanner.geometry(next(ijson.items(reader, "", use_float=True)), (None, "geometry"))
            scanner.flush()
    return reader.crs_mentions


def _top_level_crs(source: _Source, scanner: _Scanner, head: dict[str, Any],
                   mentions: int) -> None:
    """A FeatureCollection's own "crs" member, wherever it is in the file.

    The head pass sees it when it comes before "features", where writers put
    it. Otherwise a full pass looks for it, but only when the file has more
    ``"crs"`` strings than the features' own crs members explain (a property
    named crs, or a crs member after the features).
    """
    crs = head.get("crs")
    if crs is None and mentions > scanner.crs_members:
        crs = source.member("crs")
    if crs is not None:
        scanner.problem(LEGACY_CRS, _crs_reason(crs), (None, "top level"))


def scan(path: str | Path, progress: Progress | None = None) -> ScanResult:
    """Validate a GeoJSON file and gather its metadata in one streaming pass.

    Raises :class:`InvalidGeoJSON` when the file is not JSON or its top level is
    not GeoJSON; problems inside single features are collected in the result.
    """
    source = _Source(Path(path))
    result = ScanResult()
    scanner = _Scanner(result)
    try:
        head = source.head()
        result.top_type = _top_type(source, head)
        mentions = _scan_document(source, scanner, progress)
        if result.top_type == "FeatureCollection":
            if result.feature_count == 0 and not isinstance(source.member("features"), list):
                raise InvalidGeoJSON("a FeatureCollection needs a \"features\" array")
            _top_level_crs(source, scanner, head, mentions)
    except ijson.JSONError as exc:
        raise InvalidGeoJSON(_syntax_error(source, exc)) from None
    result.bbox = scanner.extent.as_list()
    return result


# -- syntax errors ----------------------------------------------------------------

_YAJL_WORDS = {
    "premature EOF": "unexpected end of file",
    "trailing garbage": "unexpected data after the end of the document",
    "invalid char in json text": "unexpected character",
    "invalid string in json text": "invalid literal (expected true, false or null)",
    "invalid bytes in UTF8 string": "a string is not valid UTF-8",
    "integer overflow": "an integer too large for the parser (beyond 64 bits)",
    "numeric (floating point) overflow": "a number too large for a double",
}


def _yajl_text(exc: ijson.JSONError) -> str:
    """The first line of yajl's error, without its "parse error: " prefix."""
    text = str(exc)
    if text.startswith(("b'", 'b"')):  # yajl's text held bytes that are not UTF-8
        with contextlib.suppress(ValueError, SyntaxError):
            text = ast.literal_eval(text).decode("utf-8", "replace")
    first = text.splitlines()[0] if text else "syntax error"
    return first.split(" error: ", 1)[-1].rstrip(".")


def _syntax_error(source: _Source, exc: ijson.JSONError) -> str:
    """``not valid JSON at byte N: what`` (N counted from 0), one line."""
    text = _yajl_text(exc)
    words = _YAJL_WORDS.get(text, text)
    reader = source.reader
    offset = reader.count if text == "premature EOF" else _failing_byte(
        source.path, reader.chunk_start, reader.count)
    if offset is None:
        return f"not valid JSON between bytes {reader.chunk_start} and {reader.count}: {words}"
    if text == "invalid char in json text":
        with source.path.open("rb") as f:
            f.seek(offset)
            words += f" {f.read(1).decode('latin-1')!r}"
    return f"not valid JSON at byte {offset}: {words}"


def _failing_byte(path: Path, chunk_start: int, chunk_end: int) -> int | None:
    """The offset of the byte at which yajl fails, found by feeding the file to it again.

    yajl's message shows only the text around the error, not where it is; so
    the file is parsed again (nothing is built) up to the chunk that failed,
    then byte by byte through that chunk. One more parse, only for a broken file.
    None if the error does not happen again (the file changed meanwhile).
    """
    parser = ijson.items_coro(ijson.sendable_list(), "\x00none", use_float=True)
    with path.open("rb") as f:
        try:
            while f.tell() < chunk_start:
                chunk = f.read(min(65536, chunk_start - f.tell()))
                if not chunk:
                    return None
                parser.send(chunk)
        except ijson.JSONError:
            return None
        offset = chunk_start
        try:
            while offset < chunk_end and (byte := f.read(1)):
                parser.send(byte)
                offset += 1
            if not f.read(1):
                parser.close()  # the end of the file: what was still open fails here
        except ijson.JSONError:
            return offset
    return None
