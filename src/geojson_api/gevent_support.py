"""What gevent workers need: cooperative ``sendfile(2)`` and CPU work off the hub.

:func:`run_blocking` runs CPU-bound work (scanning a big file while
publishing it) on the hub's pool of real threads under gevent, and as a plain
call everywhere else; gevent is imported only when it is installed.

Cooperative ``sendfile(2)`` for Gunicorn's gevent workers:

gevent's ``socket.sendfile`` never calls ``sendfile(2)``: it reads the file in
8 KiB blocks and sends each one from Python (6,105 reads and sends for one
50 MB download). Its sockets are non-blocking underneath, so ``os.sendfile``
can be made cooperative the same way gevent's own ``send`` is: send what the
kernel takes, and on ``EAGAIN`` wait for the socket to become writable, which
yields to other greenlets. Installed by the Gunicorn config in gevent workers
only; anything that is not a regular file still takes gevent's path.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

MAX_CHUNK = 1 << 30
T = TypeVar("T")


def run_blocking(function: Callable[..., T], *args: object) -> T:
    """Run CPU-bound work so that a gevent worker keeps serving meanwhile.

    Under gevent (threading monkey-patched) the work goes to the hub's pool of
    real OS threads and the calling greenlet waits; other greenlets keep
    running. Elsewhere it is a plain call (gevent is not even imported).
    """
    monkey = sys.modules.get("gevent.monkey")  # only a gevent worker has imported it
    if monkey is None or not monkey.is_module_patched("threading"):
        return function(*args)
    from gevent import get_hub

    return get_hub().threadpool.apply(function, args)  # type: ignore[no-any-return]


def _regular_fileno(file: Any) -> int | None:
    try:
        fileno = int(file.fileno())
        os.fstat(fileno)
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None
    return fileno


def cooperative_sendfile(sock: Any, file: Any, offset: int = 0, count: int | None = None) -> int:
    """``socket.sendfile`` for a gevent socket, with the kernel moving the bytes."""
    sock._check_sendfile_params(file, offset, count)
    fileno = _regular_fileno(file)
    if fileno is None:
        return int(sock._sendfile_use_send(file, offset, count))
    if count is None:
        count = max(os.fstat(fileno).st_size - offset, 0)
    total = 0
    try:
        while total < count:
            try:
                sent = os.sendfile(sock.fileno(), fileno, offset + total,
                                   min(count - total, MAX_CHUNK))
            except BlockingIOError:
                sock._wait(sock._write_event)  # yields; raises on the socket's timeout
                continue
            if sent == 0:
                break
            total += sent
        return total
    finally:
        if total > 0:
            file.seek(offset + total)


def install() -> None:
    """Make every gevent socket send regular files with ``sendfile(2)``."""
    from gevent import _socket3

    _socket3.socket.sendfile = cooperative_sendfile
