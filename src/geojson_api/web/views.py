"""The web blueprint's own routes: static assets under their hashed names."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app, request, send_file

from .. import http
from ..errors import AssetNotFound
from .assets import Asset, Assets

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
    encoding = _encoding(found)
    response = http.conditional(
        http.strong_etag(found.digest, encoding), http.IMMUTABLE,
        lambda: _file(found.path, found.mimetype) if encoding is None else
        current_app.response_class(found.encoded(encoding), mimetype=found.mimetype,
                                   headers={"Content-Encoding": encoding}))
    if found.compressible:
        response.vary.add("Accept-Encoding")
    return response


def _encoding(found: Asset) -> str | None:
    """The best coding the client accepts for a text asset (None: the file as it is)."""
    if not found.compressible:
        return None
    accepted = http.accepted_encodings(request.headers.get("Accept-Encoding"))
    return accepted[0] if accepted else None


def _file(path: Path, mimetype: str) -> Response:
    response = send_file(path, mimetype=mimetype, etag=False, conditional=False, max_age=None)
    del response.headers["Content-Disposition"]  # send_file's "inline; filename=...": noise
    return response
