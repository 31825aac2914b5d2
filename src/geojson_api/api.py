"""The dataset API and health endpoints (JSON)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request, url_for

from .cache import cached, shared_cache
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


def _encodings(version: Version) -> list[str]:
    return [e for e in ("gzip", "br") if version.variant(e) is not None]


State = Version | APIError  # a dataset's current version, or why it has none


def _state(catalog: Catalog, name: str) -> State:
    try:
        return catalog.current(name)
    except APIError as exc:
        return exc


def _token(name: str, state: State) -> str:
    """What a dataset's listing entry depends on: version and variants, or the error."""
    if isinstance(state, APIError):
        return f"{name}:{state.code}:{state.description}"
    return f"{name}:{state.id}:{','.join(_encodings(state))}"


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
        "encodings": _encodings(version),
        "problem_count": meta["problem_count"],
        "problems": meta["problems"],
        "links": _links(version.name),
    }


def _entry(name: str, state: State) -> dict[str, Any]:
    if isinstance(state, APIError):
        return {"name": name, "status": state.code, "error": state.description,
                "links": _links(name)}
    return describe(state)


def _json(body: bytes) -> Response:
    return current_app.response_class(body, mimetype="application/json")


def _dump(value: Any) -> bytes:
    return current_app.json.dumps(value).encode()


def _listing(states: dict[str, State]) -> bytes:
    entries = [_entry(name, state) for name, state in states.items()]
    self_link = {"rel": "self", "type": "application/json",
                 "href": url_for("api.datasets", _external=True)}
    return _dump({"datasets": entries, "links": [self_link]})


@bp.get("/api/datasets")
def datasets() -> Response:
    """Every published dataset with its metadata (cached per set of versions)."""
    catalog = _catalog()
    states = {name: _state(catalog, name) for name in catalog.names()}
    digest = hashlib.sha256("|".join(_token(n, s) for n, s in states.items()).encode())
    key = f"datasets:{request.host_url}:{digest.hexdigest()[:32]}"
    return _json(cached(key, lambda: _listing(states)))


@bp.get("/api/datasets/<path:raw>")
def dataset(raw: str) -> Response:
    """One dataset's metadata (cached per version)."""
    version = _catalog().current(parse_request_name(raw))
    variants = ",".join(_encodings(version))
    key = f"dataset:{request.host_url}:{version.name}:{version.id}:{variants}"
    return _json(cached(key, lambda: _dump(describe(version))))


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
    return jsonify(status="ready", cache=shared_cache().status())


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
