"""The Kubernetes manifests in deploy/k8s: valid offline, and consistent with the app.

Every resource is checked with kubernetes-validate's strict schemas (unknown
fields are errors), then the manifests are read as plain YAML to check what a
schema cannot: the app's health probes and settings, selectors that select
existing pods, the HorizontalPodAutoscaler's target, the Nginx init container,
the restricted Pod Security profile the namespace enforces. No cluster is
needed; docs/kubernetes.md says what this leaves unchecked.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from geojson_api.settings import Settings, table

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"
MANIFESTS = sorted(p for p in K8S.glob("*.y*ml") if p != KUSTOMIZATION)
NAMESPACE = "geojson-api"
IN_CI = os.environ.get("CI", "").lower() == "true"

# The oldest Kubernetes the manifests are written for: the preStop `sleep`
# action is on by default from 1.30. They are also checked against the newest
# version the installed kubernetes-validate knows.
KUBERNETES_VERSION = "1.30"

APP = "geojson-api"  # the app's Deployment, Service, HPA and PDB
NGINX = "geojson-api-nginx"  # the Nginx Deployment and Service
REDIS = "redis"

# ConfigMap keys allowed although table() does not list them (yet). Empty:
# every key the ConfigMap sets is a setting of the app.
PENDING_SETTINGS: frozenset[str] = frozenset()

CLUSTER_SCOPED = {"Namespace"}

# Metrics sidecars (deploy/prometheus/kubernetes.yml scrapes them) and the
# namespace Prometheus scrapes from (networkpolicy.yaml).
EXPORTERS = {"nginx-exporter", "redis-exporter"}
MONITORING_NAMESPACE = "monitoring"


def _module(name: str) -> Any:
    """Import a test dependency; skip without it, but fail under CI=true."""
    try:
        return importlib.import_module(name)
    except ImportError:
        message = f"Python module {name} is not installed (pip install -e '.[test]')"
        if IN_CI:
            pytest.fail(message + "; CI must install the test extra")
        pytest.skip(message)


@cache
def _documents(path: Path) -> list[dict[str, Any]]:
    yaml = _module("yaml")
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert all(isinstance(doc, dict) for doc in docs), f"{path.name}: not a mapping"
    return docs


def _resources() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in _documents(path)]


def _find(kind: str, name: str) -> dict[str, Any]:
    found = [r for r in _resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name!r}, found {len(found)}"
    return found[0]


def _deployments() -> list[dict[str, Any]]:
    return [r for r in _resources() if r["kind"] == "Deployment"]


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def _containers(pod: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from pod.get("initContainers", [])
    yield from pod["containers"]


def _labels(deployment: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def _selected(selector: dict[str, str]) -> list[dict[str, Any]]:
    """The Deployments whose pods carry every label of ``selector``."""
    assert selector, "an empty selector selects everything"
    return [d for d in _deployments() if selector.items() <= _labels(d).items()]


def _ports(deployment: dict[str, Any]) -> dict[str | int, int]:
    """Container ports of a Deployment's pods, by name and by number."""
    ports: dict[str | int, int] = {}
    for container in _pod(deployment)["containers"]:
        for port in container.get("ports", []):
            ports[port["containerPort"]] = port["containerPort"]
            if "name" in port:
                ports[port["name"]] = port["containerPort"]
    return ports


def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    """The container ``name`` of a pod, which runs one server and maybe metrics exporters."""
    containers = {c["name"]: c for c in pod["containers"]}
    assert len(containers) == len(pod["containers"]), "two containers share a name"
    assert len(set(containers) - EXPORTERS) == 1, sorted(containers)
    return containers[name]


def _mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


