"""The catalog: datasets in the data folder, and their immutable versions.

A data owner publishes ``<name>.geojson`` (or ``.json``) in the data folder.
The catalog turns each distinct content into a **version**, named by its
SHA-256 digest, stored under the state folder::

    <state>/versions/<name>/<version>/data.geojson     immutable copy of the bytes
    <state>/versions/<name>/<version>/data.geojson.gz  precompressed variants (see below)
    <state>/versions/<name>/<version>/data.geojson.br
    <state>/versions/<name>/<version>/meta.json        metadata from one streaming scan
    <state>/versions/<name>/<version>/index.sqlite     spatial index (background)
    <state>/versions/<name>/<version>/*.sum            size and SHA-256 of each derived file
    <state>/datasets/<name>.json                       pointer to the current version
    <state>/public/<name>                              symlink to it, for Nginx (public.py)
    <state>/quarantine/                                damaged files, the last few kept
    <state>/state.json                                 this state folder's identity

Each version's artifacts (:mod:`geojson_api.artifacts`: the compressed
variants, the spatial index) are built from the stored copy: variants of
files up to ``precompress_on_publish_bytes`` before the version becomes
current, everything else by background jobs on the injected scheduler.

Requests are served from the stored copy, never from the data folder, so a
file being rewritten in place cannot tear a response. A new content becomes
the current version only when it was copied without changing underneath the
copy and it parses completely as GeoJSON; until then the previous version
keeps being served. Publishing is the atomic rename of the pointer file.

The hot path (:meth:`Catalog.current`) costs one ``stat`` of the data file
when nothing changed: the (device, inode, size, mtime) signature of the file
is remembered per process and in the pointer file, so digests are computed
once per version, not per request or per process.

Faults heal without an operator (docs/reliability.md):

- A stored file found missing or damaged is reported with :meth:`Catalog.lost`
  or through the version's ``keeper``: it is quarantined, this process
  forgets what it remembered, and the next request publishes the version
  again (or the job queue rebuilds the derived file meanwhile).
- A publish that fails with an I/O error (a full disk, say) keeps the
  previous version served and backs off per content, doubling from
  ``STORAGE_RETRY`` seconds, instead of copying the file again on every
  request; without a previous version the dataset answers 503
  ``storage-full`` (or ``storage-error``) with ``Retry-After``.
- A state folder deleted under a running process is noticed by
  :meth:`Catalog.readiness` (its identity file is gone): the process forgets
  every version and publishes every dataset again in the background.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from . import compress, integrity, locks, public, tracing
from .artifacts import Artifact, Artifacts, Build, Scheduler
from .errors import (
    APIError,
    DatasetNotFound,
    DatasetUnavailable,
    InvalidGeoJSON,
    NotReady,
    SourceChanged,
    storage_problem,
)
from .gevent_support import run_blocking
from .metrics import record as metrics
from .names import SUFFIXES, name_of_file
from .scan import scan
from .settings import Settings
from .versions import DATA_FILE, Pointer, Signature, Version, deferral_refusal, write_atomic

__all__ = ["Catalog", "Pointer", "Signature", "Version"]

log = logging.getLogger(__name__)

COPY_CHUNK = 1 << 20
INGEST_WAIT_SECONDS = 2.0
"""How long a request waits for another process's publish of a first version (then 503)."""
RETRY_REJECTED_AFTER = 1.0
STORAGE_RETRY = 5.0
STORAGE_RETRY_MAX = 300.0
STATE_ID_FILE = "state.json"


