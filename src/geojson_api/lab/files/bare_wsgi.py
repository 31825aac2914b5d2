"""The ceiling for any Python app: a bare WSGI callable under the same Gunicorn config.

It answers ``GET /geojson/<name>`` with the bytes of ``<data>/<name>.geojson``
held in memory, and does nothing else: no framework, no validation, no
conditional requests. ``loadtest/wholefile.py --targets ...,bare`` runs it
beside the real app (``geojson_api.lab.targets.bare_server``, from the installed
package), so the report shows how much of the small-file cost is Gunicorn's own
request cycle and how much is ours. It is a benchmark fixture, not a server to
deploy, and reads its files at import: package data, not a module of the package.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

_DATA = Path(os.environ.get("GEOJSON_API_DATA_DIR", "data"))
_BODIES = {f"/geojson/{p.stem}": p.read_bytes() for p in _DATA.glob("*.geojson")}


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = _BODIES.get(environ.get("PATH_INFO", ""))
    if body is None:
        start_response("404 NOT FOUND", [("Content-Length", "0")])
        return []
    start_response("200 OK", [("Content-Type", "application/geo+json"),
                              ("Content-Length", str(len(body)))])
    return [body]
