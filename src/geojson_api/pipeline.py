"""The wiring of a version's artifacts: which exist, how each is built, where jobs run.

This is the one module that knows every builder (:mod:`geojson_api.compress`
for the variants, :mod:`geojson_api.features.sqlite_index` for the index,
:mod:`geojson_api.tiles.builder` for the vector tiles) and
every place work can run (:mod:`geojson_api.jobs`, :mod:`geojson_api.tasks`).
The catalog, the job queue and the Celery task each know none of the others:

    create_app, cli, gunicorn_conf, stack
        -> pipeline.open_catalog(settings)  Catalog(settings, schedule, artifacts)
    Catalog publishes a version  -> Artifacts.build_inline / submit
        -> jobs.Scheduler.build(Build)       Celery (tasks.Sender) or the job thread
        -> pipeline.build_now(settings, Build)
        -> Catalog.build -> Artifacts.build  the artifact's builder, under its lock

Adding an artifact is one more entry in :func:`registry`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import compress, integrity, jobs, locks
from .artifacts import Artifact, Build, Damage
from .catalog import Catalog
from .features import indexes, sqlite_index
from .gevent_support import run_blocking
from .settings import Settings
from .tiles import builder as tiles_builder
from .versions import Version


def variants(settings: Settings) -> Artifact:
    """The precompressed variants (gzip, br) of a version's stored copy."""

    def paths(version: Version) -> list[Path]:
        return [compress.variant_path(version.path, e) for e in settings.precompress_encodings]

    def ready(version: Version) -> bool:
        return all(compress.variant_problem(p, integrity.read_sum(p)) is None
                   for p in paths(version))

    def damaged(version: Version) -> Damage:
        found = []
        for path in paths(version):
            problem = compress.variant_problem(path, integrity.read_sum(path))
            if problem is not None and path.exists():
                found.append((path, problem))
        return found

    def verify(version: Version) -> Damage:
        found = []
        for path in paths(version):
            if path.exists():
                problem = integrity.digest_problem(path, integrity.read_sum(path))
                if problem is not None:
                    found.append((path, problem))
        return found

    return Artifact(
        name=compress.ARTIFACT,
        lock=compress.LOCK_FILE,
        # CPU for seconds (brotli over 50 MB): off a gevent worker's hub, like the index's.
        build=lambda version: run_blocking(compress.build_variants, version.path, settings),
        ready=ready,
        damaged=damaged,
        verify=verify,
        expected=lambda version: version.variants_expected,
        inline=lambda version: version.size <= settings.precompress_on_publish_bytes,
    )


def index(settings: Settings) -> Artifact:
    """The spatial index (SQLite, with bounds arrays) that answers a version's feature queries."""
    state_dir = settings.state_path

    def damage(directory: Path, problem: str | None) -> Damage:
        return [] if problem is None else [
            (path, problem) for path in sqlite_index.files(directory) if path.exists()]

    def damaged(version: Version) -> Damage:
        path = version.directory / sqlite_index.INDEX_FILE
        return damage(version.directory, sqlite_index.open_problem(version.directory)
                      if path.exists() else None)

    def verify(version: Version) -> Damage:
        return damage(version.directory, sqlite_index.verify(version.directory))

    return Artifact(
        name=indexes.ARTIFACT,
        lock=indexes.LOCK_FILE,
        build=lambda version: run_blocking(sqlite_index.ensure, version.directory,
                                           version.path, version.meta, state_dir),
        ready=lambda version: (version.directory / sqlite_index.INDEX_FILE).exists(),
        damaged=damaged,
        verify=verify,
        failure=lambda version: sqlite_index.failure(version.directory),
    )


def tiles(settings: Settings, index: Artifact) -> Artifact:
    """The vector tiles (one PMTiles archive), made by tippecanoe from the spatial index.

    The index is built first if it is not there yet (waiting for its lock if
    another process builds it): its ids are the ones the tiles carry.
    """
    state_dir = settings.state_path

    def build(version: Version) -> None:
        if not index.ready(version):
            with locks.file_lock(version.directory / index.lock, wait=True):
                index.build(version)
        if not index.ready(version):
            error = index.failure(version)
            if error is not None:  # for good: the same bytes would fail again
                tiles_builder.record_failure(version.directory,
                                             f"the index could not be built: {error}")
            return  # else the disk: both are asked for again later
        bbox = version.meta.get("bbox")
        tiles_builder.ensure(version.directory, version.directory / sqlite_index.INDEX_FILE,
                             version.name, settings.tiles_max_zoom, bbox, state_dir)

    def damaged(version: Version) -> Damage:
        path = version.directory / tiles_builder.ARCHIVE_FILE
        problem = tiles_builder.problem(version.directory) if path.exists() else None
        return [] if problem is None else [(path, problem)]

    def verify(version: Version) -> Damage:
        problem = tiles_builder.verify(version.directory)
        return [] if problem is None else [(version.directory / tiles_builder.ARCHIVE_FILE,
                                            problem)]

    return Artifact(
        name=tiles_builder.ARTIFACT,
        lock=tiles_builder.LOCK_FILE,
        build=build,
        ready=lambda version: tiles_builder.ready(version.directory),
        damaged=damaged,
        verify=verify,
        failure=lambda version: tiles_builder.failure(version.directory),
        at_start=False,  # ~100 s per 50 MB: Gunicorn's workers start first and build them
    )


def registry(settings: Settings) -> tuple[Artifact, ...]:
    """Every artifact of a version, in the order their builds are scheduled."""
    spatial = index(settings)
    if not settings.tiles:  # GEOJSON_API_TILES=false
        return (variants(settings), spatial)
    return (variants(settings), spatial, tiles(settings, spatial))


def scheduler(settings: Settings) -> jobs.Scheduler:
    """Builds on Celery workers when a broker is configured, else on this process's thread."""
    send = None
    if settings.broker_url:
        from .tasks import Sender  # Celery only with a broker (the worker extra)

        send = Sender(settings.broker_url)
    return jobs.Scheduler(run=lambda request: build_now(settings, request), send=send)


def open_catalog(settings: Settings, background: bool = True) -> Catalog:
    """The catalog with its artifacts; ``background=False`` schedules nothing (CLI, jobs)."""
    return Catalog(settings, schedule=scheduler(settings) if background else None,
                   artifacts=registry(settings))


def build_now(settings: Settings, request: Build) -> None:
    """Run one build here and now: what the job thread and a Celery worker both call."""
    open_catalog(settings, background=False).build(request)


def worker_app(settings: Settings) -> Any:
    """The Celery app a ``geojson-api worker`` runs, building with ``settings``."""
    from .tasks import celery_app

    return celery_app(settings.broker_url, run=lambda request: build_now(settings, request))
