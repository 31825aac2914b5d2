"""The servers benchmark (loadtest/servers.py) for real, as a smoke run: one pair of
1-second runs for two Gunicorn candidates (the app and the do-nothing app) beside
nginx. Granian and uWSGI are not dependencies of the service, so they are left out.
No timing is asserted: only that every run answered without errors, that the
report was written and that nothing is left running.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from ..conftest import require

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "loadtest" / "servers.py"


def test_one_pair_per_candidate_beside_nginx(served_data: Path, tmp_path: Path) -> None:
    for tool in ("nginx", "wrk"):
        require(tool)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--candidates", "gthread,bare-gthread",
         "--scenarios", "10c-50KB", "--duration", "1", "--rounds", "1", "--pause", "0.2",
         "--data", str(served_data), "--out", str(tmp_path), "--stem", "smoke"],
        capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads((tmp_path / "smoke.json").read_text())
    assert document["complete"] is True
    pairs = document["pairs"]
    assert [p["candidate"] for p in pairs] == ["gthread", "bare-gthread"]
    for pair in pairs:
        for side in ("server", "nginx"):
            run = pair[side]
            assert run["wrk"]["requests"] > 0 and run["wrk"]["errors"] == 0, run
            assert run["server_cpu_seconds"] > 0 and run["write_calls"] > 0, run
        assert pair["ratio"] > 0
    text = (tmp_path / "smoke.md").read_text()
    assert "## 10c-50KB" in text and "| gthread |" in text and "| bare-gthread |" in text
    pids = [pid for pids in document["pids"].values() for pid in pids]
    assert len(pids) == 3
    assert not [pid for pid in pids if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
