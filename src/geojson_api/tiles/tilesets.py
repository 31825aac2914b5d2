"""Which tile archive answers for a dataset version, and what state its tiles are in.

Each process keeps the open :class:`Archive` (header and directories) of the
current versions, so a tile costs a lookup. An archive is checked against its
recorded size when opened. Tiles not built yet are asked for (the
missing-artifact path, throttled like the index's) and answered with 503
``tiles-not-ready`` and ``Retry-After``; a damaged archive is quarantined and
built again the same way. Reading a state for a document opens nothing and
submits nothing.
"""

from __future__ import annotations

import threading
from typing import Any

from ..artifacts import ArtifactState
from ..catalog import Catalog, Version
from ..errors import NotReady, TilesFailed, TilesNotReady
from . import builder
from .archive import Archive, ArchiveError

OPEN_PER_DATASET = 2


class Tilesets:
    """The tile archives of one app's catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.retry_after = catalog.settings.tiles_retry_after
        self._open: dict[str, dict[str, tuple[Archive, dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    def archive(self, version: Version) -> tuple[Archive, dict[str, Any]]:
        """The open archive of ``version`` and what its build recorded; 503 until built."""
        found = self._open.get(version.name, {}).get(version.id)
        if found is not None:
            return found
        if builder.ready(version.directory):
            return self._open_checked(version)
        if not version.path.exists():  # the version itself is gone (state folder lost)
            self.catalog.lost(version, "its folder is gone")
            raise NotReady(f"dataset {version.name!r} is being published again; try again "
                           "shortly", retry_after=1)
        self.catalog.artifacts.want(version, builder.ARTIFACT)  # the missing-artifact path
        state = self.catalog.artifacts.state(version, builder.ARTIFACT)
        if state.status == "failed":
            raise TilesFailed(f"the tiles of {version.name!r} could not be built: "
                              f"{state.info.get('error')}")
        raise TilesNotReady(f"the tiles of {version.name!r} are {state.status}; try again in "
                            f"{self.retry_after} s", self.retry_after)

    def _open_checked(self, version: Version) -> tuple[Archive, dict[str, Any]]:
        with self._lock:  # one check at a time: concurrent first requests wait for it
            found = self._open.get(version.name, {}).get(version.id)
            if found is not None:
                return found
            problem = builder.problem(version.directory)
            if problem is None:
                try:
                    opened = (Archive(version.directory / builder.ARCHIVE_FILE),
                              builder.info(version.directory))
                except (ArchiveError, OSError, ValueError) as exc:
                    problem = str(exc)
                else:
                    return self._remember(version, opened)
        self.damaged(version, problem)
        raise TilesNotReady(f"the tiles of {version.name!r} are damaged ({problem}); they "
                            "are being built again", self.retry_after)

    def _remember(self, version: Version, opened: tuple[Archive, dict[str, Any]]
                  ) -> tuple[Archive, dict[str, Any]]:
        kept = self._open.setdefault(version.name, {})  # the caller holds self._lock
        kept[version.id] = opened
        while len(kept) > OPEN_PER_DATASET:  # oldest first: dicts keep order
            kept.pop(next(iter(kept)))
        return opened

    def damaged(self, version: Version, reason: str) -> None:
        """Forget, quarantine and rebuild a damaged archive (no request waits for it)."""
        with self._lock:
            self._open.get(version.name, {}).pop(version.id, None)
        self.catalog.artifacts.quarantine(version, builder.ARTIFACT, reason)
        self.catalog.artifacts.want(version, builder.ARTIFACT)

    def state(self, version: Version) -> ArtifactState:
        """ready (with what the build found), failed (with why), building or queued."""
        state = self.catalog.artifacts.state(version, builder.ARTIFACT)
        if state.status != "ready":
            return state
        try:
            recorded = builder.info(version.directory)
        except (OSError, ValueError):  # removed or rewritten meanwhile: asked for by a tile
            return ArtifactState("queued")
        return ArtifactState("ready", summary(recorded))


def summary(recorded: dict[str, Any]) -> dict[str, Any]:
    """What a document says of built tiles."""
    return {key: recorded.get(key) for key in (
        "minzoom", "maxzoom", "completeZoom", "features", "bytes", "build_seconds")}
