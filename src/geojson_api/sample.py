"""Deterministic, realistic sample GeoJSON datasets for demos and load tests.

Each dataset is a single RFC 7946 FeatureCollection in WGS84 lon/lat
(no ``crs`` member) covering an area around Lyon, France
(lon 4.70..5.10, lat 45.60..45.90).  About 40 % of the features are
polygons (buildings, parcels, parks; a few with a courtyard hole),
35 % line strings (roads, paths, rivers) and 25 % points (points of
interest, bus stops, trees), with a small share of the Multi* variants.

The output depends only on the dataset name (or an explicit seed):

* the random generator is ``random.Random`` seeded with ``zlib.crc32`` of the
  name, and only ``Random.random()`` is used, whose sequence is fixed;
* coordinates are integers in micro-degrees, formatted by hand with exactly
  six decimals, and the unit circle is a hard-coded integer table, so no
  platform-dependent ``libm`` function (``sin``, ``cos``...) is involved;
* the remaining floats (areas, lengths) only use IEEE-exact arithmetic and
  ``math.sqrt``, and are printed with a fixed one-decimal format.

Documents are produced as a stream of byte chunks, one feature per line, and
written atomically (hidden temporary file, ``fsync``, ``os.replace``).
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import os
import pathlib
import random
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from math import sqrt
from typing import BinaryIO

__all__ = ["SAMPLE_SIZES", "generate", "write_samples"]

SAMPLE_SIZES: dict[str, int] = {
    "small": 50_000,
    "medium": 5_000_000,
    "large": 50_000_000,
}
"""Target size in bytes of each named sample dataset."""

Position = tuple[int, int]
"""A (lon, lat) position in integer micro-degrees."""

Ring = list[Position]
Geometry = tuple[str, str, float]
"""(GeoJSON type, serialised coordinates, measure)."""

_SCALE = 1_000_000  # micro-degrees per degree
_M_PER_UDEG_LAT = 0.11132  # metres per micro-degree of latitude
_M_PER_UDEG_LON = 0.07768  # same for longitude at lat 45.75 (x cos 45.75°)
_MARGIN_M = 5_000.0  # every geometry fits within this distance of its anchor

_LON_MIN, _LON_MAX = 4_700_000, 5_100_000
_LAT_MIN, _LAT_MAX = 45_600_000, 45_900_000

_CHUNK_BYTES = 64 * 1024
_FOOTER = b"\n]}\n"
_SEPARATOR = b",\n"

_FAMILY_WEIGHTS = (("polygon", 0.40), ("line", 0.35), ("point", 0.25))
_MULTI_SHARE = {"polygon": 0.06, "line": 0.06, "point": 0.10}
_HOLE_SHARE = 0.10  # of the polygons big and detailed enough for a hole
_TOWN_SHARE = 0.70  # the rest is spread uniformly over the region
_ACTIVE_SHARE = 0.90

# cos(k * 7.5°) * 10_000 for k = 0..12, rounded: a platform-independent
# first quadrant of the unit circle.
_QUADRANT = (10000, 9914, 9659, 9239, 8660, 7934, 7071, 6088, 5000, 3827, 2588, 1305, 0)
_DIRECTIONS = 48  # 7.5° steps around the circle

# (lon, lat, spread) in micro-degrees: town centres the features cluster around.
_TOWNS: tuple[tuple[int, int, int], ...] = (
    (4_835_000, 45_760_000, 22_000),  # Lyon
    (4_880_000, 45_770_000, 15_000),  # Villeurbanne
    (4_885_000, 45_700_000, 12_000),  # Vénissieux
    (4_850_000, 45_800_000, 10_000),  # Caluire-et-Cuire
    (4_910_000, 45_735_000, 10_000),  # Bron
    (4_810_000, 45_715_000, 8_000),  # Oullins
    (4_930_000, 45_780_000, 10_000),  # Vaulx-en-Velin
)


@dataclass(frozen=True, slots=True)
class _Kind:
    """One kind of feature: how it is named, classified and shaped."""

    name: str
    weight: float
    labels: tuple[str, ...]
    categories: tuple[str, ...]
    size_m: tuple[float, float] = (0.0, 0.0)  # polygon radius / line step
    turn: int = 0  # lines: largest heading change per step, in 7.5° units
    numbers: int = 999  # names are "<label> <1..numbers>"


_KINDS: dict[str, tuple[_Kind, ...]] = {
    "polygon": (
        _Kind("building", 0.70, ("Building",),
              ("residential", "commercial", "industrial", "public"), (6.0, 25.0)),
        _Kind("parcel", 0.20, ("Parcel",),
              ("residential", "agricultural", "industrial", "commercial"), (25.0, 90.0)),
        _Kind("park", 0.10, ("Parc", "Square", "Jardin"),
              ("leisure", "nature"), (40.0, 150.0), numbers=99),
    ),
    "line": (
        _Kind("road", 0.60, ("Rue", "Avenue", "Boulevard", "Route"),
              ("transport", "residential"), (30.0, 150.0), turn=2),
        _Kind("path", 0.30, ("Chemin", "Allée", "Sentier"),
              ("leisure", "nature", "transport"), (5.0, 40.0), turn=4),
        _Kind("river", 0.10, ("Ruisseau", "Canal"),
              ("nature",), (20.0, 100.0), turn=5, numbers=49),
    ),
    "point": (
        _Kind("poi", 0.55, ("Café", "Boulangerie", "Pharmacie", "École", "Musée"),
              ("commercial", "public", "leisure")),
        _Kind("stop", 0.25, ("Arrêt",), ("transport",)),
        _Kind("tree", 0.20, ("Arbre",), ("nature", "public"), numbers=9999),
    ),
}


def _build_directions() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Micro-degrees per metre along each of the 48 compass directions."""
    cosines = [0] * _DIRECTIONS
    sines = [0] * _DIRECTIONS
    quarter = _DIRECTIONS // 4
    for k in range(_DIRECTIONS):
        quadrant, j = divmod(k, quarter)
        c, s = _QUADRANT[j], _QUADRANT[quarter - j]
        for _ in range(quadrant):
            c, s = -s, c  # rotate by 90°
        cosines[k], sines[k] = c, s
    lon = tuple(c / 10_000 / _M_PER_UDEG_LON for c in cosines)
    lat = tuple(s / 10_000 / _M_PER_UDEG_LAT for s in sines)
    return lon, lat


