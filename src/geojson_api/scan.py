"""Streaming GeoJSON validation and metadata.

One pass over a file with ijson's C parser, feature by feature: memory is
bounded by the largest single feature, never by the file. The result carries
what the catalog publishes about a version (feature count, bbox, geometry
types, property names and types) and what ``geojson-api check`` reports.

Fatal problems (not JSON, not GeoJSON at the top level) raise
:class:`~geojson_api.errors.InvalidGeoJSON`. Problems inside single features
(an unclosed ring, a bad position) are collected, counted and reported; the
file stays servable, because its bytes are still what its owner published.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import ijson

from .errors import InvalidGeoJSON

GEOMETRY_TYPES = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
     "GeometryCollection"}
)
MAX_PROBLEMS = 20
Progress = Callable[[int], None]


@dataclass
class ScanResult:
    """What one streaming pass learned about a GeoJSON document."""

    top_type: str = ""
    feature_count: int = 0
    bbox: list[float] | None = None
    geometry_types: set[str] = field(default_factory=set)
    properties: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def problem(self, where: str, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(f"{where}: {message}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.top_type,
            "features": self.feature_count,
            "bbox": self.bbox,
            "geometry_types": sorted(self.geometry_types),
            "properties": dict(sorted(self.properties.items())),
            "problems": self.problems,
            "problem_count": self.problem_count,
        }


class _Bounds:
    """Running min/max over every position seen."""

    def __init__(self) -> None:
        self.min_x = self.min_y = math.inf
        self.max_x = self.max_y = -math.inf

    def add(self, positions: list[list[float]]) -> None:
        xs = [p[0] for p in positions]
        ys = [p[1] for p in positions]
        self.min_x = min(self.min_x, *xs)
        self.max_x = max(self.max_x, *xs)
        self.min_y = min(self.min_y, *ys)
        self.max_y = max(self.max_y, *ys)

    def as_list(self) -> list[float] | None:
        if self.min_x == math.inf:
            return None
        return [self.min_x, self.min_y, self.max_x, self.max_y]


class _CountingReader(io.RawIOBase):
    """A file wrapper that reports how many bytes were read so far."""

    def __init__(self, raw: BinaryIO, progress: Progress | None) -> None:
        self._raw = raw
        self._progress = progress
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        self.count += n
        if self._progress is not None:
            self._progress(self.count)
        return int(n)


# -- positions and geometries ------------------------------------------------

def _is_position(value: Any) -> bool:
    return (
        isinstance(value, list)
        and 2 <= len(value) <= 4
        and all(isinstance(n, int | float) and not isinstance(n, bool) for n in value)
        and all(math.isfinite(n) for n in value)
    )


def _check_positions(coords: Any, minimum: int, closed: bool) -> str | None:
    if not isinstance(coords, list) or not all(_is_position(p) for p in coords):
        return "expected an array of positions [x, y]"
    if len(coords) < minimum:
        return f"needs at least {minimum} positions, has {len(coords)}"
    if closed and coords[0][:2] != coords[-1][:2]:
        return "linear ring is not closed (first and last positions differ)"
    return None


def _position_lists(gtype: str, coords: Any) -> Iterator[tuple[Any, int, bool]]:
    """Yield (positions, minimum count, must be closed) for every part of a geometry."""
    if gtype == "Point":
        yield [coords], 1, False
    elif gtype == "MultiPoint":
        yield coords, 0, False
    elif gtype == "LineString":
        yield coords, 2, False
    elif gtype in ("MultiLineString", "Polygon"):
        closed = gtype == "Polygon"
        for part in _as_list(coords):
            yield part, 4 if closed else 2, closed
    elif gtype == "MultiPolygon":
        for polygon in _as_list(coords):
            for ring in _as_list(polygon):
                yield ring, 4, True


def _as_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError("expected an array")
    return value


def _check_geometry(geometry: Any, bounds: _Bounds, types: set[str]) -> str | None:
    if not isinstance(geometry, dict):
        return "geometry must be an object or null"
    gtype = geometry.get("type")
    if gtype not in GEOMETRY_TYPES:
        return f"unknown geometry type {gtype!r}"
    types.add(gtype)
    if gtype == "GeometryCollection":
        return _check_collection(geometry.get("geometries"), bounds, types)
    try:
        for positions, minimum, closed in _position_lists(gtype, geometry.get("coordinates")):
            problem = _check_positions(positions, minimum, closed)
            if problem:
                return f"{gtype}: {problem}"
            if positions:
                bounds.add(positions)
    except ValueError as exc:
        return f"{gtype}: coordinates: {exc}"
    return None


def _check_collection(members: Any, bounds: _Bounds, types: set[str]) -> str | None:
    if not isinstance(members, list):
        return "GeometryCollection needs a 'geometries' array"
    for member in members:
        problem = _check_geometry(member, bounds, types)
        if problem:
            return problem
    return None


# -- features ---------------------------------------------------------------

def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


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
        seen[name] = _merge_type(seen.get(name), _json_type(value))


def _check_feature(feature: Any, result: ScanResult, bounds: _Bounds) -> None:
    where = f"feature {result.feature_count}"
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        result.problem(where, "not an object with \"type\": \"Feature\"")
        return
    if "id" in feature and not isinstance(feature["id"], str | int | float):
        result.problem(where, "id must be a string or a number")
    props = feature.get("properties")
    if isinstance(props, dict):
        _record_properties(props, result.properties)
    elif props is not None:
        result.problem(where, "properties must be an object or null")
    geometry = feature.get("geometry", ...)
    if geometry is ...:
        result.problem(where, "missing member 'geometry' (use null for none)")
    elif geometry is not None:
        problem = _check_geometry(geometry, bounds, result.geometry_types)
        if problem:
            result.problem(where, problem)


def _scan_features(features: Iterable[Any], result: ScanResult, bounds: _Bounds) -> None:
    for feature in features:
        _check_feature(feature, result, bounds)
        result.feature_count += 1


# -- the file ---------------------------------------------------------------

def _top_level_type(path: Path) -> Any:
    """The top-level "type" member; ijson's C parser skips everything else."""
    with path.open("rb") as f:
        if f.read(1024).lstrip()[:1] != b"{":
            raise InvalidGeoJSON("a GeoJSON document must be a JSON object")
        f.seek(0)
        return next(ijson.items(f, "type"), None)


