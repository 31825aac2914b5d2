"""Query parameters of the items endpoint, parsed into a :class:`FeatureQuery`.

Every parameter is checked; anything unknown, repeated or malformed is a 400
that names the parameter and what was expected. ``limit`` above the maximum
is clamped, as OGC API - Features requires, never refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence

from ..errors import InvalidParameter, UnknownParameter
from .geometry import Box, split_antimeridian
from .query import FeatureQuery, Queryable, Scalar, SortKey

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CRS84H = "http://www.opengis.net/def/crs/OGC/0/CRS84h"
FORMATS = {"json", "geojson", "html"}
ITEMS_PARAMETERS = {"bbox", "bbox-crs", "limit", "offset", "properties", "sortby", "f"}
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""Integers outside SQLite's (and JSON Schema's ``int64``) range are refused, never passed on."""

# The exact syntax of the numbers the OpenAPI document promises: JSON's integers and
# numbers, with nothing around them ("+5", " 5", "5_000" and non-ASCII digits are not
# numbers here).
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def single(args: Mapping[str, Sequence[str]], name: str) -> str | None:
    """The one value of a parameter, None when absent; given twice is an error."""
    values = args.get(name) or []
    if len(values) > 1:
        raise InvalidParameter(f"parameter {name!r} is given {len(values)} times; give it once")
    return values[0] if values else None


def check_format(args: Mapping[str, Sequence[str]]) -> None:
    """``f`` may ask for JSON (``json``, ``geojson``) or the page (``html``)."""
    value = single(args, "f")
    if value is not None and value not in FORMATS:
        raise InvalidParameter(f"f={value!r} is not served; use f=json or f=html")


def reject_unknown(args: Mapping[str, Sequence[str]], known: set[str]) -> None:
    unknown = sorted(set(args) - known)
    if unknown:
        raise UnknownParameter(
            f"unknown query parameter(s): {', '.join(unknown)}; "
            f"this endpoint accepts {', '.join(sorted(known)) or 'none'}"
        )


def parse_items(
    args: Mapping[str, Sequence[str]],
    queryables: Sequence[Queryable],
    property_names: Sequence[str],
    default_limit: int,
    max_limit: int,
) -> FeatureQuery:
    """Validate the items parameters (``args``: name -> list of values)."""
    types = {q.name: q.type for q in queryables}
    filterable = {name: kind for name, kind in types.items() if name not in ITEMS_PARAMETERS}
    reject_unknown(args, ITEMS_PARAMETERS | set(filterable))
    check_format(args)
    boxes = _bbox(single(args, "bbox"), single(args, "bbox-crs"))
    return FeatureQuery(
        boxes=boxes,
        limit=min(_integer(args, "limit", default_limit, minimum=1), max_limit),
        offset=_integer(args, "offset", 0, minimum=0),
        filters=tuple((name, _typed(name, single(args, name) or "", kind))
                      for name, kind in sorted(filterable.items()) if name in args),
        properties=_properties(single(args, "properties"), property_names),
        sortby=_sortby(single(args, "sortby"), types),
    )


def _integer(args: Mapping[str, Sequence[str]], name: str, default: int, minimum: int) -> int:
    raw = single(args, name)
    if raw is None:
        return default
    value = parse_integer(name, raw)
    if value < minimum:
        raise InvalidParameter(f"{name} must be {minimum} or more, not {value}")
    return value


def parse_integer(name: str, raw: str) -> int:
    """A 64-bit integer written as JSON writes it; anything else is a 400 naming ``name``."""
    if _INTEGER.fullmatch(raw) is None:
        raise InvalidParameter(f"{name} must be an integer, not {raw!r}")
    value = int(raw)
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidParameter(f"{name} must be between {INT64_MIN} and {INT64_MAX}, "
                               f"not {raw}")
    return value


def parse_number(name: str, raw: str) -> float:
    """A finite number written as JSON writes it; anything else is a 400 naming ``name``."""
    value = float(raw) if _NUMBER.fullmatch(raw) else math.nan
    if not math.isfinite(value):
        raise InvalidParameter(f"{name} must be a finite number, not {raw!r}")
    return value


def _bbox(raw: str | None, crs: str | None) -> tuple[Box, ...]:
    if crs is not None and crs not in (CRS84, CRS84H):
        raise InvalidParameter(f"bbox-crs {crs!r} is not supported; coordinates are {CRS84}")
    if raw is None:
        return ()
    numbers = _numbers(raw)
    if len(numbers) == 6:  # minx, miny, minz, maxx, maxy, maxz: heights are ignored
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    if len(numbers) != 4:
        raise InvalidParameter(f"bbox needs 4 (or 6) comma-separated numbers, got {raw!r}")
    minx, miny, maxx, maxy = numbers
    if not (-90 <= miny <= maxy <= 90):
        raise InvalidParameter(
            "bbox latitudes must satisfy -90 <= south <= north <= 90 (order: "
            f"west,south,east,north), got {raw!r}")
    if not (-180 <= minx <= 180 and -180 <= maxx <= 180):
        raise InvalidParameter(f"bbox longitudes must be within -180..180, got {raw!r}")
    return tuple(split_antimeridian((minx, miny, maxx, maxy)))


def _numbers(raw: str) -> list[float]:
    parts = raw.split(",")
    if any(_NUMBER.fullmatch(part) is None for part in parts):
        raise InvalidParameter(f"bbox must be comma-separated numbers, got {raw!r}")
    return [parse_number("bbox", part) for part in parts]


def _boolean(name: str, raw: str) -> bool:
    if raw not in ("true", "false"):
        raise InvalidParameter(f"{name} is a boolean: use true or false, not {raw!r}")
    return raw == "true"


_PARSERS: dict[str, Callable[[str, str], Scalar]] = {
    "integer": parse_integer,
    "number": parse_number,
    "boolean": _boolean,
    "string": lambda _name, raw: raw,
}


def _typed(name: str, raw: str, kind: str) -> Scalar:
    """A filter value in the property's type (``?rank=3``, ``?active=true``)."""
    return _PARSERS[kind](name, raw)


def _properties(raw: str | None, known: Sequence[str]) -> tuple[str, ...] | None:
    if raw is None:
        return None
    names = tuple(dict.fromkeys(p for p in raw.split(",") if p))  # "" terms are skipped
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InvalidParameter(
            f"properties: unknown property {', '.join(map(repr, unknown))}; "
            f"the collection has {', '.join(known) or 'none'}")
    return names


def _sortby(raw: str | None, types: Mapping[str, str]) -> tuple[SortKey, ...]:
    if not raw:  # absent, or an empty list
        return ()
    keys = []
    for term in raw.split(","):
        # "+name" arrives as " name" when the client did not percent-encode the plus.
        text = term.strip()
        if not text:  # an empty term, as in "a,,b" or a trailing comma
            continue
        descending = text.startswith("-")
        name = text.lstrip("+-").strip()
        if name not in types:
            raise InvalidParameter(
                f"sortby: {name!r} is not a sortable property; use one of "
                f"{', '.join(sorted(types)) or 'none'}")
        keys.append(SortKey(name, descending))
    return tuple(keys)