_DIR_LON, _DIR_LAT = _build_directions()
_DATES = tuple(
    (datetime.date(2024, 1, 1) + datetime.timedelta(days=day)).isoformat()
    for day in range(366)
)
_LABEL_PREFIXES = {
    label: json.dumps(label + " ", ensure_ascii=False)[:-1]
    for kinds in _KINDS.values()
    for kind in kinds
    for label in kind.labels
}


# --------------------------------------------------------------------------
# Random helpers (only Random.random() is used: its sequence is stable)
# --------------------------------------------------------------------------


def _below(rng: random.Random, n: int) -> int:
    """A uniform integer in 0..n-1."""
    return int(rng.random() * n)


def _between(rng: random.Random, low: float, high: float) -> float:
    """A uniform float in low..high."""
    return low + (high - low) * rng.random()


def _pick(rng: random.Random, items: Sequence[tuple[str, float]]) -> str:
    """A name drawn from (name, weight) pairs whose weights sum to 1."""
    draw = rng.random()
    for name, weight in items:
        draw -= weight
        if draw < 0:
            return name
    return items[-1][0]


def _pick_kind(rng: random.Random, family: str) -> _Kind:
    """A kind of the given geometry family, drawn by weight."""
    kinds = _KINDS[family]
    name = _pick(rng, [(kind.name, kind.weight) for kind in kinds])
    return next(kind for kind in kinds if kind.name == name)


# --------------------------------------------------------------------------
# Positions and shapes, in integer micro-degrees
# --------------------------------------------------------------------------


def _clamp(value: int, low: int, high: int) -> int:
    """Value limited to low..high."""
    return max(low, min(high, value))


