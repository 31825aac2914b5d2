"""``geojson-api bench --soak MINUTES``: the study's mixed workload against the stack for
a long time, watching every Gunicorn process's memory and open files meanwhile.

The stack target (:mod:`.stacktarget`: Nginx, two app instances, Redis, the
Celery worker) runs Locust's ``StudyUser`` with the mixed profile (small :
medium : large = 10 : 3 : 1, 1-3 s think time) for MINUTES. Every interval the
lab scrapes each instance's ``/metrics`` directly on the instance's port (RSS
and open files per process, labelled by pid and role, and the request
counter) and reads the same processes from /proc with psutil. Workers that
Gunicorn replaces (``max_requests``) get new pids: every pid keeps its own
series, and each instance gets a summary (mean and max over its workers).

At the end it compares Locust's request count with the one in ``/metrics``
(after minus before the run, read two flush intervals after it) and computes
the growth of the workers' RSS and open files after a warm-up. The goals
(:data:`RSS_GOAL`, :data:`COUNT_GOAL`, no error) are reported, not enforced:
the exit code says whether the run completed (see :mod:`.command`).

Two choices make the counts comparable. Locust's statistics are not reset
after the ramp (the lab's other runs reset them): every request it sent is
counted. And the stack runs without Nginx's micro-cache, which would answer
repeats of a small file (one the app sends from memory) without asking an
instance; offloaded files (X-Accel-Redirect) reach an instance every time.

Files written (``--out``, default ``var/bench/soak``): ``soak.json`` (every
sample), ``soak.md`` (settings, goals, the instances over time) and
``soak-rss.png`` / ``soak-fds.png``; Locust's own files go to ``raw/``.
How to run and read it: docs/operations.md.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from ..settings import Settings, SettingsError, env_name
from . import LabError
from .locustrun import LocustResult, locust_command, read_result
from .machine import machine_info
from .matrix import Scenario, ramp_seconds
from .procs import Supervisor, log_tail, supervised
from .report import machine_line
from .runner import CLIENT_GRACE, DATASETS, Plan, dataset_sizes, make_data, missing_tools
from .runner import target_record as runner_target_record
from .stacktarget import StackServer, start_stack
from .tables import fmt, mb, table, write_pair
from .targets import HOST, Target, lab_file, wait_until_quiet, warm_up

DEFAULT_OUT = "var/bench/soak"
DEFAULT_USERS = 50
DEFAULT_INTERVAL = 30.0
MIN_INTERVAL = 1.0
MIN_SAMPLES = 10  # a short run is sampled at least this often, whatever the interval asked
WARM_UP_SHARE = 0.2  # the warm-up is this share of the run ...
WARM_UP_MAX = 300.0  # ... or this many seconds, whichever is shorter
RSS_GOAL = 5.0  # % growth after the warm-up, at most (open files: the same)
COUNT_GOAL = 0.5  # % difference between Locust's count and /metrics', at most
PROFILE = "mixed"
# Without the micro-cache and direct files every request of the profile reaches an instance.
SOAK_ENV = {env_name("nginx_microcache"): "0", env_name("nginx_direct"): "false"}
# bench options that choose or shape the matrix: meaningless for a soak.
MATRIX_OPTIONS = {"quick": "--quick", "targets": "--targets", "scenarios": "--scenarios",
                  "measure": "--measure", "max_target_rss": "--max-target-rss",
                  "rebuild": "--rebuild"}
REQUESTS = "geojson_api_http_requests_total"
RSS = "geojson_api_process_resident_memory_bytes"
FDS = "geojson_api_process_open_fds"
FIELDS = ("rss_metrics", "rss_proc", "fds_metrics", "fds_proc")
POLL = 0.5  # seconds between two looks at Locust between samples


# -- options -------------------------------------------------------------------------------

@dataclass(frozen=True)
class SoakPlan:
    """What ``geojson-api bench --soak`` was asked to do."""

    minutes: float
    users: int
    interval: float  # seconds between samples, as asked
    out: Path
    data: Path | None
    settings: Settings  # the environment's: metrics flush interval, token, workers
    start_timeout: float = 180.0

    @property
    def seconds(self) -> int:
        return max(round(self.minutes * 60), 1)

    @property
    def sample_every(self) -> float:
        """The interval asked, shortened so that a short run still gets
        :data:`MIN_SAMPLES` samples, and never below :data:`MIN_INTERVAL`."""
        return max(min(self.interval, self.seconds / MIN_SAMPLES), MIN_INTERVAL)

    def scenario(self) -> Scenario:
        """The mixed profile for the whole run: the users start over the lab's ramp."""
        ramp = min(ramp_seconds(self.users), self.seconds - 1)
        return Scenario("locust", PROFILE, self.users, ramp, self.seconds - ramp)

    def lab_plan(self) -> Plan:
        """The matrix plan of one stack run: what the lab's helpers take."""
        return Plan(targets=["stack"], scenarios=[self.scenario()], out=self.out,
                    data=self.data)


