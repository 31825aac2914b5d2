"""Public pointers: where Nginx finds the current version of a dataset by itself.

For each published dataset the state folder holds one symlink::

    <state>/public/<name> -> ../versions/<name>/<version>

Nginx resolves it once per request (``$realpath_root``) and serves
``GET|HEAD /geojson/<name>`` from the version folder it names, with the
version's ETag, without asking an app instance (docs/production.md, "Direct
files"). A symlink is replaced with ``rename(2)``, so a reader sees the old
version or the new one, never a mix or nothing.

The catalog writes a pointer when it publishes a version (under the
dataset's lock) and removes it when the version is lost; a :class:`Watcher`
thread in each app process keeps pointers in step with the data folder, since
the requests Nginx answers never reach the app to notice a changed or removed
file. Nothing here decides what is current: that is the catalog's job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

FOLDER = "public"
NGINX_PREFIX = "/_direct"  # Nginx's internal location over <state>/versions/

# Accept-Encoding values as browsers and common clients send them: Nginx decides
# these itself (geojson_api.nginxconf renders their answers); any other goes to the app.
COMMON_ACCEPT_ENCODINGS = (
    "", "identity", "gzip", "br", "deflate", "gzip, deflate", "deflate, gzip",
    "gzip, br", "br, gzip", "gzip, deflate, br", "gzip, deflate, br, zstd",
    "deflate, gzip, br, zstd", "br;q=1.0, gzip;q=0.8, *;q=0.1",
)


def folder(state_dir: Path) -> Path:
    return state_dir / FOLDER


def _link(state_dir: Path, name: str) -> Path:
    return folder(state_dir) / name


def point(state_dir: Path, name: str, version_id: str) -> None:
    """Make ``public/<name>`` name ``version_id``, atomically (a new symlink, renamed)."""
    public = folder(state_dir)
    public.mkdir(exist_ok=True)
    tmp = public / f".{name}.{uuid.uuid4().hex}.tmp"
    os.symlink(f"../versions/{name}/{version_id}", tmp)
    try:
        os.replace(tmp, public / name)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove(state_dir: Path, name: str) -> None:
    """Nginx stops serving ``name`` itself (the app answers it again)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_link(state_dir, name))


def target(state_dir: Path, name: str) -> str | None:
    """The version id ``public/<name>`` names, or None (no pointer, or not one of ours)."""
    try:
        link = os.readlink(_link(state_dir, name))
    except (FileNotFoundError, OSError):
        return None
    parts = link.split("/")
    if len(parts) != 4 or parts[:3] != ["..", "versions", name]:
        return None
    return parts[3]


def names(state_dir: Path) -> list[str]:
    """The datasets that have a pointer (leftover temporary links excluded)."""
    try:
        with os.scandir(folder(state_dir)) as entries:
            return sorted(e.name for e in entries if not e.name.startswith("."))
    except FileNotFoundError:
        return []


def remove_others(state_dir: Path, keep: Iterable[str]) -> None:
    """Remove the pointers of every dataset not in ``keep`` (its file is gone)."""
    wanted = set(keep)
    for name in names(state_dir):
        if name not in wanted:
            remove(state_dir, name)


class Watcher:
    """A daemon thread calling ``check`` every ``interval`` seconds in this process.

    Started once per process: a forked Gunicorn worker starts its own (the
    parent's thread does not survive a fork). It holds ``check`` weakly, and
    ends when its owner (the app's catalog) is gone.
    """

    def __init__(self, check: Callable[[], None], interval: float) -> None:
        self._check = weakref.WeakMethod(check)
        self.interval = interval
        self._pid = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="geojson-api-public",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            check = self._check()
            if check is None:
                return
            try:
                check()
            except Exception:
                log.exception("keeping the public pointers in step failed")
            del check


_watchers: weakref.WeakSet[Watcher] = weakref.WeakSet()


def start_watchers() -> None:
    """Start this process's watchers (again after a fork: Gunicorn's post_worker_init)."""
    for watcher in list(_watchers):
        watcher.start()


class Checked(Protocol):
    def keep_public_in_step(self) -> None: ...


def init_app(app: Any, catalog: Checked, interval: float) -> None:
    """Keep the public pointers of ``catalog`` in step from this process, every ``interval`` s."""
    watcher = app.extensions["public_watcher"] = Watcher(catalog.keep_public_in_step, interval)
    _watchers.add(watcher)
    watcher.start()
