"""The install: what `pip install geojson-api` brings, what each extra adds, what the code imports.

The dependency closure is computed from the installed distributions' own
metadata (no network): ``pyproject.toml`` names the direct requirements, and
each installed distribution names its own. Missing extras are simulated in a
real subprocess that blocks the package with ``sys.modules[name] = None``,
which is exactly what ``import`` and ``importlib.util.find_spec`` honour.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from geojson_api import extras

from .test_cli import assert_one_line, clean_env

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "geojson_api"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
NAME = canonicalize_name(PROJECT["name"])
MAX_DISTRIBUTIONS = 20  # issue 10: `pip install .` installs at most 20 distributions
# What `geojson-api serve` runs on the embedded defaults: the command, the
# WSGI app and the Gunicorn config with its gthread worker.
ENTRY_MODULES = ["geojson_api", "geojson_api.__main__", "geojson_api.cli", "geojson_api.wsgi",
                 "geojson_api.gunicorn_conf", "geojson_api.gunicorn_workers"]


# -- the dependency closure, from installed metadata ------------------------------

def _wanted(req: Requirement, extras_asked: frozenset[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": extra}) for extra in extras_asked or {""})


def _own_requirements(extras_asked: frozenset[str]) -> list[Requirement]:
    reqs = [Requirement(text) for text in PROJECT["dependencies"]]
    for extra in sorted(extras_asked):
        reqs += [Requirement(text) for text in PROJECT["optional-dependencies"][extra]]
    return reqs


def closure(extras_asked: frozenset[str] = frozenset()) -> tuple[set[str], set[str]]:
    """(distributions installed by ``pip install .[extras]``, those not installed here)."""
    found, missing = {NAME}, set()
    queue = [(req, frozenset(req.extras)) for req in _own_requirements(extras_asked)]
    seen: set[tuple[str, frozenset[str]]] = set()
    while queue:
        req, asked = queue.pop()
        name = canonicalize_name(req.name)
        if (name, asked) in seen:
            continue
        seen.add((name, asked))
        if name == NAME:  # an extra naming other extras of this project
            queue += [(r, frozenset(r.extras)) for r in _own_requirements(asked)]
            continue
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            missing.add(name)
            continue
        found.add(name)
        for text in requires:
            sub = Requirement(text)
            if _wanted(sub, asked):
                queue.append((sub, frozenset(sub.extras)))
    return found, missing


def test_runtime_closure_is_small_and_installed() -> None:
    found, missing = closure()
    assert not missing, f"runtime dependencies not installed: {sorted(missing)}"
    assert len(found) <= MAX_DISTRIBUTIONS, (
        f"`pip install .` would install {len(found)} distributions: {sorted(found)}")


def test_the_default_needs_no_redis_celery_or_gevent() -> None:
    found, _ = closure()
    assert not found & {"redis", "celery", "kombu", "gevent", "greenlet", "psutil", "locust",
                         "opentelemetry-api", "opentelemetry-sdk"}


def test_extras_are_the_documented_ones() -> None:
    optional = PROJECT["optional-dependencies"]
    assert set(optional) == {"redis", "worker", "gevent", "bench", "tracing", "test", "dev"}
    test_names = {canonicalize_name(Requirement(t).name) for t in optional["test"]}
    dev_names = {canonicalize_name(Requirement(t).name) for t in optional["dev"]}
    assert {"ruff", "mypy"} <= dev_names and not test_names & dev_names
    own = [Requirement(t) for t in optional["test"] if canonicalize_name(Requirement(t).name)
           == NAME]
    assert own and set(own[0].extras) == {"redis", "worker", "gevent", "bench", "tracing"}


@pytest.mark.parametrize("extra", sorted(extras.EXTRAS))
def test_extra_modules_come_with_the_extra(extra: str) -> None:
    """What geojson_api.extras looks for is what the extra of pyproject.toml installs."""
    found, missing = closure(frozenset({extra}))
    assert not missing, f"{extra}: not installed here: {sorted(missing)}"
    providers = metadata.packages_distributions()
    for module in extras.EXTRAS[extra]:
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        assert dists & found, f"{module} is not installed by the {extra} extra"


# -- every import of src/ is declared ----------------------------------------------

def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(absolute module imported, at module level?) for every import in ``path``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            nested = top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef
                                            | ast.Lambda)
            if isinstance(child, ast.Import):
                found.extend((alias.name, nested) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.rsplit(".", child.level - 1)[0]
                    base = f"{anchor}.{base}" if base else anchor
                found.append((base, nested))
                found.extend((f"{base}.{alias.name}", nested) for alias in child.names)
            visit(child, nested)

    visit(ast.parse(path.read_text()), True)
    return found


def _graph() -> dict[str, list[tuple[str, bool]]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _reachable(graph: dict[str, list[tuple[str, bool]]]) -> set[str]:
    """Modules imported at load time from the entry modules (parents included)."""
    seen: set[str] = set()
    todo = list(ENTRY_MODULES)
    while todo:
        module = todo.pop()
        if module in seen or module not in graph:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += [target for target, top in graph[module] if top]
    return seen


def _third_party(module: str) -> str | None:
    top = module.split(".")[0]
    if not top or top == "geojson_api" or top in sys.stdlib_module_names:
        return None
    return top


def _declared(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(text).name) for text in requirements}


def test_every_import_is_declared() -> None:
    """Load-time imports of what serve runs are runtime dependencies; the rest an extra's."""
    graph = _graph()
    reachable = _reachable(graph)
    providers = metadata.packages_distributions()
    runtime = _declared(PROJECT["dependencies"])
    optional = set().union(*(_declared(reqs) for extra, reqs in
                             PROJECT["optional-dependencies"].items() if extra != "test"))
    wrong = []
    for module, imports in graph.items():
        for target, top in imports:
            third = _third_party(target)
            if third is None:
                continue
            dists = {canonicalize_name(d) for d in providers.get(third, [third])}
            eager = top and module in reachable
            allowed = runtime if eager else runtime | optional
            if not dists & allowed:
                when = "when serve loads" if eager else "on demand"
                wrong.append(f"{module} imports {third} {when}: {sorted(dists)} not declared")
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_the_checker_sees_lazy_and_eager_imports() -> None:
    """The walk above is only as good as its parse: check it on the modules we know."""
    graph = _graph()
    lazy = graph["geojson_api.gevent_support"]
    assert ("gevent", False) in [(t.split(".")[0], top) for t, top in lazy]
    assert ("flask", True) in [(t.split(".")[0], top) for t, top in graph["geojson_api"]]
    reachable = _reachable(graph)
    assert {"geojson_api.catalog", "geojson_api.settings", "geojson_api.gunicorn_conf"} <= reachable
    assert "geojson_api.lab.procs" not in reachable  # psutil at load time, the bench extra


