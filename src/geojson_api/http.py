"""The HTTP rules every endpoint shares: media types, content codings,
Cache-Control, ETags and conditional requests.

Nothing here knows datasets or catalogs; views and the delivery fast lane
pass in what they know (an ETag, a Last-Modified date, a size) and get the
protocol's answer. Parsing is Werkzeug's; the decisions follow RFC 9110.

ETags, one scheme for the whole service:

- **strong** ``"<version>"`` (and ``"<version>.gzip"``, ``"<version>.br"``)
  where the body is the bytes of a stored file (``/geojson/<name>``): a
  version id is a digest of the content, so equal tags mean equal bytes, and
  byte ranges and ``If-Range`` can rely on them; ``"<version>.<part>[.<coding>]"``
  for the files built from a version and their parts (a vector tile, the
  tile archive), which are as immutable as the version;
- **weak** ``W/"<32 hex digits>"`` for JSON documents we render: the first
  128 bits of a SHA-256 over everything the document depends on (the host of
  its absolute links, the version ids, the query...). Two renderings with
  one tag are equivalent, not necessarily byte-equal (an items page carries
  its ``timeStamp``).

Every tag is quoted by Werkzeug's ``quote_etag`` and compared as RFC 9110
8.8.3.2 says: strongly for If-Match and If-Range, weakly for If-None-Match.

Protocol failures are Werkzeug's exceptions (412 ``PreconditionFailed``, 416
``RequestedRangeNotSatisfiable``), which :mod:`geojson_api.errors` renders in
the service's JSON error shape like every other error.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from flask import Response, current_app, request
from werkzeug.exceptions import PreconditionFailed, RequestedRangeNotSatisfiable
from werkzeug.http import (
    HTTP_STATUS_CODES,
    parse_accept_header,
    parse_date,
    parse_etags,
    parse_range_header,
    quote_etag,
    unquote_etag,
)

# -- media types ------------------------------------------------------------------
GEOJSON = "application/geo+json"
JSON = "application/json"
OPENAPI = "application/vnd.oai.openapi+json;version=3.0"
SCHEMA = "application/schema+json"
HTML = "text/html"

# -- content codings ----------------------------------------------------------------
ENCODINGS = ("gzip", "br")
"""The codings a version's stored variants may have, in the order listings show them."""
ENCODING_PREFERENCE = ("br", "gzip")
"""Best first: it breaks ties between codings the client gives the same q-value."""
VARY_ENCODING = "Accept-Encoding"

# -- Cache-Control ------------------------------------------------------------------
NO_STORE = "no-store"
"""Errors: never kept by any cache."""
REVALIDATE = "no-cache"
"""Listings that change with any dataset: kept, but revalidated (by ETag) before each use."""
IMMUTABLE = "public, max-age=31536000, immutable"
"""Static assets under content-hashed names: a new content is a new URL."""

Environ = dict[str, Any]
Header = tuple[str, str]


class CacheSettings(Protocol):
    """The settings that shape the Cache-Control of dataset responses."""

    @property
    def cache_public(self) -> bool: ...
    @property
    def cache_max_age(self) -> int: ...
    @property
    def cache_s_maxage(self) -> int: ...


def cache_control(settings: CacheSettings) -> str:
    """Cache-Control of whole files and feature documents (one version's content)."""
    scope = "public" if settings.cache_public else "private"
    return f"{scope}, max-age={settings.cache_max_age}, s-maxage={settings.cache_s_maxage}"


def accepted_encodings(accept_encoding: str | None) -> list[str]:
    """The stored codings the client accepts, best first (q-value, then our preference)."""
    if not accept_encoding:
        return []
    accepted = parse_accept_header(accept_encoding)
    ranked = [(accepted[coding], -rank, coding)
              for rank, coding in enumerate(ENCODING_PREFERENCE)]
    return [coding for quality, _, coding in sorted(ranked, reverse=True) if quality > 0]


# -- ETags ----------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)  # a few per version, asked for on every download
def strong_etag(version: str, encoding: str | None = None) -> str:
    """The ETag of a stored file: its version id (a content digest), and its coding."""
    return quote_etag(version if encoding is None else f"{version}.{encoding}")


def part_etag(version: str, part: str, encoding: str | None = None) -> str:
    """The strong ETag of a stored file derived from a version (a tile, an archive):
    ``"<version>.<part>[.<coding>]"``; not cached, since there are many parts."""
    tag = f"{version}.{part}"
    return quote_etag(tag if encoding is None else f"{tag}.{encoding}")


