"""The lab's process sampling: a real process tree, and the peak CPU arithmetic."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from geojson_api.lab import LabError
from geojson_api.lab.sampling import (
    TreeSample,
    memory_stats,
    peak_cpu_percent,
    sample_tree,
    tree_pss,
)
from geojson_api.lab.watch import Watched


def sample(at: float, cpu: float, rss: int = 1000) -> TreeSample:
    return TreeSample(at, cpu, {1: rss}, {1: 1})


def test_peak_cpu_is_the_busiest_stretch_in_percent_of_a_core() -> None:
    samples = [sample(0.5, 0.25), sample(1.0, 1.0), sample(1.5, 1.1)]
    assert peak_cpu_percent(sample(0.0, 0.0), samples) == pytest.approx(150.0)


def test_peak_cpu_ignores_stretches_too_short_for_the_kernels_ticks() -> None:
    # The last sample 5 ms after the one before: one 10 ms tick would read as 200 %.
    samples = [sample(0.5, 0.25), sample(0.505, 0.26)]
    assert peak_cpu_percent(sample(0.0, 0.0), samples) == pytest.approx(50.0)


def test_others_cpu_is_what_the_machine_did_besides_target_client_and_lab() -> None:
    watched = Watched(idle=sample(0.0, 10.0), samples=[sample(2.0, 11.5)],
                      client_cpu_seconds=0.8, machine_busy_seconds=3.0,
                      sampler_cpu_seconds=0.1)
    assert watched.target_cpu_seconds == pytest.approx(1.5)
    assert watched.other_cpu_seconds == pytest.approx(0.6)
    assert Watched(idle=sample(0.0, 0.0), machine_busy_seconds=0.1,
                   client_cpu_seconds=0.5).other_cpu_seconds == 0.0


def test_sample_tree_follows_children_and_memory_growth() -> None:
    code = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
            "'import time; time.sleep(60)']); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code])
    root = psutil.Process(parent.pid)
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 30
        while not (children := root.children()) and time.monotonic() < deadline:
            time.sleep(0.05)
        first = sample_tree([root])
        assert len(first.rss) == 2 and set(first.root_of.values()) == {parent.pid}
        pss = tree_pss([root])  # shared pages split: never more than the summed RSS
        assert pss is not None and 0 < pss <= first.total_rss
        grown = TreeSample(first.at + 1, first.cpu_seconds,
                           {pid: rss + 5_000_000 for pid, rss in first.rss.items()},
                           first.root_of)
        stats = memory_stats(first, [grown])
        assert stats.growth_total == 10_000_000 and stats.worker_growth_max == 5_000_000
    finally:
        for process in [*children, root]:
            process.kill()
        parent.wait()
        psutil.wait_procs(children, timeout=10)
    with pytest.raises(LabError, match="disappeared"):
        sample_tree([root])
    assert tree_pss([root]) == 0  # a tree that is gone counts nothing
