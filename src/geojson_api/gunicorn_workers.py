"""What we change in Gunicorn's workers: a request-head timeout for gthread, JSON errors.

**Slow request heads.** Gunicorn's gthread worker hands a connection to a pool
thread as soon as its first byte arrives, and the thread then blocks until
the whole request head is in. Fifty clients sending one header byte a second
hold every thread of a default ``geojson-api serve`` (5 workers x 8 threads)
and nobody else is answered. :class:`ThreadWorker` reads the head in the
worker's poller instead, without a thread, and gives the connection to the
pool only once the head is complete (or over Gunicorn's own size limits, so
its parser refuses it at once). A head that is not complete within
``GEOJSON_API_HEADER_TIMEOUT`` seconds is answered with a JSON 408 and closed.
The same applies to the next request on a kept-alive connection. TLS and
HTTP/2 cleartext connections keep Gunicorn's own path (the service runs
behind Nginx for those).

**Gunicorn's own error pages.** When Gunicorn refuses a request before the
app sees it (a malformed request line: 400, a URI over
``limit_request_line``: 414, too many or too large headers: 431), it writes
a small HTML page through ``gunicorn.util.write_error``.
:func:`install_json_errors` replaces that one function, so those answers
carry the same ``{"code": ..., "description": ...}`` body as every other
error of the service.

Both depend on Gunicorn 27's internals (``TConn``, the parser's unreader),
which is why the Gunicorn requirement is pinned to that major version.
"""

from __future__ import annotations

import contextlib
import errno
import json
import selectors
import time
from collections import deque
from functools import partial
from typing import Any

from gunicorn import util
from gunicorn.workers import gthread

from . import http

HEAD_END = (b"\r\n\r\n", b"\n\n")
RECV_BYTES = 64 * 1024
ERROR_CODES = {400: "bad-request", 403: "forbidden", 408: "request-timeout",
               414: "uri-too-long", 417: "expectation-failed",
               431: "request-header-fields-too-large", 500: "internal-error",
               501: "not-implemented"}


def json_error_bytes(status: int, reason: str, description: str) -> bytes:
    """A whole HTTP/1.1 error response with our JSON error body; the connection closes."""
    code = ERROR_CODES.get(status, reason.lower().replace(" ", "-"))
    body = json.dumps({"code": code, "description": description or reason}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: {http.JSON}\r\nCache-Control: {http.NO_STORE}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for ``gunicorn.util.write_error``: the same answer, as JSON."""
    util.write_nonblock(sock, json_error_bytes(status_int, reason, mesg))


def install_json_errors() -> None:
    """Make Gunicorn's own error answers (400, 414, 431, ...) JSON; idempotent."""
    util.write_error = write_json_error


class HeadConn(gthread.TConn):  # type: ignore[misc]
    """A gthread connection that may carry request-head bytes read by the poller."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.head = bytearray()
        self.head_deadline = 0.0

    def init(self) -> None:
        fresh = self.parser is None
        super().init()
        if fresh:
            self.give_head_to_parser()

    def give_head_to_parser(self) -> None:
        """Put the bytes read so far back in front of the parser's input."""
        if self.head and self.parser is not None:
            self.parser.unreader.unread(bytes(self.head))
            self.head = bytearray()


class ThreadWorker(gthread.ThreadWorker):  # type: ignore[misc]
    """gthread with request heads read by the poller and bounded in time (see above)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from .settings import Settings

        self.head_timeout = Settings.from_env().header_timeout
        cfg = self.cfg
        self.head_limit = (cfg.limit_request_line + 2
                           + cfg.limit_request_fields * (cfg.limit_request_field_size + 2) + 2)
        self.reads_heads = not cfg.is_ssl and cfg.http2_cleartext not in (
            "prior-knowledge", "both")
        self.heading: deque[HeadConn] = deque()  # deadlines in order: one timeout for all

    # -- new and kept-alive connections wait for their head in the poller ----------
    def accept(self, listener: Any) -> None:
        if not self.reads_heads:
            super().accept(listener)
            return
        try:
            sock, addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self._await_head(HeadConn(self.cfg, sock, addr, listener.getsockname()))

    def on_client_socket_readable(self, conn: HeadConn, client: Any) -> None:
        """A kept-alive connection's next request: usually whole already, so no extra
        poller round trip (this is the small-file hot path)."""
        if not self.reads_heads:
            super().on_client_socket_readable(conn, client)
            return
        self.keepalived_conns.remove(conn)
        conn.head_deadline = time.monotonic() + self.head_timeout
        done = self._read_head(conn)
        if done is None:
            self.heading.append(conn)
            self.poller.modify(client, selectors.EVENT_READ,
                               partial(self._on_head_readable, conn))
            return
        self.poller.unregister(client)
        self._finish_head(conn, done)

    def _await_head(self, conn: HeadConn) -> None:
        conn.sock.setblocking(False)
        conn.head_deadline = time.monotonic() + self.head_timeout
        self.heading.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ,
                             partial(self._on_head_readable, conn))

    def _on_head_readable(self, conn: HeadConn, client: Any) -> None:
        done = self._read_head(conn)
        if done is not None:
            self.poller.unregister(client)
            self.heading.remove(conn)
            self._finish_head(conn, done)

    def _read_head(self, conn: HeadConn) -> bool | None:
        """Read what arrived: True when the head is whole (or too big), False when the
        client went away, None when more is to come."""
        try:
            chunk = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            chunk = b""
        if not chunk:
            return False
        conn.head += chunk
        if any(end in conn.head for end in HEAD_END) or len(conn.head) > self.head_limit:
            return True
        return None

    def _finish_head(self, conn: HeadConn, whole: bool) -> None:
        """Hand a whole head to the thread pool, or close a connection the client left."""
        if not whole:
            self.nr_conns -= 1
            conn.close()
            return
        conn.data_ready = True
        conn.give_head_to_parser()  # a kept-alive connection has its parser already
        self.enqueue_req(conn)

    # -- heads that do not arrive in time ------------------------------------
    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        while self.heading and self.heading[0].head_deadline <= now:
            conn = self.heading[0]
            if conn.head:  # a request started and stalled; an idle one just closes
                with contextlib.suppress(OSError):
                    conn.sock.send(json_error_bytes(
                        408, "Request Timeout",
                        f"the request head did not arrive within {self.head_timeout:g} s"))
            self._drop_heading(conn)

    def _drop_heading(self, conn: HeadConn) -> None:
        with contextlib.suppress(OSError, KeyError, ValueError):  # already unregistered
            self.poller.unregister(conn.sock)
        self.heading.remove(conn)
        self.nr_conns -= 1
        conn.close()
