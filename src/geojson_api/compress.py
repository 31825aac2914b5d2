"""Precompressed variants (gzip, brotli) of a stored version.

Built once per version (while publishing for files up to
``precompress_on_publish_bytes``, else in the background), chunk by chunk so that memory
stays flat and a gevent worker keeps serving while it runs (each chunk ends
with a zero-length sleep, a cooperative yield under gevent and a no-op with
threads). A variant appears by atomic rename: it is absent or complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import brotli

from .integrity import Sum, read_sum, size_problem, write_sum
from .settings import Settings

ARTIFACT = "variants"
"""The variants' name among a version's artifacts (see geojson_api.pipeline)."""
LOCK_FILE = ".compress.lock"
SUFFIX = {"gzip": ".gz", "br": ".br"}  # file name suffix of each coding in http.ENCODINGS
CHUNK = 1 << 20


class _Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


class _Brotli:
    """Brotli's streaming API under zlib's method names."""

    def __init__(self, quality: int) -> None:
        self._inner = brotli.Compressor(mode=brotli.MODE_TEXT, quality=quality)

    def compress(self, data: bytes) -> bytes:
        return bytes(self._inner.process(data))

    def flush(self) -> bytes:
        return bytes(self._inner.finish())


def _gzip(level: int) -> _Compressor:
    # wbits=31: a gzip container with a zero timestamp, so output is reproducible.
    return zlib.compressobj(level, zlib.DEFLATED, 31)


def compressor(encoding: str, settings: Settings) -> _Compressor:
    if encoding == "gzip":
        return _gzip(settings.gzip_level)
    if encoding == "br":
        return _Brotli(settings.brotli_quality)
    raise ValueError(f"unknown encoding {encoding!r}")


def variant_path(path: Path, encoding: str) -> Path:
    return path.with_name(path.name + SUFFIX[encoding])


def compress_file(source: Path, target: Path, make: Callable[[], _Compressor]) -> None:
    """Stream ``source`` through a compressor into ``target``, atomically, with its sum."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        engine = make()
        digest = hashlib.sha256()
        size = 0
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            while True:
                chunk = src.read(CHUNK)
                out = engine.compress(chunk) if chunk else engine.flush()
                digest.update(out)
                size += len(out)
                dst.write(out)
                if not chunk:
                    break
                time.sleep(0)
            dst.flush()
            os.fsync(dst.fileno())
        # Same mtime as the identity file, so that a server reading it from disk
        # (Nginx, in offload mode) sends the same Last-Modified as the app.
        mtime = os.stat(source).st_mtime_ns
        os.utime(tmp, ns=(mtime, mtime))
        write_sum(target, Sum(size, digest.hexdigest()))
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def variant_problem(path: Path, recorded: Sum | None) -> str | None:
    """Why the variant at ``path``, with its ``recorded`` sum (``read_sum``), cannot be
    served (missing, no sum, wrong size), or None."""
    if recorded is None:
        return f"{path.name} is missing" if not path.exists() else (
            f"{path.name} has no recorded size and digest")
    return size_problem(path, recorded.bytes)


def remove_leftovers(path: Path) -> None:
    """Delete temporary files of builds that died (call only while holding the build lock)."""
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        leftover.unlink(missing_ok=True)


def build_variants(path: Path, settings: Settings) -> list[Path]:
    """Make every configured variant of ``path`` that does not exist yet."""
    remove_leftovers(path)
    built = []
    for encoding in settings.precompress_encodings:
        target = variant_path(path, encoding)
        if variant_problem(target, read_sum(target)) is not None:
            compress_file(path, target, lambda e=encoding: compressor(e, settings))  # type: ignore[misc]
            built.append(target)
    return built
