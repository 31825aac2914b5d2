"""OpenTelemetry traces: the span tree of a request, the fast lane, jobs, logs, and off."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from geojson_api import extras, jobs, tracing
from geojson_api.settings import Settings, SettingsError

BBOX = "bbox=4.7,45.6,5.1,45.9"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory, for this test only."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    yield exporter
    tracing.use(None)


@pytest.fixture
def traced_app(spans: InMemorySpanExporter, make_app: Callable[..., Flask]) -> Flask:
    """An app whose roads dataset is published and indexed; no spans recorded yet."""
    app = make_app()
    client = app.test_client()
    assert client.get("/collections/roads").status_code == 200
    assert jobs.wait_idle(30)
    spans.clear()
    return app


def by_name(found: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in found if s.name == name]


def one(found: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    named = by_name(found, name)
    assert len(named) == 1, [s.name for s in found]
    return named[0]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_an_items_request_is_one_tree(traced_app: Flask, spans: InMemorySpanExporter) -> None:
    response = traced_app.test_client().get(f"/collections/roads/items?{BBOX}")
    assert response.status_code == 200 and response.json["numberMatched"] == 2  # type: ignore[index]
    found = spans.get_finished_spans()
    server = one(found, "GET /collections/<cid>/items")
    assert server.kind == trace.SpanKind.SERVER and server.parent is None
    assert server.attributes is not None and server.attributes["http.route"] == (
        "/collections/<cid>/items")
    children = {s.name: s for s in found if s is not server}
    assert set(children) == {"catalog.current", "artifact.lookup", "cache.get", "index.query",
                             "cache.set"}
    for child in children.values():
        assert child.context.trace_id == server.context.trace_id
        assert parent_of(child) == server.context.span_id, child.name
    version = traced_app.extensions["catalog"].current("roads").id
    assert children["catalog.current"].attributes == {"geojson_api.dataset": "roads",
                                                      "geojson_api.version": version}
    assert children["artifact.lookup"].attributes["geojson_api.artifact"] == "index"  # type: ignore[index]
    assert children["cache.get"].attributes == {"geojson_api.cache": "simple",
                                                "geojson_api.hit": False}
    query = children["index.query"].attributes
    assert query is not None and query["geojson_api.boxes"] == 1
    assert query["geojson_api.matched"] == 2


def test_a_cached_page_has_a_hit_and_no_query(traced_app: Flask,
                                              spans: InMemorySpanExporter) -> None:
    client = traced_app.test_client()
    first = client.get(f"/collections/roads/items?{BBOX}").data
    spans.clear()
    assert client.get(f"/collections/roads/items?{BBOX}").data == first
    found = spans.get_finished_spans()
    assert one(found, "cache.get").attributes["geojson_api.hit"] is True  # type: ignore[index]
    assert not by_name(found, "index.query") and not by_name(found, "cache.set")


def test_a_feature_by_id(traced_app: Flask, spans: InMemorySpanExporter) -> None:
    client = traced_app.test_client()
    assert client.get("/collections/roads/items/2").status_code == 200
    assert client.get("/collections/roads/items/99").status_code == 404
    hits = [s.attributes["geojson_api.found"] for s in by_name(  # type: ignore[index]
        spans.get_finished_spans(), "index.feature")]
    assert hits == [True, False]


def test_the_fast_lane_has_a_server_span(traced_app: Flask,
                                         spans: InMemorySpanExporter) -> None:
    client = traced_app.test_client()
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = client.get("/geojson/roads", headers={"traceparent": parent})
    assert response.status_code == 200 and response.data.startswith(b'{"type"')
    found = spans.get_finished_spans()
    server = one(found, "GET /geojson/<path:raw>")
    assert server.kind == trace.SpanKind.SERVER
    assert format(server.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert parent_of(server) == 0xB7AD6B7169203331  # the caller's span
    assert server.attributes is not None and server.attributes["http.status_code"] == 200
    resolved = one(found, "catalog.current")
    assert parent_of(resolved) == server.context.span_id
    assert len(found) == 2  # not a second server span from Flask's instrumentation


def test_a_fast_lane_error_is_an_error_span(traced_app: Flask,
                                            spans: InMemorySpanExporter) -> None:
    assert traced_app.test_client().get("/geojson/nothing-here").status_code == 404
    found = spans.get_finished_spans()
    server = one(found, "GET /geojson/<path:raw>")
    assert server.attributes is not None and server.attributes["http.status_code"] == 404
    assert one(found, "catalog.current").status.status_code == trace.StatusCode.ERROR


def test_health_probes_are_not_traced(traced_app: Flask, spans: InMemorySpanExporter) -> None:
    assert traced_app.test_client().get("/healthz").status_code == 200
    assert spans.get_finished_spans() == ()


def test_a_job_on_the_thread_continues_the_request_trace(
        spans: InMemorySpanExporter, make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    assert client.get("/collections/roads").status_code == 200  # publishes, queues the index
    assert jobs.wait_idle(30)
    found = spans.get_finished_spans()
    server = one(found, "GET /collections/<cid>")
    submitted = [s for s in by_name(found, "job.submit")
                 if s.attributes is not None and s.attributes["geojson_api.artifact"] == "index"]
    ran = [s for s in by_name(found, "job.run")
           if s.attributes is not None and s.attributes["geojson_api.artifact"] == "index"]
    assert len(submitted) == 1 and len(ran) == 1
    assert ran[0].context.trace_id == server.context.trace_id
    assert parent_of(ran[0]) == submitted[0].context.span_id
    assert ran[0].attributes["geojson_api.runner"] == "thread"  # type: ignore[index]
    chain = {s.context.span_id: s for s in found}
    ancestor = submitted[0]
    while ancestor.parent is not None:
        ancestor = chain[ancestor.parent.span_id]
    assert ancestor is server


def test_the_celery_headers_carry_the_context(spans: InMemorySpanExporter) -> None:
    """What tasks.Sender puts on the message and the worker's task reads back."""
    assert tracing.carrier() == {}  # outside any span: nothing to carry
    with tracing.span("request"):
        headers = tracing.carrier()
    assert set(headers) == {"traceparent"}
    with tracing.job(headers, artifact="index"):
        pass
    request, ran = spans.get_finished_spans()
    assert ran.name == "job.run" and ran.kind == trace.SpanKind.CONSUMER
    assert ran.context.trace_id == request.context.trace_id
    assert parent_of(ran) == request.context.span_id


