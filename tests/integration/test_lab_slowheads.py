"""The slow-heads measurement (loadtest/slowheads.py) for real, as a smoke run: the
project's gthread setup keeps answering beside 20 slow request heads, uWSGI's 2
processes x 8 threads (each thread reads a head itself) answer nothing. It shows the
script tells the two apart; the full run's report is in docs/benchmarks.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "loadtest" / "slowheads.py"


def test_gthread_holds_and_uwsgi_starves(served_data: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--candidates", "gthread,uwsgi", "--clients", "20",
         "--seconds", "3", "--data", str(served_data), "--out", str(tmp_path),
         "--stem", "smoke"],
        capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    outcomes = {o["candidate"]: o for o in
                json.loads((tmp_path / "smoke.json").read_text())["outcomes"]}
    assert outcomes["gthread"]["ok"] > 5 and outcomes["gthread"]["failed"] == 0, outcomes
    assert outcomes["uwsgi"]["failed"] > 0 and outcomes["uwsgi"]["ok"] == 0, outcomes
    assert "| gthread |" in (tmp_path / "smoke.md").read_text()
