"""wrk, the closed-loop load generator: its command line, one run, its output in plain units.

wrk keeps every connection busy (no think time), so it measures the highest
rate a server sustains, where a Locust client would be the bottleneck first.
Units: ms, bytes, MB/s with MB = 10^6 bytes (wrk prints binary units).

:func:`run_wrk` is one run while the target's process trees are sampled (the
loadtest/ scripts use it; ``geojson-api bench`` drives wrk through
:func:`.watch.run_client` with its memory guard and checks the exit with
:func:`checked_output`).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from . import LabError
from .watch import Watched, run_client

WRK_THREADS = 2
WRK_TIMEOUT = "30s"
SAMPLE_INTERVAL = 0.2  # seconds between two samples of the target's trees in run_wrk
MB = 1e6

_TIME_TO_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_BINARY = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_TIME = r"([\d.]+)(us|ms|s|m|h)"
_SIZE = r"([\d.]+)([KMGTP]?)B"
_SUMMARY_RE = re.compile(rf"(\d+) requests in {_TIME}, {_SIZE} read")
_RPS_RE = re.compile(r"Requests/sec:\s+([\d.]+)")
_TRANSFER_RE = re.compile(rf"Transfer/sec:\s+{_SIZE}")
_AVERAGE_RE = re.compile(rf"^\s+Latency\s+{_TIME}", re.MULTILINE)
_PERCENTILE_RE = re.compile(rf"^\s+(50|75|90|99)%\s+{_TIME}\s*$", re.MULTILINE)
_SOCKET_RE = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX_RE = re.compile(r"Non-2xx or 3xx responses: (\d+)")


@dataclass
class WrkStats:
    """What wrk printed, in plain units."""

    requests: int
    seconds: float
    bytes_read: float
    requests_per_s: float
    mb_per_s: float
    latency_ms: dict[str, float | None]
    socket_errors: dict[str, int]
    non_2xx_3xx: int
    average_ms: float | None = None

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values()) + self.non_2xx_3xx


def _search(pattern: re.Pattern[str], text: str) -> re.Match[str]:
    match = pattern.search(text)
    if match is None:
        raise LabError(f"cannot find {pattern.pattern!r} in wrk's output:\n{text}")
    return match


def _ms(number: str, unit: str) -> float:
    return float(number) * _TIME_TO_MS[unit]


def _latencies(text: str, requests: int) -> tuple[float | None, dict[str, float | None]]:
    latency: dict[str, float | None] = {f"p{p}": None for p in (50, 75, 90, 99)}
    if not requests:
        return None, latency
    for match in _PERCENTILE_RE.finditer(text):
        latency[f"p{match[1]}"] = _ms(match[2], match[3])
    average = _AVERAGE_RE.search(text)
    return (_ms(average[1], average[2]) if average else None), latency


def parse_wrk(text: str) -> WrkStats:
    summary = _search(_SUMMARY_RE, text)
    requests = int(summary[1])
    transfer = _search(_TRANSFER_RE, text)
    average, latency = _latencies(text, requests)
    sockets = _SOCKET_RE.search(text)
    counts = [int(n) for n in sockets.groups()] if sockets else [0, 0, 0, 0]
    non_2xx = _NON_2XX_RE.search(text)
    return WrkStats(
        requests=requests,
        seconds=_ms(summary[2], summary[3]) / 1e3,
        bytes_read=float(summary[4]) * _BINARY[summary[5]],
        requests_per_s=float(_search(_RPS_RE, text)[1]),
        mb_per_s=float(transfer[1]) * _BINARY[transfer[2]] / MB,
        latency_ms=latency,
        socket_errors=dict(zip(("connect", "read", "write", "timeout"), counts, strict=True)),
        non_2xx_3xx=int(non_2xx[1]) if non_2xx else 0,
        average_ms=average,
    )


def wrk_command(url: str, connections: int, duration: int, *, timeout: str = WRK_TIMEOUT,
                script: Path | None = None, script_args: Sequence[str] = ()) -> list[str]:
    """``wrk -t2 -c<connections> -d<duration>s --timeout <timeout> --latency``, with a Lua
    script (its arguments go after ``--``) when given."""
    lua = ["-s", str(script)] if script else []
    rest = ["--", *script_args] if script_args else []
    return ["wrk", f"-t{WRK_THREADS}", f"-c{connections}", f"-d{duration}s",
            "--timeout", timeout, "--latency", *lua, url, *rest]


def checked_output(log: Path, watched: Watched) -> str:
    """What wrk wrote into ``log``; LabError when it failed, unless the memory guard
    stopped it."""
    text = log.read_text(errors="replace")
    if watched.returncode != 0 and not watched.stopped_by_guard:
        reason = "could not connect" if "unable to connect" in text else "failed"
        raise LabError(f"wrk {reason} (exit code {watched.returncode}): {text.strip()[-500:]}")
    return text


@dataclass
class WrkRun:
    """One wrk run: its command and output, what it measured, and what the target's
    trees (and wrk itself, and the machine) did meanwhile."""

    command: list[str]
    output: str
    stats: WrkStats
    watched: Watched
    loadavg_before: tuple[float, float, float]


def run_wrk(command: Sequence[str], roots: Sequence[psutil.Process], limit: float, *,
            target: str, interval: float = SAMPLE_INTERVAL) -> WrkRun:
    """Run wrk to its end (at most ``limit`` seconds) while sampling ``roots``, the trees
    of ``target``; LabError when wrk fails or cannot connect at all. wrk is always
    reaped."""
    loadavg = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="wrk-") as tmp:
        log = Path(tmp) / "wrk.log"
        watched = run_client(command, log, roots, limit, interval)
        text = checked_output(log, watched)
    stats = parse_wrk(text)
    if stats.requests == 0 and stats.socket_errors["connect"] > 0:
        raise LabError(f"wrk could not connect to {target}:\n{text}")
    return WrkRun(list(command), text, stats, watched, loadavg)
