"""Artifacts of a version: what is derived from its stored copy, and how.

The compressed variants, the spatial index and the vector tiles are all
*artifacts of a version*: files in the version's folder, made once by a
builder, each with a ``.sum`` sidecar, under a lock file of its own. An
:class:`Artifact` describes one kind (how to build it, how to tell it is
there, how to check it); :class:`Artifacts` is the one place that schedules,
builds, reports the state of, checks and quarantines them, for every kind.

The registry is data handed in by :mod:`geojson_api.pipeline`, so nothing here
(nor the catalog) imports a builder. Work reaches a :class:`Scheduler`, also
handed in: this process's job thread or Celery workers (:mod:`geojson_api.jobs`).

Submitting is always an explicit step: :meth:`Artifacts.submit` when a
version is published, :meth:`Artifacts.want` when a request found an artifact
missing. Reading a state (:meth:`Artifacts.state`) takes no lock and submits
nothing.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import integrity, locks, tracing
from .metrics import record as metrics
from .versions import Version

log = logging.getLogger(__name__)

RESUBMIT_SECONDS = 30.0
"""A missing artifact is asked for at most this often per process and version."""

Damage = list[tuple[Path, str]]
"""Files of an artifact that failed a check, with why."""


@dataclass(frozen=True)
class Build:
    """One build request: the artifact ``artifact`` of version ``version`` of ``dataset``.

    Plain strings, so that it crosses a broker as it is.
    """

    artifact: str
    dataset: str
    version: str


class Scheduler(Protocol):
    """Where background work runs (see :class:`geojson_api.jobs.Scheduler`)."""

    def build(self, request: Build) -> None:
        """Have ``request`` built soon, here or on a worker; never raises for the broker."""

    def call_soon(self, key: Hashable, job: Callable[[], object]) -> None:
        """Run ``job`` in this process's background thread (once per key at a time)."""


def _about(version: Version, artifact: str) -> dict[str, str]:
    """A span's attributes for an artifact of a version."""
    return {"artifact": artifact, "dataset": version.name, "version": version.id}


def _always(version: Version) -> bool:
    return True


def _never(version: Version) -> bool:
    return False


def _no_failure(version: Version) -> str | None:
    return None


@dataclass(frozen=True)
class Artifact:
    """One kind of artifact. Every callable takes the version it is about.

    ``build`` makes what is missing and is idempotent; the caller holds
    ``lock`` (a file in the version's folder). ``ready`` is a cheap test that
    the files are there. ``damaged`` checks present files cheaply (sizes, a
    quick check) and ``verify`` thoroughly (digests); both list only files
    that exist and fail. ``failure`` is why a build failed for good (the data,
    not the disk), if it did. ``inline`` says the artifact is built as part of
    publishing (small files' variants) instead of in the background.
    ``at_start`` says whether Gunicorn's master builds it before the workers
    start (``prepare_on_start``); if not, the workers build it in the background.
    """

    name: str
    lock: str
    build: Callable[[Version], object]
    ready: Callable[[Version], bool]
    damaged: Callable[[Version], Damage]
    verify: Callable[[Version], Damage]
    expected: Callable[[Version], bool] = _always
    failure: Callable[[Version], str | None] = _no_failure
    inline: Callable[[Version], bool] = _never
    at_start: bool = True


@dataclass(frozen=True)
class ArtifactState:
    """What a document says about an artifact: queued, building, ready or failed."""

    status: str
    info: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, **self.info}


