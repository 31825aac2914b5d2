"""Static assets under content-hashed names, hashed once when the app starts.

Every file a page loads (our own scripts and styles in ``static/``, MapLibre
GL JS and Swagger UI copied into ``static/vendor/`` by ``scripts/build-assets``)
is read once at start-up and given
the name ``<stem>.<digest>.<ext>``. A new content is a new URL, so browsers
and caches may keep each one for a year (``Cache-Control: immutable``); an
old URL stops resolving as soon as its file changed (404).

Templates ask for a URL by the file's plain name: ``asset("maplibre-gl.css")``.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import mimetypes
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import brotli

from ..errors import AssetsMissing

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
VENDOR = STATIC / "vendor"
# What scripts/build-assets copies out of web/node_modules (the pages need each one).
VENDOR_FILES = ("maplibre-gl-csp.js", "maplibre-gl-csp-worker.js", "maplibre-gl.css",
                "maplibre-gl.LICENSE.txt", "swagger-ui-bundle.js", "swagger-ui.css",
                "swagger-ui.LICENSE.txt")
BUILD_HINT = ("run `make assets` (or `scripts/build-assets`) in the checkout, "
              "then reinstall; a wheel or image built after that carries them")
DIGEST_CHARS = 16  # 64 bits of SHA-256: enough to tell two versions of one file apart
SERVED_SUFFIXES = {".js", ".css", ".png", ".svg", ".txt"}
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".txt": "text/plain"}
COMPRESSED_SUFFIXES = {".js", ".css", ".svg", ".txt"}  # text: worth compressing
# Each text file is compressed once per worker, on its first request, and browsers keep
# it a year. MapLibre's 0.97 MB: gzip 9 0.25 MB in 0.06 s; brotli 9 0.22 MB in 0.16 s
# (brotli 11 saves 19 KB more but takes 3 s, too long for a first request to wait).
def _brotli(data: bytes) -> bytes:
    return bytes(brotli.compress(data, mode=brotli.MODE_TEXT, quality=9))


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {"br": _brotli, "gzip": _gzip}


@dataclass(frozen=True)
class Asset:
    """One static file and the name it is served under."""

    name: str  # its plain name, e.g. maplibre-gl.css
    path: Path
    digest: str  # hex SHA-256 of its bytes

    @property
    def hashed_name(self) -> str:
        stem, dot, ext = self.name.rpartition(".")
        return f"{stem}.{self.digest[:DIGEST_CHARS]}.{ext}" if dot else (
            f"{self.name}.{self.digest[:DIGEST_CHARS]}")

    @property
    def mimetype(self) -> str:
        suffix = self.path.suffix
        found = MEDIA_TYPES.get(suffix) or mimetypes.guess_type(self.path.name)[0]
        return found or "application/octet-stream"

    @property
    def compressible(self) -> bool:
        return self.path.suffix in COMPRESSED_SUFFIXES

    def encoded(self, encoding: str) -> bytes:
        """The file compressed with ``encoding`` (made on first use, then kept)."""
        return _encoded(self.path, self.digest, encoding)


_encoding_lock = threading.Lock()


@functools.cache
def _encoded_once(path: Path, digest: str, encoding: str) -> bytes:
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise AssetsMissing(f"{path} changed since the app started: restart it")
    return COMPRESSORS[encoding](data)


def _encoded(path: Path, digest: str, encoding: str) -> bytes:
    with _encoding_lock:  # one compression per file, whichever thread asks first
        return _encoded_once(path, digest, encoding)


def check_built(vendor: Path | None = None) -> None:
    """Raise :class:`AssetsMissing` (one line: what is missing and what to run)."""
    vendor = vendor or VENDOR
    missing = [name for name in VENDOR_FILES if not (vendor / name).is_file()]
    if missing:
        raise AssetsMissing(f"the web assets are not built ({vendor / missing[0]} is "
                            f"missing): {BUILD_HINT}")


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _files(folder: Path, names: Iterable[str] | None) -> Iterable[Path]:
    if names is not None:
        return [folder / name for name in names]
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in SERVED_SUFFIXES)


class Assets:
    """Every served file by plain name and by hashed name."""

    def __init__(self, assets: Iterable[Asset]) -> None:
        self.by_name: dict[str, Asset] = {}
        for asset in assets:
            if asset.name in self.by_name:
                raise ValueError(f"two static files are named {asset.name}: "
                                 f"{self.by_name[asset.name].path} and {asset.path}")
            self.by_name[asset.name] = asset
        self.by_hashed = {a.hashed_name: a for a in self.by_name.values()}

    @classmethod
    def collect(cls, sources: Mapping[Path, Iterable[str] | None]) -> Assets:
        """Hash the files of each folder: the listed names, or every servable file."""
        return cls(Asset(path.name, path, _digest(path))
                   for folder, names in sources.items() for path in _files(folder, names))

    def url(self, name: str) -> str:
        """The path of a file by its plain name (a template's ``asset(...)``)."""
        try:
            return f"/assets/{self.by_name[name].hashed_name}"
        except KeyError:
            raise LookupError(f"no static file is named {name!r}; the files are "
                              f"{', '.join(sorted(self.by_name))}") from None

    def find(self, hashed_name: str) -> Asset | None:
        return self.by_hashed.get(hashed_name)


def build_token(assets: Assets, templates: Path = HERE / "templates") -> str:
    """A digest of every template and asset: what a page's bytes depend on beside its data."""
    sha = hashlib.sha256()
    for asset in sorted(assets.by_name.values(), key=lambda a: a.name):
        sha.update(f"{asset.name}={asset.digest}\n".encode())
    for path in sorted(templates.rglob("*")):
        if path.is_file():
            sha.update(path.relative_to(templates).as_posix().encode() + b"\0")
            sha.update(path.read_bytes())
    return sha.hexdigest()


def sources() -> dict[Path, Iterable[str] | None]:
    """Where the served files live: our own, and the vendored ones (MapLibre, Swagger UI)."""
    check_built()
    return {STATIC: None, VENDOR: VENDOR_FILES}