def test_the_log_filter_puts_the_ids_on_records(spans: InMemorySpanExporter) -> None:
    record = logging.LogRecord("geojson_api.cache", logging.INFO, __file__, 1, "m", None, None)
    tracing.TraceIds().filter(record)
    assert not hasattr(record, "trace_id")  # outside a span
    with tracing.span("work") as current:
        tracing.TraceIds().filter(record)
    ids = current.get_span_context()  # type: ignore[attr-defined]
    assert record.trace_id == format(ids.trace_id, "032x") and len(record.trace_id) == 32
    assert record.span_id == format(ids.span_id, "016x") and len(record.span_id) == 16


def test_the_access_line_gets_the_ids_from_the_environ(spans: InMemorySpanExporter) -> None:
    """Gunicorn writes it after the span ended; its atoms hold the environ as {key}e."""
    atoms = {"{geojson_api.trace_id}e": "a" * 32, "{geojson_api.span_id}e": "b" * 16, "s": 200}
    record = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, "%(s)s",
                               None, None)
    record.args = atoms
    tracing.TraceIds().filter(record)
    assert (record.trace_id, record.span_id) == ("a" * 32, "b" * 16)


def test_records_from_child_loggers_get_the_ids(spans: InMemorySpanExporter,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """Installed on the handlers too: a logger's filters never see its children's records."""
    parent = logging.getLogger("geojson_api")
    handler = logging.Handler()
    seen: list[logging.LogRecord] = []
    handler.emit = seen.append  # type: ignore[method-assign]
    parent.addHandler(handler)
    try:
        tracing.install_log_filter()
        with tracing.span("work"):
            logging.getLogger("geojson_api.cache").warning("down")
    finally:
        parent.removeHandler(handler)
        parent.removeFilter(tracing.LOG_FILTER)
    assert len(seen) == 1 and len(seen[0].trace_id) == 32


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, None),
    ({"OTEL_TRACES_EXPORTER": "none"}, None),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, "OTEL_TRACES_EXPORTER=otlp"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"},
     "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
    ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, None),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, None),
])
def test_the_switch_follows_the_standard_variables(environ: dict[str, str],
                                                   expected: str | None) -> None:
    assert tracing.switch(environ) == expected