class Artifacts:
    """The artifacts of the versions in one state folder."""

    def __init__(self, state_dir: Path, registry: Sequence[Artifact],
                 schedule: Scheduler | None) -> None:
        self.state_dir = state_dir
        self.registry = {artifact.name: artifact for artifact in registry}
        self.schedule = schedule
        self._wanted: dict[tuple[str, str, str], float] = {}

    def kind(self, name: str) -> Artifact:
        try:
            return self.registry[name]
        except KeyError:
            raise ValueError(f"unknown artifact {name!r}") from None

    def _lock(self, version: Version, artifact: Artifact) -> Path:
        return version.directory / artifact.lock

    # -- submitting -----------------------------------------------------------
    def build_inline(self, version: Version) -> list[str]:
        """Build the artifacts made as part of publishing; returns the others expected.

        Called before the version becomes current, so no process serves it
        without them. An inline build that fails for the disk is logged and
        returned with the others, to be built in the background.
        """
        later = []
        for artifact in self.registry.values():
            if not artifact.expected(version):
                continue
            if artifact.inline(version):
                try:
                    self.build(version, artifact.name, wait=True)
                    continue
                except OSError as exc:
                    log.warning("%s of %s/%s not built while publishing: %s", artifact.name,
                                version.name, version.id, exc)
            later.append(artifact.name)
        return later

    def submit(self, version: Version, names: Iterable[str]) -> None:
        """Schedule the builds of ``names`` of a version just published."""
        for name in names:
            self._submit(version, name)

    @tracing.traced("artifact.want", lambda self, version, name: _about(version, name))
    def want(self, version: Version, name: str) -> None:
        """A request found ``name`` of ``version`` missing: ask for it again, throttled.

        The job publishing queued may have died with its process or failed for
        want of space; this is how a missing artifact gets built again. At most
        once every RESUBMIT_SECONDS per process, since another process or a
        Celery worker may be building it right now.
        """
        key = (version.name, version.id, name)
        now = time.monotonic()
        if now - self._wanted.get(key, -RESUBMIT_SECONDS) < RESUBMIT_SECONDS:
            return
        self._submit(version, name)

    def _submit(self, version: Version, name: str) -> None:
        if self.schedule is None:
            return
        self._wanted[(version.name, version.id, name)] = time.monotonic()
        self.schedule.build(Build(name, version.name, version.id))

    def want_missing(self, version: Version) -> None:
        """A process meets ``version`` for the first time: ask for what it lacks.

        Builds left out of Gunicorn's start-up (``at_start``), or lost with the
        process that had them queued, start here rather than on the first
        request that needs them.
        """
        for artifact in self.registry.values():
            if (artifact.expected(version) and not artifact.ready(version)
                    and artifact.failure(version) is None):
                self.want(version, artifact.name)

    def forget(self) -> None:
        """Forget what was asked for (the state folder changed under this process)."""
        self._wanted.clear()

    # -- building -------------------------------------------------------------
    def build(self, version: Version, name: str, wait: bool = False) -> None:
        """Build ``name`` of ``version`` now unless it is not expected.

        Without ``wait``, returns at once when another thread or process holds
        the artifact's lock (it is being built there).
        """
        artifact = self.kind(name)
        if not artifact.expected(version):
            return
        with locks.file_lock(self._lock(version, artifact), wait=wait) as locked:
            if locked:
                with metrics.artifact_build(name) as outcome:
                    artifact.build(version)
                    outcome.failed = not artifact.ready(version)

    def build_all(self, version: Version, at_start: bool = False) -> None:
        """Every expected artifact of ``version``, waiting for other builders (``prepare``);
        ``at_start``: only those built before the workers start."""
        for artifact in self.registry.values():
            if artifact.at_start or not at_start:
                self.build(version, artifact.name, wait=True)

    # -- reading --------------------------------------------------------------
    @tracing.traced("artifact.state", lambda self, version, name: _about(version, name),
                    lambda state: {"state": state.status})
    def state(self, version: Version, name: str) -> ArtifactState:
        """ready, failed (with why), building or queued; no lock taken, nothing submitted."""
        artifact = self.kind(name)
        if artifact.ready(version):
            return ArtifactState("ready")
        error = artifact.failure(version)
        if error is not None:
            return ArtifactState("failed", {"error": error})
        if locks.held(self._lock(version, artifact)):
            return ArtifactState("building")
        return ArtifactState("queued")

    # -- damage ---------------------------------------------------------------
    def quarantine(self, version: Version, name: str, reason: str) -> None:
        """Move the damaged files of ``name`` aside, unless a build holds its lock.

        Files are checked again under the lock: another process may have built
        them again meanwhile.
        """
        artifact = self.kind(name)
        with contextlib.suppress(OSError), locks.file_lock(
                self._lock(version, artifact), wait=False) as free:
            if free:
                self._set_aside(version, artifact.damaged(version), reason)

    def verify(self, version: Version) -> None:
        """Read every artifact file of ``version`` in full; quarantine what fails."""
        for artifact in self.registry.values():
            self._set_aside(version, artifact.verify(version), None)

    def _set_aside(self, version: Version, damage: Iterable[tuple[Path, str]],
                   reason: str | None) -> None:
        for path, problem in damage:
            integrity.quarantine(self.state_dir, path,
                                 problem if reason is None else f"{reason}; {problem}")
            version.forget_file(path)
