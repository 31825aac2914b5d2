"""Gunicorn entry point: ``gunicorn geojson_api.wsgi:app``."""

from geojson_api import create_app

app = create_app()
