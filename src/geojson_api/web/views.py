"""The web blueprint's own routes: static assets under their hashed names."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app, send_file

from .. import http
from ..errors import AssetNotFound
from .assets import Assets

bp = Blueprint("web", __name__, template_folder="templates")


def assets() -> Assets:
    return current_app.extensions["assets"]  # type: ignore[no-any-return]


@bp.get("/assets/<name>")
def asset(name: str) -> Response:
    """A static file by hashed name: a year in any cache, a strong ETag (its digest)."""
    found = assets().find(name)
    if found is None:
        raise AssetNotFound(f"no asset is named {name!r}: asset names carry the digest of "
                            "the current content; reload the page that linked it")
    return http.conditional(http.strong_etag(found.digest), http.IMMUTABLE,
                            lambda: _file(found.path, found.mimetype))


def _file(path: Path, mimetype: str) -> Response:
    response = send_file(path, mimetype=mimetype, etag=False, conditional=False, max_age=None)
    del response.headers["Content-Disposition"]  # send_file's "inline; filename=...": noise
    return response
