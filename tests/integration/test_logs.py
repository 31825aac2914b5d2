"""One request followed through the real stack's logs: Nginx, Gunicorn, the app, Celery.

The stack is ``geojson-api stack up`` (Nginx -> two Gunicorn instances -> Redis, a
Celery worker), logging JSON (the default). A dataset dropped into the data folder
while it runs is published by the first request for it, which hands its index
build to the Celery worker: that one request writes a line in Nginx's access log,
a Gunicorn access line, the app's "published version" line, and the worker's
"indexed" line, all with the same request id.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .servers import GunicornServer
from .test_stack import RunningStack, running_stack

TIMEOUT = 30
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)")
HEX_ID = re.compile(r"[0-9a-f]{32}")
ITEMS_ROUTE = "/collections/<cid>/items"  # the Flask rule, as requestinfo notes it
ACCESS_FIELDS = {"time", "level", "logger", "message", "request_id", "method", "route", "path",
                 "status", "bytes", "duration_ms"}


@pytest.fixture(scope="module")
def stack(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    data = tmp_path_factory.mktemp("logs-data")
    for name in ("small", "large"):
        shutil.copyfile(samples / f"{name}.geojson", data / f"{name}.geojson")
    # The app's lines are the subject: Nginx would answer plain whole files itself.
    env = {"GEOJSON_API_SETTLE_SECONDS": "0", "GEOJSON_API_TILES": "false",
           "GEOJSON_API_NGINX_DIRECT": "false"}
    with running_stack(data, tmp_path_factory.mktemp("logs-stack"), "nginx", env) as running:
        yield running


def lines(path: Path, only_objects: bool = False) -> list[dict[str, Any]]:
    """Every line of a log file, each of which must be one JSON object (or, with
    ``only_objects``, the lines that start like one)."""
    found = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if only_objects and not line.startswith("{"):
            continue
        try:
            found.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{path.name}:{number} is not JSON: {line!r}") from None
    return found


def app_lines(stack: RunningStack) -> list[dict[str, Any]]:
    return [e for i in (1, 2) for e in lines(stack.run_dir / f"app{i}.log")]


def nginx_lines(stack: RunningStack) -> list[dict[str, Any]]:
    return lines(stack.run_dir / "nginx" / "access.log")


def worker_lines(stack: RunningStack) -> list[dict[str, Any]]:
    # Celery prints its banner (and, as root, a SecurityWarning) on stdout and stderr
    # before logging starts: those lines are not log lines.
    return lines(stack.run_dir / "worker.log", only_objects=True)


def eventually(read: Callable[[RunningStack], list[dict[str, Any]]], stack: RunningStack,
               wanted: Callable[[dict[str, Any]], bool], timeout: float = 60
               ) -> list[dict[str, Any]]:
    """The entries ``wanted`` picks, once there is one (Nginx logs a request when it ends;
    a Celery job logs when it runs)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in read(stack) if wanted(e)]
        if found:
            return found
        assert time.monotonic() < deadline, "no such line"
        time.sleep(0.2)


def publish(stack: RunningStack, samples: Path, name: str) -> None:
    shutil.copyfile(samples / "small.geojson", stack.data_dir / f"{name}.geojson")


def test_every_access_line_is_json_with_the_schema(stack: RunningStack) -> None:
    for path, headers in [("/geojson/small", {}), ("/geojson/large", {"Range": "bytes=0-9"}),
                          ("/collections/small/items?limit=2", {}), ("/api/datasets", {}),
                          ("/geojson/nothing", {}), ("/no/such/route", {})]:
        headers = {"Accept-Encoding": "identity", **headers}
        requests.get(stack.url + path, headers=headers, timeout=TIMEOUT).close()
        requests.head(stack.url + path, headers=headers, timeout=TIMEOUT).close()
    eventually(app_lines, stack,
               lambda e: e.get("path") == "/no/such/route" and e.get("method") == "HEAD")
    entries = app_lines(stack)  # every line of both instances parsed as JSON
    assert all(TIME.fullmatch(e["time"]) and e["level"] and e["logger"] for e in entries)
    access = [e for e in entries if e["logger"] == "gunicorn.access"]
    assert len(access) >= 12
    for entry in access:
        assert set(entry) >= ACCESS_FIELDS, entry
        assert entry["message"] == f"{entry['method']} {entry['path']} {entry['status']}"
        assert HEX_ID.fullmatch(entry["request_id"]), entry
    by_path = {(e["method"], e["path"]): e for e in access}
    small = by_path[("GET", "/geojson/small")]
    assert small["route"] == "/geojson/<path:raw>" and small["dataset"] == "small"
    assert small["bytes"] == (stack.data_dir / "small.geojson").stat().st_size
    assert by_path[("HEAD", "/api/datasets")]["bytes"] == 0  # (HEAD /geojson/: the cache's)
    assert by_path[("GET", "/collections/small/items?limit=2")]["route"] == ITEMS_ROUTE
    assert by_path[("GET", "/no/such/route")]["route"] == "unmatched"
    assert by_path[("GET", "/no/such/route")]["status"] == 404
    nginx = nginx_lines(stack)
    assert all(TIME.fullmatch(e["time"]) and isinstance(e["duration_ms"], int) for e in nginx)


