"""The OGC API - Features servers of the feature benchmark, and how each one is started.

Every server gets the same ``large.geojson`` and listens on its own loopback port:

* ``ours``: ``geojson-api serve`` (Gunicorn, default settings, access log off);
  ready when ``GET /collections/large`` shows ``"index": {"status": "ready"}``.
* ``pygeoapi-spatialite``: pygeoapi under Gunicorn (4 workers) with its
  SQLiteGPKG provider over a SpatiaLite file made by ``ogr2ogr`` (the strongest
  file-based pygeoapi provider in ../shared/MEASUREMENTS.md).
* ``pygeoapi-geojson``: pygeoapi with its GeoJSON provider over the file itself:
  it parses the whole file on every request, so it is driven with longer runs and
  a longer wrk timeout (see ``SLOW``).
* ``tipg``: tipg under uvicorn (2 workers) over PostGIS; PostgreSQL 15 runs as
  user ``postgres`` in a temporary cluster on a free port with
  ``max_parallel_workers_per_gather=0``, loaded by ``ogr2ogr``. Its process tree
  (postmaster and backends) is sampled with uvicorn's.

Peers come from ``loadtest/peers/setup`` (venvs under ``PEERS_PREFIX``). Each
flavour knows its URLs: collection name, id mapping (every server is given the
GeoJSON ``id`` as feature id: ``-preserve_fid`` and ``-lco FID=id`` for the
databases) and the ``f=`` parameter that asks for GeoJSON.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from geojson_api.lab import LabError
from geojson_api.lab.procs import Child, Supervisor, log_tail
from geojson_api.lab.targets import HOST, free_port, http_get

PEERS_PREFIX = Path(os.environ.get("GEOJSON_PEERS_PREFIX", "/opt/geojson-peers"))
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"
PG_SETTINGS = {
    "listen_addresses": HOST,
    "max_parallel_workers_per_gather": "0",  # +80 % bbox throughput on 2 cores
    "max_connections": "100",
}
DATASET = "large"
PYGEOAPI_WORKERS = 4
TIPG_WORKERS = 2
SERVERS = ("ours", "ours-nocache", "pygeoapi-spatialite", "pygeoapi-geojson", "tipg")
PEERS = SERVERS[2:]
# Our variants: the environment each one runs with (on top of the access log off).
OURS = {
    "ours": {},  # default settings: items pages up to 1 MiB kept in the shared cache
    "ours-nocache": {"GEOJSON_API_FEATURES_CACHE_MAX_BYTES": "0"},  # every query hits the index
}
# Servers slow enough (seconds per request) to get one long round per query type.
SLOW = ("pygeoapi-geojson",)


@dataclass(frozen=True)
class Flavour:
    """How one server names the collection and asks for GeoJSON."""

    collection: str
    suffix: str = ""  # appended to every query string, e.g. "&f=json"

    def items(self, query: str) -> str:
        return f"/collections/{self.collection}/items?{query}{self.suffix}"

    def item(self, feature_id: int) -> str:
        tail = f"?{self.suffix[1:]}" if self.suffix else ""
        return f"/collections/{self.collection}/items/{feature_id}{tail}"

    def collection_path(self) -> str:
        return f"/collections/{self.collection}"


FLAVOURS = {
    "ours": Flavour(DATASET),
    "ours-nocache": Flavour(DATASET),
    "pygeoapi-spatialite": Flavour(DATASET, "&f=json"),
    "pygeoapi-geojson": Flavour(DATASET, "&f=json"),
    "tipg": Flavour(f"public.{DATASET}", "&f=geojson"),
}


@dataclass
class FeatureServer:
    """A running server: its processes (several for tipg + PostgreSQL) and what it took."""

    name: str
    port: int
    children: list[Child]
    flavour: Flavour
    startup_seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def check_alive(self) -> None:
        for child in self.children:
            child.check_alive()

    def roots(self) -> list[psutil.Process]:
        return [psutil.Process(c.pid) for c in self.children]

    def tree_roots(self) -> list[psutil.Process]:
        self.check_alive()
        return self.roots()

    def describe(self) -> str:
        return ", ".join(f"{c.name} pid {c.pid}" for c in self.children)


def get_json(url: str, timeout: float = 120.0) -> tuple[int | None, Any]:
    """(status, parsed body or None) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), None
    except (urllib.error.URLError, OSError, ValueError):
        return None, None


def wait_for(child_check: Callable[[], None], ready: Callable[[], bool], what: str,
             timeout: float, log: Path, interval: float = 0.5) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        child_check()
        if ready():
            return time.monotonic() - started
        time.sleep(interval)
    raise LabError(f"{what} not ready after {timeout:.0f} s; end of {log}:\n{log_tail(log)}")


