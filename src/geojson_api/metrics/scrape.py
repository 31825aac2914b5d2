"""What a scrape reads: the counted metrics, and the facts read at scrape time.

:class:`Scrape` is what ``GET /metrics`` answers: under Gunicorn, every
process's files summed by prometheus-client's multiprocess collector (and the
archive of dead workers, :mod:`geojson_api.metrics.multiproc`); outside it,
this process's own values. Added to both, read when the scrape comes and
never counted in advance: datasets and their artifacts (from the catalog's
pointers, publishing nothing), the broker's queue length, and the CPU time,
resident memory and open files of Gunicorn's master and each of its workers
(from /proc). None of it costs a request anything.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .record import RECORDER

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from ..catalog import Catalog
    from ..settings import Settings

log = logging.getLogger(__name__)

ARTIFACT_STATES = ("ready", "queued", "building", "failed", "missing")
ALL = "_all"
CELERY_QUEUE = "celery"  # Celery's default queue, the one tasks.Sender sends to
BROKER_TIMEOUT = 0.25
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the text format written


# -- processes -------------------------------------------------------------------------
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def process_stats(pid: int) -> tuple[float, int, int] | None:
    """CPU seconds (user + system), resident bytes and open descriptors of ``pid``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):
        return None  # gone meanwhile, or not ours to read
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)
    return cpu, int(fields[21]) * _PAGE, fds  # rss (field 24), in pages


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def process_roles(master: int | None) -> dict[int, str]:
    """``{pid: role}``: the master and its children, or this process alone."""
    if master is None:
        return {os.getpid(): "worker"}
    roles = {child: "worker" for child in children(master)}
    roles[master] = "master"
    roles.setdefault(os.getpid(), "worker")
    return roles


# -- the collectors ---------------------------------------------------------------------
def _family(kind: str, name: str, help: str, labels: Iterable[str] = ()) -> Any:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
    return family(name, help, labels=list(labels))


class FactsCollector:
    """Datasets, artifacts, the broker's queue, processes and the build, read per scrape."""

    def __init__(self, catalog: Catalog | None, settings: Settings, master: int | None,
                 version: str) -> None:
        self.catalog = catalog
        self.named = set(settings.metrics_dataset_list)
        self.broker_url = settings.broker_url
        self.master = master
        self.version = version
        self._redis: Any = None

    def collect(self) -> Iterator[Any]:
        info = _family("gauge", "geojson_api_build_info", "The running version.", ["version"])
        info.add_metric([self.version], 1)
        yield info
        yield from self._processes()
        if self.broker_url:
            yield from self._queue()
        if self.catalog is not None:
            yield from self._datasets(self.catalog)

    def _processes(self) -> Iterator[Any]:
        labels = ["pid", "role"]
        cpu = _family("counter", "geojson_api_process_cpu_seconds_total",
                      "CPU time (user + system) of a process.", labels)
        rss = _family("gauge", "geojson_api_process_resident_memory_bytes",
                      "Resident memory of a process.", labels)
        fds = _family("gauge", "geojson_api_process_open_fds",
                      "Open file descriptors of a process.", labels)
        for pid, role in sorted(process_roles(self.master).items()):
            stats = process_stats(pid)
            if stats is not None:
                for family, value in zip((cpu, rss, fds), stats, strict=True):
                    family.add_metric([str(pid), role], value)
        yield from (cpu, rss, fds)

    def _queue(self) -> Iterator[Any]:
        """The broker's queue length (LLEN), when the broker is Redis and answers."""
        if not self.broker_url.startswith(("redis://", "rediss://", "unix://")):
            return
        try:
            if self._redis is None:
                import redis

                self._redis = redis.Redis.from_url(
                    self.broker_url, socket_timeout=BROKER_TIMEOUT,
                    socket_connect_timeout=BROKER_TIMEOUT)
            depth = int(self._redis.llen(CELERY_QUEUE))
        except Exception as exc:  # a broker that is down gives no sample, not a failed scrape
            log.debug("broker queue length unavailable: %s", exc)
            return
        family = _family("gauge", "geojson_api_jobs_queue_depth",
                         "Jobs waiting in the broker's queue.")
        family.add_metric([], depth)
        yield family

    def _datasets(self, catalog: Catalog) -> Iterator[Any]:
        versions, lost = catalog.published()
        count = _family("gauge", "geojson_api_datasets", "Datasets with a current version.")
        count.add_metric([], len(versions))
        sizes = _family("gauge", "geojson_api_dataset_bytes",
                        "Bytes of current versions (_all: every dataset).", ["dataset"])
        features = _family("gauge", "geojson_api_dataset_features",
                           "Features of current versions (_all: every dataset).", ["dataset"])
        sizes.add_metric([ALL], sum(v.size for v in versions))
        features.add_metric([ALL], sum(int(v.meta.get("features", 0)) for v in versions))
        for version in versions:
            if version.name in self.named:
                sizes.add_metric([version.name], version.size)
                features.add_metric([version.name], int(version.meta.get("features", 0)))
        yield from (count, sizes, features, self._artifacts(catalog, versions, lost))

    def _artifacts(self, catalog: Catalog, versions: list[Any], lost: int) -> Any:
        artifacts = catalog.artifacts
        states = {(name, state): 0 for name in artifacts.registry for state in ARTIFACT_STATES}
        for version in versions:
            for name, kind in artifacts.registry.items():
                if kind.expected(version):
                    states[(name, artifacts.state(version, name).status)] += 1
        for name in artifacts.registry:  # a pointer whose version is gone: all of it is missing
            states[(name, "missing")] += lost
        family = _family("gauge", "geojson_api_artifacts",
                         "Artifacts of current versions, by state.", ["artifact", "state"])
        for (name, state), n in states.items():
            family.add_metric([name, state], n)
        return family


class LocalCollector:
    """This process's counted metrics (no Gunicorn: one process, no shared files)."""

    def collect(self) -> Iterator[Any]:
        for metric in RECORDER.metrics().values():
            yield from metric.collect()


class Scrape:
    """The text ``GET /metrics`` answers."""

    def __init__(self, facts: FactsCollector, counted: Collector) -> None:
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(counted)
        self.registry.register(facts)
        self.counted = counted
        self.scope = "process" if isinstance(counted, LocalCollector) else "instance"

    def __call__(self) -> bytes:
        from prometheus_client import generate_latest

        RECORDER.flush()  # this process's latest counts are in the answer
        return generate_latest(self.registry)

    def summary(self) -> dict[str, Any]:
        """The dashboard's digest of the counted metrics (:mod:`.summary`)."""
        from .summary import digest

        RECORDER.flush()
        return digest(self.counted, self.scope)
