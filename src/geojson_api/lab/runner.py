"""``geojson-api bench``: start the targets, run the matrix, write the report.

Every target is started first, each on its own port, and stays up for the
whole run; then every scenario runs against every target that can serve it,
the order of the targets rotating from one scenario to the next so that slow
drifts of the shared machine are spread over all of them. After each run the
target gets a cool-down (a pause, then a bounded wait until its processes are
idle). Progress is printed as it goes. Whatever happens (an error, Ctrl-C,
SIGTERM), every process is stopped by PID and the runs done so far are
reported (marked incomplete).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from ..sample import write_samples
from . import LabError
from .locustrun import locust_command, read_result
from .machine import machine_info
from .matrix import PROFILES, Scenario, estimate_seconds
from .procs import Supervisor, log_tail, supervised
from .report import write_report
from .results import Context, RunResult, from_locust, from_wrk
from .stacktarget import start_stack
from .targets import (
    Target,
    devserver,
    gunicorn_server,
    lab_file,
    start_nginx,
    start_python,
    wait_until_quiet,
    warm_up,
)
from .watch import Guard, Watched, run_client
from .wrk import checked_output, parse_wrk, wrk_command

DATASETS = ("small", "medium", "large")
CLIENT_GRACE = 60.0  # seconds a client may run past its planned time before it is an error
T = TypeVar("T")


@dataclass
class Plan:
    """What ``geojson-api bench`` was asked to do."""

    targets: list[str]
    scenarios: list[Scenario]
    out: Path
    quick: bool = False
    data: Path | None = None
    max_target_rss: int = 4_000_000_000
    start_timeout: float = 180.0
    interval: float = 0.5  # seconds between two samples of the target's tree
    pause: float = 0.25  # cool-down: always this long ...
    quiet_limit: float = 4.0  # ... then at most this long until the target is idle


@dataclass
class Progress:
    """Runs done and the time they took, for the progress lines."""

    total: int
    started: float = field(default_factory=time.monotonic)
    done: int = 0

    def line(self, text: str) -> str:
        self.done += 1
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done)
        return (f"[{self.done:>3}/{self.total}] {text}  "
                f"({_clock(elapsed)} elapsed, ~{_clock(left)} left)")


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


# -- before the runs -----------------------------------------------------------------------

def missing_tools(plan: Plan) -> list[str]:
    needed = ["locust", "matplotlib"]
    if any(s.client == "wrk" for s in plan.scenarios):
        needed.append("wrk")
    return missing([*needed, *servers_needed(plan.targets)])


def servers_needed(targets: Sequence[str]) -> list[str]:
    """The programs the ``nginx`` and ``stack`` targets run."""
    needed = []
    stacks = {t for t in targets if t.startswith("stack")}
    if stacks or "nginx" in targets:
        needed.append("nginx")
    if stacks:
        needed.append("redis-server")
    return needed


def missing(tools: Sequence[str]) -> list[str]:
    """Those of ``tools`` (programs, or Python modules: locust, matplotlib) not found."""
    return [t for t in tools if not _available(t)]


def _available(tool: str) -> bool:
    if tool in ("locust", "matplotlib"):
        return importlib.util.find_spec(tool) is not None
    return shutil.which(tool) is not None or Path("/usr/sbin", tool).exists()


def make_data(plan: Plan, workdir: Path) -> Path:
    if plan.data is not None:
        return plan.data
    print("writing the sample datasets (50 KB, 5 MB, 50 MB) ...", flush=True)
    write_samples(workdir / "data")
    return workdir / "data"


def dataset_sizes(data_dir: Path, names: Sequence[str] = DATASETS) -> dict[str, int]:
    """Bytes of each dataset's file; LabError when one is missing."""
    sizes = {}
    for name in names:
        path = data_dir / f"{name}.geojson"
        if not path.is_file():
            raise LabError(f"{path} is missing (make it with: geojson-api sample DIR)")
        sizes[name] = path.stat().st_size
    return sizes


Starter = Callable[[Supervisor, Path, Path, float], Target]


