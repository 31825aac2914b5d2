"""JSON log lines, request ids and text mode (geojson_api.logs, geojson_api.requestid)."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from gunicorn.config import Config

from geojson_api import errors, filebody, jobs, logs, requestid, requestinfo, tracing
from geojson_api.nginxconf import render_site, write_standalone
from geojson_api.settings import Settings, SettingsError

from ..conftest import require

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
HEX_ID = re.compile(r"[0-9a-f]{32}")


def record(message: str = "hello %s", *args: Any, exc: BaseException | None = None,
           **attributes: Any) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    made = logging.LogRecord("geojson_api.catalog", logging.WARNING, __file__, 1, message,
                             args or ("world",), exc_info)
    made.__dict__.update(attributes)
    return made


def as_json(made: logging.LogRecord) -> dict[str, Any]:
    line = logs.JsonFormatter().format(made)
    assert "\n" not in line
    return json.loads(line)  # type: ignore[no-any-return]


# -- the formatter ------------------------------------------------------------------

def test_a_plain_record_has_the_four_fixed_members_only() -> None:
    entry = as_json(record())
    assert list(entry) == ["time", "level", "logger", "message"]
    assert TIME.fullmatch(entry["time"]), entry["time"]
    assert entry["level"] == "WARNING" and entry["logger"] == "geojson_api.catalog"
    assert entry["message"] == "hello world"


def test_time_is_utc_with_milliseconds() -> None:
    made = record()
    made.created = 1764670272.3456  # 2025-12-02 10:11:12.345 UTC
    assert as_json(made)["time"] == "2025-12-02T10:11:12.345Z"


def test_known_facts_are_written_in_schema_order_and_unknown_ones_left_out() -> None:
    entry = as_json(record(span_id="b" * 16, status=200, request_id="r1", trace_id="a" * 32,
                           method="GET", route="/geojson/<path:raw>", dataset=None))
    assert list(entry)[4:] == ["request_id", "method", "route", "status", "trace_id",
                               "span_id"]
    assert entry["status"] == 200 and entry["trace_id"] == "a" * 32


def test_extras_and_exceptions_are_kept_on_one_line() -> None:
    try:
        raise RuntimeError("disk on fire")
    except RuntimeError as exc:
        entry = as_json(record(exc=exc, attempt=3))
    assert entry["attempt"] == 3
    assert entry["exc_info"].startswith("Traceback") and "disk on fire" in entry["exc_info"]


# -- request ids ----------------------------------------------------------------------

@pytest.mark.parametrize("value", ["abc", "0" * 128, "3f1c2e9a-7b4d-4c1e-9f0a-1b2c3d4e5f60",
                                   "dGVzdA==", "a/b+c", "svc.req:42@edge_1"])
def test_sane_ids_are_used_as_they_are(value: str) -> None:
    assert requestid.sane(value)


@pytest.mark.parametrize("value", [None, "", "0" * 129, "two words", 'quo"te', "back\\slash",
                                   "line\nbreak", "caf\u00e9", "a,b", "<script>"])
def test_other_ids_are_refused(value: str | None) -> None:
    assert not requestid.sane(value)


def test_new_ids_look_like_nginx_ones_and_differ() -> None:
    made = {requestid.new() for _ in range(100)}
    assert len(made) == 100 and all(HEX_ID.fullmatch(i) for i in made)
    assert all(requestid.sane(i) for i in made)


def test_bound_and_carried() -> None:
    assert requestid.current() is None
    with requestid.bound("outer"):
        job = requestid.carried(requestid.current)
        with requestid.bound(None):
            assert requestid.current() == "outer"
    assert requestid.current() is None
    assert job() == "outer"  # later, elsewhere: the submitting request's id
    assert requestid.carried(requestid.current)() is None


@pytest.fixture
def app_lines() -> Iterator[io.StringIO]:
    """The geojson_api loggers write JSON into a buffer for the test (then as before)."""
    logger = logging.getLogger("geojson_api")
    saved = (logger.handlers[:], logger.propagate, logger.level)
    out = io.StringIO()
    logs.setup(logs.JSON, "DEBUG", [logging.StreamHandler(out)])
    try:
        yield out
    finally:
        logger.handlers, logger.propagate, logger.level = saved[0], saved[1], saved[2]


def entries(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_sane_client_id_is_echoed_and_carried_by_the_app_lines(
        make_app: Callable[..., Flask], app_lines: io.StringIO) -> None:
    app = make_app(log_level="debug")
    r = app.test_client().get("/geojson/roads", headers={"X-Request-ID": "client-42"})
    assert r.status_code == 200 and r.headers["X-Request-ID"] == "client-42"
    jobs.wait_idle(30)  # the index build started by the publish, on the job thread
    published = [e for e in entries(app_lines) if "published version" in e["message"]]
    assert published and published[0]["request_id"] == "client-42"
    first = published[0]
    assert first["method"] == "GET" and first["path"] == "/geojson/roads"
    indexed = [e for e in entries(app_lines) if e["message"].startswith("indexed ")]
    assert len(indexed) == 1 and indexed[0]["request_id"] == "client-42", indexed  # the job
    assert "method" not in indexed[0]  # a job is not the request itself


def test_an_insane_client_id_is_replaced_and_said_so(make_app: Callable[..., Flask],
                                                     app_lines: io.StringIO) -> None:
    app = make_app(log_level="debug")
    r = app.test_client().get("/healthz", headers={"X-Request-ID": "two words"})
    made = r.headers["X-Request-ID"]
    assert HEX_ID.fullmatch(made)
    said = [e for e in entries(app_lines) if "refused" in e["message"]]
    assert len(said) == 1 and "'two words'" in said[0]["message"] and made in said[0]["message"]
    assert said[0]["level"] == "DEBUG" and said[0]["request_id"] == made


def test_without_a_client_id_one_is_made_per_request(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3 and all(HEX_ID.fullmatch(i) for i in ids)


def test_the_header_is_a_setting(make_app: Callable[..., Flask]) -> None:
    client = make_app(request_id_header="X-Correlation-ID").test_client()
    r = client.get("/healthz", headers={"X-Correlation-ID": "corr-1", "X-Request-ID": "no"})
    assert r.headers["X-Correlation-ID"] == "corr-1" and "X-Request-ID" not in r.headers


def test_errors_name_their_request(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    for path in ("/geojson/nothing", "/no/such/route", "/collections/roads/items?limit=many"):
        r = client.get(path, headers={"X-Request-ID": "err-7"})
        assert r.status_code >= 400 and r.json is not None
        assert r.json["request_id"] == "err-7" == r.headers["X-Request-ID"], path
    assert "request_id" not in json.loads(errors.error_body("x", "outside any request"))


def test_streamed_bodies_keep_the_id_until_closed(make_app: Callable[..., Flask]) -> None:
    """A body produced while the server sends it (items pages) logs under its request."""
    seen: list[str | None] = []

    def streamed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body() -> Iterator[bytes]:
            seen.append(requestid.current())
            yield b"x"

        return body()

    layer = logs.RequestIds(streamed)
    answer = layer({"HTTP_X_REQUEST_ID": "s-1"}, lambda status, headers: None)
    assert b"".join(answer) == b"x" and seen == ["s-1"]
    assert requestid.current() == "s-1"  # until the server closes the body
    answer.close()
    assert requestid.current() is None


@pytest.mark.parametrize("server", ["gunicorn", "uwsgi"])
def test_finished_bodies_are_returned_as_they_are(server: str) -> None:
    """Lists and file bodies pass untouched: the server sends a file body itself (Gunicorn
    its wrapper object, uWSGI only the very object its wrapper returned)."""

    class Wrapper:
        def __init__(self, filelike: Any, block: int) -> None:
            self.filelike = filelike

    environ: dict[str, Any] = (
        {"wsgi.file_wrapper": Wrapper} if server == "gunicorn"
        else {"wsgi.file_wrapper": lambda filelike, block: filelike, "uwsgi.version": b"2"})
    sent = filebody.send(environ, io.BytesIO(b"data"))  # type: ignore[arg-type]
    for body in ([b"a"], sent):
        layer = logs.RequestIds(lambda environ, start, body=body: body)
        assert layer(environ, lambda *a: None) is body
        assert requestid.current() is None


# -- Gunicorn's access log ---------------------------------------------------------

@pytest.fixture
def gunicorn_logger(monkeypatch: pytest.MonkeyPatch, tmp_path: Path
                    ) -> Iterator[Callable[[str], tuple[logs.GunicornLogger, Path]]]:
    """Makes Gunicorn's logger (ours) in a format, logging into files of tmp_path."""
    from geojson_api import gunicorn_conf

    app_logger = logging.getLogger("geojson_api")
    monkeypatch.setattr(app_logger, "handlers", app_logger.handlers[:])
    monkeypatch.setattr(app_logger, "propagate", app_logger.propagate)
    made: list[logs.GunicornLogger] = []

    def make(log_format: str) -> tuple[logs.GunicornLogger, Path]:
        monkeypatch.setenv("GEOJSON_API_LOG_FORMAT", log_format)
        cfg = Config()
        cfg.set("accesslog", str(tmp_path / "access.log"))
        cfg.set("errorlog", str(tmp_path / "error.log"))
        cfg.set("access_log_format", gunicorn_conf.access_log_format)
        made.append(logs.GunicornLogger(cfg))
        return made[-1], tmp_path / "access.log"

    yield make
    for logger in made:
        for target in (logger.error_log, logger.access_log):
            for handler in target.handlers[:]:
                handler.close()
                target.removeHandler(handler)


