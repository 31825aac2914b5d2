"""File bodies the server sends itself, under each server's file_wrapper contract, and the
layer stack handing them back untouched (tests/integration/test_uwsgi.py: a real uWSGI)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import EnvironBuilder
from werkzeug.wsgi import FileWrapper

from geojson_api import filebody, jobs
from geojson_api.filebody import BoundedFile

from ..conftest import ROADS


class GunicornWrapper:
    """Like Gunicorn's: its own object around the file (sent with sendfile from the
    descriptor's current offset)."""

    def __init__(self, filelike: Any, block: int = 8192) -> None:
        self.filelike, self.block = filelike, block

    def close(self) -> None:
        self.filelike.close()


def uwsgi_wrapper(filelike: Any, block: int = 0) -> Any:
    """Like uWSGI's: a function that hands the very object back."""
    return filelike


GUNICORN = {"wsgi.file_wrapper": GunicornWrapper}
UWSGI = {"wsgi.file_wrapper": uwsgi_wrapper, "uwsgi.version": b"2.0.31"}


def read_all(body: Any) -> bytes:
    """What a server that reads (no sendfile) sends."""
    return b"".join(iter(lambda: body.read(7), b""))


@pytest.fixture
def handle(tmp_path: Path) -> Iterable[io.BufferedReader]:
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 4)
    with path.open("rb") as opened:
        yield opened


def test_gunicorn_gets_the_file_or_a_bounded_part_with_its_descriptor(
        handle: io.BufferedReader) -> None:
    environ: dict[str, Any] = dict(GUNICORN)
    whole = filebody.send(environ, handle)
    assert isinstance(whole, GunicornWrapper) and whole.filelike is handle
    assert filebody.sent_by_server(environ, whole)
    part = filebody.send(environ, handle, (300, 10))
    assert isinstance(part, GunicornWrapper) and isinstance(part.filelike, BoundedFile)
    assert part.filelike.fileno() == handle.fileno() and handle.tell() == 300
    assert read_all(part.filelike) == (bytes(range(256)) * 4)[300:310]
    assert filebody.sent_by_server(environ, part) and not filebody.sent_by_server(environ, whole)


def test_uwsgi_sees_a_descriptor_only_for_a_whole_file(handle: io.BufferedReader) -> None:
    """uWSGI sends a descriptor from offset 0 to its end: a part must be read instead."""
    environ: dict[str, Any] = dict(UWSGI)
    whole = filebody.send(environ, handle)
    assert isinstance(whole, BoundedFile) and whole.fileno() == handle.fileno()
    assert filebody.sent_by_server(environ, whole)
    part = filebody.send(environ, handle, (300, 10))
    assert isinstance(part, BoundedFile) and filebody.sent_by_server(environ, part)
    with pytest.raises(io.UnsupportedOperation):
        part.fileno()
    assert read_all(part) == (bytes(range(256)) * 4)[300:310]


def test_uwsgi_bodies_take_the_layers_close(handle: io.BufferedReader) -> None:
    """The metrics layer replaces the body's close to count the answer when it is sent."""
    body: Any = filebody.send(dict(UWSGI), handle)
    closed: list[bool] = []
    body.close = lambda: closed.append(True)
    body.close()
    assert closed == [True]


def test_without_a_wrapper_werkzeug_reads_the_part(handle: io.BufferedReader) -> None:
    environ: dict[str, Any] = {}
    body = filebody.send(environ, handle, (1000, 24))
    assert isinstance(body, FileWrapper) and filebody.sent_by_server(environ, body)
    assert b"".join(body) == (bytes(range(256)) * 4)[1000:1024]


def test_only_the_noted_object_counts_as_sent_by_the_server(handle: io.BufferedReader) -> None:
    environ: dict[str, Any] = dict(GUNICORN)
    assert not filebody.sent_by_server(environ, GunicornWrapper(handle))
    assert not filebody.sent_by_server(environ, [b"x"])


@pytest.mark.parametrize("server", [GUNICORN, UWSGI], ids=["gunicorn", "uwsgi"])
@pytest.mark.parametrize("headers", [{}, {"Range": "bytes=10-19"}], ids=["whole", "range"])
def test_every_layer_hands_the_file_body_back(make_app: Callable[..., Flask],
                                              server: dict[str, Any],
                                              headers: dict[str, str]) -> None:
    """The app with every layer on (request ids, CORS, metrics, the fast lane) returns
    the object the server's wrapper made, so the server sends it itself; its bytes are
    the answer's."""
    app = make_app(small_file_bytes=0)  # opened, not answered from memory; metrics on
    environ = EnvironBuilder(path="/geojson/roads", headers=headers).get_environ()
    environ.update(server)
    statuses: list[str] = []
    body: Any = app.wsgi_app(environ, lambda status, headers, *exc: statuses.append(status))
    try:
        assert filebody.sent_by_server(environ, body)
        sent = body.filelike if isinstance(body, GunicornWrapper) else body
        expected = ROADS[10:20] if headers else ROADS
        assert statuses == (["206 PARTIAL CONTENT"] if headers else ["200 OK"])
        assert read_all(sent) == expected
    finally:
        body.close()
    jobs.wait_idle(30)