def _start_devserver(supervisor: Supervisor, workdir: Path, data: Path,
                     timeout: float) -> Target:
    return start_python(supervisor, devserver(), workdir, data, timeout)


def _start_gunicorn(supervisor: Supervisor, workdir: Path, data: Path,
                    timeout: float) -> Target:
    return start_python(supervisor, gunicorn_server("gunicorn", data), workdir, data, timeout)


STARTERS: dict[str, Starter] = {"devserver": _start_devserver, "gunicorn": _start_gunicorn,
                                "stack": start_stack, "nginx": start_nginx}


def start_targets(supervisor: Supervisor, names: Sequence[str],
                  start: Callable[[str], Target]) -> list[Target]:
    """Start every target, one after the other (the first app prepares the datasets),
    with ``start(name)``."""
    targets = []
    for name in names:
        print(f"starting {name} ...", flush=True)
        target = start(name)
        supervisor.remember_descendants()
        print(f"  {name}: {target.server.describe()}, {target.base_url}, "
              f"ready in {target.startup_seconds:.1f} s", flush=True)
        targets.append(target)
    return targets


def check_targets(targets: Sequence[Target], data: Path) -> None:
    """Every target answers every dataset in full (and the API where it has one)."""
    for target in targets:
        warm_up(target, data, DATASETS)
    wait_until_quiet(targets)


def target_record(target: Target) -> dict[str, Any]:
    record: dict[str, Any] = {"name": target.name, "url": target.base_url,
                              "pids": target.server.pids(), "has_api": target.has_api,
                              "startup_seconds": round(target.startup_seconds, 2)}
    stack_record = getattr(target.server, "record", None)
    if stack_record is not None:
        record["stack"] = stack_record()
    return record


# -- one run -------------------------------------------------------------------------------

@dataclass
class Lab:
    """What every run needs."""

    plan: Plan
    raw: Path  # Locust's and wrk's own files
    locustfile: Path
    guard: Guard


def _client_argv(lab: Lab, target: Target, scenario: Scenario, prefix: Path) -> list[str]:
    if scenario.client == "wrk":
        dataset = PROFILES[scenario.profile].dataset
        assert dataset is not None
        return wrk_command(target.url(dataset), scenario.users, scenario.measure)
    return locust_command(lab.locustfile, target.base_url, scenario, prefix)


def _wrk_result(scenario: Scenario, context: Context, log: Path,
                watched: Watched) -> RunResult:
    return from_wrk(scenario, context, parse_wrk(checked_output(log, watched)), watched)


def _locust_result(scenario: Scenario, context: Context, prefix: Path, log: Path,
                   watched: Watched) -> RunResult:
    if watched.returncode != 0 and not watched.stopped_by_guard:
        raise LabError(f"locust exited with code {watched.returncode}; end of its log:\n"
                       f"{log_tail(log)}")
    return from_locust(scenario, context, read_result(prefix), watched)


def drive(lab: Lab, target: Target, scenario: Scenario, index: int) -> RunResult:
    """One scenario against one target, its process trees sampled meanwhile."""
    prefix = lab.raw / f"{index:03d}-{target.name}-{scenario.name}"
    log = prefix.with_name(prefix.name + ".log")
    context = Context(index, target.name, datetime.now().astimezone().isoformat("T", "seconds"),
                      os.getloadavg()[0])
    watched = run_client(_client_argv(lab, target, scenario, prefix), log, target.tree_roots(),
                         scenario.run_time + CLIENT_GRACE, lab.plan.interval, lab.guard)
    target.server.check_alive()
    if scenario.client == "wrk":
        return _wrk_result(scenario, context, log, watched)
    return _locust_result(scenario, context, prefix, log, watched)


def describe(result: RunResult) -> str:
    guard = f"  STOPPED: {result.stopped_by_guard}" if result.stopped_by_guard else ""
    return (f"{result.scenario} · {result.target} ({result.client}): "
            f"{_num(result.rps)} req/s, {_num(result.mb_per_s)} MB/s, "
            f"avg {_num(result.avg_ms)} ms, p95 {_num(result.p95_ms)} ms, "
            f"errors {_pct(result.error_rate)}, in flight {result.unfinished}, "
            f"target {result.target_peak_cpu:.0f} % CPU / {result.target_peak_rss / 1e6:,.0f} MB, "
            f"client {result.client_avg_cpu:.0f} % CPU, others {result.other_cpu:.0f} %{guard}")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


