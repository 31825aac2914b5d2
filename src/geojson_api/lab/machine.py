"""The machine and the software a run measured, for the top of every report."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from collections.abc import Sequence
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

PACKAGES = ("geojson-api", "flask", "werkzeug", "gunicorn", "gevent", "locust", "psutil",
            "matplotlib")


def first_line(argv: Sequence[str]) -> str | None:
    """First line a program prints (stdout or stderr), without its copyright notice."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].split(" Copyright")[0].strip() if lines else None


def dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def os_name() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return None


def machine_info() -> dict[str, Any]:
    return {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "mem_total_bytes": psutil.virtual_memory().total,
        "os": os_name(),
        "kernel": platform.release(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        **{name.replace("-", "_"): dist_version(name) for name in PACKAGES},
        "nginx": first_line(["nginx", "-v"]),
        "wrk": first_line(["wrk", "-v"]),
        "redis": first_line(["redis-server", "--version"]),
        "uptime": first_line(["uptime"]),
        "loadavg_at_start": os.getloadavg(),
        "geojson_api_env": {k: v for k, v in os.environ.items() if k.startswith("GEOJSON_API_")},
    }
