"""Which spatial index answers for a dataset version, and what state it is in.

Each process keeps the open indexes of current versions. A version whose
index is missing gets a build job (at most once per ``RESUBMIT_SECONDS`` per
process, since another process or a Celery worker may be building it) and
its queries answer 503 with ``Retry-After`` until the index file appears.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .. import jobs
from ..catalog import Catalog, Version
from ..errors import APIError, NotReady
from . import sqlite_index
from .query import FeatureBackend

RESUBMIT_SECONDS = 30.0
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
        self._submitted: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def backend(self, version: Version) -> FeatureBackend:
        """The open index of ``version``; 503 while it is being built."""
        found = self._open.get(version.name, {}).get(version.id)
        if found is not None:
            return found
        path = version.directory / sqlite_index.INDEX_FILE
        if path.exists():
            return self._remember(version, sqlite_index.SQLiteIndex(path))
        state = self.state(version)
        if state.status == "failed":
            raise IndexFailed(f"the index of {version.name!r} could not be built: "
                              f"{state.info.get('error')}")
        raise NotReady(f"the index of {version.name!r} is {state.status}; try again shortly",
                       retry_after=self.settings.features_retry_after)

    def _remember(
        self, version: Version, index: sqlite_index.SQLiteIndex
    ) -> sqlite_index.SQLiteIndex:
        with self._lock:
            opened = self._open.setdefault(version.name, {})
            opened[version.id] = index
            while len(opened) > OPEN_PER_DATASET:  # oldest first: dicts keep order
                opened.pop(next(iter(opened))).close()
        return index

    def state(self, version: Version) -> IndexState:
        """ready (with the index's numbers), failed (with why), building or queued."""
        directory = version.directory
        path = directory / sqlite_index.INDEX_FILE
        if path.exists():
            return IndexState("ready", self._ready_info(version, path))
        error = sqlite_index.failure(directory)
        if error is not None:
            return IndexState("failed", {"error": error})
        if self.catalog.index_building(version):
            return IndexState("building")
        self._submit(version)
        return IndexState("queued")

    def _ready_info(self, version: Version, path: Any) -> dict[str, Any]:
        info = self.backend(version).info()
        return {"features": info["features"], "bytes": path.stat().st_size,
                "build_seconds": info["build_seconds"], "id_source": info["id_source"]}

    def _submit(self, version: Version) -> None:
        """Ask for a build: the job that publishing queued may have died with its process."""
        key = (version.name, version.id)
        now = time.monotonic()
        with self._lock:
            if now - self._submitted.get(key, -RESUBMIT_SECONDS) < RESUBMIT_SECONDS:
                return
            self._submitted[key] = now
        jobs.dispatch(self.settings, "build_artifact", "index", version.name, version.id)
