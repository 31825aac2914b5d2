"""The shared HTTP rules (geojson_api.http): codings, ETags, conditional requests, ranges."""

from __future__ import annotations

import re
from typing import Any

import pytest
from werkzeug.exceptions import PreconditionFailed, RequestedRangeNotSatisfiable

from geojson_api import http
from geojson_api.settings import Settings

LAST_MODIFIED = "Tue, 01 Dec 2026 10:00:00 GMT"
EARLIER = "Tue, 01 Dec 2026 09:59:59 GMT"
LATER = "Tue, 01 Dec 2026 10:00:01 GMT"
STRONG = '"522f32180b050618"'
WEAK = 'W/"0123456789abcdef0123456789abcdef"'


def environ(**headers: str) -> dict[str, Any]:
    """A GET's WSGI environ with the given request headers (If_Match= -> HTTP_IF_MATCH)."""
    return {"REQUEST_METHOD": "GET", **{f"HTTP_{k.upper()}": v for k, v in headers.items()}}


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, []), ("", []), ("gzip", ["gzip"]), ("gzip, br", ["br", "gzip"]),
     ("br;q=0.5, gzip", ["gzip", "br"]), ("gzip;q=0, br;q=0", []), ("*", ["br", "gzip"]),
     ("identity", []), ("deflate, gzip;q=0.1", ["gzip"]), ("*;q=0.2, gzip;q=0.1", ["br", "gzip"])],
)
def test_accepted_encodings_best_first(header: str | None, expected: list[str]) -> None:
    assert http.accepted_encodings(header) == expected


def test_encodings_and_preference_name_the_same_codings() -> None:
    assert sorted(http.ENCODINGS) == sorted(http.ENCODING_PREFERENCE)


def test_cache_control_from_settings() -> None:
    assert http.cache_control(Settings()) == "public, max-age=60, s-maxage=300"
    private = Settings(cache_public=False, cache_max_age=5, cache_s_maxage=0)
    assert http.cache_control(private) == "private, max-age=5, s-maxage=0"


def test_one_etag_scheme() -> None:
    assert http.strong_etag("522f32180b050618") == STRONG
    assert http.strong_etag("522f32180b050618", "br") == '"522f32180b050618.br"'
    tag = http.weak_etag("http://localhost/", "v1", "limit=3")
    assert re.fullmatch(r'W/"[0-9a-f]{32}"', tag)
    assert tag == http.weak_etag("http://localhost/", "v1", "limit=3")
    assert tag != http.weak_etag("http://localhost/", "v1", "limit=4")
    assert tag != http.weak_etag("http://other/", "v1", "limit=3")
    # parts are separated, not concatenated
    assert http.weak_etag("ab", "c") != http.weak_etag("a", "bc")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({}, False),
     ({"If_None_Match": STRONG}, True), ({"If_None_Match": f'"x", {STRONG}'}, True),
     ({"If_None_Match": f"W/{STRONG}"}, True),  # weak comparison
     ({"If_None_Match": "*"}, True), ({"If_None_Match": '"x"'}, False),
     ({"If_Modified_Since": LAST_MODIFIED}, True), ({"If_Modified_Since": LATER}, True),
     ({"If_Modified_Since": EARLIER}, False), ({"If_Modified_Since": "yesterday"}, False),
     # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2 step 3 before 4)
     ({"If_None_Match": '"x"', "If_Modified_Since": LATER}, False),
     ({"If_None_Match": STRONG, "If_Modified_Since": EARLIER}, True),
     ({"If_None_Match": ",", "If_Modified_Since": LATER}, False),  # present: it decides
     ({"If_None_Match": "", "If_Modified_Since": LATER}, True),  # empty: absent
     ({"If_Match": STRONG}, False), ({"If_Match": "*"}, False),
     ({"If_Unmodified_Since": LAST_MODIFIED}, False), ({"If_Unmodified_Since": LATER}, False),
     ({"If_Unmodified_Since": "tomorrow"}, False),  # not a date: ignored
     ({"If_Match": STRONG, "If_Unmodified_Since": EARLIER}, False),  # If-Match decides
     ({"If_Match": STRONG, "If_None_Match": STRONG}, True)],
)
def test_preconditions_of_a_stored_file(headers: dict[str, str], expected: bool) -> None:
    assert http.check_preconditions(environ(**headers), STRONG, LAST_MODIFIED) is expected


