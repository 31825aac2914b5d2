"""Direct files: Nginx answers public whole files from the current version itself.

Two stacks over one data folder, both offloading to Nginx: ``direct`` (Nginx
resolves ``<state>/public/<name>`` and answers plain GET and HEAD itself) and
``via_app`` (``GEOJSON_API_NGINX_DIRECT=false``: every request asks an app
instance, as before). Whatever path answers, the client must see the same
status, headers and bytes.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from geojson_api import public

from .servers import nginx_access
from .test_stack import IGNORED_HEADERS, TIMEOUT, RunningStack, running_stack

WATCH = 0.2  # seconds between two looks at the data folder (the app processes)
# The micro-cache off: with it on, small files are left to it (no pointer), and the two
# stacks share a state folder, so they must agree on which datasets have a pointer.
COMMON = {"GEOJSON_API_NGINX_RATE": "100000r/s", "GEOJSON_API_NGINX_BURST": "100000",
          "GEOJSON_API_SETTLE_SECONDS": "0", "GEOJSON_API_NGINX_DIRECT_WATCH": str(WATCH),
          "GEOJSON_API_NGINX_MICROCACHE": "0"}


@pytest.fixture(scope="module")
def direct(served_data: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningStack]:
    with running_stack(served_data, tmp_path_factory.mktemp("stack-direct"), "nginx",
                       COMMON) as stack:
        yield stack


@pytest.fixture(scope="module")
def via_app(served_data: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RunningStack]:
    env = {**COMMON, "GEOJSON_API_NGINX_DIRECT": "false"}
    with running_stack(served_data, tmp_path_factory.mktemp("stack-via-app"), "nginx",
                       env) as stack:
        yield stack


def _answer(url: str, headers: dict[str, str], method: str = "GET"
            ) -> tuple[int, list[tuple[str, str]], str]:
    """Status, every header field (sorted; Date and hop-by-hop fields left out) and the
    body's digest. One request id for both paths: each answer echoes it."""
    with requests.request(method, url, headers={"Accept-Encoding": "identity",
                                                "X-Request-ID": "same-id", **headers},
                          stream=True, timeout=TIMEOUT) as r:
        body = r.raw.read(decode_content=False)
        fields = sorted((k.lower(), v) for k, v in r.raw.headers.items()
                        if k.lower() not in IGNORED_HEADERS)
        return r.status_code, fields, hashlib.sha256(body).hexdigest()


def _etag(stack: RunningStack, name: str, coding: str = "identity") -> str | None:
    """The ETag of a 200 (None while the dataset is not ready)."""
    return requests.head(f"{stack.url}/geojson/{name}", headers={"Accept-Encoding": coding},
                         timeout=TIMEOUT).headers.get("ETag")


def _access(stack: RunningStack, request_id: str) -> dict[str, object]:
    return nginx_access(stack.run_dir, request_id)[-1]


def _alone(entry: dict[str, object]) -> bool:
    """Whether Nginx answered from a version folder (neither an app nor its micro-cache)."""
    return entry["upstream"] == "" and entry["cache"] == ""


