"""OGC API - Tiles: vector tiles built once per version, sent as byte ranges of an archive.

``grid.py`` WebMercatorQuad's math and definition · ``builder.py`` the
artifact (tippecanoe over the index, then checked) · ``mvt.py`` the feature
ids of a tile · ``archive.py`` PMTiles directories, read once ·
``tilesets.py`` archive states and rebuilds · ``send.py`` tile and archive
replies (sendfile, X-Accel) · ``documents.py`` what is described ·
``views.py`` the endpoints.
"""
