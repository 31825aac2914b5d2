"""Per-request profiles: ``GEOJSON_API_PROFILE_DIR`` wraps the app in a cProfile layer.

:class:`RequestProfiler` is the outermost WSGI callable, so it sees the
delivery fast lane as well as Flask. Each request's profile goes into its own
file, ``<profile_dir>/<ns>-<pid>-<n>.<METHOD>.<path>.<ms>ms.prof`` (the path
with ``/`` written ``.``, e.g. ``GET.geojson.small``), readable with
:mod:`pstats`; ``geojson-api profile DIR`` adds them up (see docs/profiling.md).

Unlike Werkzeug's ``ProfilerMiddleware``, it does not collect the body into
memory: a body the server sends itself (``wsgi.file_wrapper``, i.e.
``sendfile(2)`` under gthread) is passed through untouched, so a 50 MB download
is profiled on its real path; any other body is profiled while the server
iterates it, until it is closed. ``ms`` is the wall time from the call to the
end of the body. cProfile slows every Python call down: compare the shares of
functions, not absolute times, and never leave it on in production.
"""

from __future__ import annotations

import cProfile
import io
import itertools
import os
import pstats
import re
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from flask import Flask

from . import filebody

WSGIEnviron = dict[str, Any]
WSGIApp = Callable[[WSGIEnviron, Callable[..., Any]], Iterable[bytes]]

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def profile_name(environ: WSGIEnviron, elapsed: float, number: int) -> str:
    """``<ns>-<pid>-<n>.GET.geojson.small.0.123ms.prof``: sortable by time, greppable."""
    path = environ.get("PATH_INFO", "").strip("/")
    words = [_UNSAFE.sub("_", part) for part in path.split("/")] if path else ["root"]
    return (f"{time.time_ns()}-{os.getpid()}-{number}.{environ.get('REQUEST_METHOD', '-')}."
            f"{'.'.join(words)[:120]}.{elapsed * 1000:.3f}ms.prof")


class RequestProfiler:
    """WSGI middleware writing one cProfile file per request into ``directory``."""

    def __init__(self, app: WSGIApp, directory: Path) -> None:
        self.app = app
        self.directory = directory
        self._numbers = itertools.count()
        directory.mkdir(parents=True, exist_ok=True)

    def __call__(self, environ: WSGIEnviron,
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        profile = cProfile.Profile()
        started = time.perf_counter()
        body = profile.runcall(self.app, environ, start_response)
        if filebody.sent_by_server(environ, body):
            self._dump(profile, environ, started)
            return body
        return self._iterate(body, profile, environ, started)

    def _iterate(self, body: Iterable[bytes], profile: cProfile.Profile,
                 environ: WSGIEnviron, started: float) -> Iterator[bytes]:
        try:
            chunks = iter(body)
            while (chunk := profile.runcall(next, chunks, None)) is not None:  # bytes, never None
                yield chunk
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                profile.runcall(close)
            self._dump(profile, environ, started)

    def _dump(self, profile: cProfile.Profile, environ: WSGIEnviron, started: float) -> None:
        name = profile_name(environ, time.perf_counter() - started, next(self._numbers))
        profile.dump_stats(self.directory / name)


def init_app(app: Flask, directory: Path) -> None:
    """Wrap the outermost WSGI callable (call it after every other layer is in place)."""
    app.wsgi_app = RequestProfiler(app.wsgi_app, directory)  # type: ignore[method-assign]


# -- reading the profiles ------------------------------------------------------------------

def profiles(directory: Path, match: str = "") -> list[Path]:
    return sorted(p for p in directory.glob("*.prof") if match in p.name)


def summary(files: list[Path], sort: str = "cumulative", limit: int = 25) -> str:
    """The profiles added up: requests, in-app time per request, the top functions."""
    out = io.StringIO()
    stats = pstats.Stats(*(str(f) for f in files), stream=out)
    per_request = stats.total_tt / len(files)  # type: ignore[attr-defined]
    out.write(f"{len(files)} requests, {per_request * 1e6:,.1f} µs per request inside the "
              "WSGI app (cProfile's own overhead included)\n")
    stats.files = []  # type: ignore[attr-defined]  # pstats would print every file name
    stats.strip_dirs().sort_stats(sort).print_stats(limit)
    return out.getvalue()