def asked(args: argparse.Namespace) -> bool:
    """True when any soak option was given."""
    return any(getattr(args, name, None) is not None
               for name in ("soak", "soak_users", "soak_interval"))


def _given_matrix_options(args: argparse.Namespace) -> list[str]:
    return [flag for name, flag in MATRIX_OPTIONS.items()
            if getattr(args, name, None) not in (None, False)]


def _settings() -> Settings:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise ValueError(str(exc)) from None
    if not settings.metrics:
        raise ValueError(f"--soak reads /metrics: {env_name('metrics')} must not be false")
    if settings.metrics_port:
        raise ValueError(f"--soak reads /metrics on each instance's own port: unset "
                         f"{env_name('metrics_port')}")
    return settings


def plan_from(args: argparse.Namespace) -> SoakPlan:
    """The soak the options describe; ValueError (one line) for options that make no sense."""
    if args.soak is None:
        raise ValueError("--soak-users and --soak-interval need --soak MINUTES")
    if not math.isfinite(args.soak) or args.soak <= 0:
        raise ValueError(f"--soak takes minutes above 0, not {args.soak:g}")
    extra = _given_matrix_options(args)
    if extra:
        raise ValueError(f"--soak runs one workload against the stack: it takes no "
                         f"{', '.join(extra)} (only --out, --data, --soak-users, "
                         "--soak-interval)")
    users = DEFAULT_USERS if args.soak_users is None else args.soak_users
    interval = DEFAULT_INTERVAL if args.soak_interval is None else args.soak_interval
    if users < 1:
        raise ValueError(f"--soak-users must be at least 1, not {users}")
    if not math.isfinite(interval) or interval <= 0:
        raise ValueError(f"--soak-interval takes seconds above 0, not {interval:g}")
    return SoakPlan(minutes=args.soak, users=users, interval=interval,
                    out=Path(args.out or DEFAULT_OUT).absolute(),
                    data=Path(args.data).absolute() if args.data else None,
                    settings=_settings())


def missing(plan: SoakPlan) -> list[str]:
    return missing_tools(plan.lab_plan())


# -- what one sample reads -----------------------------------------------------------------

@dataclass
class ProcessSample:
    """One Gunicorn process (master or worker) at one sample, from both sources."""

    pid: int
    role: str
    rss_metrics: int | None = None
    fds_metrics: int | None = None
    rss_proc: int | None = None
    fds_proc: int | None = None


@dataclass
class Scraped:
    """What one instance's ``/metrics`` said: the request counter's sum and the processes."""

    requests: float
    processes: dict[int, ProcessSample]