# (method, path, headers, answered by Nginx alone)
CASES = [
    ("GET", "/geojson/large", {}, True),
    ("GET", "/geojson/medium", {}, True),
    ("GET", "/geojson/small", {}, True),
    ("GET", "/geojson/small.geojson", {}, False),  # no pointer of that name
    ("GET", "/geojson/medium", {"Accept-Encoding": "gzip"}, True),
    ("GET", "/geojson/medium", {"Accept-Encoding": "br"}, True),
    ("GET", "/geojson/large", {"Accept-Encoding": "gzip, deflate, br, zstd"}, True),
    ("GET", "/geojson/small", {"Accept-Encoding": "gzip, deflate"}, True),
    ("GET", "/geojson/medium", {"Accept-Encoding": "gzip;q=0.5, br;q=0.9"}, False),
    ("GET", "/geojson/large", {"Range": "bytes=0-50"}, True),
    ("GET", "/geojson/large", {"Range": "bytes=-100"}, True),
    ("GET", "/geojson/large", {"Range": "bytes=0-"}, True),
    ("GET", "/geojson/small", {"Range": "bytes=0-99999999"}, True),
    ("GET", "/geojson/medium", {"Range": "bytes=0-999", "Accept-Encoding": "br"}, True),
    ("GET", "/geojson/large", {"Range": "bytes=5-50"}, False),  # may miss: the app decides
    ("GET", "/geojson/medium", {"Range": "bytes=0-0,9-9"}, False),
    ("GET", "/geojson/medium", {"Range": "bytes=9-3"}, False),  # Nginx: 416; the app ignores
    ("GET", "/geojson/medium", {"Range": "bytes=99999999-"}, False),  # the app's 416
    ("GET", "/geojson/medium", {"Range": "bytes=-0"}, False),
    ("GET", "/geojson/medium", {"Range": "items=0-1"}, False),
    ("GET", "/geojson/medium?download=1", {}, False),
    ("HEAD", "/geojson/large", {}, True),
    ("HEAD", "/geojson/medium", {"Accept-Encoding": "gzip"}, True),
    ("HEAD", "/geojson/medium", {"Range": "bytes=0-9"}, False),
    ("GET", "/geojson/missing", {}, False),
]


@pytest.mark.parametrize(("method", "path", "headers", "alone"), CASES)
def test_direct_answers_equal_the_apps(direct: RunningStack, via_app: RunningStack,
                                       method: str, path: str, headers: dict[str, str],
                                       alone: bool) -> None:
    answered = _answer(direct.url + path, headers, method)
    assert answered == _answer(via_app.url + path, headers, method)
    request_id = f"parity-{time.monotonic_ns()}"
    _answer(direct.url + path, {**headers, "X-Request-ID": request_id}, method)
    assert _alone(_access(direct, request_id)) is alone


@pytest.mark.parametrize("coding", ["identity", "gzip", "br"])
def test_not_modified_equals_the_apps(direct: RunningStack, via_app: RunningStack,
                                      coding: str) -> None:
    etag = _etag(direct, "medium", coding)
    assert etag == _etag(via_app, "medium", coding)
    for conditional in ({"If-None-Match": etag}, {"If-Range": etag, "Range": "bytes=0-9"},
                        {"If-Modified-Since": "Tue, 01 Dec 2099 00:00:00 GMT"}):
        headers = {"Accept-Encoding": coding, **conditional}
        answer = _answer(direct.url + "/geojson/medium", headers)
        assert answer == _answer(via_app.url + "/geojson/medium", headers)
    assert _answer(direct.url + "/geojson/medium",
                   {"Accept-Encoding": coding, "If-None-Match": etag})[0] == 304


def test_direct_needs_no_app_instance(direct: RunningStack) -> None:
    request_id = f"no-app-{time.monotonic_ns()}"
    r = requests.get(f"{direct.url}/geojson/large",
                     headers={"X-Request-ID": request_id, "Accept-Encoding": "identity"},
                     timeout=TIMEOUT)
    data = (direct.data_dir / "large.geojson").read_bytes()
    assert r.status_code == 200 and r.content == data
    entry = _access(direct, request_id)
    assert _alone(entry) and entry["status"] == 200
    app_logs = "".join((direct.run_dir / f"app{i}.log").read_text() for i in (1, 2))
    assert request_id not in app_logs