def run_checked(argv: list[str], what: str, log: Path, *, user: str | None = None,
                env: dict[str, str] | None = None, timeout: float = 600) -> None:
    """Run a setup step to completion, its output appended to ``log``."""
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out,
                              stderr=subprocess.STDOUT, user=user, env=env, timeout=timeout,
                              process_group=0, cwd=log.parent)
    if done.returncode != 0:
        raise LabError(f"{what} failed (exit code {done.returncode}):\n{log_tail(log)}")


# -- ours ------------------------------------------------------------------------------

def geojson_api_command() -> list[str]:
    found = shutil.which("geojson-api", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "geojson_api"]


def index_state(server: FeatureServer) -> dict[str, Any] | None:
    """The ``index`` object of our collection, None while it is not there."""
    status, body = get_json(server.base + server.flavour.collection_path(), timeout=10)
    if status != 200 or not isinstance(body, dict):
        return None
    index = body.get("index")
    return index if isinstance(index, dict) else None


def wait_for_status(server: FeatureServer, state: Callable[[], dict[str, Any] | None],
                    what: str, timeout: float, log: Path) -> dict[str, Any]:
    """Wait until an artifact's ``state()`` says ``"status": "ready"`` (LabError when it
    says failed); its last state. loadtest/tiles.py waits for our tiles with it."""
    last: dict[str, Any] = {}

    def ready() -> bool:
        found = state()
        if found is not None:
            last.clear()
            last.update(found)
            if found.get("status") == "failed":
                raise LabError(f"{what} failed: {found}")
        return bool(found and found.get("status") == "ready")

    wait_for(server.check_alive, ready, what, timeout, log)
    return last


def state_bytes(data_dir: Path) -> dict[str, int]:
    """Bytes of the index files under the state folder (``index.*``, ``*.sqlite``,
    ``*.db`` or in a directory named ``index``/``indexes``/``indices``), and of it all."""
    state = data_dir / ".state"
    sizes = {"index_bytes": 0, "state_bytes": 0}
    if not state.is_dir():
        return sizes
    for path in state.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        size = path.stat().st_size
        sizes["state_bytes"] += size
        parts = {p.lower() for p in path.relative_to(state).parts[:-1]}
        if (parts & {"index", "indexes", "indices"} or path.name.startswith("index.")
                or path.suffix in {".sqlite", ".db"}):
            sizes["index_bytes"] += size
    return sizes


def start_ours(supervisor: Supervisor, name: str, workdir: Path, source: Path,
               timeout: float) -> FeatureServer:
    """Our server over its own copy of the data folder: each variant builds its index."""
    data_dir = workdir / name / "data"
    data_dir.mkdir(parents=True)
    os.link(source, data_dir / source.name)  # same bytes, no copy
    port = free_port()
    log = workdir / name / "server.log"
    argv = [*geojson_api_command(), "serve", "--data", str(data_dir), "--bind", f"{HOST}:{port}"]
    env = {**os.environ, "GEOJSON_API_ACCESS_LOG": "", "GEOJSON_API_DATA_DIR": str(data_dir),
           **OURS[name]}
    started = time.monotonic()
    child = supervisor.start(name, argv, log, env)
    server = FeatureServer(name, port, [child], FLAVOURS[name])
    last = wait_for_status(server, lambda: index_state(server), "our index", timeout, log)
    server.startup_seconds = time.monotonic() - started
    server.info = {"index": last, "seconds_until_ready": server.startup_seconds,
                   **state_bytes(data_dir), "argv": argv, "env": OURS[name]}
    return server


# -- pygeoapi --------------------------------------------------------------------------