def environ(**extra: Any) -> dict[str, Any]:
    base = {"REQUEST_METHOD": "GET", "RAW_URI": "/geojson/roads?x=1", "PATH_INFO": "/geojson/roads",
            "QUERY_STRING": "x=1", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
            requestinfo.REQUEST_ID: "acc-1", requestinfo.ROUTE: requestinfo.FAST_LANE_ROUTE,
            requestinfo.DATASET: "roads", requestinfo.VERSION: "v1"}
    return {**base, **extra}


def response(status: str = "200 OK", length: str = "5000", sent: int = 0) -> Any:
    """What Gunicorn's access() reads from its Response: a sendfile body counts 0 sent."""
    return SimpleNamespace(status=status, status_code=int(status.split()[0]), sent=sent,
                           headers=[("Content-Type", "application/geo+json"),
                                    ("Content-Length", length)])


ELAPSED = timedelta(milliseconds=12, microseconds=345)


def test_json_access_lines(gunicorn_logger: Callable[[str], Any]) -> None:
    logger, access = gunicorn_logger("json")
    logger.access(response(), None, environ(), ELAPSED)
    logger.access(response(), None, environ(REQUEST_METHOD="HEAD"), ELAPSED)
    logger.access(response("304 Not Modified"), None, environ(), ELAPSED)
    logger.access(response(sent=0), None, environ(**{logs.QUIET: True}), ELAPSED)  # /metrics
    got = [json.loads(line) for line in access.read_text().splitlines()]
    assert len(got) == 3
    first = got[0]
    assert TIME.fullmatch(first.pop("time"))
    assert first == {"level": "INFO", "logger": "gunicorn.access",
                     "message": "GET /geojson/roads?x=1 200", "request_id": "acc-1",
                     "method": "GET", "route": "/geojson/<path:raw>",
                     "path": "/geojson/roads?x=1", "status": 200, "bytes": 5000,
                     "duration_ms": 12.345, "dataset": "roads", "version": "v1"}
    assert got[1]["bytes"] == 0 and got[2]["bytes"] == 0 and got[2]["status"] == 304


