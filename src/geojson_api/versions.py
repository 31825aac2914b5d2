"""What the state folder holds for each dataset: versions and pointers.

A :class:`Version` is one immutable content of a dataset, stored in its own
folder under ``<state>/versions/<name>/<id>/`` (see :mod:`geojson_api.catalog`);
a :class:`Pointer` is the persisted state of a dataset: its current version,
what it was made from, and why a newer content was refused or deferred.
Nothing here takes locks, publishes or schedules: that is the catalog's job.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import orjson
from werkzeug.http import http_date

from . import compress, integrity

log = logging.getLogger(__name__)

DATA_FILE = "data.geojson"


class Keeper(Protocol):
    """Who is told when a stored variant of a version is missing or damaged (the catalog)."""

    def variant_unusable(self, version: Version, encoding: str, problem: str) -> None: ...


class Signature(NamedTuple):
    """What identifies one state of a data file without reading it."""

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Signature:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class Version:
    """One immutable content of a dataset, as stored in the state folder.

    ``keeper`` (the catalog) is told when a variant is missing or damaged, so
    that it is quarantined and built again; ``variants_expected`` is False for
    versions that get none (too small, or none configured).
    """

    name: str
    id: str
    directory: Path
    meta: dict[str, Any]
    keeper: Keeper | None = field(default=None, repr=False, compare=False)
    variants_expected: bool = True
    _variants: dict[str, tuple[Path, int]] = field(default_factory=dict, repr=False)

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
        """The precompressed file for ``encoding`` if it has been built (and checked) yet."""
        found = self._variants.get(encoding)
        if found is not None:
            return found[0]
        if not self.variants_expected:
            return None
        candidate = compress.variant_path(self.path, encoding)
        recorded = integrity.read_sum(candidate)
        problem = compress.variant_problem(candidate, recorded)
        if problem is None and recorded is not None:
            self._variants[encoding] = (candidate, recorded.bytes)
            return candidate
        if self.keeper is not None:
            self.keeper.variant_unusable(self, encoding, problem or "no sum")
        return None

    def variant_size(self, encoding: str) -> int:
        """The recorded size of a variant that :meth:`variant` returned."""
        return self._variants[encoding][1]

    def forget_variant(self, encoding: str) -> None:
        """The variant turned out unusable after it was checked (see ``variant``)."""
        self._variants.pop(encoding, None)

    def forget_file(self, path: Path) -> None:
        """A stored file of this version was quarantined: stop sending it."""
        for encoding, (found, _) in list(self._variants.items()):
            if found == path:
                self.forget_variant(encoding)


@dataclass
class Pointer:
    """The persisted state of one dataset: its current version and what it was made from."""

    version: str | None = None
    source: Signature | None = None
    history: list[str] = field(default_factory=list)
    rejected: dict[str, Any] | None = None
    """A content refused for good (not GeoJSON): source, error, at."""
    deferred: dict[str, Any] | None = None
    """A content whose publish failed for an I/O reason: source, code, error, at,
    retry_at (wall clock) and attempts."""

    @classmethod
    def load(cls, path: Path) -> Pointer:
        try:
            raw = orjson.loads(path.read_bytes())
            return cls(
                version=raw.get("version"),
                source=Signature(*raw["source"]) if raw.get("source") else None,
                history=list(raw.get("history", [])),
                rejected=_with_signature(raw.get("rejected")),
                deferred=_with_signature(raw.get("deferred")),
            )
        except FileNotFoundError:
            return cls()
        except (ValueError, TypeError, KeyError) as exc:  # damaged: publish again
            log.warning("pointer %s is unreadable (%s); publishing its dataset again", path, exc)
            return cls()

    def dump(self) -> bytes:
        source = list(self.source) if self.source else None
        return orjson.dumps(
            {"version": self.version, "source": source, "history": self.history,
             "rejected": _without_signature(self.rejected),
             "deferred": _without_signature(self.deferred)}
        )

    def rejects(self, sig: Signature) -> bool:
        return bool(self.rejected) and self.rejected["source"] == sig  # type: ignore[index]

    def refusal(self, sig: Signature) -> dict[str, Any] | None:
        """Why the data file's content ``sig`` is not the one served, if it was refused."""
        if self.rejects(sig):
            return {"code": "invalid-geojson", "reason": self.rejected["error"],  # type: ignore[index]
                    "at": self.rejected["at"]}  # type: ignore[index]
        return deferral_refusal(self.deferred, sig)


def deferral_refusal(entry: dict[str, Any] | None, sig: Signature) -> dict[str, Any] | None:
    """The refusal a deferred publish of ``sig`` shows in the listing, if ``entry`` is one."""
    if not entry or entry["source"] != sig:
        return None
    return {"code": entry["code"], "reason": entry["error"], "at": entry["at"],
            "retry_at": entry["retry_at"]}


def _with_signature(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    return {**entry, "source": Signature(*entry["source"])} if entry else None


def _without_signature(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    return {**entry, "source": list(entry["source"])} if entry else None


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
