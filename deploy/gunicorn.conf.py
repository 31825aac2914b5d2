"""Checked-in Gunicorn config: ``gunicorn -c deploy/gunicorn.conf.py``.

All values come from the settings table (``GEOJSON_API_*`` environment
variables); the logic lives in the package so an installed image has it too.
"""

from geojson_api.gunicorn_conf import *  # noqa: F403
