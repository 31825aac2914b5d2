"""OGC API - Features: collections and items answered from a per-version spatial index.

``query.py`` the typed query and backend interface · ``params.py`` request
parsing · ``sqlite_index.py`` the embedded backend (SQLite) · ``boxscan.py``
its bounds arrays, scanned by bbox · ``geometry.py`` bounds and the exact
fallback test · ``indexes.py`` index states and build jobs · ``documents.py``,
``render.py``, ``openapi.py`` what is sent · ``views.py`` the endpoints.
"""
