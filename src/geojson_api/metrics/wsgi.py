"""The request layer: every answer counted, timed and measured; ``GET /metrics`` answered.

:class:`RequestMetrics` wraps everything the app answers (outside the CORS
layer and the whole-file fast lane, inside the profiler). It reads the route
template the app noted in the environ (:mod:`geojson_api.requestinfo`), the
status and ``Content-Length`` it passed to ``start_response``, and times the
request until the server closes its body (after the last byte, sendfile(2)
included: a body the server sends itself keeps being that object, only its
``close`` is wrapped). A request costs one small object and a few dict
writes; the values prometheus-client exports are written in batches
(:mod:`geojson_api.metrics.record`).

``/metrics`` itself is answered here, never counted, and marked quiet for the
access log (``geojson_api.quiet``). With ``metrics_port`` it is answered on
that port only (Gunicorn listens there too), and that port answers nothing
else.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .. import filebody
from ..errors import Unauthorized, error_reply
from ..http import NO_STORE, Header, Reply
from .record import DRAIN_AT, RECORDER, ROUTE_KEY, Environ, Recorder
from .scrape import CONTENT_TYPE

PATH = "/metrics"
QUIET = "geojson_api.quiet"  # read by the access log: no line for this request

StartResponse = Callable[..., Any]
WSGIApp = Callable[[Any, StartResponse], Iterable[bytes]]

_perf_counter = time.perf_counter


def bearer(token: str) -> bytes:
    """The ``Authorization`` value that ``token`` asks for."""
    return f"Bearer {token}".encode()


def authorized(environ: Environ, expected: bytes) -> bool:
    """Whether the request's ``Authorization`` is ``expected`` (compared in constant time)."""
    given = environ.get("HTTP_AUTHORIZATION", "").encode("latin-1", "replace")
    return hmac.compare_digest(given, expected)


class _Answer(list[bytes]):
    """One request: its ``start_response``, and its body, closed by the server.

    A list, so that a body the app gave as a list (small files, errors: the
    fast lane's common case) is iterated by the server at C speed; any other
    body is iterated through :class:`_Iterated`. Everything is recorded in
    :meth:`close`, in one Python frame: on the lab machine a Python call costs
    about as much as a dict write, so the request path makes as few as it can.
    """

    __slots__ = ("body_close", "environ", "headers", "recorder", "start_response", "started",
                 "status")
    body_close: Callable[[], Any] | None
    environ: Environ
    headers: list[Header]
    recorder: Recorder
    start_response: StartResponse
    started: float
    status: str

    def __call__(self, status: str, headers: list[Header], exc_info: Any = None) -> Any:
        self.status = status
        self.headers = headers
        if exc_info is None:  # as called: some servers' callables take exactly two arguments
            return self.start_response(status, headers)
        return self.start_response(status, headers, exc_info)

    def close(self) -> None:
        try:
            if self.body_close is not None:
                self.body_close()
        finally:
            environ, recorder = self.environ, self.recorder
            recorder.active.pop(id(environ), None)
            length = 0
            for name, value in self.headers:
                if len(name) == 14 and name.lower() == "content-length":
                    length = int(value) if value.isdigit() else 0
                    break
            answered = recorder.answered
            answered.append((environ.get(ROUTE_KEY, "unmatched"),
                             environ.get("REQUEST_METHOD", ""), self.status[:1], length,
                             _perf_counter() - self.started))
            if len(answered) > DRAIN_AT:  # no flush thread (tests, one process)
                recorder.drain()


class _Iterated(_Answer):
    """An answer whose body is not a list: iterated as it comes."""

    __slots__ = ("body",)
    body: Iterable[bytes]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)


class RequestMetrics:
    """WSGI layer counting every request and answering ``/metrics``."""

    def __init__(self, app: WSGIApp, scrape: Callable[[], bytes], token: str = "",
                 port: int = 0, recorder: Recorder = RECORDER) -> None:
        self.app = app
        self.recorder = recorder
        self.scrape = scrape
        self.expected = bearer(token) if token else None
        self.port = str(port) if port else None

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if self.port is not None:
            if environ.get("SERVER_PORT") == self.port:
                return self._metrics_port(environ, start_response)
        elif environ.get("PATH_INFO") == PATH:
            return self._answer(self._metrics(environ), environ, start_response)
        recorder = self.recorder
        started = _perf_counter()
        body: Iterable[bytes]
        answer = _Answer()
        answer.recorder = recorder
        answer.environ, answer.start_response, answer.started = environ, start_response, started
        answer.status, answer.headers, answer.body_close = "500", [], None
        recorder.active[id(environ)] = environ
        try:
            body = self.app(environ, answer)
        except BaseException:
            answer.close()  # counted as the 500 the server answers
            raise
        if type(body) is list:
            answer.extend(body)
            return answer
        answer.body_close = getattr(body, "close", None)
        if filebody.sent_by_server(environ, body):
            body.close = answer.close  # type: ignore[attr-defined]  # still sent by the server
            return body
        iterated = _Iterated()
        for slot in _Answer.__slots__:
            setattr(iterated, slot, getattr(answer, slot))
        iterated.body = body
        return iterated

    def _metrics_port(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == PATH:
            reply = self._metrics(environ)
        else:
            reply = error_reply(404, "not-found", f"this port serves {PATH} only")
            environ[QUIET] = True
        return self._answer(reply, environ, start_response)

    def _metrics(self, environ: Environ) -> Reply:
        environ[QUIET] = True
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return error_reply(405, "method-not-allowed", f"{PATH} answers GET and HEAD",
                               [("Allow", "GET, HEAD")])
        if self.expected is not None and not authorized(environ, self.expected):
            refused = Unauthorized(f"{PATH} needs the metrics token")
            return error_reply(refused.status, refused.code, refused.description,
                               refused.headers.items())
        body = self.scrape()
        return Reply(200, [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body))),
                           ("Cache-Control", NO_STORE)], [body])

    @staticmethod
    def _answer(reply: Reply, environ: Environ, start_response: StartResponse
                ) -> Iterable[bytes]:
        start_response(reply.status_line, reply.headers)
        return () if environ.get("REQUEST_METHOD") == "HEAD" else reply.body
