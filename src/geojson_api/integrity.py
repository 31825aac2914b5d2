"""Checks on the files of a version: recorded when built, verified when opened.

Every derived file of a version (a compressed variant, the spatial index)
gets a small sidecar ``<file>.sum`` written just before the file itself is
renamed into place: its size and SHA-256. The stored copy needs none: its
size and digest are the version's own metadata. A file that exists without
its sum, or whose size differs from it, is damaged (truncated, replaced, or
left by a build that died): it is moved to the quarantine folder and built
again, never served.

Opening checks the size, which costs one ``stat``; the digest is checked
where reading the whole file is affordable (at build time, and by
``geojson-api prepare`` and Gunicorn's start-up, for every current version).

The quarantine folder keeps the last few damaged files for a look by hand;
older ones are deleted so that a disk that damages files cannot fill up with
them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

log = logging.getLogger(__name__)

SUM_SUFFIX = ".sum"
QUARANTINE_KEEP = 3
HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class Sum:
    """What a file held when it was built."""

    bytes: int
    sha256: str


def sum_path(path: Path) -> Path:
    return path.with_name(path.name + SUM_SUFFIX)


def file_sum(path: Path) -> Sum:
    """Size and SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return Sum(size, digest.hexdigest())


def write_sum(path: Path, made: Sum) -> None:
    """Record the sum of ``path`` (call before renaming ``path`` into place)."""
    target = sum_path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(orjson.dumps({"bytes": made.bytes, "sha256": made.sha256}))
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def read_sum(path: Path) -> Sum | None:
    """The recorded sum of ``path``; None when there is none or it is unreadable."""
    try:
        raw = orjson.loads(sum_path(path).read_bytes())
        return Sum(int(raw["bytes"]), str(raw["sha256"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def size_problem(path: Path, expected: int | None) -> str | None:
    """Why ``path`` cannot be served as a file of ``expected`` bytes, or None."""
    if expected is None:
        return f"{path.name} has no recorded size and digest"
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        return f"{path.name} is missing"
    if actual != expected:
        return f"{path.name} has {actual} bytes, {expected} were recorded"
    return None


def digest_problem(path: Path, expected: Sum | None) -> str | None:
    """Like :func:`size_problem`, reading the whole file to compare its digest too."""
    problem = size_problem(path, expected.bytes if expected else None)
    if problem is not None or expected is None:
        return problem
    if file_sum(path).sha256 != expected.sha256:
        return f"{path.name} does not match its recorded SHA-256"
    return None


def quarantine(state_dir: Path, what: Path, reason: str) -> Path | None:
    """Move a damaged file or version folder out of the way; None if it is already gone.

    The newest :data:`QUARANTINE_KEEP` entries are kept, older ones deleted.
    """
    folder = state_dir / "quarantine"
    label = "-".join(what.parts[-3:])
    target = folder / f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{label}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.rename(what, target)
    except FileNotFoundError:
        return None
    except OSError as exc:  # no room even for a folder: heal first, keep no evidence
        log.warning("deleting damaged %s (%s); cannot quarantine it: %s", what, reason,
                    exc.strerror)
        _remove(what)
        _remove(sum_path(what))
        return None
    with contextlib.suppress(FileNotFoundError):
        os.rename(sum_path(what), target.with_name(target.name + SUM_SUFFIX))
    log.warning("quarantined %s: %s (moved to %s)", what, reason, target)
    _prune(folder)
    return target


def _prune(folder: Path) -> None:
    entries = sorted((p for p in folder.iterdir() if not p.name.endswith(SUM_SUFFIX)),
                     key=lambda p: p.name, reverse=True)
    for old in entries[QUARANTINE_KEEP:]:
        _remove(old)
        _remove(sum_path(old))


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()
