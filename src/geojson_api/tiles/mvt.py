"""Just enough of the Mapbox Vector Tile encoding (protobuf) to count feature ids.

The builder checks what it built: which zooms hold every feature. That needs
the ids of the features of every tile, not their geometries, so this walks
the protobuf fields of ``Tile.layers[].features[].id`` and skips the rest
without decoding it (no protobuf library, no geometry decoding). Clients and
the tests decode tiles fully with a real decoder.
"""

from __future__ import annotations

from collections.abc import Iterator

TILE_LAYERS = 3  # Tile.layers
LAYER_FEATURES = 2  # Layer.features
FEATURE_ID = 1  # Feature.id (uint64)


class TileFormatError(ValueError):
    """The bytes are not a protobuf message (a damaged tile)."""


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data):
            raise TileFormatError("truncated varint")
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of one message: varints as ints, everything else as bytes."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 2:
            size, i = _varint(data, i)
            value, i = data[i:i + size], i + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, i = data[i:i + size], i + size
        else:
            raise TileFormatError(f"unsupported wire type {wire}")
        if i > len(data):
            raise TileFormatError("truncated field")
        yield number, value


def feature_ids(tile: bytes) -> set[int]:
    """The ids of the features of every layer of an uncompressed tile."""
    found = set()
    for number, layer in fields(tile):
        if number != TILE_LAYERS or not isinstance(layer, bytes):
            continue
        for inner, feature in fields(layer):
            if inner != LAYER_FEATURES or not isinstance(feature, bytes):
                continue
            for key, value in fields(feature):
                if key == FEATURE_ID and isinstance(value, int):
                    found.add(value)
    return found
