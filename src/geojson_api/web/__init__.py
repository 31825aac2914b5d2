"""The web face: HTML pages of every resource, hashed static assets, the CSP.

``init_app`` hashes the static files once (and fails in one line when the
built MapLibre files are missing), offers templates ``asset(name)`` for their
URLs, serves them under ``/assets/`` and puts the Content-Security-Policy on
every HTML response.
"""

from __future__ import annotations

from flask import Flask

from . import assets, dashboard, security, views


def init_app(app: Flask, version: str) -> None:
    """``version``: the package's, shown in every page's footer."""
    registry = assets.Assets.collect(assets.sources())
    app.extensions["assets"] = registry
    app.extensions["web_build"] = assets.build_token(registry)
    app.jinja_env.globals.update(asset=registry.url, version=version)
    app.register_blueprint(views.bp)
    app.register_blueprint(dashboard.bp)
    app.after_request(security.add_policy)