# -- without any extra: serving works; asking for one is one clear line ------------

ALL_EXTRA_MODULES = sorted({m for mods in extras.EXTRAS.values() for m in mods} | {"greenlet"})
BLOCK = "import sys\nfor _name in {names!r}:\n    sys.modules[_name] = None\n"


def run_blocked(blocked: list[str], code: str, env: dict[str, str] | None = None,
                cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter in which the ``blocked`` packages do not exist."""
    return subprocess.run([sys.executable, "-c", BLOCK.format(names=blocked) + code],
                          capture_output=True, text=True, timeout=120,
                          env=clean_env(**(env or {})), cwd=cwd)


def test_the_app_runs_without_any_extra(data_dir: Path) -> None:
    code = f"""
import importlib, json, pkgutil
import geojson_api
names = [m.name for m in pkgutil.walk_packages(geojson_api.__path__, "geojson_api.")
         if not m.name.startswith(("geojson_api.lab", "geojson_api.__main__"))]
for name in names:
    importlib.import_module(name)
from geojson_api.settings import Settings
app = geojson_api.create_app(Settings(data_dir={str(data_dir)!r}, settle_seconds=0.0))
client = app.test_client()
codes = {{path: client.get(path).status_code for path in
          ("/geojson/roads", "/collections", "/api/datasets", "/readyz")}}
blocked = [n for n in {ALL_EXTRA_MODULES!r} if sys.modules.get(n) is not None]
print(json.dumps({{"codes": codes, "modules": len(names), "loaded": blocked}}))
"""
    result = run_blocked(ALL_EXTRA_MODULES, code)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert set(report["codes"].values()) == {200}, report
    assert report["modules"] > 20 and report["loaded"] == []


CLI = "from geojson_api.cli import main\nsys.exit(main(sys.argv[1:]))\n"


@pytest.mark.parametrize(
    ("blocked", "env", "command", "extra"),
    [
        ("gevent", {"GEOJSON_API_WORKER_CLASS": "gevent"}, ["serve"], "gevent"),
        ("gevent", {}, ["serve", "--worker-class", "gevent"], "gevent"),
        ("redis", {"GEOJSON_API_REDIS_URL": "redis://127.0.0.1:9/0"}, ["serve"], "redis"),
        ("celery", {"GEOJSON_API_BROKER_URL": "redis://127.0.0.1:9/1"}, ["serve"], "worker"),
        ("celery", {"GEOJSON_API_BROKER_URL": "redis://127.0.0.1:9/1"}, ["worker"], "worker"),
        ("celery", {}, ["worker"], "worker"),
        ("redis", {}, ["stack", "up"], "redis"),
        ("psutil", {}, ["bench", "--quick"], "bench"),
        ("matplotlib", {}, ["bench", "--rebuild"], "bench"),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(
    blocked: str, env: dict[str, str], command: list[str], extra: str, data_dir: Path,
    tmp_path: Path,
) -> None:
    env = {"GEOJSON_API_DATA_DIR": str(data_dir), **env}
    result = run_blocked([blocked], f"sys.argv[1:] = {command!r}\n" + CLI, env=env,
                         cwd=tmp_path)
    assert_one_line(result, f"the {extra} extra", f"pip install 'geojson-api[{extra}]'",
                    blocked)
    assert not (tmp_path / "var").exists()  # nothing was started or written


def test_gunicorn_config_refuses_a_missing_extra(data_dir: Path, tmp_path: Path) -> None:
    """Plain `gunicorn -c deploy/gunicorn.conf.py` (the container) says it in one line too."""
    code = (f"sys.argv = ['gunicorn', '-c', {str(ROOT / 'deploy/gunicorn.conf.py')!r}, "
            "'--check-config']\nfrom gunicorn.app.wsgiapp import run\nrun()\n")
    env = {"GEOJSON_API_DATA_DIR": str(data_dir), "GEOJSON_API_WORKER_CLASS": "gevent"}
    assert_one_line(run_blocked(["gevent"], code, env=env, cwd=tmp_path),
                    "GEOJSON_API_WORKER_CLASS=gevent", "the gevent extra")
    bad = {"GEOJSON_API_DATA_DIR": str(data_dir), "GEOJSON_API_LOG_LEVEL": "loud"}
    assert_one_line(run_blocked([], code, env=bad, cwd=tmp_path),
                    "GEOJSON_API_LOG_LEVEL must be one of debug, info, warning, error")