def parse_metrics(text: str) -> Scraped:
    """The request count (summed over every label) and each process's RSS and open files
    from a Prometheus text exposition; ValueError when it has no process metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    requests = 0.0
    processes: dict[int, ProcessSample] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == REQUESTS:
                requests += sample.value
            elif sample.name in (RSS, FDS) and sample.labels.get("pid", "").isdigit():
                pid = int(sample.labels["pid"])
                process = processes.setdefault(
                    pid, ProcessSample(pid, sample.labels.get("role", "worker")))
                if sample.name == RSS:
                    process.rss_metrics = int(sample.value)
                else:
                    process.fds_metrics = int(sample.value)
    if not processes:
        raise ValueError(f"no {RSS} or {FDS} with a pid label")
    return Scraped(requests, processes)


@dataclass(frozen=True)
class Instance:
    """One app instance of the stack: its Gunicorn master and the port it serves."""

    name: str
    port: int
    master: psutil.Process


def stack_instances(target: Target) -> list[Instance]:
    server = target.server
    if not isinstance(server, StackServer):
        raise LabError(f"the soak runs against the stack, not {target.name}")
    instances = [Instance(p.name, p.port, p.process) for p in server.parts
                 if p.name.startswith("app")]
    if not instances:
        raise LabError("the stack has no app instance")
    return instances


def fetch_metrics(port: int, token: str) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://{HOST}:{port}/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=10.0) as response:
        return str(response.read().decode())


def read_proc(process: ProcessSample) -> None:
    """RSS and open files of ``process`` from /proc (left unknown if it has exited)."""
    try:
        proc = psutil.Process(process.pid)
        with proc.oneshot():
            process.rss_proc, process.fds_proc = int(proc.memory_info().rss), proc.num_fds()
    except psutil.Error:
        return


def gunicorn_pids(master: psutil.Process) -> dict[int, str]:
    """``{pid: role}`` of a master and its workers, as /proc sees them now."""
    try:
        return {master.pid: "master", **{c.pid: "worker" for c in master.children()}}
    except psutil.Error:
        return {}


@dataclass
class InstanceSample:
    """One instance at one sample; ``requests`` is None when ``/metrics`` did not answer."""

    requests: float | None
    processes: list[ProcessSample]
    error: str | None = None


def sample_instance(instance: Instance, token: str) -> InstanceSample:
    """``/metrics`` first, then /proc for the pids it named and those /proc shows."""
    try:
        scraped: Scraped | None = parse_metrics(fetch_metrics(instance.port, token))
        error = None
    except (OSError, ValueError) as exc:  # urllib's errors are OSErrors
        scraped, error = None, f"/metrics: {exc}"
    processes = dict(scraped.processes) if scraped else {}
    for pid, role in gunicorn_pids(instance.master).items():
        processes.setdefault(pid, ProcessSample(pid, role))
    for process in processes.values():
        read_proc(process)
    return InstanceSample(scraped.requests if scraped else None,
                          sorted(processes.values(), key=lambda p: p.pid), error)


@dataclass
class Sample:
    """Every instance at one moment, ``t`` seconds after Locust started."""

    t: float
    time: str
    loadavg: float
    instances: dict[str, InstanceSample]


def take_sample(instances: Sequence[Instance], token: str, t: float) -> Sample:
    return Sample(round(t, 2), datetime.now().astimezone().isoformat("T", "seconds"),
                  os.getloadavg()[0],
                  {i.name: sample_instance(i, token) for i in instances})


def request_counts(instances: Sequence[Instance], token: str) -> dict[str, float]:
    """Each instance's request counter now; LabError when one cannot be read."""
    counts = {}
    for instance in instances:
        try:
            counts[instance.name] = parse_metrics(fetch_metrics(instance.port, token)).requests
        except (OSError, ValueError) as exc:
            raise LabError(f"{instance.name}: cannot read http://{HOST}:{instance.port}"
                           f"/metrics: {exc}") from exc
    return counts


# -- what the samples say ------------------------------------------------------------------

def warm_up_seconds(run_seconds: float) -> float:
    """The first 20 % of the run, or 5 minutes, whichever is shorter."""
    return min(WARM_UP_SHARE * run_seconds, WARM_UP_MAX)


def worker_values(sample: Sample, instance: str, field_name: str) -> list[float]:
    """One figure (:data:`FIELDS`) of every worker of ``instance`` that has it."""
    values = (getattr(p, field_name) for p in sample.instances[instance].processes
              if p.role == "worker")
    return [float(v) for v in values if v is not None]


def instance_series(samples: Sequence[Sample], instance: str,
                    field_name: str) -> list[tuple[float, float, float]]:
    """(t, mean, max) over the workers of ``instance``, for every sample with any."""
    rows = []
    for sample in samples:
        values = worker_values(sample, instance, field_name)
        if values:
            rows.append((sample.t, statistics.fmean(values), max(values)))
    return rows


@dataclass(frozen=True)
class Growth:
    """The mean of the last window against the mean of the first window after the
    warm-up; both windows hold ``samples`` samples."""

    first: float
    last: float
    samples: int
    first_window: tuple[float, float]  # seconds since the start
    last_window: tuple[float, float]

    @property
    def percent(self) -> float | None:
        return 100 * (self.last - self.first) / self.first if self.first else None


