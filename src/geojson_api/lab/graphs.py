"""The study's two graphs, drawn from the Locust rows: latency and throughput vs users.

One panel per load profile, one line per target. Latency: the average (solid)
and the 95th percentile (dotted), log scale. Throughput: requests/s, with what the
study's users request in a steady state (users / 2 s of mean think time) as a
grey dashed line. matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import study
from .matrix import TARGETS
from .results import RunResult

COLORS = {"devserver": "tab:red", "gunicorn": "tab:orange", "stack": "tab:blue",
          "nginx": "tab:green"}
LATENCY_PNG = "latency-vs-users.png"
THROUGHPUT_PNG = "throughput-vs-users.png"


def series(results: Sequence[RunResult], profile: str, target: str,
           key: str) -> tuple[list[int], list[float]]:
    """(users, values) of one target's line in one panel; missing values are left out."""
    rows = sorted((r for r in results if r.client == "locust" and r.profile == profile
                   and r.target == target), key=lambda r: r.users)
    points = [(r.users, getattr(r, key)) for r in rows if getattr(r, key) is not None]
    return [u for u, _ in points], [float(v) for _, v in points]


def _figure(count: int) -> tuple[Any, list[Any]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(count, 2)
    rows = (count + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(6 * columns, 4 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[count:]:
        ax.set_visible(False)
    return figure, flat[:count]


def _targets(results: Sequence[RunResult]) -> list[str]:
    present = {r.target for r in results}
    return [t for t in TARGETS if t in present] + sorted(present - set(TARGETS))


def _in_panel(results: Sequence[RunResult], profile: str) -> list[str]:
    return _targets([r for r in results if r.profile == profile])


def _latency_panel(ax: Any, results: Sequence[RunResult], profile: str) -> None:
    for target in _in_panel(results, profile):
        color = COLORS.get(target)
        users, avg = series(results, profile, target, "avg_ms")
        ax.plot(users, avg, "o-", color=color, label=f"{target} avg")
        users, p95 = series(results, profile, target, "p95_ms")
        ax.plot(users, p95, "x:", color=color, label=f"{target} p95")
    ax.axhline(study.BUDGET_P95_MS, color="grey", linewidth=0.8, linestyle="--",
               label="p95 budget (500 ms)")
    ax.set_yscale("log")
    ax.set_ylabel("latency, ms (log)")


def _throughput_panel(ax: Any, results: Sequence[RunResult], profile: str) -> None:
    for target in _in_panel(results, profile):
        users, rps = series(results, profile, target, "rps")
        ax.plot(users, rps, "o-", color=COLORS.get(target), label=target)
    users = sorted({r.users for r in results if r.profile == profile and r.client == "locust"})
    ax.plot(users, [study.offered_rps(u) for u in users], "--", color="grey",
            label="what the users ask (users / 2 s)")
    ax.set_ylabel("requests/s")


def _draw(path: Path, results: Sequence[RunResult], title: str, panel: Any) -> Path:
    locust = [r for r in results if r.client == "locust"]
    profiles = list(dict.fromkeys(r.profile for r in locust)) or ["none"]
    figure, axes = _figure(len(profiles))
    for ax, profile in zip(axes, profiles, strict=True):
        panel(ax, locust, profile)
        ax.set_title(profile)
        ax.set_xlabel("users")
        ax.set_xticks(sorted({r.users for r in locust if r.profile == profile}))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="x-small")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path


def write_graphs(out: Path, results: Sequence[RunResult]) -> list[Path]:
    return [
        _draw(out / LATENCY_PNG, results, "Latency vs users (Locust, 1-3 s think time)",
              _latency_panel),
        _draw(out / THROUGHPUT_PNG, results, "Throughput vs users (Locust, 1-3 s think time)",
              _throughput_panel),
    ]
