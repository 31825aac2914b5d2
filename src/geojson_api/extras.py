"""The optional parts of the install, and one clear error when one is missing.

``pip install geojson-api`` brings what ``serve`` needs on the embedded
defaults. Each optional part comes as an extra (``pip install
'geojson-api[redis]'``); a setting or a command that asks for one that is not
installed is refused in one line that names the extra, before anything starts.

Availability is looked up with :func:`importlib.util.find_spec`, which finds a
package without importing it (Celery alone takes a third of a second to
import) and which honours a module blocked with ``sys.modules[name] = None``.
"""

from __future__ import annotations

import importlib.util

from . import tracing
from .settings import Settings, SettingsError, env_name

# extra -> the top-level modules the code imports from it (pyproject.toml names
# the distributions; tests/unit/test_install.py checks that the two agree).
EXTRAS: dict[str, tuple[str, ...]] = {
    "redis": ("redis",),
    "worker": ("celery", "kombu", "redis"),
    "gevent": ("gevent",),
    "bench": ("psutil", "locust", "matplotlib"),
    "tracing": ("opentelemetry",),
}


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [name for name in EXTRAS[extra] if _absent(name)]


def _absent(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):  # a broken or half-removed install
        return True


def problem(extra: str) -> str | None:
    """``needs the X extra (...): pip install ...``, or None when ``extra`` is installed.

    Callers put what needs it in front: a setting, or ``geojson-api worker:``.
    """
    missing = missing_modules(extra)
    if not missing:
        return None
    return (f"needs the {extra} extra ({', '.join(missing)} not installed): "
            f"pip install 'geojson-api[{extra}]'")


def wanted(settings: Settings) -> list[tuple[str, str]]:
    """(extra, the setting that asks for it) for every extra these settings need."""
    needs = []
    if settings.worker_class == "gevent":
        needs.append(("gevent", f"{env_name('worker_class')}=gevent"))
    if settings.redis_url:
        needs.append(("redis", env_name("redis_url")))
    if settings.broker_url:
        needs.append(("worker", env_name("broker_url")))
    traces = tracing.switch()  # the standard OTEL_* variables, not a setting of ours
    if traces is not None:
        needs.append(("tracing", traces))
    return needs


def tracing_problem() -> str | None:
    """The one-line refusal when ``OTEL_*`` variables turn tracing on without its extra."""
    asked = tracing.switch()
    found = None if asked is None else problem("tracing")
    return None if found is None else f"{asked} {found}"


def check(settings: Settings) -> None:
    """Raise :class:`SettingsError` naming the first extra the settings need and lack."""
    for extra, setting in wanted(settings):
        found = problem(extra)
        if found is not None:
            raise SettingsError(f"{setting} {found}")
    if tracing.switch() is not None:
        tracing.check_exporters()