def weak_etag(*parts: str) -> str:
    """The ETag of a rendered document: a digest of every part its body depends on."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
    return quote_etag(digest, weak=True)


# -- conditional requests -------------------------------------------------------------
def _date(value: str | None) -> datetime | None:
    return parse_date(value) if value else None


def _modified_after(last_modified: str | None, header: str | None) -> bool | None:
    """Whether the resource changed after the header's date; None when either date is
    missing or does not parse (the header is then ignored)."""
    since = _date(header)  # first: most requests have no such header
    modified = _date(last_modified) if since is not None else None
    if since is None or modified is None:
        return None
    return modified > since


def _if_match_holds(header: str, etag: str) -> bool:
    """RFC 9110 13.1.1, strong comparison: a weak tag only ever matches ``*``."""
    tags = parse_etags(header)
    value, weak = unquote_etag(etag)
    return tags.star_tag or (not weak and value is not None and tags.is_strong(value))


def check_preconditions(environ: Environ, etag: str, last_modified: str | None = None) -> bool:
    """Evaluate a GET or HEAD's preconditions in the order of RFC 9110 13.2.2.

    Raises 412 when If-Match matches no current tag or, without If-Match, the
    resource changed after If-Unmodified-Since. Returns True when the answer is
    304: If-None-Match matches (weakly), or, without If-None-Match, nothing
    changed since If-Modified-Since. Dates that do not parse, and dates for a
    resource without ``last_modified``, are ignored (RFC 9110 13.1.3, 13.1.4).
    """
    if ("HTTP_IF_MATCH" not in environ and "HTTP_IF_NONE_MATCH" not in environ
            and "HTTP_IF_MODIFIED_SINCE" not in environ
            and "HTTP_IF_UNMODIFIED_SINCE" not in environ):
        return False  # the common case, on the fast lane's hot path
    if_match = environ.get("HTTP_IF_MATCH")
    if if_match is not None:
        if not _if_match_holds(if_match, etag):
            raise PreconditionFailed(f"If-Match does not match the current version {etag}")
    elif _modified_after(last_modified, environ.get("HTTP_IF_UNMODIFIED_SINCE")):
        raise PreconditionFailed("the resource was modified after If-Unmodified-Since; "
                                 f"Last-Modified is {last_modified}")
    if_none_match = environ.get("HTTP_IF_NONE_MATCH")
    tags = parse_etags(if_none_match) if if_none_match is not None else None
    if tags:  # an empty field counts as absent
        return tags.contains_weak(unquote_etag(etag)[0] or "")
    return _modified_after(last_modified, environ.get("HTTP_IF_MODIFIED_SINCE")) is False


def not_modified_headers(etag: str, cache_control: str, vary: str | None = None
                         ) -> list[Header]:
    """The fields of a 304: those of RFC 9110 15.4.5 a 200 would carry (the server adds Date)."""
    headers = [("ETag", etag), ("Cache-Control", cache_control)]
    if vary is not None:
        headers.append(("Vary", vary))
    return headers


def _if_range_holds(header: str, etag: str, last_modified: str | None) -> bool:
    """RFC 9110 13.1.5: a strong tag equal to ours, or exactly our Last-Modified date."""
    date = parse_date(header)
    if date is not None:
        return _date(last_modified) == date
    theirs, their_weak = unquote_etag(header)
    ours, our_weak = unquote_etag(etag)
    return not (their_weak or our_weak) and theirs == ours


def byte_range(environ: Environ, etag: str, last_modified: str | None,
               size: int) -> tuple[int, int] | None:
    """(start, stop) of the Range of a GET to honour, or None to send the whole body.

    RFC 9110 14.2 lets a server ignore Range; we do for syntax that does not
    parse, for units other than bytes (which it must ignore), for multiple
    ranges, and when If-Range does not hold. A well-formed single range that
    misses the representation raises 416 with ``Content-Range: bytes */<size>``.
    """
    parsed = parse_range_header(environ.get("HTTP_RANGE"))
    if parsed is None or parsed.units != "bytes" or len(parsed.ranges) != 1:
        return None
    if_range = environ.get("HTTP_IF_RANGE")
    if if_range is not None and not _if_range_holds(if_range, etag, last_modified):
        return None
    bounds = parsed.range_for_length(size)
    if bounds is None:
        raise RequestedRangeNotSatisfiable(length=size)
    return bounds


# -- replies ---------------------------------------------------------------------------
@dataclass
class Reply:
    """Status, headers and body of a response made outside Flask (the fast lane)."""

    status: int
    headers: list[Header]
    body: Iterable[bytes] = field(default=())

    @property
    def status_line(self) -> str:
        return f"{self.status} {HTTP_STATUS_CODES[self.status].upper()}"  # as Werkzeug does


def conditional(etag: str, cache_control: str, build: Callable[[], Response],
                last_modified: str | None = None) -> Response:
    """A Flask view's answer under the request's preconditions: 304 or 412 when they
    say so (``build`` is then never called), else ``build()`` with ETag and Cache-Control."""
    if check_preconditions(request.environ, etag, last_modified):
        return current_app.response_class(
            status=304, headers=not_modified_headers(etag, cache_control))
    response = build()
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = cache_control
    if last_modified is not None:
        response.headers["Last-Modified"] = last_modified
    return response