def growth(points: Sequence[tuple[float, float]], run_seconds: float) -> Growth | None:
    """Growth of a series of (t, value) after the warm-up. The windows are as long as the
    warm-up (counted in samples: those in the warm-up's length after it), at most half of
    the samples after it each, at least one; None with fewer than two samples after it."""
    warm = warm_up_seconds(run_seconds)
    after = sorted(p for p in points if p[0] >= warm)
    if len(after) < 2:
        return None
    within = sum(1 for t, _ in after if t - after[0][0] < warm)
    k = max(min(within, len(after) // 2), 1)
    first, last = after[:k], after[-k:]
    return Growth(statistics.fmean(v for _, v in first), statistics.fmean(v for _, v in last),
                  k, (first[0][0], first[-1][0]), (last[0][0], last[-1][0]))


@dataclass(frozen=True)
class CountCheck:
    """Locust's requests against the instances' counters (after minus before the run).

    A request in flight when Locust stopped may or may not have reached an
    instance: the counters are right anywhere from ``completed`` to ``completed +
    unfinished``, and the difference is their distance from that range."""

    completed: int  # failures included
    unfinished: int
    counted: float

    @property
    def difference(self) -> float:
        if self.counted < self.completed:
            return self.completed - self.counted
        return max(self.counted - self.completed - self.unfinished, 0.0)

    @property
    def percent(self) -> float | None:
        return 100 * self.difference / self.completed if self.completed else None


@dataclass(frozen=True)
class Goal:
    what: str
    wanted: str
    measured: str
    met: bool | None  # None: not measured


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f} %" if signed else f"{value:.2f} %"


def count_goal(check: CountCheck | None) -> Goal:
    wanted = f"≤ {COUNT_GOAL} %"
    if check is None or check.percent is None:
        return Goal("requests in /metrics vs Locust", wanted, "not measured", None)
    measured = (f"{_pct(check.percent)} ({check.counted:,.0f} counted; Locust "
                f"{check.completed:,} completed + {check.unfinished:,} in flight at the stop)")
    return Goal("requests in /metrics vs Locust", wanted, measured,
                check.percent <= COUNT_GOAL)


def error_goal(locust: LocustResult | None) -> Goal:
    if locust is None:
        return Goal("errors", "0", "not measured", None)
    return Goal("errors", "0", f"{locust.failures:,} of {locust.requests:,} requests",
                locust.failures == 0)


def growth_goal(what: str, by_source: dict[str, Growth | None], unit: float,
                label: str) -> Goal:
    """One goal over both sources: met when every growth is known and below the goal."""
    parts, met = [], True
    for source, found in by_source.items():
        change = found.percent if found else None
        if found is None or change is None:
            parts.append(f"{source}: not enough samples after the warm-up")
            met = False
            continue
        parts.append(f"{source} {_pct(change, signed=True)} "
                     f"({fmt(found.first / unit)} → {fmt(found.last / unit)} {label})")
        met = met and change < RSS_GOAL
    known = any(g is not None and g.percent is not None for g in by_source.values())
    return Goal(what, f"< {RSS_GOAL:g} %", "; ".join(parts), met if known else None)


QUANTITIES = {"rss": ("RSS growth", 1e6, "MB"), "fds": ("open files growth", 1.0, "files")}


def growths(samples: Sequence[Sample], instance: str, quantity: str,
            run_seconds: float) -> dict[str, Growth | None]:
    """The growth of the mean worker's figure, per source (/metrics, /proc)."""
    return {source: growth([(t, mean) for t, mean, _ in instance_series(
                samples, instance, f"{quantity}_{key}")], run_seconds)
            for source, key in (("/metrics", "metrics"), ("/proc", "proc"))}


# -- the record of one soak ----------------------------------------------------------------

@dataclass
class SoakRecord:
    """Everything a soak measured, as it goes: what the report is written from."""

    plan: SoakPlan
    meta: dict[str, Any]
    samples: list[Sample] = field(default_factory=list)
    before: dict[str, float] | None = None
    after: dict[str, float] | None = None
    locust: LocustResult | None = None
    run_seconds: float | None = None  # Locust's, as it ran

    @property
    def instances(self) -> list[str]:
        return list(self.samples[0].instances) if self.samples else []

    @property
    def duration(self) -> float:
        """The run as planned: what the warm-up is a share of."""
        return float(self.plan.seconds)

    def count_check(self) -> CountCheck | None:
        if self.locust is None or self.before is None or self.after is None:
            return None
        counted = sum(self.after.values()) - sum(self.before.values())
        return CountCheck(self.locust.requests, self.locust.unfinished, counted)

    def goals(self) -> list[Goal]:
        goals = [error_goal(self.locust), count_goal(self.count_check())]
        for instance in self.instances:
            for quantity, (what, unit, label) in QUANTITIES.items():
                goals.append(growth_goal(f"{what}, {instance}", growths(
                    self.samples, instance, quantity, self.duration), unit, label))
        return goals

    def per_pid(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every process's own series: ``{instance: {pid: {role, t, rss_metrics, ...}}}``."""
        series: dict[str, dict[str, dict[str, Any]]] = {}
        for sample in self.samples:
            for name, reading in sample.instances.items():
                for p in reading.processes:
                    row = series.setdefault(name, {}).setdefault(
                        str(p.pid), {"role": p.role, "t": [], **{f: [] for f in FIELDS}})
                    row["t"].append(sample.t)
                    for f in FIELDS:
                        row[f].append(getattr(p, f))
        return series

    def per_instance(self) -> dict[str, dict[str, list[Any]]]:
        """``{instance: {field: [[t, mean, max], ...]}}`` over the workers."""
        return {name: {f: [list(row) for row in instance_series(self.samples, name, f)]
                       for f in FIELDS} for name in self.instances}

    def document(self) -> dict[str, Any]:
        check = self.count_check()
        return {
            **self.meta, "settings": settings_record(self.plan),
            "requests": {"before": self.before, "after": self.after,
                         "check": None if check is None else {
                             **asdict(check), "difference": check.difference,
                             "percent": check.percent}},
            "locust": None if self.locust is None else asdict(self.locust),
            "run_seconds": self.run_seconds,
            "goals": [asdict(g) for g in self.goals()],
            "per_instance": self.per_instance(), "per_pid": self.per_pid(),
            "samples": [asdict(s) for s in self.samples],
        }


def settings_record(plan: SoakPlan) -> dict[str, Any]:
    s = plan.settings
    return {
        "minutes": plan.minutes, "seconds": plan.seconds, "users": plan.users,
        "profile": PROFILE, "interval_asked_s": plan.interval,
        "interval_s": plan.sample_every, "warm_up_s": warm_up_seconds(plan.seconds),
        "flush_interval_s": s.metrics_flush_interval,
        "count_wait_s": 2 * s.metrics_flush_interval, "env": SOAK_ENV,
        "small_file_bytes": s.small_file_bytes, "max_requests": s.max_requests,
        "max_requests_jitter": s.max_requests_jitter, "worker_class": s.worker_class,
        "goals": {"rss_growth_pct_below": RSS_GOAL, "count_difference_pct_at_most": COUNT_GOAL,
                  "errors": 0},
    }


# -- the run -------------------------------------------------------------------------------

def soak_command(plan: SoakPlan, host: str, prefix: Path) -> list[str]:
    """The lab's Locust command, its statistics kept from the first request (no reset
    after the ramp): the count is compared with every request the instances saw."""
    argv = locust_command(lab_file("locustfile.py"), host, plan.scenario(), prefix)
    return [arg for arg in argv if arg != "--reset-stats"]


def _instance_line(sample: Sample, name: str) -> str:
    rss = worker_values(sample, name, "rss_metrics") or worker_values(sample, name, "rss_proc")
    fds = worker_values(sample, name, "fds_metrics")
    error = sample.instances[name].error
    return (f"{name} {len(rss)} workers, RSS {_mb_or_dash(_mean(rss))} MB "
            f"(max {_mb_or_dash(max(rss, default=None))}), {fmt(_mean(fds))} open files"
            + (f" [{error}]" if error else ""))


def progress_line(record: SoakRecord, sample: Sample) -> str:
    parts = [_instance_line(sample, name) for name in sample.instances]
    counted = [r.requests for r in sample.instances.values()]
    if record.before is not None and all(c is not None for c in counted):
        total = sum(c or 0.0 for c in counted) - sum(record.before.values())
        parts.append(f"{total:,.0f} requests counted")
    return (f"  {_clock(sample.t)}/{_clock(record.plan.seconds)}  load {sample.loadavg:.2f}  "
            + "; ".join(parts))


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def drive(record: SoakRecord, supervisor: Supervisor, target: Target,
          instances: Sequence[Instance], raw: Path) -> None:
    """Locust for the whole run, every instance sampled meanwhile and once at the end."""
    plan, token = record.plan, record.plan.settings.metrics_token
    prefix, log = raw / "locust", raw / "locust.log"
    child = supervisor.start("locust", soak_command(plan, target.base_url, prefix), log)
    started = next_at = time.monotonic()
    limit = plan.seconds + CLIENT_GRACE
    while child.alive():
        now = time.monotonic()
        if now - started > limit:
            raise LabError(f"locust still running after {limit:.0f} s")
        if now >= next_at:
            record.samples.append(take_sample(instances, token, now - started))
            print(progress_line(record, record.samples[-1]), flush=True)
            next_at += plan.sample_every
            target.server.check_alive()
            supervisor.remember_descendants()  # workers replaced meanwhile
        time.sleep(max(min(next_at - time.monotonic(), POLL), 0.0))
    record.run_seconds = round(time.monotonic() - started, 2)
    record.samples.append(take_sample(instances, token, record.run_seconds))
    if child.popen.returncode != 0:
        raise LabError(f"locust exited with code {child.popen.returncode}; end of its log:\n"
                       f"{log_tail(log)}")
    record.locust = read_result(prefix)


def execute(record: SoakRecord, supervisor: Supervisor, workdir: Path) -> None:
    plan = record.plan
    raw = plan.out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    data = make_data(plan.lab_plan(), workdir)
    record.meta["datasets"] = dataset_sizes(data)
    print("starting the stack (Nginx micro-cache off) ...", flush=True)
    target = start_stack(supervisor, workdir, data, plan.start_timeout, env=SOAK_ENV)
    supervisor.remember_descendants()
    record.meta["target"] = runner_target_record(target)
    print(f"  stack: {target.server.describe()}, {target.base_url}, "
          f"ready in {target.startup_seconds:.1f} s", flush=True)
    warm_up(target, data, DATASETS)
    wait_until_quiet([target], limit=10.0)
    instances = stack_instances(target)
    wait = 2 * plan.settings.metrics_flush_interval  # every worker has flushed its counts
    time.sleep(wait)
    record.before = request_counts(instances, plan.settings.metrics_token)
    print(f"soak: {plan.users} users, {PROFILE} profile, {_clock(plan.seconds)} min, "
          f"a sample every {plan.sample_every:g} s", flush=True)
    drive(record, supervisor, target, instances, raw)
    target.server.check_alive()
    time.sleep(wait)
    record.after = request_counts(instances, plan.settings.metrics_token)


def run(plan: SoakPlan) -> int:
    """Every process started is stopped and what was sampled is reported, whatever
    happens; 0 when the run completed (its goals are reported, not enforced)."""
    record = SoakRecord(plan, {"machine": machine_info()})

    def report() -> None:
        record.meta["loadavg_at_end"] = os.getloadavg()
        if record.samples:
            print("report: " + ", ".join(str(p) for p in write_soak(plan.out, record)),
                  flush=True)

    with (tempfile.TemporaryDirectory(prefix="geojson-api-bench-") as tmp,
          supervised(record.meta, report) as supervisor):
        execute(record, supervisor, Path(tmp))
    for goal in record.goals():
        print(f"  {'met' if goal.met else 'NOT MET' if goal.met is False else '-':>7}  "
              f"{goal.what}: {goal.measured}", flush=True)
    return 0


# -- the report ----------------------------------------------------------------------------

RSS_PNG = "soak-rss.png"
FDS_PNG = "soak-fds.png"
TABLE_ROWS = 16  # rows of an instance's table over time (samples evenly thinned)


def thinned(items: Sequence[Any], count: int) -> list[Any]:
    """At most ``count`` items evenly spread, the first and the last always in."""
    if len(items) <= count:
        return list(items)
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _master(sample: Sample, instance: str, field_name: str) -> float | None:
    for p in sample.instances[instance].processes:
        if p.role == "master":
            value = getattr(p, field_name)
            return None if value is None else float(value)
    return None


def over_time(record: SoakRecord, instance: str) -> str:
    header = ["time", "workers", "RSS mean MB (/metrics)", "(/proc)", "RSS max MB (/metrics)",
              "master RSS MB", "open files mean (/metrics)", "(/proc)", "requests counted",
              "load"]
    before = (record.before or {}).get(instance, 0.0)
    rows = []
    for s in thinned(record.samples, TABLE_ROWS):
        rss = worker_values(s, instance, "rss_metrics")
        master = _master(s, instance, "rss_metrics")
        requests = s.instances[instance].requests
        rows.append([_clock(s.t), str(len(rss)), mb(_mean(rss) or 0) if rss else "-",
                     _mb_or_dash(_mean(worker_values(s, instance, "rss_proc"))),
                     mb(max(rss)) if rss else "-", _mb_or_dash(master),
                     fmt(_mean(worker_values(s, instance, "fds_metrics"))),
                     fmt(_mean(worker_values(s, instance, "fds_proc"))),
                     "-" if requests is None else f"{requests - before:,.0f}",
                     f"{s.loadavg:.2f}"])
    return table(header, rows, text_columns=0)


def _mb_or_dash(value: float | None) -> str:
    return "-" if value is None else mb(value)


def workers_seen(record: SoakRecord, instance: str) -> str:
    """Which worker pids the run saw, and which came or went (``max_requests``)."""
    series = record.per_pid().get(instance, {})
    workers = {pid: row for pid, row in series.items() if row["role"] == "worker"}
    first, last = record.samples[0].t, record.samples[-1].t
    came = sorted(pid for pid, row in workers.items() if row["t"][0] > first)
    went = sorted(pid for pid, row in workers.items() if row["t"][-1] < last)
    return (f"- {instance}: {len(workers)} worker pids seen ({', '.join(sorted(workers))}); "
            f"started during the run: {', '.join(came) or 'none'}; gone before the end: "
            f"{', '.join(went) or 'none'}\n")


def _workers(record: SoakRecord) -> str:
    counts = sorted({len([p for p in s.instances[i].processes if p.role == "worker"])
                     for s in record.samples for i in record.instances})
    return "/".join(map(str, counts)) or "-"


def settings_section(record: SoakRecord) -> str:
    plan, s = record.plan, record.plan.settings
    sizes = record.meta.get("datasets", {})
    cacheable = [n for n, size in sizes.items() if size <= s.small_file_bytes]
    rows = [
        ["run", f"{plan.minutes:g} min ({plan.seconds} s; Locust ran "
                f"{fmt(record.run_seconds)} s)"],
        ["users", f"{plan.users} `StudyUser`s, profile {PROFILE} (small : medium : large = "
                  "10 : 3 : 1), 1-3 s think time, started over "
                  f"{plan.scenario().ramp} s; statistics not reset"],
        ["target", f"the stack: Nginx → {len(record.instances)} app instances (Gunicorn "
                   f"{s.worker_class}, {_workers(record)} workers each) + Redis + a Celery "
                   "worker; offload nginx"],
        ["micro-cache", "off (`GEOJSON_API_NGINX_MICROCACHE=0`). With it on (1 s by default) "
                        "Nginx could answer repeats of " + (", ".join(cacheable) or "none")
                        + f" (files up to {s.small_file_bytes:,} bytes, which the app sends "
                        "from memory) without an instance; the others are offloaded "
                        "(X-Accel-Redirect) and reach an instance for every request"],
        ["direct files", "off (`GEOJSON_API_NGINX_DIRECT=false`): Nginx would answer plain "
                         "GETs of every dataset itself, and no request would reach an instance"],
        ["datasets", ", ".join(f"{n} {mb(b)} MB" for n, b in sizes.items()) or "-"],
        ["sampling", f"every {plan.sample_every:g} s (asked {plan.interval:g} s), "
                     f"{len(record.samples)} samples; /metrics scraped on each instance's port, "
                     "then /proc (psutil) for the same pids"],
        ["warm-up", f"{fmt(warm_up_seconds(record.duration))} s; growth = mean of the last "
                    "window vs mean of the first window after it, windows as long as the "
                    "warm-up, of the instance's mean worker"],
        ["counts", f"`{REQUESTS}` summed over instances, after minus before the run, read "
                   f"{2 * s.metrics_flush_interval:g} s (two flush intervals) after it"],
        ["workers recycled", f"after {s.max_requests:,} requests (+ up to "
                             f"{s.max_requests_jitter:,})"],
    ]
    return table(["setting", "value"], rows, text_columns=2)


def goals_section(record: SoakRecord) -> str:
    marks = {True: "met", False: "**not met**", None: "-"}
    rows = [[g.what, g.wanted, g.measured, marks[g.met]] for g in record.goals()]
    return table(["goal", "wanted", "measured", "met"], rows, text_columns=4)


def windows_line(record: SoakRecord) -> str:
    """When the growth windows were (the same samples for every instance, or nearly)."""
    if not record.instances:
        return ""
    windows = _windows(record, record.instances[0], "rss")
    if not windows:
        return "Too few samples after the warm-up to compute a growth.\n"
    (a, b), (c, d) = windows
    return (f"Growth windows: {_clock(a)}-{_clock(b)} (first after the warm-up) and "
            f"{_clock(c)}-{_clock(d)} (last), min:s since the start.\n")


def requests_section(record: SoakRecord) -> str:
    locust = record.locust
    if locust is None:
        return "Locust did not finish: no request figures.\n"
    rows = [[name, f"{row['requests']:,}", f"{row['failures']:,}", f"{row['unfinished']:,}",
             fmt(row["avg_ms"]), fmt(row["p95_ms"])] for name, row in locust.by_name.items()]
    rate = locust.requests / locust.window_s if locust.window_s else None
    lines = [table(["name", "requests", "failures", "in flight at the stop", "avg ms",
                    "p95 ms"], rows),
             f"{locust.requests:,} requests in {fmt(locust.window_s)} s ({fmt(rate)} req/s), "
             f"p95 {fmt(locust.latency.p95)} ms.\n"]
    if record.before is not None and record.after is not None:
        lines.append("Counted by the instances (`/metrics`): " + ", ".join(
            f"{n} {record.after[n] - record.before[n]:,.0f}" for n in record.before) + ".\n")
    lines += [f"- {e['name']}: {e['error']} ({e['count']}x)\n" for e in locust.errors]
    return "\n".join(lines)


def markdown(record: SoakRecord) -> str:
    meta = record.meta
    end = ", ".join(f"{x:.2f}" for x in meta.get("loadavg_at_end", ()))
    parts = ["# Soak run: the study's mixed workload against the stack\n"]
    if not meta.get("complete"):
        parts.append(f"**INCOMPLETE RUN**: {meta.get('error')}\n")
    parts += [machine_line(meta), f"**Load average at the end:** {end}; during the run "
              f"(1 min) {fmt(min(s.loadavg for s in record.samples))} to "
              f"{fmt(max(s.loadavg for s in record.samples))}.\n",
              "## Settings\n", settings_section(record),
              "## Goals\n", "Reported, not enforced (docs/operations.md).\n",
              goals_section(record), windows_line(record),
              "## Requests\n", requests_section(record),
              "## The instances over time\n",
              "Worker figures are the mean (and max) over an instance's workers at each "
              "sample; RSS counts shared pages in every process.\n"]
    for instance in record.instances:
        parts += [f"### {instance}\n", over_time(record, instance)]
    parts += ["Workers:\n", "".join(workers_seen(record, i) for i in record.instances),
              "## Graphs\n", f"![RSS per worker]({RSS_PNG})\n",
              f"![Open files per worker]({FDS_PNG})\n"]
    return "\n".join(parts)


def _figure(count: int) -> tuple[Any, list[Any]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, count, figsize=(6 * count, 4), squeeze=False)
    return figure, list(axes[0])


def _panel(ax: Any, record: SoakRecord, instance: str, quantity: str, unit: float) -> None:
    for row in record.per_pid().get(instance, {}).values():
        if row["role"] == "worker":
            points = [(t / 60, v / unit) for t, v in zip(row["t"], row[f"{quantity}_proc"],
                                                       strict=True) if v is not None]
            ax.plot([p[0] for p in points], [p[1] for p in points], color="grey",
                    linewidth=0.6, alpha=0.5)
    for key, style, label in (("metrics", "-", "mean worker (/metrics)"),
                              ("proc", "--", "mean worker (/proc)")):
        rows = instance_series(record.samples, instance, f"{quantity}_{key}")
        ax.plot([r[0] / 60 for r in rows], [r[1] / unit for r in rows], style, label=label)
    rows = instance_series(record.samples, instance, f"{quantity}_metrics")
    ax.plot([r[0] / 60 for r in rows], [r[2] / unit for r in rows], ":",
            label="max worker (/metrics)")
    ax.plot([], [], color="grey", linewidth=0.6, label="each worker pid (/proc)")
    ax.axvspan(0, warm_up_seconds(record.duration) / 60, color="grey", alpha=0.12,
               label="warm-up")
    windows = _windows(record, instance, quantity)
    for index, (start, end) in enumerate(windows):
        ax.axvspan(start / 60, end / 60, color="tab:blue", alpha=0.08,
                   label="growth windows" if index == 0 else None)
    ax.set_title(instance)
    ax.set_xlabel("minutes")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small")


def _windows(record: SoakRecord, instance: str, quantity: str) -> list[tuple[float, float]]:
    """The first and the last window of the growth of ``instance``'s mean worker."""
    found = growths(record.samples, instance, quantity, record.duration)["/metrics"]
    return [] if found is None else [found.first_window, found.last_window]


def draw(path: Path, record: SoakRecord, quantity: str, ylabel: str, unit: float) -> Path:
    figure, axes = _figure(max(len(record.instances), 1))
    for ax, instance in zip(axes, record.instances, strict=False):
        _panel(ax, record, instance, quantity, unit)
        ax.set_ylabel(ylabel)
    figure.suptitle(f"Soak: {ylabel.split(',')[0]} per Gunicorn worker "
                    f"({record.plan.users} users, {PROFILE} profile)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path


def write_soak(out: Path, record: SoakRecord) -> list[Path]:
    """``soak.json``, ``soak.md`` and the two graphs in ``out``; their paths."""
    return [*write_pair(out, "soak", record.document(), markdown(record)),
            draw(out / RSS_PNG, record, "rss", "RSS, MB", 1e6),
            draw(out / FDS_PNG, record, "fds", "open files", 1.0)]
