"""The production-like stack for real: Nginx -> two Gunicorn instances -> Redis.

Two stacks over the same data: ``offloaded`` (Nginx sends dataset bytes via
X-Accel-Redirect, default rate limit) and ``proxied`` (the app sends the bytes,
Nginx proxies and buffers them; a high rate limit so request loops are not
throttled). Both are started with ``geojson-api stack up`` and stopped with
``stack down``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gzip
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import brotli
import pytest
import requests

from geojson_api.stack import free_ports

from ..conftest import require
from .servers import free_port, nginx_access

TIMEOUT = 30
IGNORED_HEADERS = {"date", "connection", "keep-alive"}


@dataclass
class RunningStack:
    url: str
    run_dir: Path
    data_dir: Path
    parts: dict[str, dict[str, object]]

    def part_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.parts[name]['port']}"


def _start_stack(data_dir: Path, run_dir: Path, offload: str,
                 env: dict[str, str]) -> RunningStack:
    require("nginx")
    require("redis-server")
    port = free_port()
    command = [sys.executable, "-m", "geojson_api", "stack", "up", "--data", str(data_dir),
               "--run-dir", str(run_dir), "--port", str(port), "--instances", "2",
               "--offload", offload]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180,
                            env={**os.environ, "GEOJSON_API_WORKERS": "2", **env})
    assert result.returncode == 0, result.stderr
    recorded = json.loads((run_dir / "stack.json").read_text())
    parts = {p["name"]: p for p in recorded["parts"]}
    return RunningStack(result.stdout.strip(), run_dir, data_dir, parts)


def _stop_stack(stack: RunningStack) -> None:
    subprocess.run([sys.executable, "-m", "geojson_api", "stack", "down", "--run-dir",
                    str(stack.run_dir)], capture_output=True, timeout=120, check=False)


@contextlib.contextmanager
def running_stack(data_dir: Path, run_dir: Path, offload: str,
                  env: dict[str, str]) -> Iterator[RunningStack]:
    """``stack up`` over ``data_dir``, and ``stack down`` whatever happens."""
    stack = _start_stack(data_dir, run_dir, offload, env)
    try:
        yield stack
    finally:
        _stop_stack(stack)


@pytest.fixture(scope="module")
def offloaded(served_data: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[RunningStack]:
    with running_stack(served_data, tmp_path_factory.mktemp("stack-offloaded"), "nginx",
                       {}) as stack:
        yield stack


@pytest.fixture(scope="module")
def proxied(served_data: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RunningStack]:
    env = {"GEOJSON_API_NGINX_RATE": "100000r/s", "GEOJSON_API_NGINX_BURST": "100000",
           "GEOJSON_API_THREADS": "2"}
    with running_stack(served_data, tmp_path_factory.mktemp("stack-proxied"), "none",
                       env) as stack:
        yield stack


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def get(url: str, **headers: str) -> requests.Response:
    return requests.get(url, headers={"Accept-Encoding": "identity", **headers},
                        timeout=TIMEOUT)


@pytest.mark.parametrize("name", ["small", "medium", "large"])
def test_bytes_through_nginx(offloaded: RunningStack, name: str) -> None:
    expected = (offloaded.data_dir / f"{name}.geojson").read_bytes()
    r = get(f"{offloaded.url}/geojson/{name}")
    assert r.status_code == 200 and sha(r.content) == sha(expected)
    for encoding, decode in (("gzip", gzip.decompress), ("br", brotli.decompress)):
        compressed = requests.get(f"{offloaded.url}/geojson/{name}", stream=True,
                                  headers={"Accept-Encoding": encoding}, timeout=TIMEOUT)
        raw = compressed.raw.read(decode_content=False)
        assert compressed.headers["Content-Encoding"] == encoding
        assert sha(decode(raw)) == sha(expected)


def test_conditional_and_range_through_nginx(offloaded: RunningStack) -> None:
    data = (offloaded.data_dir / "medium.geojson").read_bytes()
    first = get(f"{offloaded.url}/geojson/medium")
    assert get(f"{offloaded.url}/geojson/medium",
               **{"If-None-Match": first.headers["ETag"]}).status_code == 304
    part = get(f"{offloaded.url}/geojson/medium", Range="bytes=100-199")
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    whole = get(f"{offloaded.url}/geojson/medium", Range="bytes=0-1,5-9")
    assert whole.status_code == 200 and len(whole.content) == len(data)
    miss = get(f"{offloaded.url}/geojson/medium", Range=f"bytes={len(data)}-")
    assert miss.status_code == 416 and miss.json()["code"] == "requested-range-not-satisfiable"


REQUESTS = [
    ("/geojson/small", {}), ("/geojson/medium", {"Accept-Encoding": "gzip"}),
    ("/geojson/medium", {"Accept-Encoding": "br"}), ("/geojson/large", {"Range": "bytes=5-50"}),
    ("/geojson/small.geojson?download=1", {}), ("/geojson/medium", {"Range": "bytes=0-0,9-9"}),
]


def _headers(url: str, headers: dict[str, str]) -> list[tuple[str, str]]:
    # One request id for both stacks: each answer echoes it (a made one would differ).
    with requests.get(url, headers={"Accept-Encoding": "identity", "X-Request-ID": "same-id",
                                    **headers}, stream=True, timeout=TIMEOUT) as r:
        pairs = r.raw.headers.items()
        return sorted((k.lower(), v) for k, v in pairs if k.lower() not in IGNORED_HEADERS)


@pytest.mark.parametrize(("path", "headers"), REQUESTS)
def test_offloaded_headers_equal_proxied_headers(offloaded: RunningStack, proxied: RunningStack,
                                                 path: str, headers: dict[str, str]) -> None:
    assert _headers(offloaded.url + path, headers) == _headers(proxied.url + path, headers)


def test_offload_really_offloads(offloaded: RunningStack) -> None:
    get(f"{offloaded.url}/geojson/large?offload-check=1").close()
    entry = nginx_access(offloaded.run_dir, "offload-check")[-1]
    assert entry["offload"].startswith("/_offload/full/large/") and entry["status"] == 200
    app_lines = "".join((offloaded.run_dir / f"app{i}.log").read_text() for i in (1, 2))
    assert "offload-check" in app_lines  # the app decided; Nginx sent the bytes


def test_burst_gets_429(offloaded: RunningStack) -> None:
    def hit(_: int) -> int:
        return requests.get(f"{offloaded.url}/api/datasets/small", timeout=TIMEOUT).status_code

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(hit, range(400)))
    assert statuses.count(429) > 0 and statuses.count(200) > 0
    assert set(statuses) <= {200, 429}
    time.sleep(3)  # let the bucket refill for later tests
    r = requests.get(f"{offloaded.url}/api/datasets/small", timeout=TIMEOUT)
    assert r.status_code == 200


def test_cache_is_shared_between_instances(offloaded: RunningStack) -> None:
    import redis

    client = redis.Redis(port=int(offloaded.parts["redis"]["port"]))  # type: ignore[call-overload]
    for key in client.scan_iter("geojson-api:dataset:*medium*"):
        client.delete(key)
    one, two = offloaded.part_url("app1"), offloaded.part_url("app2")
    host = {"Host": "maps.example.test"}  # as Nginx passes it: the same for both
    for url in (one, two):  # a Redis timeout under the earlier burst makes an app back off
        deadline = time.monotonic() + 10
        while requests.get(f"{url}/readyz", timeout=TIMEOUT).json()["cache"]["backoff_seconds"]:
            assert time.monotonic() < deadline
            time.sleep(0.5)
    first = requests.get(f"{one}/api/datasets/medium", headers=host, timeout=TIMEOUT)
    keys = list(client.scan_iter("geojson-api:dataset:*medium*"))
    assert len(keys) == 1 and 0 < client.ttl(keys[0]) <= 300
    hits_before = client.info("stats")["keyspace_hits"]
    second = requests.get(f"{two}/api/datasets/medium", headers=host, timeout=TIMEOUT)
    assert first.status_code == second.status_code == 200 and first.content == second.content
    assert client.info("stats")["keyspace_hits"] == hits_before + 1  # instance two hit it


def test_slow_client_does_not_block_others(proxied: RunningStack) -> None:
    """Ten clients reading 1 byte/s hold no Python thread: Nginx buffers the responses."""
    slow = []
    for _ in range(10):  # more than the 8 app threads (2 instances x 2 workers x 2)
        sock = socket.create_connection(("127.0.0.1", int(proxied.url.rsplit(":", 1)[1])))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /geojson/large HTTP/1.1\r\nHost: x\r\n\r\n")
        slow.append(sock)
    try:
        started = time.monotonic()
        for _ in range(3):
            for sock in slow:
                sock.recv(1)
            time.sleep(1)
        for path in ["/geojson/medium", "/api/datasets", "/geojson/small"] * 5:
            assert get(proxied.url + path).status_code == 200
        assert time.monotonic() - started < 60
    finally:
        for sock in slow:
            sock.close()


def test_killing_an_instance_fails_no_request(proxied: RunningStack) -> None:
    failures: list[str] = []
    session = requests.Session()
    victim = proxied.parts["app1"]
    for i in range(500):
        if i == 100:
            os.killpg(int(victim["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
        path = "/geojson/small" if i % 2 else "/api/datasets/small"
        try:
            r = session.get(proxied.url + path, headers={"Accept-Encoding": "identity"},
                            timeout=TIMEOUT)
            if r.status_code != 200:
                failures.append(f"{i}: {r.status_code} {r.text[:100]}")
        except requests.RequestException as exc:
            failures.append(f"{i}: {exc!r}")
    assert failures == []


def test_tls_termination(proxied: RunningStack, tmp_path: Path) -> None:
    """The same template with a certificate set serves HTTPS (and still HTTP)."""
    import dataclasses

    from geojson_api.nginxconf import write_standalone
    from geojson_api.settings import Settings

    require("openssl")
    root = Path(__file__).resolve().parents[2]
    subprocess.run([str(root / "scripts" / "make-cert"), str(tmp_path / "tls")], check=True,
                   capture_output=True, timeout=60)
    http_port, tls_port = free_ports(2, exclude=set())
    settings = dataclasses.replace(
        Settings.from_env({}, data_dir=proxied.data_dir),
        nginx_listen=f"127.0.0.1:{http_port}", nginx_tls_listen=f"127.0.0.1:{tls_port}",
        nginx_tls_cert=str(tmp_path / "tls" / "cert.pem"),
        nginx_tls_key=str(tmp_path / "tls" / "key.pem"))
    upstreams = [f"127.0.0.1:{proxied.parts[name]['port']}" for name in ("app1", "app2")
                 if Path(f"/proc/{proxied.parts[name]['pid']}").exists()]
    conf = write_standalone(settings, upstreams, tmp_path / "nginx")
    nginx = subprocess.Popen([require("nginx"), "-c", str(conf), "-p", str(tmp_path / "nginx")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"https://127.0.0.1:{tls_port}/geojson/small"
        deadline = time.monotonic() + 20
        while True:
            try:
                r = requests.get(url, verify=str(tmp_path / "tls" / "cert.pem"), timeout=5,
                                 headers={"Accept-Encoding": "identity"})
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert r.status_code == 200
        assert r.content == (proxied.data_dir / "small.geojson").read_bytes()
        assert r.headers["Strict-Transport-Security"] == "max-age=31536000"
        meta = requests.get(f"https://127.0.0.1:{tls_port}/api/datasets/small", timeout=5,
                            verify=str(tmp_path / "tls" / "cert.pem")).json()
        hrefs = [link["href"] for link in meta["links"]]  # X-Forwarded-Proto trusted
        assert all(h.startswith(f"https://127.0.0.1:{tls_port}/") for h in hrefs), hrefs
        plain = requests.get(f"http://127.0.0.1:{http_port}/healthz", timeout=5)
        assert plain.status_code == 200
    finally:
        nginx.terminate()
        nginx.wait(timeout=30)


def test_small_files_come_from_the_micro_cache(offloaded: RunningStack) -> None:
    url = f"{offloaded.url}/geojson/small?micro=1"
    first = get(url)
    for _ in range(3):
        assert get(url).content == first.content
    assert get(url, **{"If-None-Match": first.headers["ETag"]}).status_code == 304
    caches = [e["cache"] for e in nginx_access(offloaded.run_dir, "micro=1", count=5)]
    assert caches[0] in ("MISS", "EXPIRED") and "HIT" in caches[1:]


def test_redis_stopping_fails_no_request(offloaded: RunningStack) -> None:
    """Runs last in this module: it stops the offloaded stack's Redis."""
    os.killpg(int(offloaded.parts["redis"]["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
    time.sleep(0.5)
    for path in ["/api/datasets", "/api/datasets/small", "/geojson/small"] * 10:
        r = get(offloaded.url + path)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
        time.sleep(0.05)
    logs = "".join((offloaded.run_dir / f"{app}.log").read_text() for app in ("app1", "app2"))
    assert "shared cache unavailable, serving uncached" in logs


def test_worker_builds_the_index_of_a_dataset_published_while_running(
    proxied: RunningStack, samples: Path
) -> None:
    import shutil

    from .test_ogc_clients import wait_index

    assert "worker" in proxied.parts
    shutil.copyfile(samples / "small.geojson", proxied.data_dir / "fresh.geojson")
    state = wait_index(proxied.url, "fresh", timeout=60)
    assert state["features"] > 0
    items = requests.get(f"{proxied.url}/collections/fresh/items?limit=3", timeout=10)
    assert items.status_code == 200 and items.json()["numberReturned"] == 3
    log = (proxied.run_dir / "worker.log").read_text()
    assert "versions/fresh/" in "".join(line for line in log.splitlines() if "indexed" in line)


CORS_FIELDS = ("access-control-allow-origin", "access-control-expose-headers",
               "access-control-allow-credentials", "vary")
DASHBOARD = "http://127.0.0.1:9"  # the origin of a page served elsewhere


def cors_fields(url: str, **headers: str) -> list[tuple[str, str]]:
    """The CORS fields of an answer, every occurrence (a doubled field would show)."""
    with requests.get(url, headers={"Accept-Encoding": "identity", "Origin": DASHBOARD,
                                    **headers}, stream=True, timeout=TIMEOUT) as r:
        return sorted((k.lower(), v) for k, v in r.raw.headers.items()
                      if k.lower() in CORS_FIELDS)


CORS_REQUESTS = [
    ("/geojson/large", {}),  # offloaded whole
    ("/geojson/large", {"Range": "bytes=10-99"}),  # offloaded range
    ("/geojson/medium", {"Accept-Encoding": "br"}),  # offloaded variant
    ("/geojson/small?cors=1", {}),  # micro-cached (asked three times below)
    ("/api/datasets", {}),
    ("/collections/small/items?limit=2", {}),
    ("/geojson/missing", {}),  # the app's error
]


@pytest.mark.parametrize(("path", "headers"), CORS_REQUESTS)
def test_stack_answers_carry_the_apps_cors_fields(offloaded: RunningStack, path: str,
                                                  headers: dict[str, str]) -> None:
    """Offloaded, micro-cached and proxied answers: exactly the fields the app gives."""
    direct = cors_fields(offloaded.part_url("app1") + path, **headers)
    assert ("access-control-allow-origin", "*") in direct
    for _ in range(3):
        assert cors_fields(offloaded.url + path, **headers) == direct


def test_offloaded_cors_answer_was_offloaded(offloaded: RunningStack) -> None:
    get(f"{offloaded.url}/geojson/large?cors-offload=1", Origin=DASHBOARD,
        Range="bytes=0-9").close()
    entry = nginx_access(offloaded.run_dir, "cors-offload")[-1]
    assert entry["offload"].startswith("/_offload/range/large/")


def test_nginx_own_errors_carry_cors_fields(offloaded: RunningStack) -> None:
    r = requests.get(f"{offloaded.url}/_errors/not-found", headers={"Origin": DASHBOARD},
                     timeout=TIMEOUT)  # internal: Nginx itself answers 404
    assert r.status_code == 404 and r.json()["code"] == "not-found"
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "ETag" in r.headers["Access-Control-Expose-Headers"]


def test_preflight_through_the_stack(offloaded: RunningStack) -> None:
    r = requests.options(f"{offloaded.url}/geojson/large",
                         headers={"Origin": DASHBOARD, "Access-Control-Request-Method": "GET",
                                  "Access-Control-Request-Headers": "range"}, timeout=TIMEOUT)
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "Range" in r.headers["Access-Control-Allow-Headers"]
