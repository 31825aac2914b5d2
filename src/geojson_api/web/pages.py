"""What the pages show beside their JSON document, prepared for the templates.

Pure functions of the documents and versions (no request), so the views only
pick the template; :mod:`.negotiation` renders it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from ..http import ENCODINGS
from ..versions import Version


def html_href(href: str) -> str:
    """A document's href with ``f=html`` in place of any ``f``: the URL of its page."""
    parts = urlsplit(href)
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "f"]
    return urlunsplit(parts._replace(query=urlencode([*pairs, ("f", "html")], safe=",:/")))


def downloads(version: Version) -> list[tuple[str, int]]:
    """(encoding, bytes) of the whole file: identity, then each variant built so far."""
    rows = [("identity", version.size)]
    rows += [(coding, version.variant_size(coding)) for coding in ENCODINGS
             if version.variant(coding) is not None]
    return rows


def items(features: Iterable[bytes], links: list[dict[str, str]],
          item_href: Callable[[Any], str]) -> dict[str, Any]:
    """An items page's table rows and columns, and its previous and next pages."""
    rows = []
    for raw in features:
        feature = orjson.loads(raw)
        feature["href"] = item_href(feature["id"])
        rows.append(feature)
    columns = list(dict.fromkeys(name for f in rows for name in (f.get("properties") or {})))
    pager = {link["rel"]: html_href(link["href"]) for link in links
             if link["rel"] in ("prev", "next")}
    return {"features": rows, "columns": columns, "links": pager}


def form_fields(args: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The query parameters an items page's search form carries on unchanged."""
    return [(k, v) for k, v in args if k not in ("bbox", "limit", "offset", "f")]