@pytest.mark.parametrize(
    "headers",
    [{"If_Match": '"other"'}, {"If_Match": f"W/{STRONG}"},  # strong comparison
     {"If_Match": "garbage"}, {"If_Unmodified_Since": EARLIER},
     {"If_Match": '"other"', "If_None_Match": STRONG},  # 412 before 304
     {"If_Unmodified_Since": EARLIER, "If_Modified_Since": LATER}],
)
def test_failed_preconditions_are_412(headers: dict[str, str]) -> None:
    with pytest.raises(PreconditionFailed) as failed:
        http.check_preconditions(environ(**headers), STRONG, LAST_MODIFIED)
    assert failed.value.code == 412 and failed.value.description


def test_preconditions_of_a_rendered_document() -> None:
    """A weak ETag matches If-None-Match; If-Match only with "*"; no date: dates ignored."""
    assert http.check_preconditions(environ(If_None_Match=WEAK), WEAK)
    assert http.check_preconditions(environ(If_None_Match=WEAK.removeprefix("W/")), WEAK)
    assert http.check_preconditions(environ(If_Match="*"), WEAK) is False
    for header in (WEAK, WEAK.removeprefix("W/")):
        with pytest.raises(PreconditionFailed):
            http.check_preconditions(environ(If_Match=header), WEAK)
    assert http.check_preconditions(environ(If_Modified_Since=LATER), WEAK) is False
    assert http.check_preconditions(environ(If_Unmodified_Since=EARLIER), WEAK) is False


def test_a_304_names_its_fields() -> None:
    assert http.not_modified_headers(STRONG, "public, max-age=1", "Accept-Encoding") == [
        ("ETag", STRONG), ("Cache-Control", "public, max-age=1"), ("Vary", "Accept-Encoding")]
    assert http.not_modified_headers(WEAK, "no-cache") == [
        ("ETag", WEAK), ("Cache-Control", "no-cache")]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({}, None), ({"Range": "bytes=0-9"}, (0, 10)), ({"Range": "bytes=-5"}, (95, 100)),
     ({"Range": "bytes=90-"}, (90, 100)), ({"Range": "bytes=0-1,4-5"}, None),
     ({"Range": "items=0-5"}, None), ({"Range": "bytes=a-b"}, None),
     ({"Range": "bytes=0-9", "If_Range": STRONG}, (0, 10)),
     ({"Range": "bytes=0-9", "If_Range": '"old"'}, None),
     ({"Range": "bytes=0-9", "If_Range": f"W/{STRONG}"}, None),  # weak never matches
     ({"Range": "bytes=0-9", "If_Range": LAST_MODIFIED}, (0, 10)),
     ({"Range": "bytes=0-9", "If_Range": LATER}, None),  # a date must match exactly
     ({"Range": "bytes=0-9", "If_Range": "garbage"}, None)],
)
def test_byte_range(headers: dict[str, str], expected: tuple[int, int] | None) -> None:
    assert http.byte_range(environ(**headers), STRONG, LAST_MODIFIED, 100) == expected


def test_unsatisfiable_range_is_416_with_the_size() -> None:
    with pytest.raises(RequestedRangeNotSatisfiable) as missed:
        http.byte_range(environ(Range="bytes=100-"), STRONG, LAST_MODIFIED, 100)
    assert ("Content-Range", "bytes */100") in missed.value.get_headers()


def test_reply_status_line() -> None:
    assert http.Reply(206, []).status_line == "206 PARTIAL CONTENT"
    assert http.Reply(304, []).status_line == "304 NOT MODIFIED"