# -- the matrix ----------------------------------------------------------------------------

def schedule(scenarios: Sequence[Scenario], targets: Sequence[Target]
             ) -> list[tuple[Scenario, Target]]:
    """Every scenario on every target that can serve it, the target order rotating."""
    order = []
    for block, scenario in enumerate(scenarios):
        able = [t for t in targets if scenario.runs_on(t.has_api)]
        order += [(scenario, t) for t in rotated(able, block)]
    return order


def rotated(items: Sequence[T], shift: int) -> list[T]:
    """``items`` starting at ``shift`` (modulo their number), the ones before it last:
    the order of the targets in the ``shift``-th block of runs."""
    if not items:
        return []
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def cool_down(lab: Lab, target: Target) -> None:
    time.sleep(lab.plan.pause)
    wait_until_quiet([target], limit=lab.plan.quiet_limit, max_cores=0.1, step=0.5)


def run_matrix(lab: Lab, supervisor: Supervisor, targets: Sequence[Target],
               results: list[RunResult]) -> None:
    runs = schedule(lab.plan.scenarios, targets)
    progress = Progress(len(runs))
    for index, (scenario, target) in enumerate(runs, 1):
        result = drive(lab, target, scenario, index)
        results.append(result)
        supervisor.remember_descendants()  # workers may have been replaced
        print(progress.line(describe(result)), flush=True)
        cool_down(lab, target)


# -- the whole run -------------------------------------------------------------------------

def plan_record(plan: Plan) -> dict[str, Any]:
    return {
        "quick": plan.quick, "targets": plan.targets,
        "scenarios": [{"name": s.name, "client": s.client, "profile": s.profile,
                       "users": s.users, "ramp_s": s.ramp, "measure_s": s.measure}
                      for s in plan.scenarios],
        "max_target_rss": plan.max_target_rss, "sample_interval_s": plan.interval,
        "cool_down_s": [plan.pause, plan.quiet_limit],
    }


def _setup(plan: Plan, workdir: Path, meta: dict[str, Any]) -> tuple[Lab, Path]:
    lab = Lab(plan, plan.out / "raw", lab_file("locustfile.py"),
              Guard(plan.max_target_rss))
    lab.raw.mkdir(parents=True, exist_ok=True)
    data = make_data(plan, workdir)
    meta["datasets"] = dataset_sizes(data)
    return lab, data


def execute(plan: Plan, supervisor: Supervisor, workdir: Path, meta: dict[str, Any],
            results: list[RunResult]) -> None:
    lab, data = _setup(plan, workdir, meta)
    targets = start_targets(supervisor, plan.targets, lambda name: STARTERS[name](
        supervisor, workdir, data, plan.start_timeout))
    meta["targets"] = [target_record(t) for t in targets]
    check_targets(targets, data)
    estimate = estimate_seconds(plan.scenarios, len(targets), overhead=plan.pause + 2.0)
    print(f"running {len(plan.scenarios)} scenarios on {len(targets)} targets "
          f"(about {_clock(estimate)} of runs)", flush=True)
    run_matrix(lab, supervisor, targets, results)


def run(plan: Plan) -> int:
    """Everything started is stopped, and the runs done are reported, whatever happens."""
    started = time.monotonic()
    meta: dict[str, Any] = {"machine": machine_info(), "plan": plan_record(plan)}
    results: list[RunResult] = []

    def report() -> None:
        meta["wall_seconds"] = round(time.monotonic() - started, 1)
        if results:
            paths = write_report(plan.out, meta, results)
            print("report: " + ", ".join(str(p) for p in paths), flush=True)

    with (tempfile.TemporaryDirectory(prefix="geojson-api-bench-") as tmp,
          supervised(meta, report) as supervisor):
        execute(plan, supervisor, Path(tmp), meta, results)
    return 0