def _scan_document(path: Path, top: Any, result: ScanResult, bounds: _Bounds,
                   progress: Progress | None) -> None:
    with path.open("rb") as raw:
        reader = _CountingReader(raw, progress)
        if top == "FeatureCollection":
            features = ijson.items(reader, "features.item", use_float=True)
            _scan_features(features, result, bounds)
            if result.feature_count == 0:
                _require_features_array(path)
        elif top == "Feature":
            _scan_features(ijson.items(reader, "", use_float=True), result, bounds)
        else:
            problem = _check_geometry(
                next(ijson.items(reader, "", use_float=True)), bounds, result.geometry_types
            )
            if problem:
                result.problem("geometry", problem)


def _require_features_array(path: Path) -> None:
    with path.open("rb") as f:
        value = next(ijson.items(f, "features"), None)
    if not isinstance(value, list):
        raise InvalidGeoJSON("a FeatureCollection needs a \"features\" array")


def scan(path: str | Path, progress: Progress | None = None) -> ScanResult:
    """Validate a GeoJSON file and gather its metadata in one streaming pass.

    Raises :class:`InvalidGeoJSON` when the file is not JSON or its top level is
    not GeoJSON; problems inside single features are collected in the result.
    """
    path = Path(path)
    result = ScanResult()
    bounds = _Bounds()
    try:
        top = _top_level_type(path)
        if top != "FeatureCollection" and top != "Feature" and top not in GEOMETRY_TYPES:
            raise InvalidGeoJSON(f"top-level \"type\" must be FeatureCollection, Feature or "
                                 f"a geometry type, not {top!r}")
        result.top_type = top
        _scan_document(path, top, result, bounds, progress)
    except ijson.JSONError as exc:
        raise InvalidGeoJSON(f"not valid JSON: {exc}") from None
    result.bbox = bounds.as_list()
    return result
