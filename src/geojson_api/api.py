"""The dataset API and health endpoints (JSON)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request, url_for

from . import http, requestinfo
from .cache import cached, shared_cache
from .catalog import Catalog, Version
from .errors import APIError, NotFound, Unauthorized, error_response
from .features.params import check_format, reject_unknown
from .metrics.wsgi import authorized, bearer
from .web import negotiation

bp = Blueprint("api", __name__)


def _catalog() -> Catalog:
    return current_app.extensions["catalog"]  # type: ignore[no-any-return]


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z"
    )


def _links(name: str) -> list[dict[str, str]]:
    return [
        {"rel": "self", "type": http.JSON,
         "href": url_for("api.dataset", raw=name, _external=True)},
        {"rel": "enclosure", "type": http.GEOJSON,
         "href": url_for("delivery.geojson", raw=name, _external=True)},
    ]


def _encodings(version: Version) -> list[str]:
    return [e for e in http.ENCODINGS if version.variant(e) is not None]


State = Version | APIError  # a dataset's current version, or why it has none
Refusal = dict[str, Any] | None  # why the file's newer content is not served, if it is not


def _state(catalog: Catalog, name: str) -> tuple[State, Refusal]:
    try:
        state: State = catalog.current(name)
    except APIError as exc:
        state = exc
    return state, catalog.refusal(name)


def _token(name: str, state: State, refusal: Refusal) -> str:
    """Everything a dataset's entry depends on: version and variants, or the error;
    and the refusal of a newer content, if any (each of its members is shown)."""
    refused = f":{sorted(refusal.items())!r}" if refusal else ""
    if isinstance(state, APIError):
        return f"{name}:{state.code}:{state.description}{refused}"
    return f"{name}:{state.id}:{','.join(_encodings(state))}{refused}"


def _refused(refusal: Refusal) -> dict[str, Any]:
    """The ``refused`` member: the file's newest content, and why it is not the one served."""
    if not refusal:
        return {}
    entry = {"code": refusal["code"], "reason": refusal["reason"], "at": _iso(refusal["at"])}
    if "retry_at" in refusal:
        entry["retry_at"] = _iso(refusal["retry_at"])
    return {"refused": entry}


def describe(version: Version, refusal: Refusal = None) -> dict[str, Any]:
    """The public document of a dataset's current version (and of a refused newer one)."""
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
        # by kind, and features with at least one (absent from versions scanned before)
        "problem_counts": meta.get("problem_counts", {}),
        "problem_features": meta.get("problem_features", 0),
        "problems": meta["problems"],
        **_refused(refusal),
        "links": _links(version.name),
    }


def _entry(name: str, state: State, refusal: Refusal) -> dict[str, Any]:
    if isinstance(state, APIError):
        return {"name": name, "status": state.code, "error": state.description,
                **_refused(refusal), "links": _links(name)}
    return describe(state, refusal)


def _json(body: bytes) -> Response:
    return current_app.response_class(body, mimetype=http.JSON)


def _dump(value: Any) -> bytes:
    return current_app.json.dumps(value).encode()


def _listing(states: dict[str, tuple[State, Refusal]]) -> bytes:
    entries = [_entry(name, *state) for name, state in states.items()]
    href = url_for("api.datasets", _external=True)
    self_link = {"rel": "self", "type": http.JSON, "href": href}
    page_link = {"rel": "alternate", "type": http.HTML, "href": href + "?f=html",
                 "title": "This document as HTML"}
    return _dump({"datasets": entries, "links": [self_link, page_link]})


def _answer(kind: str, tokens: list[str], build: Callable[[], bytes]) -> Response:
    """The document keyed by ``tokens`` (and the host of its links): 304 when the
    client's copy is current, else from the shared cache or ``build()``.

    ``kind`` names the cache entry (``dataset:<name>``), so that an operator can
    find a dataset's entries in Redis; the ETag makes it exact.
    """
    etag = http.weak_etag(request.host_url, *tokens)
    return http.conditional(etag, http.REVALIDATE,
                            lambda: _json(cached(f"{kind}:{etag}", build)))


@bp.get("/api/datasets")
def datasets() -> Response:
    """Every dataset with its metadata; ETag and cache keyed by the set of current versions."""
    check_format(request.args.to_dict(flat=False))
    catalog = _catalog()
    states = {name: _state(catalog, name) for name in catalog.names()}
    tokens = [_token(name, *state) for name, state in states.items()]
    if negotiation.wants_html():
        return negotiation.page("datasets.html", tokens, lambda: {
            "doc": current_app.json.loads(_listing(states)), "title": "Datasets",
            "crumbs": []})
    return negotiation.as_json(_answer("datasets", tokens, lambda: _listing(states)))


@bp.get("/api/datasets/<path:raw>")
def dataset(raw: str) -> Response:
    """One dataset's metadata; ETag and cache keyed by its version."""
    catalog = _catalog()
    version = requestinfo.resolve(catalog, raw)
    refusal = catalog.refusal(version.name)
    return _answer(f"dataset:{version.name}", [_token(version.name, version, refusal)],
                   lambda: _dump(describe(version, refusal)))


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


@bp.get("/api/metrics")
def metrics_summary() -> Response:
    """The counted metrics of this instance as a small JSON digest (the dashboard's panel);
    behind the metrics token when one is set, like ``/metrics``."""
    reject_unknown(request.args.to_dict(flat=False), set())
    scrape = current_app.extensions.get("metrics")
    if scrape is None:
        raise NotFound("metrics are off here (GEOJSON_API_METRICS=false)")
    token = current_app.config["SETTINGS"].metrics_token
    if token and not authorized(request.environ, bearer(token)):
        raise Unauthorized("/api/metrics needs the metrics token")
    response = jsonify(scrape.summary())
    response.headers["Cache-Control"] = http.NO_STORE
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
