"""The dataset API and health endpoints (JSON)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, url_for

from .catalog import Catalog, Version
from .errors import APIError, error_response
from .names import parse_request_name

bp = Blueprint("api", __name__)


def _catalog() -> Catalog:
    return current_app.extensions["catalog"]  # type: ignore[no-any-return]


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z"
    )


def _links(name: str) -> list[dict[str, str]]:
    return [
        {"rel": "self", "type": "application/json",
         "href": url_for("api.dataset", raw=name, _external=True)},
        {"rel": "enclosure", "type": "application/geo+json",
         "href": url_for("delivery.geojson", raw=name, _external=True)},
    ]


def describe(version: Version) -> dict[str, Any]:
    """The public document of a dataset's current version."""
    meta = version.meta
    return {
        "name": version.name,
        "status": "ready",
        "version": version.id,
        "sha256": meta["sha256"],
        "bytes": version.size,
        "features": meta["features"],
        "bbox": meta["bbox"],
        "geometry_types": meta["geometry_types"],
        "properties": meta["properties"],
        "modified": _iso(version.modified),
        "published": _iso(meta["published"]),
        "encodings": [e for e in ("gzip", "br") if version.variant(e) is not None],
        "problem_count": meta["problem_count"],
        "problems": meta["problems"],
        "links": _links(version.name),
    }


def _entry(catalog: Catalog, name: str) -> dict[str, Any]:
    try:
        return describe(catalog.current(name))
    except APIError as exc:
        return {"name": name, "status": exc.code, "error": exc.description,
                "links": _links(name)}


@bp.get("/api/datasets")
def datasets() -> Response:
    """Every published dataset with its metadata."""
    catalog = _catalog()
    entries = [_entry(catalog, name) for name in catalog.names()]
    return jsonify(
        datasets=entries,
        links=[{"rel": "self", "type": "application/json",
                "href": url_for("api.datasets", _external=True)}],
    )


@bp.get("/api/datasets/<path:raw>")
def dataset(raw: str) -> Response:
    """One dataset's metadata."""
    return jsonify(describe(_catalog().current(parse_request_name(raw))))


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness: the data folder is readable and the state folder writable."""
    problems = _catalog().readiness()
    if problems:
        return error_response(503, "not-ready", "; ".join(problems.values()), checks=problems)
    return jsonify(status="ready")


@bp.get("/")
def index() -> Response:
    """Where to go from here."""
    return jsonify(
        title="geojson-api",
        links=[
            {"rel": "data", "type": "application/json",
             "href": url_for("api.datasets", _external=True)},
            {"rel": "health", "href": url_for("api.healthz", _external=True)},
            {"rel": "ready", "href": url_for("api.readyz", _external=True)},
        ],
    )


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