def test_json_access_lines_carry_the_ended_spans_ids(gunicorn_logger: Callable[[str], Any]
                                                     ) -> None:
    """Tracing leaves the request span's ids in the environ; the span has ended by now."""
    logger, access = gunicorn_logger("json")
    traced = {tracing.TRACE_ID: "a" * 32, tracing.SPAN_ID: "b" * 16}
    logger.access(response(), None, environ(**traced), ELAPSED)
    (line,) = [json.loads(line) for line in access.read_text().splitlines()]
    assert (line["trace_id"], line["span_id"]) == ("a" * 32, "b" * 16)
    assert list(line)[-2:] == ["trace_id", "span_id"]


def test_json_error_log_carries_the_app_lines(gunicorn_logger: Callable[[str], Any]) -> None:
    logger, access = gunicorn_logger("json")
    logger.info("Booting worker with pid: %s", 7)
    with requestid.bound("app-1"):
        logging.getLogger("geojson_api.catalog").warning("dataset %s: odd", "roads")
    lines = [json.loads(line) for line in (access.parent / "error.log").read_text().splitlines()]
    assert [(e["logger"], e["message"]) for e in lines] == [
        ("gunicorn.error", "Booting worker with pid: 7"),
        ("geojson_api.catalog", "dataset roads: odd")]
    assert "request_id" not in lines[0] and lines[1]["request_id"] == "app-1"


