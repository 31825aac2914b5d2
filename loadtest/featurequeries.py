"""The query lists of the feature benchmark, and the brute-force truth they are checked with.

* ``load_features``: every feature of a GeoJSON FeatureCollection as (id, name,
  Shapely geometry); ids are the features' top-level ``id`` members.
* ``make_boxes``: deterministic "map-sized" boxes. Each side of a box is the same
  fraction (2-20 %, uniform) of the extent's side, so a box keeps the extent's
  shape and covers 0.04-4 % of its area; the box lies inside the extent and is
  kept only if at least ``min_matches`` features intersect it (rejection
  sampling). Coordinates are rounded to 6 decimals, the same numbers go into the
  URLs and into the brute-force check.
* ``pick_ids``: deterministic feature ids.
* ``Truth``: which features a box selects, by brute force over *every* geometry:
  ``exact`` (Shapely ``intersects``, what OGC API - Features means by bbox) and
  ``envelope`` (the feature's bounding box overlaps the box: what a server that
  filters only on an index of bounding boxes returns).
* ``classify``: how a server's id set compares with both.

Nothing here starts a server: the unit tests use it on small made-up data.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import shape

Box = tuple[float, float, float, float]

BOX_COUNT = 200
ID_COUNT = 200
MIN_MATCHES = 127
SIDE_FRACTION = (0.02, 0.20)
SEED = 20261121


@dataclass
class Features:
    """The dataset, as arrays in file order."""

    ids: list[int]
    names: list[str | None]
    geometries: np.ndarray[Any, Any]  # of shapely geometries (None when null)
    bounds: np.ndarray[Any, Any]  # (n, 4) minx, miny, maxx, maxy; NaN without geometry

    @property
    def extent(self) -> Box:
        b = self.bounds
        return (float(np.nanmin(b[:, 0])), float(np.nanmin(b[:, 1])),
                float(np.nanmax(b[:, 2])), float(np.nanmax(b[:, 3])))

    def __len__(self) -> int:
        return len(self.ids)


def features_from_collection(collection: dict[str, Any]) -> Features:
    ids, names, geometries = [], [], []
    for feature in collection["features"]:
        ids.append(int(feature["id"]))
        names.append((feature.get("properties") or {}).get("name"))
        geometry = feature.get("geometry")
        geometries.append(shape(geometry) if geometry else None)
    array = np.array(geometries, dtype=object)
    return Features(ids, names, array, shapely.bounds(array))


def load_features(path: Path) -> Features:
    with open(path, "rb") as src:
        return features_from_collection(json.load(src))


@dataclass(frozen=True)
class Truth:
    """The ids a box selects, by brute force."""

    exact: frozenset[int]
    envelope: frozenset[int]


def brute_force(features: Features, box: Box) -> Truth:
    """Test every feature against ``box`` (no index)."""
    ids = np.array(features.ids)
    polygon = shapely.box(*box)
    exact = shapely.intersects(features.geometries, polygon)
    b = features.bounds
    with np.errstate(invalid="ignore"):  # NaN bounds (no geometry) compare False
        envelope = ((b[:, 0] <= box[2]) & (b[:, 2] >= box[0])
                    & (b[:, 1] <= box[3]) & (b[:, 3] >= box[1]))
    return Truth(frozenset(ids[exact].tolist()), frozenset(ids[envelope].tolist()))


def make_boxes(features: Features, count: int = BOX_COUNT, *, seed: int = SEED,
               min_matches: int = MIN_MATCHES,
               side_fraction: tuple[float, float] = SIDE_FRACTION,
               max_tries: int = 100_000) -> list[tuple[Box, int]]:
    """``count`` boxes, each with its number of exactly intersecting features."""
    rng = random.Random(seed)
    minx, miny, maxx, maxy = features.extent
    width, height = maxx - minx, maxy - miny
    boxes: list[tuple[Box, int]] = []
    for _ in range(max_tries):
        if len(boxes) == count:
            return boxes
        fraction = rng.uniform(*side_fraction)
        w, h = width * fraction, height * fraction
        x = minx + rng.random() * (width - w)
        y = miny + rng.random() * (height - h)
        box = (round(x, 6), round(y, 6), round(x + w, 6), round(y + h, 6))
        matches = len(brute_force(features, box).exact)
        if matches >= min_matches:
            boxes.append((box, matches))
    raise ValueError(f"only {len(boxes)} of {count} boxes with >= {min_matches} matches "
                     f"in {max_tries} tries")


def pick_ids(features: Features, count: int = ID_COUNT, *, seed: int = SEED) -> list[int]:
    """``count`` distinct ids of features, in a deterministic random order."""
    return random.Random(seed).sample(sorted(features.ids), min(count, len(features)))


def bbox_param(box: Box) -> str:
    return ",".join(f"{v:.6f}" for v in box)


@dataclass(frozen=True)
class Comparison:
    """A server's ids for a box against the truth."""

    verdict: str  # "exact", "envelope" or "wrong"
    returned: int
    missing: int  # exact matches not returned
    extra: int  # returned but not exact matches
    duplicates: int


def classify(returned: Sequence[int], truth: Truth) -> Comparison:
    got = frozenset(returned)
    if got == truth.exact:
        verdict = "exact"
    elif got == truth.envelope:
        verdict = "envelope"
    else:
        verdict = "wrong"
    return Comparison(verdict, len(returned), len(truth.exact - got), len(got - truth.exact),
                      len(returned) - len(got))


def least_matching(boxes: Sequence[tuple[Box, int]], count: int) -> list[int]:
    """Indexes of the ``count`` boxes with the fewest matches (cheap to check in full)."""
    order = sorted(range(len(boxes)), key=lambda i: (boxes[i][1], i))
    return sorted(order[:count])


def feature_ids(features: Iterable[dict[str, Any]]) -> list[int]:
    """The ``id`` members of GeoJSON features as integers (servers send ints or strings)."""
    return [int(f["id"]) for f in features]
