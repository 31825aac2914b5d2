"""The catalog: datasets in the data folder, and their immutable versions.

A data owner publishes ``<name>.geojson`` (or ``.json``) in the data folder.
The catalog turns each distinct content into a **version**, named by its
SHA-256 digest, stored under the state folder::

    <state>/versions/<name>/<version>/data.geojson     immutable copy of the bytes
    <state>/versions/<name>/<version>/data.geojson.gz  precompressed variants (background)
    <state>/versions/<name>/<version>/data.geojson.br
    <state>/versions/<name>/<version>/meta.json        metadata from one streaming scan
    <state>/versions/<name>/<version>/index.sqlite     spatial index (background)
    <state>/datasets/<name>.json                       pointer to the current version

Requests are served from the stored copy, never from the data folder, so a
file being rewritten in place cannot tear a response. A new content becomes
the current version only when it was copied without changing underneath the
copy and it parses completely as GeoJSON; until then the previous version
keeps being served. Publishing is the atomic rename of the pointer file.

The hot path (:meth:`Catalog.current`) costs one ``stat`` of the data file
when nothing changed: the (device, inode, size, mtime) signature of the file
is remembered per process and in the pointer file, so digests are computed
once per version, not per request or per process.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from werkzeug.http import http_date

from . import compress, jobs
from .errors import APIError, DatasetNotFound, InvalidGeoJSON, NotReady
from .features import sqlite_index
from .names import SUFFIXES, name_of_file
from .scan import scan
from .settings import Settings

log = logging.getLogger(__name__)

DATA_FILE = "data.geojson"
COPY_CHUNK = 1 << 20
LOCK_WAIT_SECONDS = 120.0
RETRY_REJECTED_AFTER = 1.0
INDEX_LOCK = ".index.lock"
ARTIFACTS = ("variants", "index")
"""What is derived from each version in the background, in this order."""


class DatasetUnavailable(APIError):
    """The dataset's file exists but no version of it could be published."""

    status = 503
    code = "dataset-unavailable"


class Signature(NamedTuple):
    """What identifies one state of a data file without reading it."""

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Signature:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class SourceChanged(Exception):
    """The data file changed while it was being copied."""


@dataclass
class Version:
    """One immutable content of a dataset, as stored in the state folder."""

    name: str
    id: str
    directory: Path
    meta: dict[str, Any]
    _variants: dict[str, Path] = field(default_factory=dict, repr=False)

    @functools.cached_property
    def path(self) -> Path:
        return self.directory / DATA_FILE

    @property
    def size(self) -> int:
        return int(self.meta["bytes"])

    @property
    def modified(self) -> float:
        return float(self.meta["modified"])

    @functools.cached_property
    def http_date(self) -> str:
        """``modified`` as an HTTP date, for Last-Modified."""
        return http_date(self.modified)

    def variant(self, encoding: str) -> Path | None:
        """The precompressed file for ``encoding`` if it has been built yet."""
        found = self._variants.get(encoding)
        if found is None:
            candidate = compress.variant_path(self.path, encoding)
            if candidate.exists():
                self._variants[encoding] = found = candidate
        return found


@dataclass
class Pointer:
    """The persisted state of one dataset: its current version and what it was made from."""

    version: str | None = None
    source: Signature | None = None
    history: list[str] = field(default_factory=list)
    rejected: dict[str, Any] | None = None

    @classmethod
    def load(cls, path: Path) -> Pointer:
        try:
            raw = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return cls()
        rejected = raw.get("rejected")
        if rejected:
            rejected["source"] = Signature(*rejected["source"])
        return cls(
            version=raw.get("version"),
            source=Signature(*raw["source"]) if raw.get("source") else None,
            history=list(raw.get("history", [])),
            rejected=rejected,
        )

    def dump(self) -> bytes:
        rejected = self.rejected
        if rejected:
            rejected = {**rejected, "source": list(rejected["source"])}
        source = list(self.source) if self.source else None
        return orjson.dumps(
            {"version": self.version, "source": source, "history": self.history,
             "rejected": rejected}
        )

    def rejects(self, sig: Signature) -> bool:
        return bool(self.rejected) and self.rejected["source"] == sig  # type: ignore[index]