class Catalog:
    """Datasets of one data folder, versions in one state folder.

    ``artifacts`` are what is derived from each version (see
    :mod:`geojson_api.artifacts`); ``schedule`` is where their builds run in
    the background. Without a scheduler nothing is built behind the caller's
    back and a publish by another process is waited for (the CLI, Gunicorn's
    start-up, a build job): :func:`geojson_api.pipeline.open_catalog` wires both.
    """

    def __init__(self, settings: Settings, schedule: Scheduler | None = None,
                 artifacts: Sequence[Artifact] = ()) -> None:
        self.settings = settings
        self.schedule = schedule
        self.data_dir = Path(settings.data_dir)
        self.state_dir = Path(settings.state_path)
        self.artifacts = Artifacts(self.state_dir, artifacts, schedule)
        self._real_data_dir = os.path.realpath(self.data_dir)
        self._current: dict[str, tuple[Signature, Version]] = {}
        self._versions: dict[tuple[str, str], Version] = {}
        self._retry_at: dict[str, float] = {}
        self._deferred: dict[str, dict[str, Any]] = {}  # when the pointer could not be written
        self._state_id: str | None = None

    @property
    def background(self) -> bool:
        """True when builds run behind the caller's back (a scheduler was given)."""
        return self.schedule is not None

    # -- folders --------------------------------------------------------------
    def ensure_state(self) -> None:
        """Make the state folder's parts (again, if it was deleted) and its identity."""
        for sub in ("versions", "datasets", "locks", "tmp"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        identity = self.state_dir / STATE_ID_FILE
        if not identity.exists():
            write_atomic(identity, orjson.dumps({"id": uuid.uuid4().hex, "created": time.time()}))

    def readiness(self) -> dict[str, str]:
        """Problems that make this process unable to serve; empty when ready.

        Also where a lost state folder is noticed: its identity file is gone or
        new, so this process forgets every version it remembered and publishes
        every dataset again in the background.
        """
        problems = {}
        try:
            with os.scandir(self.data_dir):
                pass
        except OSError as exc:
            problems["data_dir"] = f"cannot read {self.data_dir}: {exc.strerror}"
        try:
            self.ensure_state()
            self._check_state_identity()
            with tempfile.TemporaryFile(dir=self.state_dir / "tmp") as probe:
                probe.write(b"ready")
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):  # full: old versions still serve
                problems["state_dir"] = f"cannot write {self.state_dir}: {exc.strerror}"
        return problems

    def _state_identity(self) -> str | None:
        try:
            return str(orjson.loads((self.state_dir / STATE_ID_FILE).read_bytes())["id"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _check_state_identity(self) -> None:
        """Forget everything and publish again when the state folder is not the one seen."""
        self.ensure_state()
        found = self._state_identity()
        if self._state_id is not None and found != self._state_id:
            log.warning("state folder %s was replaced or emptied; publishing every dataset "
                        "again", self.state_dir)
            self.forget_all()
            if self.schedule is not None:
                self.schedule.call_soon(("republish", found), self.republish)
        self._state_id = found

    def forget_all(self) -> None:
        """Drop every version this process remembers (the state folder changed under it)."""
        self._current.clear()
        self._versions.clear()
        self.artifacts.forget()

    def republish(self) -> None:
        """Publish every dataset's current file now (background job after a state loss)."""
        for name in self.names():
            try:
                self.current(name)
            except APIError as exc:
                log.warning("dataset %s: not published again: %s", name, exc.description)

    def published(self) -> tuple[list[Version], int]:
        """The versions the pointers name as current, and how many name a version that is
        gone (for the metrics: reads the pointers, publishes nothing)."""
        versions, lost = [], 0
        for name in self.names():
            version_id = self.pointer(name).version
            if version_id is not None:
                found = self._stored(name, version_id)
                if found is None:
                    lost += 1
                else:
                    versions.append(found)
        return versions, lost

    # -- names ----------------------------------------------------------------
    def names(self) -> list[str]:
        """Names of the datasets published in the data folder, sorted."""
        found: set[str] = set()
        with os.scandir(self.data_dir) as entries:
            for entry in entries:
                name = name_of_file(entry.name)
                if name is not None and self._inside(entry.path):
                    found.add(name)
        return sorted(found)

    def source(self, name: str) -> tuple[Path, os.stat_result]:
        """The data file of a valid dataset name and its stat; ``.geojson`` wins over ``.json``.

        One ``lstat`` in the common case (a regular file); a symlink is followed
        only when it stays inside the data folder.
        """
        for suffix in SUFFIXES:
            path = os.path.join(self.data_dir, name + suffix)
            try:
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    st = os.stat(path) if self._inside(path) else None  # type: ignore[assignment]
            except FileNotFoundError:
                continue
            if st is not None and stat.S_ISREG(st.st_mode):
                return Path(path), st
        raise DatasetNotFound(f"no dataset named {name!r}")

    def _inside(self, path: str) -> bool:
        """False for symlinks (or anything else) that lead out of the data folder."""
        if not os.path.islink(path):
            return True
        real = os.path.realpath(path)
        return os.path.commonpath([real, self._real_data_dir]) == self._real_data_dir

    # -- versions -------------------------------------------------------------
    @tracing.traced("catalog.current", lambda self, name: {"dataset": name},
                    lambda version: {"version": version.id})
    def current(self, name: str) -> Version:
        """The version to serve now; ingests a new content of the file when needed."""
        path, st = self.source(name)
        sig = Signature.of(st)
        cached = self._current.get(name)
        if cached is not None and cached[0] == sig:
            return cached[1]
        return self._refresh(name, path, sig)

    def refusal(self, name: str) -> dict[str, Any] | None:
        """Why the file's present content is not the one served (invalid, disk full), if so."""
        try:
            sig = Signature.of(self.source(name)[1])
        except APIError:
            return None
        cached = self._current.get(name)
        if cached is not None and cached[0] == sig:  # the file holds what is served
            return None
        return self.pointer(name).refusal(sig) or deferral_refusal(self._deferred.get(name), sig)

    def _refresh(self, name: str, path: Path, sig: Signature) -> Version:
        pointer = self.pointer(name)
        previous = self._stored(name, pointer.version)
        if pointer.source == sig and previous is not None:
            return self._remember(name, sig, previous)
        if previous is not None and self._should_wait(name, pointer, sig):
            return previous
        self._raise_if_deferred(name, pointer, sig, previous)
        lock = self.state_dir / "locks" / f"{name}.lock"
        # A request waits a little for another process's publish; `prepare` (no
        # background jobs: the CLI, Gunicorn's start-up) waits for it to end.
        wait = (INGEST_WAIT_SECONDS if self.background else True) if previous is None else False
        try:
            with self._lock(lock, wait=wait) as locked:
                if not locked:
                    return previous  # type: ignore[return-value]  # another process ingests
                return self._refresh_locked(name, path, sig, previous)
        except OSError as exc:  # the lock itself could not be made: no space, read-only...
            return self._defer(name, pointer, sig, previous, exc)

    def _stored(self, name: str, version_id: str | None) -> Version | None:
        if version_id is None:
            return None
        try:
            return self.version(name, version_id)
        except NotReady:
            return None  # the state folder lost it: ingest again

    def _should_wait(self, name: str, pointer: Pointer, sig: Signature) -> bool:
        """Serve the previous version while the file is unsettled, known bad or deferred."""
        if pointer.rejects(sig) or self._deferral(name, pointer, sig) is not None:
            return True
        if time.monotonic() < self._retry_at.get(name, 0.0):
            return True
        rewritten_in_place = pointer.source is not None and pointer.source.ino == sig.ino
        age = time.time() - sig.mtime_ns / 1e9
        return rewritten_in_place and age < self.settings.settle_seconds

    def _deferral(self, name: str, pointer: Pointer, sig: Signature) -> dict[str, Any] | None:
        """The back-off of a failed publish of ``sig`` still running (persisted or in memory)."""
        for entry in (pointer.deferred, self._deferred.get(name)):
            if entry and entry["source"] == sig and time.time() < entry["retry_at"]:
                return entry
        return None

    def _raise_if_deferred(self, name: str, pointer: Pointer, sig: Signature,
                           previous: Version | None) -> None:
        """A first version whose publish failed for lack of space waits for its next try."""
        entry = self._deferral(name, pointer, sig) if previous is None else None
        if entry is not None:
            raise storage_problem(entry["code"], f"dataset {name!r} cannot be published yet: "
                                  f"{entry['error']}", _retry_after(entry))

    def _refresh_locked(
        self, name: str, path: Path, sig: Signature, previous: Version | None
    ) -> Version:
        pointer = self.pointer(name)
        published = self._stored(name, pointer.version)
        if pointer.source == sig and published is not None:
            return self._remember(name, sig, published)
        if pointer.rejects(sig):
            return self._fallback(name, previous, pointer.rejected["error"])  # type: ignore[index]
        try:
            version = self._ingest(name, path, sig)
            later = self.artifacts.build_inline(version)  # before any process can serve it
            self._publish(name, pointer, version, sig)
        except SourceChanged:
            self._retry_at[name] = time.monotonic() + RETRY_REJECTED_AFTER
            return self._fallback(name, previous, "the file is being written", retry=True)
        except InvalidGeoJSON as exc:
            metrics.publish("failed")
            pointer.rejected = {"source": sig, "error": exc.description, "at": time.time()}
            self._write_pointer(name, pointer)
            return self._fallback(name, previous, exc.description)
        except OSError as exc:
            return self._defer(name, pointer, sig, previous, exc)
        metrics.publish("published")
        self._deferred.pop(name, None)
        self.artifacts.submit(version, later)
        return self._remember(name, sig, version)

    def _defer(self, name: str, pointer: Pointer, sig: Signature, previous: Version | None,
               exc: OSError) -> Version:
        """A publish failed for an I/O reason: back off for this content, keep the old one."""
        metrics.publish("failed")
        last = pointer.deferred or self._deferred.get(name)
        attempts = last["attempts"] + 1 if last and last["source"] == sig else 1
        delay = min(STORAGE_RETRY * 2 ** (attempts - 1), STORAGE_RETRY_MAX)
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        reason = ("no space left for a copy in the state folder" if full
                  else f"the state folder failed: {exc.strerror or exc}")
        now = time.time()
        entry = {"source": sig, "code": "storage-full" if full else "storage-error",
                 "error": reason, "at": now, "retry_at": now + delay, "attempts": attempts}
        self._deferred[name] = entry
        pointer.deferred = entry
        self._write_pointer(name, pointer)
        log.warning("dataset %s: publish failed (%s); next try in %.0f s", name, reason, delay)
        if previous is not None:
            return previous
        raise storage_problem(entry["code"], f"dataset {name!r} cannot be published yet: {reason}",
                             _retry_after(entry))

    def _write_pointer(self, name: str, pointer: Pointer) -> None:
        """Persist a rejection or back-off; a full disk keeps it in this process only."""
        try:
            write_atomic(self._pointer_path(name), pointer.dump())
        except OSError as exc:
            log.warning("dataset %s: cannot record its state: %s", name, exc.strerror)

    def _fallback(
        self, name: str, previous: Version | None, reason: str, retry: bool = False
    ) -> Version:
        if previous is not None:
            log.warning("dataset %s: keeping version %s: %s", name, previous.id, reason)
            return previous
        if retry:
            raise NotReady(f"dataset {name!r} is being written; try again shortly")
        raise DatasetUnavailable(f"dataset {name!r} cannot be published: {reason}")

    def _remember(self, name: str, sig: Signature, version: Version) -> Version:
        if self._state_id is None:  # the state folder this process's memory belongs to
            self._state_id = self._state_identity()
        known = self._current.get(name)
        self._current[name] = (sig, version)
        if known is None or known[1].id != version.id:
            self.artifacts.want_missing(version)  # nothing unless jobs are scheduled
        return version

    def version(self, name: str, version_id: str) -> Version:
        """A stored version by id (cached; versions never change).

        Loading one checks that its stored copy is there with the recorded size;
        a version folder that fails the check is quarantined (NotReady: the
        caller publishes it again).
        """
        key = (name, version_id)
        found = self._versions.get(key)
        if found is None:
            directory = self.state_dir / "versions" / name / version_id
            try:
                meta = orjson.loads((directory / "meta.json").read_bytes())
                problem = integrity.size_problem(directory / DATA_FILE, int(meta["bytes"]))
            except FileNotFoundError:
                problem, meta = "meta.json is missing", {}
            except (ValueError, KeyError, TypeError):
                problem, meta = "meta.json is damaged", {}
            if problem is not None:
                if directory.exists():
                    integrity.quarantine(self.state_dir, directory, problem)
                raise NotReady(f"version {version_id} of {name!r} is missing: {problem}")
            found = self._versions[key] = Version(
                name, version_id, directory, meta, keeper=self,
                variants_expected=self._expects_variants(int(meta["bytes"])))
        return found

    def _expects_variants(self, size: int) -> bool:
        return bool(self.settings.precompress_encodings) and (
            size >= self.settings.compress_min_bytes)

    # -- damaged and missing files ------------------------------------------------
    def lost(self, version: Version, reason: str) -> None:
        """A file of ``version``'s stored copy went missing or changed under this process.

        Forget the version here; quarantine its folder if it is still damaged on
        disk (another process may have published it again meanwhile). The next
        :meth:`current` publishes it again. A lost state folder is noticed here
        too (see :meth:`readiness`).
        """
        if self._current.get(version.name, (None, None))[1] is version:
            del self._current[version.name]
        if public.target(self.state_dir, version.name) == version.id:
            public.remove(self.state_dir, version.name)  # Nginx leaves it to the app
        self._versions.pop((version.name, version.id), None)
        problem = integrity.size_problem(version.path, version.size)
        if problem is not None and version.directory.exists():
            integrity.quarantine(self.state_dir, version.directory, f"{reason}; {problem}")
        log.warning("dataset %s: version %s lost (%s); publishing it again", version.name,
                    version.id, reason)
        with contextlib.suppress(OSError):
            self._check_state_identity()

    def variant_unusable(self, version: Version, encoding: str, problem: str) -> None:
        """A variant is missing or damaged: quarantine a damaged one, have it built again."""
        version.forget_variant(encoding)
        if compress.variant_path(version.path, encoding).exists():
            self.artifacts.quarantine(version, compress.ARTIFACT, problem)
        self.artifacts.want(version, compress.ARTIFACT)

    def verify(self, version: Version) -> None:
        """Read every stored file of ``version`` and compare it with its recorded digest.

        Damaged artifact files are quarantined (the caller builds them again). A
        damaged stored copy raises NotReady after quarantining the version:
        publish again.
        """
        copy = integrity.Sum(version.size, version.meta["sha256"])
        problem = integrity.digest_problem(version.path, copy)
        if problem is not None:
            self.lost(version, problem)
            raise NotReady(f"the stored copy of {version.name!r} was damaged: {problem}")
        self.artifacts.verify(version)

    # -- ingest and publish ----------------------------------------------------
    def _ingest(self, name: str, path: Path, sig: Signature) -> Version:
        """Copy the file into a new version folder, hashing and scanning the copy."""
        self.ensure_state()
        staging = Path(tempfile.mkdtemp(dir=self.state_dir / "tmp", prefix=name + "."))
        try:
            digest = _copy_and_hash(path, staging / DATA_FILE, sig)
            meta = self._describe(staging / DATA_FILE, digest, sig)
            if integrity.file_sum(staging / DATA_FILE).sha256 != digest:  # what the disk kept
                raise OSError(errno.EIO, "the stored copy differs from the file it was made of")
            (staging / "meta.json").write_bytes(orjson.dumps(meta))
            version_id = digest[:16]
            staging.chmod(0o755)  # readable by an Nginx running as another user (offload)
            os.utime(staging / DATA_FILE, ns=(sig.mtime_ns, sig.mtime_ns))  # Last-Modified
            target = self.state_dir / "versions" / name / version_id
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists() and self._stored(name, version_id) is None:
                shutil.rmtree(target, ignore_errors=True)  # quarantined or half gone
            if not target.exists():
                os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.version(name, version_id)

    def _describe(self, copy: Path, digest: str, sig: Signature) -> dict[str, Any]:
        started = time.monotonic()
        result = run_blocking(scan, copy)  # seconds of CPU for a big file
        return {
            "sha256": digest,
            "bytes": sig.size,
            "modified": sig.mtime_ns / 1e9,
            "published": time.time(),
            "scan_seconds": round(time.monotonic() - started, 3),
            **result.as_dict(),
        }

    def _publish(self, name: str, pointer: Pointer, version: Version, sig: Signature) -> None:
        history = [version.id] + [v for v in pointer.history if v != version.id]
        keep = history[: self.settings.keep_versions + 1]
        new = Pointer(version=version.id, source=sig, history=keep)
        write_atomic(self._pointer_path(name), new.dump())
        self._point_public(name, version)
        log.info("dataset %s: published version %s (%d bytes)", name, version.id, version.size)
        for old in history[len(keep):]:
            shutil.rmtree(self.state_dir / "versions" / name / old, ignore_errors=True)
            self._versions.pop((name, old), None)

    def build(self, request: Build) -> None:
        """A background job: one artifact of a version, if that version is still current.

        A version replaced while its job waited would cost work nobody can use
        (compressing or indexing 50 MB takes seconds and tens of MB of memory).
        """
        if self.pointer(request.dataset).version != request.version:
            return
        try:
            version = self.version(request.dataset, request.version)
        except NotReady:
            return  # lost meanwhile: the next request publishes it again
        self.artifacts.build(version, request.artifact)

    def prepare(self, name: str, at_start: bool = False) -> Version:
        """Publish the current file of ``name``, check it, build every artifact now
        (``at_start``: those built before Gunicorn's workers start)."""
        version = self.current(name)
        try:
            self.verify(version)
        except NotReady:
            version = self.current(name)  # its copy was damaged: published again
        self.artifacts.build_all(version, at_start)
        return version

    def prepare_all(self, say: Callable[[str], None], at_start: bool = False) -> int:
        """Publish every dataset and build its artifacts; returns the number of failures."""
        failures = 0
        for name in self.names():
            started = time.monotonic()
            try:
                version = self.prepare(name, at_start)
            except APIError as exc:
                failures += 1
                say(f"  {name}: not published: {exc.description}")
                continue
            say(f"  {name}: version {version.id}, {version.size} bytes, "
                f"{version.meta['features']} features ({time.monotonic() - started:.1f} s)")
            self.sync_public(name)
        public.remove_others(self.state_dir, self.names())
        return failures

    # -- public pointers (Nginx serves public whole files itself) -----------------
    def _direct(self, version: Version | None) -> str | None:
        """The version id the public pointer of a dataset should name, or None for none.

        A version small enough for the app to send itself goes without a pointer
        while Nginx's micro-cache is on: Nginx answers repeats of it from the
        micro-cache, which measured 1.6x faster than the direct path's symlink
        resolution for a 50 KB file (docs/benchmarks.md). The app then sees one
        request per second and key, and Nginx the rest.
        """
        if version is None:
            return None
        settings = self.settings
        if settings.nginx_microcache > 0 and version.size <= settings.small_file_bytes:
            return None
        return version.id

    def _point_public(self, name: str, version: Version | None) -> None:
        """Make the public pointer of ``name`` what :meth:`_direct` says; under the lock."""
        version_id = self._direct(version)
        try:
            if version_id is None:
                public.remove(self.state_dir, name)
            elif public.target(self.state_dir, name) != version_id:
                public.point(self.state_dir, name, version_id)
        except OSError as exc:  # Nginx keeps the old one or none: the app still answers
            log.warning("dataset %s: cannot update its public pointer: %s", name, exc.strerror)

    def sync_public(self, name: str) -> None:
        """Make the public pointer name what the persisted pointer does (if stored).

        Under the dataset's lock, so that it never undoes a newer publish; a lock
        held by another process means a publish, which writes the pointer itself.
        """
        with self._lock(self.state_dir / "locks" / f"{name}.lock", wait=False) as locked:
            if locked:
                stored = self._stored(name, self.pointer(name).version)
                self._point_public(name, stored)

    def keep_public_in_step(self) -> None:
        """The watcher's round: each dataset's file checked as a request would (a new
        content is published), its pointer fixed if it differs; pointers of datasets
        whose file is gone are removed."""
        found = self.names()
        for name in found:
            try:
                version = self.current(name)
            except DatasetNotFound:
                public.remove(self.state_dir, name)
                continue
            except APIError:
                continue  # not ready or unavailable: the pointer (if any) stays as it is
            if public.target(self.state_dir, name) != self._direct(version):
                self.sync_public(name)
        public.remove_others(self.state_dir, found)

    # -- state files ----------------------------------------------------------
    def _pointer_path(self, name: str) -> Path:
        return self.state_dir / "datasets" / f"{name}.json"

    def pointer(self, name: str) -> Pointer:
        """The persisted state of a dataset: current version, source, last rejection."""
        return Pointer.load(self._pointer_path(name))

    @contextlib.contextmanager
    def _lock(self, path: Path, wait: bool | float) -> Iterator[bool]:
        """:func:`geojson_api.locks.file_lock` in the state folder (made again if it was lost)."""
        self.ensure_state()
        with locks.file_lock(path, wait) as locked:
            yield locked


def _retry_after(entry: dict[str, Any]) -> int:
    return max(1, round(float(entry["retry_at"]) - time.time()))


def _copy_and_hash(source: Path, target: Path, expected: Signature) -> str:
    """Copy ``source`` to ``target`` and return its SHA-256; fail if it changes meanwhile."""
    digest = hashlib.sha256()
    with open(source, "rb") as src, open(target, "wb") as dst:
        if Signature.of(os.fstat(src.fileno())) != expected:
            raise SourceChanged(str(source))
        while chunk := src.read(COPY_CHUNK):
            digest.update(chunk)
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
        after = Signature.of(os.fstat(src.fileno()))
    if after != expected or Signature.of(source.stat()) != expected:
        raise SourceChanged(str(source))
    return digest.hexdigest()
