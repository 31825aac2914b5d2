"""The study's baseline: a naive Flask app, run on the Flask development server.

This mirrors the API the study measured before its production architecture:
each request for ``/geojson/<name>`` opens ``<data>/<name>.geojson``, reads the
whole file into memory and returns it. No streaming, no caching, no ETag, no
worker processes: the development server's one thread per connection. It is a
benchmark fixture, not a server to deploy. ``geojson-api bench`` starts it from the
installed package (``geojson_api/lab/files/``) as

    BASELINE_DATA_DIR=DIR python -m flask --app .../lab/files/baseline_app.py run \\
        --host 127.0.0.1 --port PORT --no-reload --no-debugger

The one liberty taken: names go through ``safe_join``, which costs nothing
measurable, so that the fixture cannot serve a file outside its folder.
"""

from __future__ import annotations

import os

from flask import Flask, Response, abort
from werkzeug.security import safe_join

DATA_DIR = os.environ.get("BASELINE_DATA_DIR", "data")

app = Flask(__name__)


@app.route("/geojson/<name>")
def geojson(name: str) -> Response:
    path = safe_join(DATA_DIR, f"{name}.geojson")
    if path is None or not os.path.isfile(path):
        abort(404)
    with open(path, "rb") as f:
        data = f.read()
    return Response(data, mimetype="application/geo+json")