def _anchor(rng: random.Random) -> Position:
    """Where a feature lies: near a town centre, or anywhere in the region.

    Anchors keep a margin of ``_MARGIN_M`` from the region's edges, so every
    geometry built around them stays inside the region.
    """
    if rng.random() < _TOWN_SHARE:
        lon, lat, spread = _TOWNS[_below(rng, len(_TOWNS))]
        lon += int((rng.random() - rng.random()) * spread)
        lat += int((rng.random() - rng.random()) * spread)
    else:
        lon = _LON_MIN + _below(rng, _LON_MAX - _LON_MIN)
        lat = _LAT_MIN + _below(rng, _LAT_MAX - _LAT_MIN)
    lon_margin = int(_MARGIN_M / _M_PER_UDEG_LON)
    lat_margin = int(_MARGIN_M / _M_PER_UDEG_LAT)
    return (_clamp(lon, _LON_MIN + lon_margin, _LON_MAX - lon_margin),
            _clamp(lat, _LAT_MIN + lat_margin, _LAT_MAX - lat_margin))


def _offset(origin: Position, metres: float, direction: int) -> Position:
    """The position ``metres`` away from origin along a compass direction."""
    return (origin[0] + int(metres * _DIR_LON[direction]),
            origin[1] + int(metres * _DIR_LAT[direction]))


def _scatter(rng: random.Random, origin: Position, metres: float) -> Position:
    """A random position within ``metres`` of origin."""
    return _offset(origin, _between(rng, 0.0, metres), _below(rng, _DIRECTIONS))


def _ring(rng: random.Random, centre: Position, radius: float, vertices: int) -> Ring:
    """A closed, counter-clockwise, star-shaped ring around centre.

    Vertex k sits at about k/vertices of a turn (jittered by ±7.5°, which
    keeps the angles strictly increasing for up to 12 vertices) and at 60 to
    100 % of radius, so the ring is simple and irregular.
    """
    start = _below(rng, _DIRECTIONS)
    ring: Ring = []
    for k in range(vertices):
        angle = k * _DIRECTIONS // vertices + _below(rng, 3) - 1
        metres = radius * _between(rng, 0.6, 1.0)
        ring.append(_offset(centre, metres, (start + angle) % _DIRECTIONS))
    ring.append(ring[0])
    return ring


def _polygon(rng: random.Random, kind: _Kind, centre: Position) -> list[Ring]:
    """Rings of one polygon: a 5-12 vertex exterior, sometimes a hole.

    The hole (clockwise, 4-6 vertices, within 30 % of the radius) is only
    added to exteriors with 8 or more vertices, whose edges all stay beyond
    half the radius from the centre.
    """
    radius = _between(rng, *kind.size_m)
    vertices = 5 + _below(rng, 8)
    rings = [_ring(rng, centre, radius, vertices)]
    if vertices >= 8 and radius >= 12.0 and rng.random() < _HOLE_SHARE:
        hole = _ring(rng, centre, 0.3 * radius, 4 + _below(rng, 3))
        rings.append(hole[::-1])
    return rings


def _walk(rng: random.Random, kind: _Kind, start: Position) -> list[Position]:
    """A random walk of 3-30 positions, turning a little at each step."""
    heading = _below(rng, _DIRECTIONS)
    points = [start]
    for _ in range(2 + _below(rng, 28)):
        heading = (heading + _below(rng, 2 * kind.turn + 1) - kind.turn) % _DIRECTIONS
        points.append(_offset(points[-1], _between(rng, *kind.size_m), heading))
    return points


# --------------------------------------------------------------------------
# Measures
# --------------------------------------------------------------------------


