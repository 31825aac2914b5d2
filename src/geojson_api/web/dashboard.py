"""The dashboard, ``GET /dashboard/``: datasets, a map of layers, features, readiness.

The page is a shell; ``static/dashboard.js`` does the work in the browser with
the public endpoints only (``/api/datasets``, ``/collections``, items pages,
vector tiles, ``/geojson/<name>``, ``/readyz``), so anything it shows a
dashboard served elsewhere can show too. How it keeps a 50 MB layer light:
a layer up to ``GEOJSON_API_DASHBOARD_WHOLE_FILE_BYTES`` loads as the whole
file; a bigger one draws the version's vector tiles once they are built, and
until then the items in view, one bbox page per pan (docs/web.md).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request, url_for

from ..features.params import reject_unknown
from ..settings import Settings
from . import negotiation

bp = Blueprint("dashboard", __name__)

PAGE_LIMIT = 1000
"""Features per bbox page while a big layer has no tiles (at most the items maximum)."""


@bp.get("/dashboard/")
def dashboard() -> Response:
    reject_unknown(request.args.to_dict(flat=False), set())
    settings: Settings = current_app.config["SETTINGS"]
    whole = settings.dashboard_whole_file_bytes
    limit = min(PAGE_LIMIT, settings.features_max_limit)
    return negotiation.page("dashboard.html", ["dashboard", str(whole), str(limit)], lambda: {
        "title": "Dashboard", "crumbs": [],
        "json_url": url_for("api.datasets", _external=True),
        "whole_file_bytes": whole, "page_limit": limit,
    })