def write_atomic(path: Path, data: bytes) -> None:
    """Write a small file so readers see the old or the new content, never a mix."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class Catalog:
    """Datasets of one data folder, versions in one state folder."""

    def __init__(self, settings: Settings, background: bool = True) -> None:
        """``background=False`` builds nothing behind the caller's back (CLI use)."""
        self.settings = settings
        self.background = background
        self.data_dir = Path(settings.data_dir)
        self.state_dir = Path(settings.state_path)
        self._real_data_dir = os.path.realpath(self.data_dir)
        self._current: dict[str, tuple[Signature, Version]] = {}
        self._versions: dict[tuple[str, str], Version] = {}
        self._retry_at: dict[str, float] = {}

    # -- folders --------------------------------------------------------------
    def ensure_state(self) -> None:
        for sub in ("versions", "datasets", "locks", "tmp"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)

    def readiness(self) -> dict[str, str]:
        """Problems that make this process unable to serve; empty when ready."""
        problems = {}
        try:
            with os.scandir(self.data_dir):
                pass
        except OSError as exc:
            problems["data_dir"] = f"cannot read {self.data_dir}: {exc.strerror}"
        try:
            self.ensure_state()
            with tempfile.TemporaryFile(dir=self.state_dir / "tmp"):
                pass
        except OSError as exc:
            problems["state_dir"] = f"cannot write {self.state_dir}: {exc.strerror}"
        return problems

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
    def current(self, name: str) -> Version:
        """The version to serve now; ingests a new content of the file when needed."""
        path, st = self.source(name)
        sig = Signature.of(st)
        cached = self._current.get(name)
        if cached is not None and cached[0] == sig:
            return cached[1]
        return self._refresh(name, path, sig)

    def _refresh(self, name: str, path: Path, sig: Signature) -> Version:
        pointer = self.pointer(name)
        previous = self._stored(name, pointer.version)
        if pointer.source == sig and previous is not None:
            return self._remember(name, sig, previous)
        if previous is not None and self._should_wait(name, pointer, sig):
            return previous
        lock = self.state_dir / "locks" / f"{name}.lock"
        with self._lock(lock, wait=previous is None) as locked:
            if not locked:
                return previous  # type: ignore[return-value]  # another process ingests
            return self._refresh_locked(name, path, sig, previous)

    def _stored(self, name: str, version_id: str | None) -> Version | None:
        if version_id is None:
            return None
        try:
            return self.version(name, version_id)
        except NotReady:
            return None  # the state folder lost it: ingest again

    def _should_wait(self, name: str, pointer: Pointer, sig: Signature) -> bool:
        """Serve the previous version while the file is unsettled or known bad."""
        if pointer.rejects(sig) or time.monotonic() < self._retry_at.get(name, 0.0):
            return True
        rewritten_in_place = pointer.source is not None and pointer.source.ino == sig.ino
        age = time.time() - sig.mtime_ns / 1e9
        return rewritten_in_place and age < self.settings.settle_seconds

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
        except SourceChanged:
            self._retry_at[name] = time.monotonic() + RETRY_REJECTED_AFTER
            return self._fallback(name, previous, "the file is being written", retry=True)
        except InvalidGeoJSON as exc:
            pointer.rejected = {"source": sig, "error": exc.description, "at": time.time()}
            write_atomic(self._pointer_path(name), pointer.dump())
            return self._fallback(name, previous, exc.description)
        self._publish(name, pointer, version, sig)
        return self._remember(name, sig, version)

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
        self._current[name] = (sig, version)
        return version

    def version(self, name: str, version_id: str) -> Version:
        """A stored version by id (cached; versions never change)."""
        key = (name, version_id)
        found = self._versions.get(key)
        if found is None:
            directory = self.state_dir / "versions" / name / version_id
            try:
                meta = orjson.loads((directory / "meta.json").read_bytes())
            except FileNotFoundError:
                raise NotReady(f"version {version_id} of {name!r} is missing") from None
            found = self._versions[key] = Version(name, version_id, directory, meta)
        return found

    # -- ingest and publish ----------------------------------------------------
    def _ingest(self, name: str, path: Path, sig: Signature) -> Version:
        """Copy the file into a new version folder, hashing and scanning the copy."""
        self.ensure_state()
        staging = Path(tempfile.mkdtemp(dir=self.state_dir / "tmp", prefix=name + "."))
        try:
            digest = _copy_and_hash(path, staging / DATA_FILE, sig)
            meta = self._describe(staging / DATA_FILE, digest, sig)
            (staging / "meta.json").write_bytes(orjson.dumps(meta))
            version_id = digest[:16]
            staging.chmod(0o755)  # readable by an Nginx running as another user (offload)
            os.utime(staging / DATA_FILE, ns=(sig.mtime_ns, sig.mtime_ns))  # Last-Modified
            target = self.state_dir / "versions" / name / version_id
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.version(name, version_id)

    def _describe(self, copy: Path, digest: str, sig: Signature) -> dict[str, Any]:
        started = time.monotonic()
        result = jobs.run_blocking(scan, copy)  # seconds of CPU for a big file
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
        log.info("dataset %s: published version %s (%d bytes)", name, version.id, version.size)
        for old in history[len(keep):]:
            shutil.rmtree(self.state_dir / "versions" / name / old, ignore_errors=True)
            self._versions.pop((name, old), None)
        if self.background:
            for artifact in ARTIFACTS:
                jobs.dispatch(self.settings, "build_artifact", artifact, name, version.id)

    def build_artifact(self, artifact: str, name: str, version_id: str) -> None:
        """The background job: one derived artifact of a version still current.

        A version replaced while its job waited would cost work nobody can use
        (compressing or indexing 50 MB takes seconds and tens of MB of memory).
        """
        if self.pointer(name).version != version_id:
            return
        version = self.version(name, version_id)
        if artifact == "variants":
            self.build_variants(version)
        elif artifact == "index":
            self.build_index(version)
        else:
            raise ValueError(f"unknown artifact {artifact!r}")

    def build_variants(self, version: Version, wait: bool = False) -> None:
        """Build the precompressed variants of a version (idempotent, once per version).

        Without ``wait``, returns at once when another thread or process is building them.
        """
        if version.size < self.settings.compress_min_bytes:
            return
        if not self.settings.precompress_encodings:
            return
        with self._lock(version.directory / ".compress.lock", wait=wait) as locked:
            if locked:
                compress.build_variants(version.path, self.settings)

    def build_index(self, version: Version, wait: bool = False) -> None:
        """Build the spatial index of a version (idempotent; a failure is recorded once)."""
        with self._lock(version.directory / INDEX_LOCK, wait=wait) as locked:
            if locked:
                sqlite_index.ensure(version.directory, version.path, version.meta)

    def index_building(self, version: Version) -> bool:
        """True while some process holds the version's index lock."""
        with self._lock(version.directory / INDEX_LOCK, wait=False) as locked:
            return not locked

    def prepare(self, name: str) -> Version:
        """Publish the current file of ``name`` and build its variants and index now."""
        version = self.current(name)
        self.build_variants(version, wait=True)
        self.build_index(version, wait=True)
        return version

    def prepare_all(self, say: Callable[[str], None]) -> int:
        """Publish every dataset and build its variants; returns the number of failures."""
        failures = 0
        for name in self.names():
            started = time.monotonic()
            try:
                version = self.prepare(name)
            except APIError as exc:
                failures += 1
                say(f"  {name}: not published: {exc.description}")
                continue
            say(f"  {name}: version {version.id}, {version.size} bytes, "
                f"{version.meta['features']} features ({time.monotonic() - started:.1f} s)")
        return failures

    # -- state files ----------------------------------------------------------
    def _pointer_path(self, name: str) -> Path:
        return self.state_dir / "datasets" / f"{name}.json"

    def pointer(self, name: str) -> Pointer:
        """The persisted state of a dataset: current version, source, last rejection."""
        return Pointer.load(self._pointer_path(name))

    @contextlib.contextmanager
    def _lock(self, path: Path, wait: bool) -> Iterator[bool]:
        """An exclusive lock shared by every process using this state folder."""
        self.ensure_state()
        with open(path, "a+b") as handle:
            deadline = time.monotonic() + LOCK_WAIT_SECONDS
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not wait:
                        yield False
                        return
                    if time.monotonic() > deadline:
                        raise NotReady(f"{path.stem} is busy; try again shortly") from None
                    time.sleep(0.02)
            try:
                yield True
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


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
