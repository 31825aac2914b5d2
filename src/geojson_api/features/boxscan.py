"""The exact bounds of every feature, held in memory as arrays and scanned by bbox.

An index keeps, for each feature with a box, its exact bounds (float64), one
vertex on each side of them (the other coordinate of a vertex where x is
smallest, x is largest, y is smallest, y is largest) and two flags:
``CONNECTED`` (one connected piece that reaches every side of its bounds: a
line, most polygons) and ``HAS_WKB`` (GEOS could read it). They are stored in
the index file as chunks of little-endian arrays (table ``boxes``, one row
per array and build batch) and read into memory once per process and
version: 73 bytes per feature (8.2 MB for the 112,859 features of the 50 MB
sample).

A query box is answered without SQLite for all but the few features that
only GEOS can settle:

* a feature whose bounds lie inside the box matches;
* so does one with any of its four side vertices inside the box (a vertex
  of a valid geometry is one of its points; an invalid one keeps no side
  vertices);
* a connected one whose bounds lie inside the box's span on one axis and
  overlap it on the other matches too (its projection on the other axis is a
  whole interval, so it crosses the box);
* the rest of those whose bounds overlap the box are returned for the exact
  test.

The scan is vectorised and reads only a slice: features are sorted by their
minimum x, and one whose minimum x is below ``box min x - widest feature``
cannot reach the box. So that one very wide feature cannot make every slice
the whole array, the widest 1 % are kept apart in a second, small group that
is always scanned whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

CONNECTED = 1
HAS_WKB = 2
FIELDS = (("fid", "<i8"), ("minx", "<f8"), ("miny", "<f8"), ("maxx", "<f8"), ("maxy", "<f8"),
          ("left_y", "<f8"), ("right_y", "<f8"), ("bottom_x", "<f8"), ("top_x", "<f8"),
          ("flags", "u1"))
WIDE_SHARE = 0.01
"""The share of features, the widest, scanned apart from the sorted slice."""

Box = tuple[float, float, float, float]
Sides = tuple[float, float, float, float]
"""y of a vertex with the smallest x, y of one with the largest x, x of one with the
smallest y, x of one with the largest y (NaN when unknown: no vertex is then used)."""
Entry = tuple[int, Box, Sides, int]  # fid, bounds, side vertices, flags
Row = tuple[str, int, bytes]  # array name, chunk number, little-endian bytes
UNKNOWN_SIDES: Sides = (np.nan, np.nan, np.nan, np.nan)


def sides(coordinates: np.ndarray[Any, Any]) -> Sides:
    """The side vertices of a geometry from its (n, 2) coordinates."""
    if not len(coordinates):
        return UNKNOWN_SIDES
    x, y = coordinates[:, 0], coordinates[:, 1]
    return (float(y[x.argmin()]), float(y[x.argmax()]), float(x[y.argmin()]),
            float(x[y.argmax()]))


def chunk_rows(chunk: int, entries: Iterable[Entry]) -> list[Row]:
    """The rows of table ``boxes`` for one build batch."""
    listed = list(entries)
    columns: dict[str, list[Any]] = {
        "fid": [e[0] for e in listed], "flags": [e[3] for e in listed],
        **{name: [e[1][i] for e in listed]
           for i, name in enumerate(("minx", "miny", "maxx", "maxy"))},
        **{name: [e[2][i] for e in listed]
           for i, name in enumerate(("left_y", "right_y", "bottom_x", "top_x"))},
    }
    return [(name, chunk, np.asarray(columns[name], dtype=kind).tobytes())
            for name, kind in FIELDS]


class Damaged(ValueError):
    """The stored arrays do not fit together (the index file is damaged)."""


@dataclass(frozen=True)
class Candidates:
    """What a scan found for one box: positions settled as matching, and the rest."""

    matched: np.ndarray[Any, Any]  # fids
    to_test: np.ndarray[Any, Any]  # fids whose geometry GEOS must test (they have WKB)
    to_parse: np.ndarray[Any, Any]  # fids GEOS could not read: tested from their GeoJSON


class _Group:
    """Features sorted by minimum x, with the widest one's width."""

    def __init__(self, columns: dict[str, np.ndarray[Any, Any]]) -> None:
        order = np.argsort(columns["minx"], kind="stable")
        (self.fid, self.minx, self.miny, self.maxx, self.maxy, self.left_y, self.right_y,
         self.bottom_x, self.top_x, self.flags) = (
            np.ascontiguousarray(columns[name][order]) for name, _ in FIELDS)
        widths = self.maxx - self.minx
        self.width = float(widths.max()) if len(widths) else 0.0

    def overlapping(self, box: Box) -> np.ndarray[Any, Any]:
        """Positions (in this group) of the features whose bounds overlap ``box``."""
        x0, y0, x1, y1 = box
        lo = int(np.searchsorted(self.minx, x0 - self.width, side="left"))
        hi = int(np.searchsorted(self.minx, x1, side="right"))
        if lo >= hi:
            return np.empty(0, dtype=np.int64)
        s = slice(lo, hi)
        hit = (self.maxx[s] >= x0) & (self.miny[s] <= y1) & (self.maxy[s] >= y0)
        return np.flatnonzero(hit) + lo

    def candidates(self, box: Box) -> Candidates:
        x0, y0, x1, y1 = box
        at = self.overlapping(box)
        minx, miny, maxx, maxy = self.minx[at], self.miny[at], self.maxx[at], self.maxy[at]
        in_x0, in_x1 = minx >= x0, maxx <= x1  # the sides of the bounds inside the box's span
        in_y0, in_y1 = miny >= y0, maxy <= y1
        span_x, span_y = in_x0 & in_x1, in_y0 & in_y1
        connected = (self.flags[at] & CONNECTED) != 0
        settled = (span_x & span_y) | ((span_x | span_y) & connected)
        settled |= in_x0 & _within(self.left_y[at], y0, y1)  # a vertex where x is smallest
        settled |= in_x1 & _within(self.right_y[at], y0, y1)
        settled |= in_y0 & _within(self.bottom_x[at], x0, x1)
        settled |= in_y1 & _within(self.top_x[at], x0, x1)
        rest = at[~settled]
        readable = (self.flags[rest] & HAS_WKB) != 0
        fid = self.fid
        return Candidates(fid[at[settled]], fid[rest[readable]], fid[rest[~readable]])