def test_text_mode_keeps_gunicorns_formats(gunicorn_logger: Callable[[str], Any]) -> None:
    logger, access = gunicorn_logger("text")
    request = SimpleNamespace(headers=[("USER-AGENT", "curl")])
    logger.access(response(), request, environ(HTTP_USER_AGENT="curl"), ELAPSED)
    logger.access(response(), request, environ(**{logs.QUIET: True}), ELAPSED)
    logger.info("Booting worker with pid: %s", 7)
    line, = access.read_text().splitlines()
    assert re.fullmatch(r'127\.0\.0\.1 - - \[[^]]+\] "GET /geojson/roads\?x=1 HTTP/1\.1" '
                        r'200 5000 "-" "curl" 12ms', line), line
    error, = (access.parent / "error.log").read_text().splitlines()
    assert re.fullmatch(r"\[[^]]+\] \[\d+\] \[INFO\] Booting worker with pid: 7", error), error


# -- settings, Nginx ------------------------------------------------------------------

def test_settings_refuse_unknown_formats_and_header_names() -> None:
    assert Settings().log_format == "json" and Settings().request_id_header == "X-Request-ID"
    with pytest.raises(SettingsError, match="GEOJSON_API_LOG_FORMAT must be one of json, text"):
        Settings.from_env({"GEOJSON_API_LOG_FORMAT": "xml"})
    with pytest.raises(SettingsError, match="GEOJSON_API_REQUEST_ID_HEADER must be an HTTP"):
        Settings.from_env({"GEOJSON_API_REQUEST_ID_HEADER": "X Request"})


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_nginx_logs_in_the_chosen_format_with_the_same_id_rule(log_format: str) -> None:
    text = render_site(Settings(log_format=log_format), ["127.0.0.1:8000"])
    assert f"access_log /dev/stdout geojson_api_{log_format} buffer=64k flush=1s;" in text
    assert f'"~^{requestid.PATTERN}$" $http_x_request_id;' in text
    assert "proxy_set_header X-Request-ID $geojson_api_request_id;" in text
    assert "proxy_set_header X-Request-ID $request_id;" not in text


def test_nginx_json_format_has_the_schema_names() -> None:
    text = render_site(Settings(), ["127.0.0.1:8000"])
    fmt = text.split("log_format geojson_api_json escape=json", 1)[1].split(";", 1)[0]
    names = re.findall(r'"(\w+)": ', fmt)
    for name in ("time", "level", "logger", "message", "request_id", "method", "path",
                 "status", "bytes", "duration_ms", "upstream", "upstream_ms", "cache"):
        assert name in names, name


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_nginx_accepts_both_formats_and_another_header(tmp_path: Path, log_format: str) -> None:
    nginx = require("nginx")
    settings = Settings(data_dir=tmp_path, nginx_listen="127.0.0.1:18081",
                        log_format=log_format, request_id_header="X-Correlation-ID")
    conf = write_standalone(settings, ["127.0.0.1:8000"], tmp_path / "run")
    assert "$http_x_correlation_id" in (tmp_path / "run" / "geojson-api.conf").read_text()
    result = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_a_process_nobody_set_up_logs_json_to_stderr(tmp_path: Path) -> None:
    """create_app alone (e.g. `flask run`): the app's lines still reach stderr, as JSON."""
    (tmp_path / "roads.geojson").write_text('{"type":"FeatureCollection","features":[]}')
    code = ("from geojson_api import create_app, Settings\n"
            f"app = create_app(Settings(data_dir={str(tmp_path)!r}, settle_seconds=0, "
            "tiles=False))\n"
            "app.test_client().get('/geojson/roads', headers={'X-Request-ID': 'bare-1'})\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert any("published version" in e["message"] and e["request_id"] == "bare-1"
               for e in lines), result.stderr
