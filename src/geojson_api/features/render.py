"""Items pages as a stream of bytes: one feature after another, never one big list.

Features come from the backend already serialised, so a page of 10,000
features is never held as Python objects; chunks of about ``CHUNK_BYTES``
are handed to the server as they fill.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson

from ..http import GEOJSON, HTML, JSON
from .documents import Url, link
from .query import FeaturePage, FeatureQuery

CHUNK_BYTES = 64 * 1024


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def number_returned(matched: int, query: FeatureQuery) -> int:
    return max(0, min(query.limit, matched - query.offset))


def page_links(
    url: Url, name: str, args: list[tuple[str, str]], query: FeatureQuery, matched: int
) -> list[dict[str, str]]:
    """self, next and prev of an items page, keeping the client's other parameters."""
    base = url("features.items", cid=name)
    kept = [(k, v) for k, v in args if k not in ("limit", "offset")]

    def at(offset: int, fmt: str | None = None) -> str:
        pairs = [*kept, ("limit", str(query.limit)), ("offset", str(offset))]
        if fmt is not None:
            pairs = [(k, v) for k, v in pairs if k != "f"] + [("f", fmt)]
        return base + "?" + urlencode(pairs, safe=",:/")

    links = [link(at(query.offset), "self", GEOJSON, "This page"),
             link(at(query.offset, "html"), "alternate", HTML, "This page as HTML")]
    if query.offset + query.limit < matched:
        links.append(link(at(query.offset + query.limit), "next", GEOJSON, "Next page"))
    if query.offset > 0:
        links.append(link(at(max(0, query.offset - query.limit)), "prev", GEOJSON,
                          "Previous page"))
    links.append(link(url("features.collection", cid=name), "collection", JSON,
                      "The collection"))
    return links


def items_body(
    page: FeaturePage, query: FeatureQuery, links: list[dict[str, str]]
) -> Iterator[bytes]:
    """The FeatureCollection of one page, in chunks."""
    yield b'{"type":"FeatureCollection","features":['
    buffer: list[bytes] = []
    size = 0
    for i, feature in enumerate(page.runs if page.runs is not None else page.features):
        if i:
            buffer.append(b",\n")
        buffer.append(feature)
        size += len(feature)
        if size >= CHUNK_BYTES:
            yield b"".join(buffer)
            buffer, size = [], 0
    yield b"".join(buffer)
    tail = {"numberMatched": page.number_matched,
            "numberReturned": number_returned(page.number_matched, query),
            "timeStamp": now_iso(), "links": links}
    yield b"]," + orjson.dumps(tail)[1:]


def with_links(feature: bytes, links: list[dict[str, Any]]) -> bytes:
    """A serialised feature with a ``links`` member added."""
    return feature[:-1] + b',"links":' + orjson.dumps(links) + b"}"


def tee(chunks: Iterator[bytes], limit: int, keep: Callable[[bytes], None]) -> Iterator[bytes]:
    """Pass ``chunks`` through; hand the whole body to ``keep`` if it stays within limit."""
    kept: list[bytes] | None = []
    size = 0
    for chunk in chunks:
        if kept is not None:
            size += len(chunk)
            if size <= limit:
                kept.append(chunk)
            else:
                kept = None
        yield chunk
    if kept is not None:
        keep(b"".join(kept))
