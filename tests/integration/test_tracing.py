"""Traces from real processes: Gunicorn workers and a Celery worker export OTLP to a collector.

The collector is a small HTTP server in the test that decodes the OTLP/protobuf
requests the SDK's exporter sends; one trace goes from a request in a Gunicorn
worker, through the Redis broker, to the job on the Celery worker, and every
Gunicorn worker (each set up after the fork) exports its own spans.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ..conftest import require
from .servers import GunicornServer, Process, start_redis
from .test_jobs_broker import publish

Span = dict[str, Any]


class Collector:
    """Spans received over OTLP/HTTP, each with its service name."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                collector.receive(self.path, body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def receive(self, path: str, body: bytes) -> None:
        assert path == "/v1/traces"
        request = ExportTraceServiceRequest.FromString(body)
        found = []
        for resource in request.resource_spans:
            attrs = {a.key: _value(a.value) for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                for span in scope.spans:
                    found.append({
                        "service": attrs.get("service.name"), "pid": attrs.get("process.pid"),
                        "name": span.name, "trace": span.trace_id.hex(),
                        "id": span.span_id.hex(), "parent": span.parent_span_id.hex(),
                        "attributes": {a.key: _value(a.value) for a in span.attributes}})
        with self._lock:
            self.spans.extend(found)

    def wait(self, test: Any, timeout: float = 30) -> list[Span]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = [s for s in self.spans if test(s)]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no such span among {[s['name'] for s in self.spans]}")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


@pytest.fixture
def collector() -> Iterator[Collector]:
    found = Collector()
    yield found
    found.stop()


def otel_env(collector: Collector, service: str) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_SERVICE_NAME": service,
            "OTEL_BSP_SCHEDULE_DELAY": "50"}


def assert_every_worker_exports(web: GunicornServer, collector: Collector) -> None:
    """Fast-lane requests on new connections until each Gunicorn worker has exported one."""
    workers = set(web.worker_pids())

    def exported() -> set[int]:
        return {s["pid"] for s in collector.spans if s["name"] == "GET /geojson/<path:raw>"}

    deadline = time.monotonic() + 30
    while not exported() >= workers and time.monotonic() < deadline:
        assert requests.get(f"{web.url}/geojson/small", timeout=10).status_code == 200
        time.sleep(0.02)
    assert exported() >= workers


def test_a_request_and_its_celery_job_are_one_trace(samples: Path, tmp_path: Path,
                                                    collector: Collector) -> None:
    redis_server, port = start_redis(require("redis-server"), tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    publish(data, samples)
    env = {"GEOJSON_API_BROKER_URL": f"redis://127.0.0.1:{port}/1",
           "GEOJSON_API_PREPARE_ON_START": "false", "GEOJSON_API_TILES": "false"}
    worker = Process([sys.executable, "-m", "geojson_api", "worker", "--data", str(data)],
                     tmp_path / "worker.log", env={**env, **otel_env(collector, "jobs")}).start()
    web = GunicornServer(data, tmp_path / "web.log", workers=2,
                         env={**env, **otel_env(collector, "web")})
    try:
        web.start()
        parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        response = requests.get(f"{web.url}/collections/small", timeout=10,
                                headers={"traceparent": parent})
        assert response.status_code == 200
        ran = collector.wait(lambda s: s["name"] == "job.run" and s["attributes"][
            "geojson_api.dataset"] == "small" and s["trace"] == "4bf92f3577b34da6a3ce929d0e0e4736",
            timeout=60)  # the caller's trace, continued on the Celery worker
        assert len(ran) == 1 and ran[0]["service"] == "jobs"
        assert ran[0]["attributes"]["geojson_api.runner"] == "celery"
        submitted = collector.wait(lambda s: s["id"] == ran[0]["parent"])[0]
        assert submitted["name"] == "job.submit" and submitted["service"] == "web"
        server = collector.wait(lambda s: s["name"] == "GET /collections/<cid>")[0]
        assert server["parent"] == "00f067aa0ba902b7" and server["trace"] == ran[0]["trace"]
        by_id = {s["id"]: s for s in collector.spans}
        step = submitted
        while step["parent"] in by_id:  # job.submit -> ... -> the server span
            step = by_id[step["parent"]]
        assert step is server
        assert_every_worker_exports(web, collector)
    finally:
        web.stop()
        worker.stop()
        redis_server.stop()
    assert "Traceback" not in web.log() + worker.log(), web.log() + worker.log()
