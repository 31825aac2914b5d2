"""Which spatial index answers for a dataset version, and what state it is in.

Each process keeps the open indexes of current versions, each checked when
opened (recorded size, SQLite's quick check). A version whose index is
missing gets a build job (at most once per ``catalog.RESUBMIT_SECONDS`` per
process, since another process or a Celery worker may be building it) and
its queries answer 503 with ``Retry-After`` until the index file appears. A
damaged index (found when opened or while read) is closed, quarantined and
built again the same way; no worker dies of it (indexes are read without a
memory map).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalog import Catalog, Version
from ..errors import APIError, NotReady
from . import sqlite_index
from .query import FeatureBackend

OPEN_PER_DATASET = 2


class IndexFailed(APIError):
    """The version's index could not be built; whole-file downloads still work."""

    status = 503
    code = "index-failed"


@dataclass
class IndexState:
    """What the collection document says about its index."""

    status: str  # ready, building, queued or failed
    info: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, **self.info}


class Indexes:
    """The feature backends of one app's catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.settings = catalog.settings
        self._open: dict[str, dict[str, sqlite_index.SQLiteIndex]] = {}
        self._lock = threading.Lock()

    def backend(self, version: Version) -> FeatureBackend:
        """The open index of ``version``; 503 while it is being built (or built again)."""
        found = self._open.get(version.name, {}).get(version.id)
        if found is not None and not found.damaged:
            return found
        path = version.directory / sqlite_index.INDEX_FILE
        if path.exists():
            return self._open_checked(version, path)
        if not version.path.exists():  # the version itself is gone (state folder lost)
            self.catalog.lost(version, "its folder is gone")
            raise NotReady(f"dataset {version.name!r} is being published again; try again "
                           "shortly", retry_after=1)
        state = self.state(version)
        if state.status == "failed":
            raise IndexFailed(f"the index of {version.name!r} could not be built: "
                              f"{state.info.get('error')}")
        raise NotReady(f"the index of {version.name!r} is {state.status}; try again shortly",
                       retry_after=self.settings.features_retry_after)

    def _open_checked(self, version: Version, path: Path) -> sqlite_index.SQLiteIndex:
        """Open an index after checking its size and SQLite's quick check (once per process)."""
        with self._lock:  # one check at a time: concurrent first requests wait for it
            found = self._open.get(version.name, {}).get(version.id)
            if found is not None and not found.damaged:
                return found
            problem = sqlite_index.open_problem(version.directory)
            if problem is None:
                index = sqlite_index.SQLiteIndex(
                    path, on_damage=lambda reason: self.damaged(version, reason))
                return self._remember(version, index)
        self.damaged(version, problem)
        raise sqlite_index.IndexDamaged(f"the index of {version.name!r} is damaged ({problem}); "
                                        "it is being built again")

    def damaged(self, version: Version, reason: str) -> None:
        """Close, quarantine and rebuild a damaged index (no request waits for it)."""
        with self._lock:
            index = self._open.get(version.name, {}).pop(version.id, None)
        if index is not None:
            index.close()
        self.catalog.quarantine_index(version, reason)
        self.catalog.want(version, "index")

    def _remember(
        self, version: Version, index: sqlite_index.SQLiteIndex
    ) -> sqlite_index.SQLiteIndex:
        opened = self._open.setdefault(version.name, {})  # the caller holds self._lock
        opened[version.id] = index
        while len(opened) > OPEN_PER_DATASET:  # oldest first: dicts keep order
            opened.pop(next(iter(opened))).close()
        return index

    def state(self, version: Version) -> IndexState:
        """ready (with the index's numbers), failed (with why), building or queued."""
        directory = version.directory
        path = directory / sqlite_index.INDEX_FILE
        if path.exists():
            try:
                return IndexState("ready", self._ready_info(version, path))
            except NotReady as exc:  # damaged, being built again
                return IndexState("queued", {"reason": exc.description})
        error = sqlite_index.failure(directory)
        if error is not None:
            return IndexState("failed", {"error": error})
        if self.catalog.index_building(version):
            return IndexState("building")
        self.catalog.want(version, "index")
        return IndexState("queued")

    def _ready_info(self, version: Version, path: Path) -> dict[str, Any]:
        info = self.backend(version).info()
        return {"features": info["features"], "bytes": path.stat().st_size,
                "build_seconds": info["build_seconds"], "id_source": info["id_source"]}