def _python_env() -> dict[str, str]:
    """This environment without any OTEL_* variable (the test runner's own, if any)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


OFF_PROBE = """
import json, sys
from geojson_api import create_app, jobs
from geojson_api.settings import Settings
app = create_app(Settings(data_dir={data!r}, settle_seconds=0.0, tiles=False))
client = app.test_client()
codes = [client.get(p).status_code for p in ("/collections/roads", "/geojson/roads")]
jobs.wait_idle(30)
codes.append(client.get("/collections/roads/items?bbox=4.7,45.6,5.1,45.9").status_code)
print(json.dumps({{"codes": codes,
                   "otel": sorted(m for m in sys.modules if m.startswith("opentelemetry"))}}))
"""


def test_off_imports_no_opentelemetry(data_dir: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", OFF_PROBE.format(data=str(data_dir))],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            env={**_python_env(), "OTEL_TRACES_EXPORTER": "none"})
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found == {"codes": [200, 200, 200], "otel": []}


def test_off_creates_no_span(make_app: Callable[..., Flask]) -> None:
    """With the global tracer provider an SDK one, a request still records nothing."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(None)
    original = trace._TRACER_PROVIDER
    trace._TRACER_PROVIDER = provider
    try:
        client = make_app().test_client()
        assert client.get("/collections/roads").status_code == 200
        assert jobs.wait_idle(30)
        assert client.get(f"/collections/roads/items?{BBOX}").status_code == 200
        assert client.get("/geojson/roads").status_code == 200
        assert tracing.span("x") is tracing.NO_SPAN
    finally:
        trace._TRACER_PROVIDER = original
    assert exporter.get_finished_spans() == ()


def test_on_without_the_extra_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if not installed
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    expected = ("OTEL_EXPORTER_OTLP_ENDPOINT needs the tracing extra (opentelemetry not "
                "installed): pip install 'geojson-api[tracing]'")
    with pytest.raises(SettingsError) as refused:
        extras.check(Settings())
    assert str(refused.value) == expected
    assert extras.tracing_problem() == expected


def _serve_refused(data_dir: Path, tmp_path: Path, exporter: str,
                   before: str = "") -> subprocess.CompletedProcess[str]:
    """``geojson-api serve`` with ``OTEL_TRACES_EXPORTER=exporter`` (after ``before``, Python
    run first); it must refuse at start with exit code 2, in a line and no traceback."""
    code = (f"import sys; {before}"
            "from geojson_api.cli import main; sys.exit(main(['serve', '--data', sys.argv[1]]))")
    result = subprocess.run([sys.executable, "-c", code, str(data_dir)], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path,
                            env={**_python_env(), "OTEL_TRACES_EXPORTER": exporter})
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "Booting worker" not in result.stderr  # refused before Gunicorn started
    return result


def test_serve_refuses_without_the_extra(data_dir: Path, tmp_path: Path) -> None:
    result = _serve_refused(data_dir, tmp_path, "otlp", "sys.modules['opentelemetry'] = None; ")
    assert result.stderr.strip().splitlines()[-1].endswith(
        "OTEL_TRACES_EXPORTER=otlp needs the tracing extra (opentelemetry not installed): "
        "pip install 'geojson-api[tracing]'")


def test_an_unknown_exporter_is_a_clear_error() -> None:
    with pytest.raises(SettingsError, match="OTEL_TRACES_EXPORTER=zipkin: no such exporter"):
        tracing._exporters({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_serve_refuses_an_unknown_exporter_at_start(data_dir: Path, tmp_path: Path) -> None:
    result = _serve_refused(data_dir, tmp_path, "zipkin")
    assert result.stderr.strip().splitlines()[-1].endswith(
        "OTEL_TRACES_EXPORTER=zipkin: no such exporter installed (zipkin; this install has "
        "otlp over http/protobuf and console)")


def test_the_environment_names_the_service_and_the_exporters() -> None:
    default = tracing._provider_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert default.resource.attributes["service.name"] == "geojson-api"
    named = tracing._provider_from_env({"OTEL_TRACES_EXPORTER": "console",
                                        "OTEL_SERVICE_NAME": "maps"})
    assert named.resource.attributes["service.name"] == "maps"
    exporters = tracing._exporters({"OTEL_TRACES_EXPORTER": "console,otlp"})
    assert [type(e).__name__ for e in exporters] == ["ConsoleSpanExporter", "OTLPSpanExporter"]
    for provider in (default, named):
        provider.shutdown()
