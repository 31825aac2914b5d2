"""The fault suite: real processes, real faults, failed requests counted.

Each case starts the real thing (Gunicorn, or the Nginx stack with Redis and
a job worker), breaks something the way it breaks in production, and counts
the requests that failed while it was broken, in a loop bounded in time and
count. docs/reliability.md records what each case shows.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from ..conftest import IN_CI, copy_prepared, require, require_module
from .servers import GunicornServer, free_port
from .test_stack import RunningStack, running_stack

TIMEOUT = 30
Outcome = int | str  # an HTTP status, or the name of the exception a request raised


def fetch(session: requests.Session, url: str, **headers: str) -> Outcome:
    """GET ``url`` and read the whole body; the status, or what went wrong."""
    try:
        with session.get(url, timeout=TIMEOUT, stream=True,
                         headers={"Accept-Encoding": "identity", **headers}) as r:
            for _ in r.iter_content(1 << 20):
                pass
            return r.status_code
    except requests.RequestException as exc:
        return type(exc).__name__


def failures(tally: collections.Counter[tuple[str, Outcome]]) -> dict[str, int]:
    return {f"{path} -> {outcome}": n for (path, outcome), n in tally.items() if outcome != 200}


def print_tally(label: str, tally: collections.Counter[tuple[str, Outcome]]) -> None:
    """The figures docs/reliability.md quotes (shown with pytest -s)."""
    print(f"\n{label}: " + ", ".join(f"{p} {o}: {n}" for (p, o), n in sorted(
        tally.items(), key=str)))


def gunicorn(data: Path, logs: Path, name: str, **env: str) -> GunicornServer:
    """A server whose workers are never recycled (so that a changed PID means a death)."""
    return GunicornServer(data, logs / f"{name}.log", env={"GEOJSON_API_MAX_REQUESTS": "0",
                                                           **env})


def copy_samples(samples: Path, target: Path, *names: str) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(samples / f"{name}.geojson", target / f"{name}.geojson")
    return target


def publish(source: Path, target: Path) -> None:
    """Publish by rename, the documented way."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``check()`` held; fails after ``timeout``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} within {timeout} s")
        time.sleep(0.1)
    return time.monotonic() - started


# -- the Nginx stack -------------------------------------------------------------------
BROKEN = b'{"type":"FeatureCollection","features":['
OTHERS = ["/geojson/small", "/geojson/medium", "/api/datasets/small", "/api/datasets",
          "/collections/small/items?limit=2"]