def _app_container() -> dict[str, Any]:
    containers = _pod(_find("Deployment", APP))["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _env() -> dict[str, str]:
    data: dict[str, str] = _find("ConfigMap", "geojson-api-env")["data"]
    return data


def _cpus(quantity: str | int) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


# -- schemas --------------------------------------------------------------------


@pytest.mark.parametrize("version", [KUBERNETES_VERSION, "newest"])
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_passes_strict_schema_validation(path: Path, version: str) -> None:
    kv = _module("kubernetes_validate")
    if version == "newest":
        version = kv.latest_version()
    docs = _documents(path)
    assert docs, f"{path.name} holds no resource"
    for doc in docs:
        what = f"{path.name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        problem = None
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as e:
            where = ".".join(str(part) for part in e.path)
            problem = f"{what} is invalid for Kubernetes {version}: {where}: {e.message}"
        except kv.SchemaNotFoundError as e:
            # The command line only warns here; an unknown kind or apiVersion
            # is a mistake in these manifests.
            problem = f"{what}: {e.message}"
        if problem is not None:
            pytest.fail(problem)  # outside `except`: no jsonschema traceback


def test_kustomization_lists_every_manifest() -> None:
    kustomization = _documents(KUSTOMIZATION)[0]
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["namespace"] == NAMESPACE
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    assert set(listed) == {p.name for p in MANIFESTS}
    assert {image["name"] for image in kustomization.get("images", [])} <= {APP}


def test_kustomize_builds_every_resource() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (optional: `kubectl kustomize` check)")
    built = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True,
                           text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    yaml = _module("yaml")
    rendered = [d for d in yaml.safe_load_all(built.stdout) if d is not None]
    key = [(r["kind"], r["metadata"]["name"]) for r in _resources()]
    assert sorted((r["kind"], r["metadata"]["name"]) for r in rendered) == sorted(key)


def test_every_resource_lives_in_the_namespace() -> None:
    names = set()
    for resource in _resources():
        meta = resource["metadata"]
        key = (resource["kind"], meta["name"])
        assert key not in names, f"duplicate {key}"
        names.add(key)
        if resource["kind"] in CLUSTER_SCOPED:
            assert meta["name"] == NAMESPACE and "namespace" not in meta
        else:
            assert meta.get("namespace") == NAMESPACE, key
    assert ("Namespace", NAMESPACE) in names


# -- the app --------------------------------------------------------------------


def test_app_containers_run_as_non_root_and_probe_health() -> None:
    app = _find("Deployment", APP)
    pod = _pod(app)
    ports = _ports(app)
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in _containers(pod):
        assert container["securityContext"]["runAsNonRoot"] is True, container["name"]
    for container in pod["containers"]:
        probes = {kind: container[f"{kind}Probe"]["httpGet"]
                  for kind in ("liveness", "readiness", "startup")}
        assert probes["liveness"]["path"] == "/healthz"
        assert probes["readiness"]["path"] == "/readyz"
        assert probes["startup"]["path"] == "/healthz"
        for probe in probes.values():
            assert ports.get(probe["port"]) == 8000, probe


def test_app_settings_match_its_volumes_and_port() -> None:
    env = _env()
    container = _app_container()
    assert container["envFrom"] == [{"configMapRef": {"name": "geojson-api-env"}}]
    assert env["GEOJSON_API_BIND"] == "0.0.0.0:8000"
    assert _ports(_find("Deployment", APP))["http"] == 8000
    mounts = _mounts(container)
    assert mounts[env["GEOJSON_API_DATA_DIR"]]["readOnly"] is True
    assert not mounts[env["GEOJSON_API_STATE_DIR"]].get("readOnly", False)
    assert "/tmp" in mounts, "readOnlyRootFilesystem needs a writable /tmp for Gunicorn"
    volumes = {v["name"]: v for v in _pod(_find("Deployment", APP))["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
              for v in volumes.values() if "persistentVolumeClaim" in v}
    assert claims[mounts[env["GEOJSON_API_DATA_DIR"]]["name"]] == "geojson-api-data"
    assert claims[mounts[env["GEOJSON_API_STATE_DIR"]]["name"]] == "geojson-api-state"


def test_configmap_keys_are_settings_of_the_app() -> None:
    env = _env()
    known = {row.env for row in table()}
    for key, value in env.items():
        assert key.startswith("GEOJSON_API_"), key
        assert isinstance(value, str), f"{key}: quote it, ConfigMap values are strings"
        assert key in known or key in PENDING_SETTINGS, f"{key} is not a setting"
    # The values parse and pass the app's own validation.
    Settings.from_env({k: v for k, v in env.items() if k in known})


def test_workers_follow_the_cpu_limit() -> None:
    limits = _app_container()["resources"]["limits"]
    assert int(_env()["GEOJSON_API_WORKERS"]) == 2 * _cpus(limits["cpu"]) + 1


def test_app_drains_before_it_is_killed() -> None:
    pod = _pod(_find("Deployment", APP))
    graceful = int(_env().get("GEOJSON_API_GRACEFUL_TIMEOUT",
                              Settings.from_env({}).graceful_timeout))
    assert graceful == 30
    sleep = _app_container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert sleep > 0
    assert pod["terminationGracePeriodSeconds"] > sleep + graceful


def test_app_pods_spread_over_nodes() -> None:
    app = _find("Deployment", APP)
    assert app["spec"]["replicas"] == 2
    constraints = _pod(app)["topologySpreadConstraints"]
    assert "kubernetes.io/hostname" in {c["topologyKey"] for c in constraints}
    for constraint in constraints:
        assert _selected(constraint["labelSelector"]["matchLabels"]) == [app]


def test_hpa_scales_the_app_on_cpu() -> None:
    hpa = _find("HorizontalPodAutoscaler", APP)
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
    assert _find("Deployment", target["name"]) is _find("Deployment", APP)
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert "cpu" in _app_container()["resources"]["requests"], "utilization needs a request"


def test_pdbs_select_existing_pods() -> None:
    pdbs = [r for r in _resources() if r["kind"] == "PodDisruptionBudget"]
    assert APP in {p["metadata"]["name"] for p in pdbs}
    for pdb in pdbs:
        assert pdb["spec"]["minAvailable"] == 1
        selected = _selected(pdb["spec"]["selector"]["matchLabels"])
        assert len(selected) == 1, pdb["metadata"]["name"]
    app_pdb = _find("PodDisruptionBudget", APP)
    assert _selected(app_pdb["spec"]["selector"]["matchLabels"]) == [_find("Deployment", APP)]


# -- wiring ---------------------------------------------------------------------


def test_deployments_select_their_own_pods() -> None:
    for deployment in _deployments():
        assert _selected(deployment["spec"]["selector"]["matchLabels"]) == [deployment]


def test_services_select_existing_pods_and_ports() -> None:
    services = [r for r in _resources() if r["kind"] == "Service"]
    assert {s["metadata"]["name"] for s in services} == {APP, NGINX, REDIS}
    for service in services:
        selected = _selected(service["spec"]["selector"])
        assert len(selected) == 1, service["metadata"]["name"]
        ports = _ports(selected[0])
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (service["metadata"]["name"], port)
    app_service = _find("Service", APP)
    assert app_service["spec"]["type"] == "ClusterIP"
    assert [p["port"] for p in app_service["spec"]["ports"]] == [8000]


def test_redis_is_the_shared_cache() -> None:
    url = urlsplit(_env()["GEOJSON_API_REDIS_URL"])
    service = _find("Service", url.hostname or "")
    assert url.port in {p["port"] for p in service["spec"]["ports"]}
    container = _container(_pod(_find("Deployment", REDIS)), "redis")
    args = container["args"]
    assert args[args.index("--maxmemory") + 1] == "256mb"
    assert args[args.index("--maxmemory-policy") + 1] == "allkeys-lru"
    assert "memory" in container["resources"]["limits"]


def test_nginx_renders_its_config_with_the_app_image() -> None:
    nginx = _find("Deployment", NGINX)
    assert nginx["spec"]["replicas"] == 2
    pod = _pod(nginx)
    (init,) = pod["initContainers"]
    server = _container(pod, "nginx")
    assert init["image"] == _app_container()["image"]
    assert server["image"] == "nginx:1.27-bookworm"
    command = init["command"]
    assert command[:2] == ["geojson-api", "nginx-config"]
    options = dict(zip(command[2::2], command[3::2], strict=True))
    app_port = _find("Service", APP)["spec"]["ports"][0]["port"]
    assert options["--upstream"] == f"{APP}:{app_port}"
    assert int(options["--listen"]) == _ports(nginx)["http"]
    output = Path(options["--output"])
    conf_d = _mounts(init)[str(output.parent)]["name"]
    assert _mounts(server)["/etc/nginx/conf.d"]["name"] == conf_d
    # Offload: Nginx reads the state volume, read-only, where the app writes it.
    state_dir = _env()["GEOJSON_API_STATE_DIR"]
    assert _env()["GEOJSON_API_OFFLOAD"] == "nginx"
    state = _mounts(server)[state_dir]
    assert state["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[state["name"]]["persistentVolumeClaim"]["claimName"] == "geojson-api-state"


def test_volume_claims_exist_with_the_right_access_modes() -> None:
    claims = {r["metadata"]["name"]: r for r in _resources()
              if r["kind"] == "PersistentVolumeClaim"}
    assert claims["geojson-api-data"]["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert claims["geojson-api-state"]["spec"]["accessModes"] == ["ReadWriteMany"]
    for deployment in _deployments():
        for volume in _pod(deployment).get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
            if "configMap" in volume:
                _find("ConfigMap", volume["configMap"]["name"])


def test_ingress_routes_to_nginx_over_tls() -> None:
    ingress = _find("Ingress", APP)
    assert ingress["apiVersion"] == "networking.k8s.io/v1"
    assert all(tls["secretName"] for tls in ingress["spec"]["tls"])
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == NGINX
            ports = _find("Service", NGINX)["spec"]["ports"]
            wanted = backend["port"]
            assert any(p.get("name") == wanted.get("name") or p["port"] == wanted.get("number")
                       for p in ports), wanted


def test_network_policies_select_existing_pods_and_ports() -> None:
    policies = [r for r in _resources() if r["kind"] == "NetworkPolicy"]
    assert policies
    allowed = set()
    for policy in policies:
        spec = policy["spec"]
        selector = spec["podSelector"].get("matchLabels", {})
        if not selector:  # the namespace-wide default deny
            assert "ingress" not in spec
            continue
        (target,) = _selected(selector)
        for rule in spec.get("ingress", []):
            for port in rule["ports"]:
                assert port["port"] in _ports(target), (policy["metadata"]["name"], port)
            for peer in rule.get("from", [{}]):
                if "namespaceSelector" in peer:  # another namespace: see the metrics test
                    continue
                sources = _selected(peer["podSelector"]["matchLabels"]) if peer else [None]
                for source in sources:
                    name = source["metadata"]["name"] if source else "*"
                    allowed |= {(name, target["metadata"]["name"], p["port"])
                                for p in rule["ports"]}
    assert (NGINX, APP, 8000) in allowed
    assert (APP, REDIS, 6379) in allowed
    assert not {(src, dst) for src, dst, _ in allowed if dst in {APP, REDIS}} - {
        (NGINX, APP), (APP, REDIS)}


def test_every_pod_meets_the_restricted_pod_security_profile() -> None:
    """The namespace enforces `restricted`; a pod that breaks it is refused at apply."""
    namespace = _find("Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    problems = []
    for deployment in _deployments():
        pod = _pod(deployment)
        pod_security = pod.get("securityContext", {})
        name = deployment["metadata"]["name"]
        if pod.get("enableServiceLinks") is not False:
            # Service links would put GEOJSON_API_SERVICE_HOST & co. among the settings.
            problems.append(f"{name}: enableServiceLinks must be false")
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{name}: automountServiceAccountToken must be false")
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(key):
                problems.append(f"{name}: {key}")
        for volume in pod.get("volumes", []):
            if "hostPath" in volume:
                problems.append(f"{name}: hostPath volume {volume['name']}")
        for container in _containers(pod):
            where = f"{name}/{container['name']}"
            security = container.get("securityContext", {})
            both = {**pod_security, **security}.get
            if both("runAsNonRoot") is not True or both("runAsUser") in (None, 0):
                problems.append(f"{where}: must run as a numeric non-root user")
            if (both("seccompProfile") or {}).get("type") != "RuntimeDefault":
                problems.append(f"{where}: seccompProfile RuntimeDefault")
            if security.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation must be false")
            if security.get("capabilities") != {"drop": ["ALL"]}:
                problems.append(f"{where}: capabilities must drop ALL and add none")
            if security.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem")
            if security.get("privileged"):
                problems.append(f"{where}: privileged")
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(resources.get(kind, {})):
                    problems.append(f"{where}: {kind} for cpu and memory")
    assert not problems, "\n".join(problems)


# -- Nginx main configuration -----------------------------------------------------


def _nginx() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                      else None)
    if found is None:
        if IN_CI:
            pytest.fail("nginx is not installed (scripts/system-deps installs it)")
        pytest.skip("nginx is not installed")
    return found


def _nginx_test(tmp_path: Path, site: str | None) -> None:
    """`nginx -t` on the ConfigMap's nginx.conf, its paths moved under tmp_path."""
    main = _find("ConfigMap", "geojson-api-nginx")["data"]["nginx.conf"]
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir(parents=True)
    if site is not None:
        (conf_d / "default.conf").write_text(site)
    for old, new in (("/etc/nginx/conf.d/", f"{conf_d}/"),
                     ("/var/cache/nginx/", f"{tmp_path}/cache-"),
                     ("/tmp/nginx.pid", f"{tmp_path}/nginx.pid"),
                     ("error_log /dev/stderr", f"error_log {tmp_path}/error.log")):
        assert old in main, old
        main = main.replace(old, new)
    assert not re.search(r"^\s*(user|daemon)\s", main, re.MULTILINE), (
        "no `user` (unprivileged) nor `daemon` (the image passes -g 'daemon off;')")
    conf = tmp_path / "nginx.conf"
    conf.write_text(main)
    checked = subprocess.run([_nginx(), "-t", "-q", "-p", str(tmp_path), "-e", "stderr",
                              "-c", str(conf), "-g", "daemon off;"],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr


def test_nginx_main_config_is_valid(tmp_path: Path) -> None:
    _nginx_test(tmp_path, site=None)


def test_nginx_main_config_takes_the_rendered_site(tmp_path: Path) -> None:
    """The init container's command, run here with a resolvable upstream."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOJSON_API_")}
    env.update(_env())
    init = _pod(_find("Deployment", NGINX))["initContainers"][0]
    command = [sys.executable, "-m", "geojson_api", *init["command"][1:]]
    command[command.index("--upstream") + 1] = "127.0.0.1:8000"
    site = tmp_path / "site.conf"
    command[command.index("--output") + 1] = str(site)
    command += ["--cache-dir", str(tmp_path / "cache")]  # /var/cache/nginx is the pod's
    rendered = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    if "invalid choice: 'nginx-config'" in rendered.stderr:
        pytest.skip("`geojson-api nginx-config` is not in this checkout yet")
    assert rendered.returncode == 0, rendered.stderr
    _nginx_test(tmp_path / "nginx", site=site.read_text())


# -- metrics (deploy/prometheus/kubernetes.yml, docs/operations.md) -----------

SCRAPED = {APP: "geojson-api", NGINX: "nginx", REDIS: "redis"}  # Deployment -> scrape job


def _annotations(deployment: dict[str, Any]) -> dict[str, str]:
    annotations: dict[str, str] = deployment["spec"]["template"]["metadata"].get(
        "annotations", {})
    return annotations


def _relabel(rules: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, str] | None:
    """Prometheus's keep/replace relabelling (the subset kubernetes.yml uses)."""
    labels = dict(labels)
    for rule in rules:
        value = ";".join(labels.get(name, "") for name in rule["source_labels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        action = rule.get("action", "replace")
        if action == "keep":
            if match is None:
                return None
        elif action == "replace":
            if match is not None:
                replacement = re.sub(r"\$(\d+)", r"\\\1", rule.get("replacement", "$1"))
                labels[rule["target_label"]] = match.expand(replacement)
        else:
            raise AssertionError(f"relabel action {action} is not emulated here")
    return labels


def _discovered(deployment: dict[str, Any]) -> dict[str, str]:
    """The labels Kubernetes service discovery gives one pod of ``deployment``."""
    def name(key: str) -> str:
        return re.sub(r"[^a-zA-Z0-9_]", "_", key)

    labels = {"__address__": "10.0.0.7", "__metrics_path__": "/metrics",
              "__meta_kubernetes_pod_name": deployment["metadata"]["name"] + "-abc12"}
    for key, value in _labels(deployment).items():
        labels[f"__meta_kubernetes_pod_label_{name(key)}"] = value
    for key, value in _annotations(deployment).items():
        labels[f"__meta_kubernetes_pod_annotation_{name(key)}"] = value
    return labels


def test_scraped_pods_annotate_a_port_they_serve_metrics_on() -> None:
    for name in SCRAPED:
        deployment = _find("Deployment", name)
        annotations = _annotations(deployment)
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/path"] == "/metrics", name
        assert int(annotations["prometheus.io/port"]) in _ports(deployment), name


def test_exporter_sidecars_read_their_neighbour_on_loopback() -> None:
    from geojson_api.nginxconf import STATUS_LISTEN, STATUS_PATH

    nginx = _container(_pod(_find("Deployment", NGINX)), "nginx-exporter")
    assert f"--nginx.scrape-uri=http://{STATUS_LISTEN}{STATUS_PATH}" in nginx["args"]
    redis = _container(_pod(_find("Deployment", REDIS)), "redis-exporter")
    redis_port = _ports(_find("Deployment", REDIS))["redis"]
    assert f"--redis.addr=redis://127.0.0.1:{redis_port}" in redis["args"]
    for deployment, container in ((NGINX, nginx), (REDIS, redis)):
        port = int(_annotations(_find("Deployment", deployment))["prometheus.io/port"])
        assert f"--web.listen-address=:{port}" in container["args"]
        assert _ports(_find("Deployment", deployment))[container["ports"][0]["name"]] == port


def test_scrape_config_finds_each_pod_under_its_job() -> None:
    yaml = _module("yaml")
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "kubernetes.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(SCRAPED.values())
    for job in jobs.values():
        (sd,) = job["kubernetes_sd_configs"]
        assert sd["role"] == "pod" and sd["namespaces"]["names"] == [NAMESPACE]
    for deployment in _deployments():
        name = deployment["metadata"]["name"]
        found = {job_name: _relabel(job["relabel_configs"], _discovered(deployment))
                 for job_name, job in jobs.items()}
        kept = {job_name: labels for job_name, labels in found.items() if labels is not None}
        if name not in SCRAPED:
            assert not kept, name
            continue
        assert set(kept) == {SCRAPED[name]}, name
        labels = kept[SCRAPED[name]]
        port = _annotations(deployment)["prometheus.io/port"]
        assert labels["__address__"] == f"10.0.0.7:{port}", name
        assert labels["__metrics_path__"] == "/metrics"


def test_only_prometheus_comes_from_outside_and_only_to_metrics_ports() -> None:
    from_outside = set()
    for policy in (r for r in _resources() if r["kind"] == "NetworkPolicy"):
        spec = policy["spec"]
        for rule in spec.get("ingress", []):
            for peer in rule.get("from", []):
                if "namespaceSelector" not in peer:
                    continue
                assert "podSelector" not in peer, policy["metadata"]["name"]
                assert peer["namespaceSelector"]["matchLabels"] == {
                    "kubernetes.io/metadata.name": MONITORING_NAMESPACE}
                (target,) = _selected(spec["podSelector"]["matchLabels"])
                from_outside |= {(target["metadata"]["name"], p["port"]) for p in rule["ports"]}
    assert from_outside == {(name, int(_annotations(_find("Deployment", name))[
        "prometheus.io/port"])) for name in SCRAPED}