def follow(stack: RunningStack, rid: str, dataset: str) -> dict[str, list[dict[str, Any]]]:
    """The lines of request ``rid`` in each log, once the job it started has logged."""
    worker = eventually(worker_lines, stack, lambda e: e.get("request_id") == rid
                        and e["message"].startswith("indexed "), timeout=90)
    nginx = eventually(nginx_lines, stack, lambda e: e["request_id"] == rid)
    eventually(app_lines, stack, lambda e: e.get("request_id") == rid
               and e["logger"] == "gunicorn.access")  # written once the answer is sent
    app = [e for e in app_lines(stack) if e.get("request_id") == rid]
    assert dataset in worker[0]["message"]
    return {"nginx": nginx, "app": app, "worker": worker}


def test_a_client_id_is_followed_through_every_log(stack: RunningStack, samples: Path) -> None:
    publish(stack, samples, "followed")
    rid = "test-logs-client-0001"
    r = requests.get(f"{stack.url}/collections/followed/items?limit=1",
                     headers={"X-Request-ID": rid}, timeout=TIMEOUT)
    assert r.status_code in (200, 503) and r.headers["X-Request-ID"] == rid
    seen = follow(stack, rid, "followed")
    nginx, = seen["nginx"]
    assert nginx["path"] == "/collections/followed/items?limit=1"
    assert nginx["status"] == r.status_code and nginx["upstream"].startswith("127.0.0.1:")
    access = [e for e in seen["app"] if e["logger"] == "gunicorn.access"]
    assert len(access) == 1 and access[0]["status"] == r.status_code
    assert access[0]["dataset"] == "followed"
    published = [e for e in seen["app"] if "published version" in e["message"]]
    assert len(published) == 1, seen["app"]
    assert published[0]["route"] == ITEMS_ROUTE
    assert published[0]["path"] == "/collections/followed/items?limit=1"
    # Celery's own line for the job (the worker's child, between prerun and postrun)
    assert any("succeeded" in e["message"] for e in worker_lines(stack)
               if e.get("request_id") == rid)
    print("followed:", json.dumps(seen, indent=1))


def test_without_a_client_id_nginx_makes_the_one_everybody_logs(stack: RunningStack,
                                                                samples: Path) -> None:
    publish(stack, samples, "unnamed")
    r = requests.get(f"{stack.url}/api/datasets/unnamed", timeout=TIMEOUT)
    assert r.status_code == 200
    rid = r.headers["X-Request-ID"]
    assert HEX_ID.fullmatch(rid)
    seen = follow(stack, rid, "unnamed")
    assert seen["nginx"][0]["path"] == "/api/datasets/unnamed"
    assert {e["logger"] for e in seen["app"]} >= {"gunicorn.access", "geojson_api.catalog"}


def test_an_insane_client_id_is_replaced_alike_by_nginx_and_the_app(stack: RunningStack) -> None:
    r = requests.get(f"{stack.url}/api/datasets/small?insane=1",
                     headers={"X-Request-ID": "two words"}, timeout=TIMEOUT)
    rid = r.headers["X-Request-ID"]
    assert HEX_ID.fullmatch(rid)
    nginx = eventually(nginx_lines, stack, lambda e: e["path"] == "/api/datasets/small?insane=1")
    assert nginx[-1]["request_id"] == rid
    access = eventually(app_lines, stack, lambda e: e.get("path") == nginx[-1]["path"]
                        and e["logger"] == "gunicorn.access")
    assert [e["request_id"] for e in access] == [rid]


def test_nginx_own_answers_carry_the_request_id(stack: RunningStack) -> None:
    """Offloaded files, micro-cache hits and Nginx's errors: this request's id, each time."""
    checks = [("/geojson/large?own=1", {"Range": "bytes=0-9"}, 206),  # X-Accel-Redirect
              ("/geojson/small?own=1", {}, 200), ("/geojson/small?own=1", {}, 200),  # cache
              ("/_errors/not-found", {}, 404)]  # Nginx's own error page
    for n, (path, headers, status) in enumerate(checks):
        rid = f"own-{n}"
        r = requests.get(stack.url + path, headers={"X-Request-ID": rid, **headers},
                         timeout=TIMEOUT)
        assert r.status_code == status and r.headers["X-Request-ID"] == rid, (path, r.headers)
        assert r.raw.headers.getlist("X-Request-ID") == [rid]  # once: the app's is hidden
        if status == 404:
            assert r.json()["request_id"] == rid
    caches = eventually(nginx_lines, stack, lambda e: e["request_id"] == "own-2")
    assert caches[0]["cache"] == "HIT"
    offload = eventually(nginx_lines, stack, lambda e: e["request_id"] == "own-0")
    assert offload[0]["offload"].startswith("/_offload/range/large/")


def test_text_mode_keeps_todays_access_format(samples: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(samples / "large.geojson", data / "large.geojson")
    server = GunicornServer(data, tmp_path / "text.log", workers=1,
                            env={"GEOJSON_API_LOG_FORMAT": "text", "GEOJSON_API_TILES": "false"})
    server.start()
    try:
        size = (data / "large.geojson").stat().st_size
        requests.get(f"{server.url}/geojson/large?text-check",
                     headers={"Accept-Encoding": "identity"}, timeout=TIMEOUT).close()
        deadline = time.monotonic() + 10
        while "text-check" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.stop()
    line = next(line for line in server.log().splitlines() if "text-check" in line)
    assert f'HTTP/1.1" 200 {size} ' in line and line.endswith("ms")
    assert re.search(r"\[INFO\] Booting worker with pid", server.log())
    assert "published version" in server.log() and '"message"' not in server.log()