def pygeoapi_config(port: int, provider: dict[str, Any], extent: list[float]) -> dict[str, Any]:
    """A minimal pygeoapi configuration with one collection, ``large``."""
    return {
        "server": {
            "bind": {"host": HOST, "port": port},
            "url": f"http://{HOST}:{port}",
            "mimetype": "application/json; charset=UTF-8",
            "encoding": "utf-8",
            "language": "en-US",
            "pretty_print": False,
            # Like ours: up to 10,000 per page, larger limits are clamped.
            "limits": {"default_items": 10, "max_items": 10000, "on_exceed": "throttle"},
            "map": {"url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
                    "attribution": "OpenStreetMap"},
        },
        "logging": {"level": "ERROR"},
        "metadata": {
            "identification": {"title": "benchmark", "description": "benchmark",
                               "keywords": ["benchmark"], "url": "http://127.0.0.1/",
                               "terms_of_service": "none"},
            "license": {"name": "CC-BY 4.0",
                        "url": "https://creativecommons.org/licenses/by/4.0/"},
            "provider": {"name": "benchmark"},
            "contact": {"name": "benchmark"},
        },
        "resources": {
            DATASET: {
                "type": "collection", "title": DATASET, "description": "sample data",
                "keywords": ["sample"],
                "extents": {"spatial": {
                    "bbox": extent, "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}},
                "providers": [provider],
            },
        },
    }


def make_spatialite(source: Path, target: Path, log: Path) -> None:
    run_checked(["ogr2ogr", "-f", "SQLite", "-dsco", "SPATIALITE=YES", str(target), str(source),
                 "-nln", DATASET, "-nlt", "GEOMETRY", "-preserve_fid", "-lco", "FID=id",
                 "-lco", "GEOMETRY_NAME=geom"], "ogr2ogr to SpatiaLite", log)


def start_pygeoapi(supervisor: Supervisor, name: str, workdir: Path, data_dir: Path,
                   extent: list[float], timeout: float) -> FeatureServer:
    venv = PEERS_PREFIX / "pygeoapi" / "bin"
    if not (venv / "gunicorn").exists():
        raise LabError(f"{venv / 'gunicorn'} is missing: run loadtest/peers/setup")
    folder = workdir / name
    folder.mkdir()
    log = folder / "server.log"
    source = data_dir / f"{DATASET}.geojson"
    if name == "pygeoapi-spatialite":
        db = folder / f"{DATASET}.sqlite"
        began = time.monotonic()
        make_spatialite(source, db, log)
        load = {"load_seconds": time.monotonic() - began, "db_bytes": db.stat().st_size}
        provider = {"type": "feature", "name": "SQLiteGPKG", "data": str(db),
                    "id_field": "id", "table": DATASET}
    else:
        load = {}
        provider = {"type": "feature", "name": "GeoJSON", "data": str(source), "id_field": "id"}
    port = free_port()
    config = folder / "pygeoapi-config.json"  # JSON is YAML
    config.write_text(json.dumps(pygeoapi_config(port, provider, extent), indent=1))
    openapi = folder / "openapi.yml"
    env = {**os.environ, "PYGEOAPI_CONFIG": str(config), "PYGEOAPI_OPENAPI": str(openapi)}
    run_checked([str(venv / "pygeoapi"), "openapi", "generate", str(config),
                 "--output-file", str(openapi)], "pygeoapi openapi generate", log, env=env)
    # The GeoJSON provider needs minutes per request under load: a huge worker timeout.
    argv = [str(venv / "gunicorn"), "--workers", str(PYGEOAPI_WORKERS), "--bind",
            f"{HOST}:{port}", "--timeout", "900", "--chdir", str(folder),
            "pygeoapi.flask_app:APP"]
    started = time.monotonic()
    child = supervisor.start(name, argv, log, env)
    server = FeatureServer(name, port, [child], FLAVOURS[name])
    url = server.base + server.flavour.collection_path()
    server.startup_seconds = wait_for(child.check_alive, lambda: http_get(url)[0] == 200,
                                      name, timeout, log)
    server.startup_seconds = time.monotonic() - started
    server.info = {"argv": argv, "provider": provider, **load}
    return server


# -- tipg over PostgreSQL + PostGIS ----------------------------------------------------

def pg_ready(port: int) -> bool:
    done = subprocess.run([str(PG_BIN / "pg_isready"), "-q", "-h", HOST, "-p", str(port)],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    return done.returncode == 0


def start_postgres(supervisor: Supervisor, workdir: Path, data_dir: Path,
                   timeout: float) -> tuple[Child, int, dict[str, Any]]:
    """A throwaway cluster owned by ``postgres`` (initdb refuses root), loaded by ogr2ogr."""
    # Under /tmp, not in the run folder: that one is root's, mode 0700.
    cluster_root = Path(tempfile.mkdtemp(prefix="features-pg-"))
    account = pwd.getpwnam(PG_USER)
    os.chown(cluster_root, account.pw_uid, account.pw_gid)
    log = workdir / "postgres.log"
    info: dict[str, Any] = {"cluster": str(cluster_root), "settings": PG_SETTINGS}
    supervisor.cleanups.append(lambda: shutil.rmtree(cluster_root, ignore_errors=True))
    pgdata = cluster_root / "data"
    run_checked([str(PG_BIN / "initdb"), "-D", str(pgdata), "-U", PG_USER, "--auth=trust",
                 "-E", "UTF8", "--no-sync"], "initdb", log, user=PG_USER)
    port = free_port()
    settings = {**PG_SETTINGS, "port": str(port), "unix_socket_directories": str(cluster_root)}
    argv = [str(PG_BIN / "postgres"), "-D", str(pgdata)]
    for key, value in settings.items():
        argv += ["-c", f"{key}={value}"]
    # SIGINT is PostgreSQL's "fast" shutdown: clients are disconnected.
    child = supervisor.start("postgres", argv, log, user=PG_USER, stop_signal=signal.SIGINT)
    wait_for(child.check_alive, lambda: pg_ready(port), "PostgreSQL", timeout, log)
    dsn = f"host={HOST} port={port} user={PG_USER} dbname=postgres"
    began = time.monotonic()
    run_checked(["psql", dsn, "-v", "ON_ERROR_STOP=1", "-c", "CREATE EXTENSION postgis"],
                "CREATE EXTENSION postgis", log)
    run_checked(["ogr2ogr", "-f", "PostgreSQL", f"PG:{dsn}",
                 str(data_dir / f"{DATASET}.geojson"), "-nln", DATASET, "-nlt", "GEOMETRY",
                 "-preserve_fid", "-lco", "FID=id", "-lco", "GEOMETRY_NAME=geom",
                 "-lco", "SPATIAL_INDEX=GIST"], "ogr2ogr to PostgreSQL", log)
    run_checked(["psql", dsn, "-v", "ON_ERROR_STOP=1", "-c", f"VACUUM ANALYZE {DATASET}"],
                "VACUUM ANALYZE", log)
    info["load_seconds"] = time.monotonic() - began
    info["postgis"] = _first_output(["psql", dsn, "-Atc", "SELECT postgis_lib_version()"])
    info["table_bytes"] = _first_output(
        ["psql", dsn, "-Atc", f"SELECT pg_total_relation_size('{DATASET}')"])
    info["port"] = port
    return child, port, info


def start_tipg(supervisor: Supervisor, workdir: Path, data_dir: Path,
               timeout: float) -> FeatureServer:
    venv = PEERS_PREFIX / "tipg" / "bin"
    if not (venv / "uvicorn").exists():
        raise LabError(f"{venv / 'uvicorn'} is missing: run loadtest/peers/setup")
    postgres, pg_port, info = start_postgres(supervisor, workdir, data_dir, timeout)
    folder = workdir / "tipg"
    folder.mkdir()
    log = folder / "server.log"
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"postgresql://{PG_USER}@{HOST}:{pg_port}/postgres",
           "TIPG_DB_SCHEMAS": '["public"]', "TIPG_DB_TABLES": f'["public.{DATASET}"]'}
    argv = [str(venv / "uvicorn"), "tipg.main:app", "--host", HOST, "--port", str(port),
            "--workers", str(TIPG_WORKERS), "--no-access-log", "--log-level", "warning"]
    started = time.monotonic()
    child = supervisor.start("tipg", argv, log, env)
    server = FeatureServer("tipg", port, [child, postgres], FLAVOURS["tipg"])
    url = server.base + server.flavour.collection_path()
    wait_for(server.check_alive, lambda: http_get(url)[0] == 200, "tipg", timeout, log)
    server.startup_seconds = time.monotonic() - started
    server.info = {"argv": argv, "postgres": info}
    return server


def start_server(supervisor: Supervisor, name: str, workdir: Path, data_dir: Path,
                 extent: list[float], timeout: float) -> FeatureServer:
    if name in OURS:
        return start_ours(supervisor, name, workdir, data_dir / f"{DATASET}.geojson", timeout)
    if name == "tipg":
        return start_tipg(supervisor, workdir, data_dir, timeout)
    return start_pygeoapi(supervisor, name, workdir, data_dir, extent, timeout)


def peer_versions() -> dict[str, str | None]:
    """Versions of the peers' main packages, read from their venvs."""
    versions: dict[str, str | None] = {}
    for venv, packages in (("pygeoapi", ("pygeoapi", "gunicorn", "Flask")),
                           ("tipg", ("tipg", "uvicorn", "asyncpg"))):
        python = PEERS_PREFIX / venv / "bin" / "python"
        for package in packages:
            versions[package if venv != "pygeoapi" or package == "pygeoapi"
                     else f"pygeoapi/{package}"] = _venv_version(python, package)
    versions["postgresql"] = _first_output([str(PG_BIN / "postgres"), "--version"])
    versions["gdal"] = _first_output(["ogr2ogr", "--version"])
    return versions


def _venv_version(python: Path, package: str) -> str | None:
    if not python.exists():
        return None
    return _first_output([str(python), "-c", "import importlib.metadata as m; "
                          f"print(m.version({package!r}))"])


def _first_output(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines()
    return lines[0] if lines and done.returncode == 0 else None
