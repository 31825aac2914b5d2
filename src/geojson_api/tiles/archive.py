"""Reading a version's tile archive (PMTiles v3): where each tile's bytes are.

A tile is a byte range of the archive. Finding it takes the header, the root
directory and at most a leaf directory or two; all of them are read once per
process and version (versions never change) and kept, so answering a tile
costs a binary search, not a read. The bytes themselves are never read here:
the caller sends the range with sendfile or has Nginx send it.

Only what tippecanoe writes is accepted: gzip-compressed directories and
Mapbox Vector Tiles, gzip-compressed or not.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pmtiles.tile import (
    Compression,
    Entry,
    TileType,
    deserialize_directory,
    deserialize_header,
    find_tile,
    tileid_to_zxy,
    zxy_to_tileid,
)

HEADER_BYTES = 127
MAX_DEPTH = 4  # PMTiles v3: a root and at most three levels of leaves
LEAVES_KEPT = 256  # leaf directories per archive (a few KB each)


class ArchiveError(ValueError):
    """The file is not a PMTiles v3 archive of vector tiles this reader understands."""


@dataclass(frozen=True)
class TileBytes:
    """Where one tile is in the archive file: ``length`` bytes at ``offset``."""

    offset: int
    length: int


def _read(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        data = os.pread(f.fileno(), length, offset)
    if len(data) != length:
        raise ArchiveError(f"{path.name} is shorter than its directory says")
    return data


class Archive:
    """One archive's directories, read once; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size
        try:
            header: Any = deserialize_header(_read(path, 0, HEADER_BYTES))
        except Exception as exc:  # pmtiles raises its own and ValueError
            raise ArchiveError(f"{path.name} is not a PMTiles v3 archive ({exc!r})") from None
        if header["internal_compression"] != Compression.GZIP:
            raise ArchiveError(f"{path.name}: directories are not gzip-compressed")
        if header["tile_type"] not in (TileType.MVT, TileType.UNKNOWN):
            raise ArchiveError(f"{path.name} does not hold vector tiles")
        self.header = header
        self.gzip = header["tile_compression"] == Compression.GZIP
        self._root = self._directory(header["root_offset"], header["root_length"])
        self._leaves: OrderedDict[int, list[Entry]] = OrderedDict()
        self._lock = threading.Lock()

    def _directory(self, offset: int, length: int) -> list[Entry]:
        if length == 0:
            return []
        if offset + length > self.size:
            raise ArchiveError(f"{self.path.name} is shorter than its header says")
        try:
            return deserialize_directory(_read(self.path, offset, length))
        except (OSError, EOFError, gzip.BadGzipFile, IndexError) as exc:
            raise ArchiveError(f"{self.path.name}: a directory is damaged ({exc})") from None

    def _leaf(self, offset: int, length: int) -> list[Entry]:
        with self._lock:
            found = self._leaves.get(offset)
            if found is not None:
                self._leaves.move_to_end(offset)
                return found
        leaf = self._directory(self.header["leaf_directory_offset"] + offset, length)
        with self._lock:
            self._leaves[offset] = leaf
            while len(self._leaves) > LEAVES_KEPT:
                self._leaves.popitem(last=False)
        return leaf

    def locate(self, z: int, col: int, row: int) -> TileBytes | None:
        """Where the tile is (None: the archive has no tile there, i.e. no data)."""
        tile_id = zxy_to_tileid(z, col, row)
        entries = self._root
        for _ in range(MAX_DEPTH):
            entry = find_tile(entries, tile_id)
            if entry is None:
                return None
            if entry.run_length > 0:
                start = self.header["tile_data_offset"] + entry.offset
                if start + entry.length > self.size:
                    raise ArchiveError(f"{self.path.name} is shorter than its directory says")
                return TileBytes(start, entry.length)
            entries = self._leaf(entry.offset, entry.length)
        return None

    def entries(self) -> Iterator[tuple[tuple[int, int, int], TileBytes]]:
        """Every ((z, col, row), where) of the archive, run-length entries expanded."""
        start = self.header["tile_data_offset"]
        pending = [self._root]
        while pending:
            for entry in pending.pop(0):
                if entry.run_length == 0:
                    pending.append(self._leaf(entry.offset, entry.length))
                    continue
                for i in range(entry.run_length):
                    yield (tileid_to_zxy(entry.tile_id + i),
                           TileBytes(start + entry.offset, entry.length))

    def metadata(self) -> dict[str, Any]:
        """The JSON metadata the builder (tippecanoe) wrote into the archive."""
        raw = _read(self.path, self.header["metadata_offset"], self.header["metadata_length"])
        return json.loads(gzip.decompress(raw) if raw else b"{}")  # type: ignore[no-any-return]