def _signed_area_m2(ring: Ring) -> float:
    """Shoelace area in m², positive for counter-clockwise rings."""
    x0, y0 = ring[0]
    twice = 0
    for (x1, y1), (x2, y2) in itertools.pairwise(ring):
        twice += (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    return twice / 2 * _M_PER_UDEG_LON * _M_PER_UDEG_LAT


def _area_m2(rings: list[Ring]) -> float:
    """Area of a polygon in m²: the exterior minus its (clockwise) holes."""
    return sum(_signed_area_m2(ring) for ring in rings)


def _length_m(points: list[Position]) -> float:
    """Approximate length of a line string in metres."""
    total = 0.0
    for (x1, y1), (x2, y2) in itertools.pairwise(points):
        dx = (x2 - x1) * _M_PER_UDEG_LON
        dy = (y2 - y1) * _M_PER_UDEG_LAT
        total += sqrt(dx * dx + dy * dy)
    return total


# --------------------------------------------------------------------------
# Serialisation (by hand, with fixed number formats)
# --------------------------------------------------------------------------


def _position_json(position: Position) -> str:
    """A position as ``[lon,lat]`` with six decimals (non-negative values)."""
    x, y = position
    return f"[{x // _SCALE}.{x % _SCALE:06d},{y // _SCALE}.{y % _SCALE:06d}]"


def _path_json(points: list[Position]) -> str:
    """An array of positions."""
    return "[" + ",".join(map(_position_json, points)) + "]"


def _array_json(items: Iterable[str]) -> str:
    """A JSON array of already serialised items."""
    return "[" + ",".join(items) + "]"


# --------------------------------------------------------------------------
# Geometries, one builder per family: (type, coordinates JSON, measure)
# --------------------------------------------------------------------------


def _polygon_geometry(rng: random.Random, kind: _Kind, anchor: Position) -> Geometry:
    """A Polygon, or a MultiPolygon of 2-3 disjoint parts in a row."""
    if rng.random() >= _MULTI_SHARE["polygon"]:
        rings = _polygon(rng, kind, anchor)
        return "Polygon", _array_json(map(_path_json, rings)), _area_m2(rings)
    direction = _below(rng, _DIRECTIONS)
    spacing = 2.2 * kind.size_m[1]  # parts never reach beyond size_m[1]
    parts = [_polygon(rng, kind, _offset(anchor, i * spacing, direction))
             for i in range(2 + _below(rng, 2))]
    coordinates = _array_json(_array_json(map(_path_json, rings)) for rings in parts)
    return "MultiPolygon", coordinates, sum(map(_area_m2, parts))


def _line_geometry(rng: random.Random, kind: _Kind, anchor: Position) -> Geometry:
    """A LineString, or a MultiLineString of 2-3 nearby walks."""
    if rng.random() >= _MULTI_SHARE["line"]:
        points = _walk(rng, kind, anchor)
        return "LineString", _path_json(points), _length_m(points)
    lines = [_walk(rng, kind, _scatter(rng, anchor, 300.0))
             for _ in range(2 + _below(rng, 2))]
    return "MultiLineString", _array_json(map(_path_json, lines)), sum(map(_length_m, lines))


def _point_geometry(rng: random.Random, kind: _Kind, anchor: Position) -> Geometry:
    """A Point, or a MultiPoint of 2-6 points within 80 m."""
    if rng.random() >= _MULTI_SHARE["point"]:
        return "Point", _position_json(anchor), 0.0
    points = [_scatter(rng, anchor, 80.0) for _ in range(2 + _below(rng, 5))]
    return "MultiPoint", _path_json(points), 0.0


_GEOMETRY_BUILDERS: dict[str, Callable[[random.Random, _Kind, Position], Geometry]] = {
    "polygon": _polygon_geometry,
    "line": _line_geometry,
    "point": _point_geometry,
}


# --------------------------------------------------------------------------
# Features and documents
# --------------------------------------------------------------------------


def _properties_json(rng: random.Random, kind: _Kind, measure: float) -> str:
    """The seven typed properties every feature carries."""
    label = _LABEL_PREFIXES[kind.labels[_below(rng, len(kind.labels))]]
    number = 1 + _below(rng, kind.numbers)
    category = kind.categories[_below(rng, len(kind.categories))]
    rank = 1 + _below(rng, 10)
    active = "true" if rng.random() < _ACTIVE_SHARE else "false"
    updated = _DATES[_below(rng, len(_DATES))]
    return (f'{{"name":{label}{number}","kind":"{kind.name}","category":"{category}",'
            f'"rank":{rank},"measure":{measure:.1f},"active":{active},'
            f'"updated":"{updated}"}}')


def _feature_json(rng: random.Random, feature_id: int) -> str:
    """One complete Feature object."""
    family = _pick(rng, _FAMILY_WEIGHTS)
    kind = _pick_kind(rng, family)
    geometry_type, coordinates, measure = _GEOMETRY_BUILDERS[family](rng, kind, _anchor(rng))
    return (f'{{"type":"Feature","id":{feature_id},'
            f'"geometry":{{"type":"{geometry_type}","coordinates":{coordinates}}},'
            f'"properties":{_properties_json(rng, kind, measure)}}}')


def _header(name: str) -> bytes:
    """Opening of the FeatureCollection, up to the features' first line."""
    name_json = json.dumps(name, ensure_ascii=False)
    return f'{{"type":"FeatureCollection","name":{name_json},"features":[\n'.encode()


def _document(name: str, target_bytes: int, rng: random.Random) -> Iterator[bytes]:
    """All pieces of the document: header, features while they fit, footer.

    A feature is only emitted if the document, closed after it, stays within
    target_bytes; the first feature that would overflow ends the collection.
    """
    header = _header(name)
    yield header
    size = len(header) + len(_FOOTER)
    separator = b""
    feature_id = 1
    while True:
        piece = separator + _feature_json(rng, feature_id).encode()
        size += len(piece)
        if size > target_bytes:
            break
        yield piece
        separator = _SEPARATOR
        feature_id += 1
    yield _FOOTER


def _chunked(pieces: Iterable[bytes], chunk_bytes: int = _CHUNK_BYTES) -> Iterator[bytes]:
    """Pieces regrouped into chunks of about chunk_bytes."""
    buffer: list[bytes] = []
    buffered = 0
    for piece in pieces:
        buffer.append(piece)
        buffered += len(piece)
        if buffered >= chunk_bytes:
            yield b"".join(buffer)
            buffer, buffered = [], 0
    if buffer:
        yield b"".join(buffer)


def _seed_for(name: str) -> int:
    """A seed that depends on the name only (unlike the salted ``hash``)."""
    return zlib.crc32(name.encode("utf-8"))


def generate(name: str, target_bytes: int, seed: int | None = None) -> Iterator[bytes]:
    """Yield the bytes of one FeatureCollection in chunks.

    The document is streamed: a whole 50 MB document is never held in memory.
    The collection is named ``name`` and holds features (ids 1, 2, ...) for
    as long as the document stays within ``target_bytes``; it ends within one
    feature (typically 100-1500 bytes) of the target.  The output depends
    only on ``name`` and ``target_bytes``, or on ``seed`` when one is given.
    """
    if target_bytes < 0:
        raise ValueError(f"target_bytes must not be negative, got {target_bytes}")
    rng = random.Random(_seed_for(name) if seed is None else seed)
    return _chunked(_document(name, target_bytes, rng))


# --------------------------------------------------------------------------
# Writing files
# --------------------------------------------------------------------------


def _select(names: Iterable[str] | None) -> list[str]:
    """Requested dataset names, validated and without duplicates."""
    if names is None:
        return list(SAMPLE_SIZES)
    chosen = list(dict.fromkeys([names] if isinstance(names, str) else names))
    unknown = [name for name in chosen if name not in SAMPLE_SIZES]
    if unknown:
        raise ValueError(f"unknown sample name(s) {', '.join(map(repr, unknown))}; "
                         f"expected some of {', '.join(map(repr, SAMPLE_SIZES))}")
    return chosen


def _stream_to(out: BinaryIO, name: str,
               progress: Callable[[str, int, int], None] | None) -> None:
    """Write the named dataset to out, reporting progress after each chunk."""
    target = SAMPLE_SIZES[name]
    written = 0
    for chunk in generate(name, target):
        out.write(chunk)
        written += len(chunk)
        if progress is not None:
            progress(name, written, target)


def _fsync_directory(directory: pathlib.Path) -> None:
    """Make a rename in directory durable (where the platform allows it)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_one(directory: pathlib.Path, name: str,
               progress: Callable[[str, int, int], None] | None) -> pathlib.Path:
    """Atomically write ``<name>.geojson`` into directory."""
    final = directory / f"{name}.geojson"
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            _stream_to(out, name, progress)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates files readable by the owner only
        os.replace(temporary, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)
    return final


def write_samples(
    directory: str | os.PathLike[str],
    names: Iterable[str] | None = None,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[pathlib.Path]:
    """Write ``<name>.geojson`` for each requested name into directory.

    ``names`` defaults to all of ``SAMPLE_SIZES``; the directory is created if
    missing.  Returns the paths written, in the order requested.
    Names must be keys of ``SAMPLE_SIZES`` (a single string counts as one
    name); unknown names raise ``ValueError`` before anything is written.
    Each file is first written to a hidden temporary file in the same
    directory, fsync'ed, then renamed onto its final name, so readers never
    see a partial file.  ``progress(name, bytes_written, target_bytes)`` is
    called after each chunk written.
    """
    selected = _select(names)
    folder = pathlib.Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    return [_write_one(folder, name, progress) for name in selected]