def test_a_pointer_gone_after_its_check_is_answered_by_the_app(direct: RunningStack) -> None:
    """Nginx's file cache keeps the pointer's -d test for a moment; when the pointer is
    removed meanwhile, resolving it fails: the app answers that request, not Nginx."""
    url = f"{direct.url}/geojson/pointed"
    _publish(direct.data_dir, "pointed", _feature_collection("pointed", 100_000))
    state = direct.data_dir / ".state"
    _wait_for(lambda: public.target(state, "pointed") is not None)
    pointer = public.folder(state) / "pointed"
    with requests.Session() as session:  # one connection: one Nginx worker, its cache
        first = session.get(url, headers={"Accept-Encoding": "identity"}, timeout=TIMEOUT)
        assert first.status_code == 200
        errors_before = (direct.run_dir / "nginx" / "nginx-error.log").read_text()
        pointer.unlink()  # the app's watcher puts it back within WATCH seconds
        request_id = f"pointer-gone-{time.monotonic_ns()}"
        r = session.get(url, headers={"Accept-Encoding": "identity",
                                      "X-Request-ID": request_id}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.content == first.content and r.headers["ETag"] == first.headers["ETag"]
    assert not _alone(_access(direct, request_id))  # an app instance answered
    errors = (direct.run_dir / "nginx" / "nginx-error.log").read_text()[len(errors_before):]
    assert "realpath()" in errors  # the path this test is about was taken
    _wait_for(lambda: public.target(state, "pointed") is not None)  # the watcher's


def _feature_collection(tag: str, size: int) -> bytes:
    feature = ('{"type":"Feature","geometry":{"type":"Point","coordinates":[1,2]},'
               f'"properties":{{"tag":"{tag}"}}}}')
    count = max(1, size // len(feature))
    return ('{"type":"FeatureCollection","features":[' + ",".join([feature] * count)
            + "]}").encode()


def _publish(data_dir: Path, name: str, content: bytes) -> str:
    """Replace ``<name>.geojson`` by rename; the version id it will have."""
    tmp = data_dir / f".{name}.tmp"
    tmp.write_bytes(content)
    os.replace(tmp, data_dir / f"{name}.geojson")
    return hashlib.sha256(content).hexdigest()[:16]


def _wait_for(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_publish_switches_nginx_atomically(direct: RunningStack) -> None:
    old = _publish(direct.data_dir, "moving", _feature_collection("old", 2_000_000))
    url = f"{direct.url}/geojson/moving"
    _wait_for(lambda: _etag(direct, "moving") == f'"{old}"')
    stop = threading.Event()
    seen: list[list[str]] = [[] for _ in range(4)]
    problems: list[str] = []

    def client(mine: list[str]) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                r = session.get(url, headers={"Accept-Encoding": "identity"}, timeout=TIMEOUT)
                etag = r.headers["ETag"].strip('"')
                if hashlib.sha256(r.content).hexdigest()[:16] != etag:
                    problems.append(f"body of another version than its ETag {etag}")
                mine.append(etag)

    threads = [threading.Thread(target=client, args=(mine,)) for mine in seen]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        new = _publish(direct.data_dir, "moving", _feature_collection("new", 2_000_000))
        _wait_for(lambda: all(new in mine for mine in seen))
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not problems
    for mine in seen:
        switched = mine.index(new)
        assert set(mine[:switched]) == {old} and set(mine[switched:]) == {new}
    request_id = f"switched-{time.monotonic_ns()}"
    requests.get(url, headers={"X-Request-ID": request_id}, timeout=TIMEOUT).close()
    assert _alone(_access(direct, request_id))  # the new version, directly


def test_removed_file_stops_being_served(direct: RunningStack) -> None:
    """Until the app notices, Nginx may still send the file; then the app's 404. While
    the pointer is removed, Nginx's -d test (kept by its file cache) can pass and the
    pointer's resolution fail: the app answers such a request, never an error."""
    _publish(direct.data_dir, "leaving", _feature_collection("leaving", 100_000))
    url = f"{direct.url}/geojson/leaving"
    _wait_for(lambda: requests.head(url, timeout=TIMEOUT).status_code == 200)
    state = direct.data_dir / ".state"
    _wait_for(lambda: public.target(state, "leaving") is not None)
    (direct.data_dir / "leaving.geojson").unlink()
    removed = time.monotonic()
    seen: list[int] = []

    def gone() -> bool:  # Nginx's file cache still knows the pointer for a moment
        seen.append(requests.get(url, timeout=TIMEOUT).status_code)
        return seen[-1] == 404

    _wait_for(gone, timeout=10)
    took = time.monotonic() - removed
    assert set(seen) <= {200, 404}, seen  # never a 500 while the pointer goes
    r = requests.get(url, timeout=TIMEOUT)
    assert r.json()["code"] == "dataset-not-found" and public.target(state, "leaving") is None
    print(f"stopped serving {took:.2f} s after the file was removed (watch every {WATCH} s)")
