"""Bodies the WSGI server sends itself: a stored file, or a byte range of one.

An answer made of a stored file (a dataset, one of its variants, a range of
either, a tile inside an archive) is handed to the server's
``wsgi.file_wrapper``, so that the server, not Python, copies the bytes. The
servers this project runs under keep two different contracts:

- **Gunicorn** (sync and gthread workers, and gevent with the project's patch,
  :mod:`geojson_api.gevent_support`) wraps the file in its own ``FileWrapper``
  and sends it with ``sendfile()`` from the descriptor's *current offset* for
  the response's Content-Length. A :class:`BoundedFile` positioned at a range
  start is therefore one ``sendfile()`` call too.
- **uWSGI**'s wrapper is a function that returns the very object it was given,
  and uWSGI uses its own ``sendfile()`` only when the app's result *is* that
  object; it then sends the descriptor from offset 0 to its end, whatever its
  position. So under uWSGI only a whole file shows its descriptor; a part is
  read in blocks (uWSGI calls ``read(block)`` when ``fileno()`` fails).

A server without a wrapper (Granian) gets Werkzeug's, which reads blocks.

Every layer around the app (request ids, metrics, traces, the profiler) must
return such a body untouched, or the server iterates it like any other body
(one GeoJSON line per write under uWSGI). :func:`send` notes the object it
hands over in the environ, and :func:`sent_by_server` tells the layers.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, MutableMapping
from typing import Any, BinaryIO

from werkzeug.wsgi import FileWrapper

BLOCK_SIZE = 256 * 1024  # read size when a server cannot sendfile (e.g. Granian)
SENT = "geojson_api.file_body"
"""WSGI environ key: the body object :func:`send` gave the server."""

Environ = MutableMapping[str, Any]


class BoundedFile(io.RawIOBase):
    """The bytes ``[start, start + length)`` of ``raw`` (to its end when ``length`` is
    None), positioned at ``start``.

    ``fileno()``, ``seek()`` and ``tell()`` pass through, so a server that sends
    files with ``sendfile()`` from the current offset starts at the range start
    and stops at the response's Content-Length; a server that reads stops at the
    end. With ``descriptor=False``, ``fileno()`` fails, for a server that would
    send the descriptor from its start (uWSGI).
    """

    def __init__(self, raw: BinaryIO, start: int = 0, length: int | None = None,
                 descriptor: bool = True) -> None:
        self._raw = raw
        self._end = None if length is None else start + length
        self._descriptor = descriptor
        raw.seek(start)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        if not self._descriptor:
            raise io.UnsupportedOperation("a part of a file: read it")
        return self._raw.fileno()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def read(self, size: int = -1) -> bytes:
        if self._end is None:
            return self._raw.read(size)
        left = max(self._end - self._raw.tell(), 0)
        return self._raw.read(left if size < 0 else min(size, left))

    def close(self) -> None:
        self._raw.close()
        super().close()


def send(environ: Environ, handle: BinaryIO, part: tuple[int, int] | None = None
         ) -> Iterable[bytes]:
    """The body that makes the server send ``handle`` (whole, or ``part``: start and
    length) itself; noted in ``environ`` for :func:`sent_by_server`."""
    wrapper = environ.get("wsgi.file_wrapper") or FileWrapper
    file: Any = handle
    if "uwsgi.version" in environ:
        # uWSGI hands our own object back and sends its descriptor from 0 to the
        # end: a Python object (the layers replace its close), a descriptor only
        # for a whole file.
        file = (BoundedFile(handle) if part is None
                else BoundedFile(handle, *part, descriptor=False))
    elif part is not None:
        file = BoundedFile(handle, *part)
    body: Iterable[bytes] = wrapper(file, BLOCK_SIZE)
    environ[SENT] = body
    return body


def sent_by_server(environ: Environ, body: Iterable[bytes]) -> bool:
    """Whether ``body`` is the object :func:`send` gave the server for this request
    (to be returned as it is: the server sends it, and calls its ``close``)."""
    return body is environ.get(SENT)
