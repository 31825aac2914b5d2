"""Whole-file delivery through a real Gunicorn over real sockets (gthread and gevent)."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import re
import threading
import time
import urllib.parse
from pathlib import Path

import brotli
import pytest
import requests

from geojson_api import locks

from ..attacks import ATTACKS
from .servers import GunicornServer, proc_io, proc_status

TIMEOUT = 60


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def raw_get(server: GunicornServer, path: str, headers: dict[str, str] | None = None
            ) -> tuple[int, dict[str, str], bytes]:
    """One request with the path sent exactly as given (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("name", ["small", "medium", "large"])
def test_plain_download_is_byte_identical(server: GunicornServer, name: str) -> None:
    expected = (server.data_dir / f"{name}.geojson").read_bytes()
    r = requests.get(f"{server.url}/geojson/{name}", headers={"Accept-Encoding": "identity"},
                     timeout=TIMEOUT)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/geo+json"
    assert int(r.headers["Content-Length"]) == len(expected)
    assert sha(r.content) == sha(expected)


@pytest.mark.parametrize(("encoding", "decode"), [("gzip", gzip.decompress),
                                                  ("br", brotli.decompress)])
def test_compressed_download_is_byte_identical(server: GunicornServer, encoding: str,
                                               decode: object) -> None:
    expected = (server.data_dir / "medium.geojson").read_bytes()
    status, headers, body = raw_get(server, "/geojson/medium", {"Accept-Encoding": encoding})
    assert status == 200 and headers["Content-Encoding"] == encoding
    assert headers["Vary"] == "Accept-Encoding" and int(headers["Content-Length"]) == len(body)
    assert len(body) < len(expected) / 3
    assert sha(decode(body)) == sha(expected)  # type: ignore[operator]


def test_conditional_requests(server: GunicornServer) -> None:
    first = requests.head(f"{server.url}/geojson/large", timeout=TIMEOUT,
                          headers={"Accept-Encoding": "identity"})
    assert first.status_code == 200
    size = (server.data_dir / "large.geojson").stat().st_size
    assert first.headers["Content-Length"] == str(size)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    for headers in ({"If-None-Match": etag}, {"If-Modified-Since": modified},
                    {"If-None-Match": f'"x", {etag}'}):
        status, got, body = raw_get(server, "/geojson/large", headers)
        assert (status, body) == (304, b"") and got["ETag"] == etag


def test_ranges(server: GunicornServer) -> None:
    data = (server.data_dir / "large.geojson").read_bytes()
    cases = [("bytes=0-99", data[:100]), ("bytes=1000000-1000999", data[1000000:1001000]),
             ("bytes=-10", data[-10:]), (f"bytes={len(data) - 5}-", data[-5:])]
    for header, part in cases:
        status, headers, body = raw_get(server, "/geojson/large", {"Range": header})
        assert status == 206 and body == part, header
        assert headers["Content-Length"] == str(len(part))
    status, headers, body = raw_get(server, "/geojson/large", {"Range": f"bytes={len(data)}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(data)}"
    assert b'"code"' in body


def test_range_on_compressed_representation(server: GunicornServer) -> None:
    _, _, whole = raw_get(server, "/geojson/medium", {"Accept-Encoding": "br"})
    status, headers, part = raw_get(server, "/geojson/medium",
                                    {"Accept-Encoding": "br", "Range": "bytes=100-199"})
    assert status == 206 and headers["Content-Encoding"] == "br" and part == whole[100:200]


def test_other_methods(server: GunicornServer) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        r = requests.request(method, f"{server.url}/geojson/small", timeout=TIMEOUT)
        assert r.status_code == 405 and r.json()["code"] == "method-not-allowed"
        assert "GET" in r.headers["Allow"]


@pytest.fixture(scope="module")
def planted(served_data: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A secret outside the data folder, and links in the folder that point at it."""
    secret = b"TOP-SECRET-" + os.urandom(8).hex().encode()
    outside = tmp_path_factory.mktemp("outside") / "outside.geojson"
    outside.write_bytes(b'{"type":"FeatureCollection","features":[],"s":"' + secret + b'"}')
    for name in ("outside", "escape"):
        link = served_data / f"{name}.geojson"
        if not link.exists():
            link.symlink_to(outside)
    return secret


@pytest.mark.parametrize("attack", ATTACKS)
def test_traversal_over_the_wire(server: GunicornServer, planted: bytes, attack: str) -> None:
    path = "/geojson/" + urllib.parse.quote(attack, safe="/%\\;:$~")
    status, headers, body = raw_get(server, path)
    assert status in (400, 404), (attack, status)
    assert headers["Content-Type"] == "application/json"
    assert planted not in body and b"root:" not in body


@pytest.mark.parametrize(
    "headers",
    [{"Range": "bytes=zz"}, {"Range": "bytes=5-1"}, {"Range": "bytes=0-1,5-6,9-"},
     {"Range": "lines=1-2"}, {"If-Modified-Since": "not a date"}, {"If-Modified-Since": "0"},
     {"If-None-Match": "\"unterminated"}, {"If-None-Match": ","}, {"If-Range": "garbage"},
     {"If-Range": "Mon, 99 Jan 1900"}, {"Accept-Encoding": ";;;q=x,,br;q=abc"},
     {"Accept-Encoding": "gzip;q=2"}, {"Range": "bytes=" + "9" * 2000 + "-"},
     {"If-Unmodified-Since": "tomorrow"}, {"Range": "bytes=-0"}],
)
def test_malformed_headers_never_500(server: GunicornServer, headers: dict[str, str]) -> None:
    status, _, body = raw_get(server, "/geojson/small", headers)
    assert status < 500, (headers, status, body[:200])


def test_replaced_while_downloading(server: GunicornServer, tmp_path: Path) -> None:
    target = server.data_dir / f"swap-{server.worker_class}.geojson"
    old = (server.data_dir / "large.geojson").read_bytes()
    new = (server.data_dir / "medium.geojson").read_bytes()
    target.write_bytes(old)
    url = f"{server.url}/geojson/{target.stem}"
    with requests.get(url, stream=True, timeout=TIMEOUT,
                      headers={"Accept-Encoding": "identity"}) as slow:
        chunks = slow.iter_content(1 << 16)
        received = [next(chunks)]
        staging = tmp_path / "staging.geojson"
        staging.write_bytes(new)
        os.replace(staging, target)  # publish by rename while the download is open
        fresh = requests.get(url, headers={"Accept-Encoding": "identity"}, timeout=TIMEOUT)
        assert fresh.headers["ETag"] != slow.headers["ETag"]
        assert sha(fresh.content) == sha(new)
        received.extend(chunks)
    assert sha(b"".join(received)) == sha(old)


def _download(url: str, errors: list[str]) -> None:
    try:
        with requests.get(url, stream=True, timeout=TIMEOUT,
                          headers={"Accept-Encoding": "identity"}) as r:
            size = sum(len(c) for c in r.iter_content(1 << 20))
            if r.status_code != 200 or size != int(r.headers["Content-Length"]):
                errors.append(f"{r.status_code} {size}")
    except requests.RequestException as exc:
        errors.append(repr(exc))


def wait_for_variants(server: GunicornServer, timeout: float = 120) -> None:
    """Let background compression finish, so that it does not count as request memory."""
    deadline = time.monotonic() + timeout
    versions = server.data_dir / ".state" / "versions"
    while time.monotonic() < deadline:
        listing = requests.get(f"{server.url}/api/datasets", timeout=TIMEOUT).json()
        building = list(versions.glob("*/*/.*.tmp"))  # also versions no longer current
        if not building and all(d.get("encodings") == ["gzip", "br"]
                                for d in listing["datasets"]):
            return
        time.sleep(0.2)
    raise TimeoutError("compressed variants were not built in time")


def test_memory_is_flat_under_50_concurrent_large_downloads(server: GunicornServer) -> None:
    url = f"{server.url}/geojson/large"
    wait_for_variants(server)
    for _ in range(2 * server.workers):  # warm every worker's code paths
        requests.get(url, timeout=TIMEOUT).close()
    workers = server.worker_pids()
    idle = {pid: proc_status(pid, "VmRSS") for pid in workers}
    peak = dict(idle)
    errors: list[str] = []
    threads = [threading.Thread(target=_download, args=(url, errors)) for _ in range(50)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for pid in workers:
            peak[pid] = max(peak[pid], proc_status(pid, "VmRSS"))
        time.sleep(0.02)
    for t in threads:
        t.join()
    assert errors == []
    growth_mb = {pid: (peak[pid] - idle[pid]) / 1024 for pid in workers}
    print(f"{server.worker_class}: idle kB {idle}, growth MB {growth_mb}")
    assert max(growth_mb.values()) <= 20, growth_mb


def wait_until_no_build(data_dir: Path, timeout: float = 300) -> None:
    """Until no build lock is held under the state folder: earlier tests published new
    versions (a 50 MB one among them) whose variants, index and tiles the workers'
    job threads build, old versions included."""
    deadline = time.monotonic() + timeout
    pattern = "versions/*/*/.*.lock"
    quiet = 0  # consecutive checks with no lock held: a job thread goes from one build
    while quiet < 4:  # to the next without one for a moment
        held = any(locks.held(path) for path in (data_dir / ".state").glob(pattern))
        quiet = 0 if held else quiet + 1
        if time.monotonic() > deadline:
            raise TimeoutError(f"builds still running after {timeout} s")
        time.sleep(0.5)


def test_files_go_out_with_sendfile(server: GunicornServer) -> None:
    """Bytes do not pass through Python: few read syscalls for a 50 MB download.

    gthread uses sendfile(2) itself; gevent workers get geojson_api.gevent_support.
    """
    url = f"{server.url}/geojson/large"
    wait_until_no_build(server.data_dir)  # a job thread reading files would count as the worker's
    before = {pid: proc_io(pid) for pid in server.worker_pids()}
    r = requests.get(url, headers={"Accept-Encoding": "identity"}, timeout=TIMEOUT)
    assert len(r.content) == (server.data_dir / "large.geojson").stat().st_size
    after = {pid: proc_io(pid) for pid in server.worker_pids()}
    reads = sum(after[p]["syscr"] - before[p]["syscr"] for p in after)
    read_bytes = sum(after[p]["rchar"] - before[p]["rchar"] for p in after)
    # A read loop would need >= 191 reads of 256 KiB; sendfile needs a handful.
    assert reads < 100, (reads, read_bytes)


def test_access_log_shows_the_bytes_sent_with_sendfile(server: GunicornServer) -> None:
    size = (server.data_dir / "large.geojson").stat().st_size
    requests.get(f"{server.url}/geojson/large?log-check",
                 headers={"Accept-Encoding": "identity"}, timeout=TIMEOUT).close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [line for line in server.log().splitlines() if "/geojson/large?log-check" in line]
        if lines:  # a JSON line (GEOJSON_API_LOG_FORMAT=json, the default)
            entry = json.loads(lines[-1])
            assert entry["status"] == 200 and entry["bytes"] == size
            assert isinstance(entry["duration_ms"], float | int)
            return
        time.sleep(0.1)
    raise AssertionError("no access log line for the request")


def _raw_exchange(server: GunicornServer, data: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send raw bytes; the status line, headers and body of the one response."""
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received and (chunk := sock.recv(65536)):
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        while len(body) < int(headers.get("Content-Length", 0)) and (
                chunk := sock.recv(65536)):
            body += chunk
    return lines[0], headers, body


@pytest.mark.parametrize(("request_bytes", "status", "code"), [
    (b"GET /geojson/small HTTP/1.1\r\n\r\n", "400", "bad-request"),  # no Host
    (b"GET /geojson/small HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400", "bad-request"),
    (b"GARBAGE\r\n\r\n", "400", "bad-request"),
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", "414", "uri-too-long"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150))
     + b"\r\n", "431", "request-header-fields-too-large"),
])
def test_gunicorns_own_errors_are_json(server: GunicornServer, request_bytes: bytes,
                                       status: str, code: str) -> None:
    import json

    line, headers, body = _raw_exchange(server, request_bytes)
    assert line.split()[1] == status, line
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["code"] == code


def test_each_worker_opens_the_built_indexes_before_its_first_request(
        server: GunicornServer) -> None:
    """geojson_api.warm_up in post_worker_init: no first query waits for the checks."""
    counts = [int(found.group(1)) for found in
              re.finditer(r"warm-up: (\d+) feature index\(es\) open", server.log())]
    assert len(counts) >= server.workers, server.log()[-2000:]
    assert all(count >= 3 for count in counts), counts  # small, medium and large