@pytest.fixture(scope="module")
def stack(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The stack (Nginx, 2 instances, Redis, a job worker) over small, medium and a broken
    dataset, with the rate limit lifted so that request loops are not throttled."""
    data = copy_prepared(prepared, tmp_path_factory.mktemp("faults-stack-data"), "small",
                         "medium")
    (data / "broken.geojson").write_bytes(BROKEN)
    env = {"GEOJSON_API_NGINX_RATE": "100000r/s", "GEOJSON_API_NGINX_BURST": "100000"}
    with running_stack(data, tmp_path_factory.mktemp("faults-stack"), "nginx", env) as running:
        yield running


def test_an_app_503_on_one_dataset_fails_no_request_for_others(stack: RunningStack) -> None:
    """Nginx must not take an instance out of service for the app's own 503s."""
    session = requests.Session()
    tally: collections.Counter[tuple[str, Outcome]] = collections.Counter()
    for i in range(200):
        broken = session.get(f"{stack.url}/geojson/broken", timeout=TIMEOUT)
        assert broken.status_code == 503 and broken.json()["code"] == "dataset-unavailable"
        path = OTHERS[i % len(OTHERS)]
        tally[(path, fetch(session, stack.url + path))] += 1
    print_tally("app 503 on one dataset, others through the stack", tally)
    assert failures(tally) == {}
    log = (stack.run_dir / "nginx" / "nginx-error.log").read_text()
    assert "no live upstreams" not in log


def test_publishing_50_mb_under_polling_fails_no_request_for_others(
    stack: RunningStack, samples: Path
) -> None:
    """While a big new dataset is copied, scanned and indexed, other datasets answer."""
    fresh: collections.Counter[tuple[str, Outcome]] = collections.Counter()
    stop = threading.Event()

    def poll() -> None:
        session = requests.Session()
        while not stop.is_set():
            for path in ("/geojson/fresh", "/collections/fresh/items?limit=1"):
                fresh[(path, fetch(session, stack.url + path))] += 1
            time.sleep(0.05)

    publish(samples / "large.geojson", stack.data_dir / "fresh.geojson")
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    session = requests.Session()
    tally: collections.Counter[tuple[str, Outcome]] = collections.Counter()
    deadline = time.monotonic() + 120
    try:
        while fresh[("/collections/fresh/items?limit=1", 200)] < 3:
            assert time.monotonic() < deadline, f"fresh never served: {fresh}"
            path = OTHERS[sum(tally.values()) % len(OTHERS)]
            tally[(path, fetch(session, stack.url + path))] += 1
    finally:
        stop.set()
        poller.join(timeout=60)
    print_tally("publishing 50 MB: the new dataset", fresh)
    print_tally("publishing 50 MB: the others", tally)
    assert failures(tally) == {}
    assert {outcome for (_, outcome) in fresh} <= {200, 503}  # 503 = not ready, with JSON


def _raw(port: int, data: bytes) -> tuple[str, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body


def test_nginx_errors_are_json(stack: RunningStack, tmp_path: Path) -> None:
    import json

    from geojson_api.nginxconf import write_standalone
    from geojson_api.settings import Settings

    port = int(stack.url.rsplit(":", 1)[1])
    cases = {
        b"GARBAGE\r\n\r\n": ("400", "bad-request"),
        b"GET /healthz HTTP/1.1\r\n\r\n": ("400", "bad-request"),  # no Host
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n": ("414", "uri-too-long"),
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n": ("400",
                                                                             "bad-request"),
        b"GET /_errors/not-found HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n": (
            "404", "not-found"),
    }
    for request, (status, code) in cases.items():
        line, body = _raw(port, request)
        assert line.split()[1] == status, (request[:40], line)
        assert json.loads(body)["code"] == code
    # no instance answering: Nginx's own 503, as JSON, with Retry-After
    dead = free_port()
    settings = Settings.from_env({}, data_dir=stack.data_dir, nginx_listen=f"127.0.0.1:{dead}")
    conf = write_standalone(settings, [f"127.0.0.1:{free_port()}"], tmp_path / "nginx")
    nginx = subprocess.Popen([require("nginx"), "-c", str(conf), "-p", str(tmp_path / "nginx")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def answers() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{dead}/geojson/small",
                                    timeout=5).status_code == 503
            except requests.ConnectionError:
                return False

        wait_for(answers, 20, "nginx never answered")
        r = requests.get(f"http://127.0.0.1:{dead}/geojson/small", timeout=5)
        assert r.json()["code"] == "unavailable" and r.headers["Retry-After"] == "2"
    finally:
        nginx.terminate()
        nginx.wait(timeout=30)


# -- one Gunicorn ------------------------------------------------------------------
def _items_url(server: GunicornServer, i: int) -> str:
    west = 4.80 + (i % 50) * 0.001  # a new query each time: never the page cache
    return f"{server.url}/collections/medium/items?bbox={west:.3f},45.70,4.90,45.80&limit=5"


@pytest.mark.parametrize("damaged", ["index.sqlite", "index.features"])
def test_a_truncated_index_kills_no_worker_and_heals(samples: Path, tmp_path: Path,
                                                     damaged: str) -> None:
    data = copy_samples(samples, tmp_path / "data", "small", "medium")
    server = gunicorn(data, tmp_path, "truncated").start()
    try:
        session = requests.Session()
        wait_for(lambda: fetch(session, _items_url(server, 0)) == 200, 120, "no index")
        for i in range(30):  # every worker opens the index
            assert fetch(session, _items_url(server, i)) == 200
        workers = set(server.worker_pids())
        index = next((data / ".state" / "versions" / "medium").iterdir()) / damaged
        os.truncate(index, index.stat().st_size // 3)
        tally: collections.Counter[tuple[str, Outcome]] = collections.Counter()
        retry_after = set()
        started = time.monotonic()
        healed = None
        for i in range(3000):
            r = session.get(_items_url(server, i + 100), timeout=TIMEOUT)
            tally[("items", r.status_code)] += 1
            if r.status_code == 503:
                assert r.json()["code"] == "not-ready"
                retry_after.add(r.headers["Retry-After"])
            elif healed is None and tally[("items", 503)]:
                healed = time.monotonic() - started
            if (healed is not None and tally[("items", 200)] > 40) or (
                    time.monotonic() - started > 90):
                break
            time.sleep(0.02)
        print_tally(f"truncated index (healed after {healed} s)", tally)
        assert set(tally) <= {("items", 200), ("items", 503)}
        assert tally[("items", 503)] > 0 and retry_after and healed is not None
        assert set(server.worker_pids()) == workers  # no worker died
        assert fetch(session, f"{server.url}/geojson/medium") == 200
        assert any((data / ".state" / "quarantine").iterdir())
    finally:
        server.stop()
    assert "Traceback" not in server.log()


def remove_while_written(folder: Path) -> None:
    """``rm -rf`` of a folder the server may be writing into (a tile build finishing)."""
    for _ in range(50):
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            return
    raise AssertionError(f"{folder} could not be removed")


def test_a_deleted_state_folder_heals_within_10_s(samples: Path, tmp_path: Path) -> None:
    data = copy_samples(samples, tmp_path / "data", "small", "medium")
    server = gunicorn(data, tmp_path, "state-lost").start()
    paths = ["/geojson/small", "/geojson/medium", "/api/datasets", "/api/datasets/medium",
             "/readyz"]
    try:
        session = requests.Session()
        for path in paths:
            assert fetch(session, server.url + path) == 200
        remove_while_written(data / ".state")
        deleted = time.monotonic()
        tally: collections.Counter[tuple[str, Outcome]] = collections.Counter()
        last_failure = 0.0
        while time.monotonic() - deleted < 15:
            for path in paths:
                outcome = fetch(session, server.url + path, **{"Accept-Encoding": "gzip"})
                tally[(path, outcome)] += 1
                if outcome != 200:
                    last_failure = time.monotonic() - deleted
            time.sleep(0.02)
        print_tally(f"state folder deleted (last failure {last_failure:.1f} s after)", tally)
        assert last_failure < 10, failures(tally)
        assert {outcome for (_, outcome) in tally} <= {200, 503}  # never a 500
        state = requests.get(f"{server.url}/collections/medium", timeout=TIMEOUT).json()
        assert state["index"]["status"] in ("ready", "queued", "building")
    finally:
        server.stop()
    assert "Traceback" not in server.log()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 30 MB tmpfs for the state folder (mounting needs root)."""
    mount = shutil.which("mount")
    if os.geteuid() != 0 or mount is None:
        message = "mounting a tmpfs needs root and mount(8)"
        if IN_CI:
            pytest.fail(message + " (CI runs as root)")
        pytest.skip(message)
    target = tmp_path / "small-disk"
    target.mkdir()
    subprocess.run([mount, "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(target)], check=True,
                   timeout=30)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False, timeout=30)


def test_a_full_state_disk_keeps_the_old_version_and_the_listings(
    samples: Path, tmp_path: Path, small_disk: Path
) -> None:
    data = copy_samples(samples, tmp_path / "data", "small", "medium")
    server = gunicorn(data, tmp_path, "full-disk",
                      GEOJSON_API_STATE_DIR=str(small_disk / "state")).start()
    try:
        session = requests.Session()
        etag = session.get(f"{server.url}/geojson/medium", timeout=TIMEOUT).headers["ETag"]
        publish(samples / "large.geojson", data / "large.geojson")  # new: cannot fit
        publish(samples / "large.geojson", data / "medium.geojson")  # newer medium: neither
        tally: collections.Counter[tuple[str, Outcome]] = collections.Counter()
        polled = time.monotonic()
        while time.monotonic() - polled < 8:
            for path in ["/geojson/large", "/geojson/medium", "/geojson/small",
                         "/api/datasets", "/collections", "/collections/small/items"]:
                tally[(path, fetch(session, server.url + path))] += 1
            time.sleep(0.05)
        print_tally("full state disk", tally)
        assert failures(tally) == {"/geojson/large -> 503": tally[("/geojson/large", 503)]}
        large = session.get(f"{server.url}/geojson/large", timeout=TIMEOUT)
        assert large.json()["code"] == "storage-full" and int(large.headers["Retry-After"]) > 0
        medium = session.get(f"{server.url}/geojson/medium", timeout=TIMEOUT)
        assert medium.headers["ETag"] == etag  # the previous version, still served
        listing = {d["name"]: d for d in session.get(f"{server.url}/api/datasets",
                                                     timeout=TIMEOUT).json()["datasets"]}
        assert listing["large"]["status"] == "storage-full"
        assert listing["medium"]["status"] == "ready"
        assert listing["medium"]["refused"]["code"] == "storage-full"
        # Backing off per content: each worker tried at most about once per 5, 10, 20 s,
        # not once per request (the loop above made hundreds).
        attempts = server.log().count("publish failed")
        assert 0 < attempts <= 2 * 2 * server.workers, attempts
    finally:
        server.stop()
    assert "Traceback" not in server.log()


def test_killing_a_worker_fails_only_its_own_downloads(prepared: Path, tmp_path: Path) -> None:
    import psutil

    data = copy_prepared(prepared, tmp_path / "data", "large")
    server = gunicorn(data, tmp_path, "kill9").start()
    expected = hashlib.sha256((data / "large.geojson").read_bytes()).hexdigest()

    def download(_: int) -> str:
        digest = hashlib.sha256()
        try:
            with requests.get(f"{server.url}/geojson/large", stream=True, timeout=TIMEOUT,
                              headers={"Accept-Encoding": "identity"}) as r:
                for chunk in r.iter_content(256 * 1024):
                    digest.update(chunk)
                    time.sleep(0.02)  # a client reading at ~10 MB/s: seconds in flight
        except requests.RequestException as exc:
            return type(exc).__name__
        return "ok" if digest.hexdigest() == expected else "corrupt"

    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(download, i) for i in range(8)]
            time.sleep(1.5)
            held = {pid: [c for c in psutil.Process(pid).net_connections("tcp")
                          if c.status == "ESTABLISHED" and c.laddr.port == server.port]
                    for pid in server.worker_pids()}
            victim = max(held, key=lambda pid: len(held[pid]))
            os.kill(victim, signal.SIGKILL)
            results = [f.result(timeout=120) for f in futures]
        print(f"\nkill -9 of a worker holding {len(held[victim])} of 8 downloads: "
              f"{collections.Counter(results)}")
        failed = [r for r in results if r != "ok"]
        assert "corrupt" not in results
        assert len(failed) <= len(held[victim])  # only the victim's downloads failed
        wait_for(lambda: len(server.worker_pids()) == server.workers, 30, "no new worker")
        assert download(0) == "ok"
    finally:
        server.stop()


def test_sighup_under_load_fails_no_request(samples: Path, tmp_path: Path) -> None:
    data = copy_samples(samples, tmp_path / "data", "small", "medium")
    server = gunicorn(data, tmp_path, "sighup").start()
    stop = threading.Event()
    tally: collections.Counter[tuple[str, Outcome]] = collections.Counter()
    lock = threading.Lock()

    def load() -> None:
        session = requests.Session()
        for i in range(100_000):
            if stop.is_set():
                return
            path = OTHERS[i % len(OTHERS)]
            outcome = fetch(session, server.url + path)
            with lock:
                tally[(path, outcome)] += 1

    try:
        session = requests.Session()
        wait_for(lambda: fetch(session, f"{server.url}/collections/small/items") == 200, 60,
                 "no index")
        threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for thread in threads:
            thread.start()
        assert server.proc is not None
        for _ in range(2):
            time.sleep(2)
            server.proc.send_signal(signal.SIGHUP)
        time.sleep(3)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        print_tally("SIGHUP twice under load", tally)
        assert sum(tally.values()) > 100 and failures(tally) == {}
    finally:
        stop.set()
        server.stop()


def test_slow_header_clients_do_not_starve_serve_defaults(samples: Path, tmp_path: Path) -> None:
    """50 clients sending a header byte a second, against `geojson-api serve` defaults."""
    data = copy_samples(samples, tmp_path / "data", "small", "medium")
    server = GunicornServer(data, tmp_path / "slow.log", workers=int(os.cpu_count() or 1) * 2 + 1)
    server.start()
    slow = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
    head = b"GET /geojson/small HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    closed_after: list[float] = []
    stop = threading.Event()

    def drip() -> None:
        started = time.monotonic()
        for i in range(len(head)):
            for sock in list(slow):
                try:
                    sock.send(head[i:i + 1])
                except OSError:
                    slow.remove(sock)
                    sock.close()
                    closed_after.append(time.monotonic() - started)
            if stop.wait(1) or not slow:
                return

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        time.sleep(1)
        tally: collections.Counter[tuple[str, Outcome]] = collections.Counter()
        latencies = []
        started = time.monotonic()
        while time.monotonic() - started < 14:
            for path in ("/geojson/medium", "/api/datasets", "/geojson/small"):
                t = time.monotonic()
                tally[(path, fetch(requests.Session(), server.url + path))] += 1
                latencies.append(time.monotonic() - t)
            time.sleep(0.1)
        print_tally(f"50 slow-header clients (slowest normal request {max(latencies):.2f} s; "
                    f"{len(closed_after)} slow sockets closed)", tally)
        assert failures(tally) == {} and sum(tally.values()) > 30
        assert len(closed_after) == 50  # the header timeout (10 s) closed every one
    finally:
        stop.set()
        dripper.join(timeout=30)
        for sock in slow:
            sock.close()
        server.stop()


def test_schemathesis_finds_nothing(samples: Path, tmp_path: Path) -> None:
    """Schemathesis, every check, over /api: the server does what its document says."""
    require_module("schemathesis")
    data = copy_samples(samples, tmp_path / "data", "small")
    server = gunicorn(data, tmp_path, "schemathesis").start()
    here = Path(__file__).parent
    try:
        wait_for(lambda: fetch(requests.Session(),
                               f"{server.url}/collections/small/items") == 200, 60, "no index")
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
               "PYTHONPATH": str(here)}
        argv = [sys.executable, "-m", "schemathesis.cli", "--config-file",
                str(here / "schemathesis.toml"), "run", f"{server.url}/api", "--checks", "all",
                "--max-examples", "20", "--workers", "2", "--seed", "1"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=400, env=env,
                                cwd=tmp_path)
        summary = result.stdout[-3000:]
        print(summary)
        assert result.returncode == 0, summary
        assert " passed" in summary and "failures" not in summary
    finally:
        server.stop()
    assert "Traceback" not in server.log()
