"""Which spatial index answers for a dataset version, and what state it is in.

Each process keeps the open indexes of current versions, each checked when
opened (recorded size, SQLite's quick check). A version whose index is
missing gets a build job when a query needs it (at most once per
``artifacts.RESUBMIT_SECONDS`` per process, since another process or a Celery
worker may be building it) and its queries answer 503 with ``Retry-After``
until the index file appears. A damaged index (found when opened or while
read) is closed, quarantined and built again the same way; no worker dies of
it (indexes are read without a memory map). An index of an older format
(``sqlite_index.FORMAT``) answers 503 the same way while its build replaces
it. The index is the ``index`` artifact of a version
(:mod:`geojson_api.artifacts`); reading its state for a document takes no
lock and submits nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import tracing
from ..artifacts import ArtifactState
from ..catalog import Catalog, Version
from ..errors import IndexDamaged, IndexFailed, NotReady
from . import sqlite_index
from .query import FeatureBackend

OPEN_PER_DATASET = 2
ARTIFACT = "index"
"""The spatial index's name among a version's artifacts."""
LOCK_FILE = ".index.lock"
"""Held while the index of a version is built (in the version's folder)."""

IndexState = ArtifactState
"""What the collection document says about its index: ready, building, queued or failed."""


class Indexes:
    """The feature backends of one app's catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.settings = catalog.settings
        self._open: dict[str, dict[str, sqlite_index.SQLiteIndex]] = {}
        self._lock = threading.Lock()

    @tracing.traced("artifact.lookup", lambda self, version: {
        "artifact": ARTIFACT, "dataset": version.name, "version": version.id})
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
        self.catalog.artifacts.want(version, ARTIFACT)  # the missing-artifact path
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
            if problem is None and sqlite_index.newer(version.directory):
                raise NotReady(f"the index of {version.name!r} was built by a newer version "
                               "of geojson-api than this process runs; try again shortly",
                               retry_after=self.settings.features_retry_after)
            if problem is None and sqlite_index.outdated(version.directory):
                self.catalog.artifacts.want(version, ARTIFACT)  # its build replaces it
                raise NotReady(f"the index of {version.name!r} is being built again in a "
                               "newer format; try again shortly",
                               retry_after=self.settings.features_retry_after)
            if problem is None:
                index = sqlite_index.SQLiteIndex(
                    path, on_damage=lambda reason: self.damaged(version, reason))
                return self._remember(version, index)
        self.damaged(version, problem)
        raise IndexDamaged(f"the index of {version.name!r} is damaged ({problem}); "
                                        "it is being built again")

    def damaged(self, version: Version, reason: str) -> None:
        """Close, quarantine and rebuild a damaged index (no request waits for it)."""
        with self._lock:
            index = self._open.get(version.name, {}).pop(version.id, None)
        if index is not None:
            index.close()
        self.catalog.artifacts.quarantine(version, ARTIFACT, reason)
        self.catalog.artifacts.want(version, ARTIFACT)

    def _remember(
        self, version: Version, index: sqlite_index.SQLiteIndex
    ) -> sqlite_index.SQLiteIndex:
        opened = self._open.setdefault(version.name, {})  # the caller holds self._lock
        opened[version.id] = index
        while len(opened) > OPEN_PER_DATASET:  # oldest first: dicts keep order
            opened.pop(next(iter(opened))).close()
        return index

    def open_built(self, tick: Callable[[], object] = lambda: None) -> int:
        """Open the built index of every current version, as the first query of each would
        (the checks included); returns how many are open. Nothing is built or rebuilt: a
        version without an index, or with one of an older format, is left to its first
        query. A new Gunicorn worker calls this before it takes connections
        (:func:`geojson_api.warm_up`), so that no request waits for the checks; ``tick``
        is called before each version (Gunicorn's heartbeat: many big indexes may take
        longer than its worker timeout)."""
        versions, _ = self.catalog.published()
        opened = 0
        for version in versions:
            tick()
            if not (version.directory / sqlite_index.INDEX_FILE).exists():
                continue
            if sqlite_index.outdated(version.directory) or sqlite_index.newer(version.directory):
                continue
            try:
                self.backend(version)
            except NotReady:  # damaged: quarantined and asked for again, as a query does
                continue
            opened += 1
        return opened

    def state(self, version: Version) -> IndexState:
        """ready (with the index's numbers), failed (with why), building or queued.

        Opening a ready index to read its numbers is the one side effect: an
        index found damaged then is quarantined and asked for again.
        """
        state = self.catalog.artifacts.state(version, ARTIFACT)
        if state.status != "ready":
            return state
        try:
            info = self._ready_info(version, version.directory / sqlite_index.INDEX_FILE)
        except NotReady as exc:  # damaged, being built again
            return IndexState("queued", {"reason": exc.description})
        return IndexState("ready", info)

    def _ready_info(self, version: Version, path: Path) -> dict[str, Any]:
        info = self.backend(version).info()
        return {"features": info["features"], "bytes": sqlite_index.size(path.parent),
                "build_seconds": info["build_seconds"], "id_source": info["id_source"]}
