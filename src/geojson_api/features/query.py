"""The typed query every feature backend answers, and the backend interface.

A view parses the request into a :class:`FeatureQuery` (see ``params.py``);
a backend turns it into a :class:`FeaturePage`: how many features match, and
an iterator over the serialised features of the requested page. The SQLite
index (``sqlite_index.py``) is the embedded backend; a PostGIS backend would
implement the same :class:`FeatureBackend` protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from .geometry import Box

Scalar = str | int | float | bool


@dataclass(frozen=True)
class SortKey:
    """One ``sortby`` term."""

    name: str
    descending: bool = False

    def text(self) -> str:
        return ("-" if self.descending else "+") + self.name


@dataclass(frozen=True)
class FeatureQuery:
    """What a client asked of a collection's items, validated and normalised."""

    boxes: tuple[Box, ...] = ()
    limit: int = 10
    offset: int = 0
    filters: tuple[tuple[str, Scalar], ...] = ()
    properties: tuple[str, ...] | None = None
    sortby: tuple[SortKey, ...] = ()

    def key(self) -> str:
        """A canonical text of the query: equal queries give equal keys (cache, ETag)."""
        parts = [f"bbox={';'.join(','.join(repr(v) for v in b) for b in self.boxes)}",
                 f"limit={self.limit}", f"offset={self.offset}",
                 "filters=" + "&".join(f"{k}={v!r}" for k, v in self.filters),
                 "properties=" + (",".join(self.properties) if self.properties is not None
                                  else "*"),
                 "sortby=" + ",".join(s.text() for s in self.sortby)]
        return "|".join(parts)


@dataclass(frozen=True)
class Queryable:
    """A property clients may filter and sort on."""

    name: str
    type: str  # JSON Schema type: string, integer, number, boolean


@dataclass
class FeaturePage:
    """A backend's answer: the match count and the requested page, serialised.

    ``features`` yields one feature at a time. ``runs``, when a backend has
    it, yields the same page as byte strings of one or more features already
    joined by ``,\n`` (read as one slice where they lie next to each other):
    the GeoJSON body writes them as they are. A consumer reads one of the two.
    """

    number_matched: int
    features: Iterator[bytes]
    runs: Iterator[bytes] | None = None


class FeatureBackend(Protocol):
    """What the views need from a spatial index of one dataset version."""

    def queryables(self) -> list[Queryable]: ...

    def extent(self) -> list[float] | None: ...

    def info(self) -> dict[str, Any]: ...

    def query(self, query: FeatureQuery) -> FeaturePage: ...

    def feature(self, feature_id: str) -> bytes | None: ...