def _within(values: np.ndarray[Any, Any], low: float, high: float) -> np.ndarray[Any, Any]:
    return (values >= low) & (values <= high)  # False for NaN


class BoxScan:
    """Every feature's exact bounds and flags, split into the narrow and the wide."""

    def __init__(self, columns: dict[str, np.ndarray[Any, Any]]) -> None:
        count = len(columns["fid"])
        if any(len(columns[name]) != count for name, _ in FIELDS):
            raise Damaged("the stored bounds arrays differ in length")
        widths = columns["maxx"] - columns["minx"]
        wide = np.zeros(count, dtype=bool)
        if count:
            cut = float(np.quantile(widths, 1 - WIDE_SHARE))
            wide = widths > cut
        self.count = count
        self._groups = [_Group({name: values[~wide] for name, values in columns.items()}),
                        _Group({name: values[wide] for name, values in columns.items()})]

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, bytes]]) -> BoxScan:
        """From table ``boxes``' (name, data) rows, in chunk order."""
        parts: dict[str, list[bytes]] = {name: [] for name, _ in FIELDS}
        for name, data in rows:
            if name not in parts:
                raise Damaged(f"unknown bounds array {name!r}")
            parts[name].append(data)
        columns = {}
        for name, kind in FIELDS:
            data = b"".join(parts[name])
            if len(data) % np.dtype(kind).itemsize:
                raise Damaged(f"the bounds array {name!r} has a partial entry")
            columns[name] = np.frombuffer(data, dtype=kind)
        return cls(columns)

    def candidates(self, box: Box) -> Candidates:
        """The features settled as matching ``box`` and those left for an exact test."""
        found = [group.candidates(box) for group in self._groups]
        return Candidates(*(np.concatenate([getattr(c, part) for c in found])
                            for part in ("matched", "to_test", "to_parse")))
