"""Slow request heads against each WSGI server setup: do normal requests still get through?

The fault suite's ``test_slow_header_clients_do_not_starve_serve_defaults``
holds ``geojson-api serve`` to this: 50 clients that send their request head a
byte a second must neither starve normal requests nor stay connected past the
head timeout. A server can only be adopted if the whole suite passes with it
(issue 14), so this script runs the same attack against every candidate of
``loadtest/servers.py`` (the same commands and settings), one at a time, and
reports what a normal client saw.

Per candidate: start it; open ``--clients`` connections and drip a ~130-byte
request head into each, one byte per second; from the second second on, for
``--seconds`` seconds, make normal requests for the small sample file, each on
a new connection with a 3 s timeout, one after the other; then count the normal
requests that succeeded and failed, the slowest success, and how many slow
connections the server closed and when. Nothing else runs meanwhile. This is a
measurement, not a test: no thresholds.

Usage::

    python loadtest/slowheads.py [--candidates gthread,uwsgi,...] [--clients 50]
        [--seconds 14] [--data DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import requests

from geojson_api.lab.command import names_type
from geojson_api.lab.machine import machine_info
from geojson_api.lab.procs import supervised
from geojson_api.lab.tables import fmt, table, write_pair
from geojson_api.lab.targets import HOST, python_command

# servers: Python puts this script's folder on sys.path.
from servers import BY_NAME, candidate_dict, installed, server_versions, start_candidate

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_CANDIDATES = ("gthread", "sync", "gevent", "granian", "uwsgi")
HEAD = b"GET /geojson/small HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
NORMAL_TIMEOUT = 3.0


@dataclass
class Outcome:
    candidate: str
    setup: str
    ok: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    slowest_ok_s: float | None = None
    slow_closed: int = 0
    first_closed_s: float | None = None
    last_closed_s: float | None = None


class Drip:
    """``clients`` connections, each sent one more byte of :data:`HEAD` every second."""

    def __init__(self, port: int, clients: int) -> None:
        self.sockets = [socket.create_connection((HOST, port), timeout=5) for _ in
                        range(clients)]
        self.closed_after: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        for i in range(len(HEAD)):
            for sock in list(self.sockets):
                try:
                    sock.send(HEAD[i:i + 1])
                except OSError:  # the server closed it
                    self.sockets.remove(sock)
                    sock.close()
                    self.closed_after.append(time.monotonic() - started)
            if self.stop.wait(1) or not self.sockets:
                return

    def __enter__(self) -> Drip:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        for sock in self.sockets:
            sock.close()


def attack(base_url: str, port: int, clients: int, seconds: float, outcome: Outcome) -> None:
    with Drip(port, clients) as drip:
        time.sleep(1)
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            t = time.monotonic()
            try:
                with requests.get(f"{base_url}/geojson/small", timeout=NORMAL_TIMEOUT,
                                  headers={"Connection": "close"}) as r:
                    r.raise_for_status()
                outcome.ok += 1
                took = time.monotonic() - t
                outcome.slowest_ok_s = max(outcome.slowest_ok_s or 0.0, took)
            except requests.RequestException as exc:
                outcome.failed += 1
                kind = type(exc).__name__
                outcome.failures[kind] = outcome.failures.get(kind, 0) + 1
            time.sleep(0.1)
        closed = sorted(drip.closed_after)
    outcome.slow_closed = len(closed)
    if closed:
        outcome.first_closed_s, outcome.last_closed_s = closed[0], closed[-1]


def small_sample(data_dir: Path) -> Path:
    """A data folder with the small sample only (the one file the normal client asks for)."""
    subprocess.run([*python_command(), "sample", str(data_dir), "--only", "small"],
                   check=True, capture_output=True)
    return data_dir


def run(config: Config) -> int:
    meta: dict[str, Any] = {"machine": machine_info(), "config": asdict(config),
                            "servers": server_versions(),
                            "candidates": [candidate_dict(BY_NAME[n]) for n in config.candidates]}
    meta["config"].update(out=str(config.out), data=str(config.data) if config.data else None)
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="slowheads-") as tmp:
        workdir = Path(tmp)
        data_dir = config.data or small_sample(workdir / "data")
        for name in config.candidates:
            candidate = BY_NAME[name]
            if not installed(candidate):
                print(f"{name}: {candidate.server} is not installed, skipped", flush=True)
                continue
            outcome = Outcome(name, candidate.setup)
            with supervised({}, lambda: None) as supervisor:
                print(f"starting {name} ...", flush=True)
                target = start_candidate(supervisor, candidate, workdir, data_dir, 180.0)
                attack(target.base_url, target.port, config.clients, config.seconds, outcome)
            outcomes.append(outcome)
            print(f"{name}: {outcome.ok} ok, {outcome.failed} failed {outcome.failures}, "
                  f"{outcome.slow_closed} of {config.clients} slow connections closed",
                  flush=True)
    document = {**meta, "outcomes": [asdict(o) for o in outcomes]}
    json_path, md_path = write_pair(config.out, config.stem, document,
                                    markdown_report(meta, config, outcomes))
    print(f"wrote {md_path} and {json_path}")
    return 0


def markdown_report(meta: dict[str, Any], config: Config, outcomes: Sequence[Outcome]) -> str:
    machine = meta["machine"]
    rows = [(o.candidate, o.setup, str(o.ok), str(o.failed),
             ", ".join(f"{k} {v}" for k, v in sorted(o.failures.items())) or "-",
             fmt(o.slowest_ok_s), f"{o.slow_closed} / {config.clients}",
             "-" if o.first_closed_s is None else
             f"{fmt(o.first_closed_s)}-{fmt(o.last_closed_s)}") for o in outcomes]
    return (f"# Slow request heads, {date.today().isoformat()}\n\n"
            f"{config.clients} clients sending a request head a byte a second; normal "
            f"requests for the small file for {config.seconds} s, one at a time, "
            f"{NORMAL_TIMEOUT:.0f} s timeout each.\n\n"
            f"Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), "
            f"{machine['date']}, load average at the start "
            f"{', '.join(f'{x:.2f}' for x in machine['loadavg_at_start'])}; servers: "
            f"{meta['servers']}.\n\n"
            + table(["candidate", "setup", "normal ok", "normal failed", "failures",
                     "slowest ok (s)", "slow closed", "closed after (s)"], rows, 2))


@dataclass(frozen=True)
class Config:
    candidates: tuple[str, ...]
    clients: int
    seconds: float
    out: Path
    stem: str
    data: Path | None = None


def parse_config(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=names_type(list(BY_NAME), "candidate"),
                        default=list(DEFAULT_CANDIDATES),
                        help=f"comma list (default {','.join(DEFAULT_CANDIDATES)})")
    parser.add_argument("--clients", type=int, default=50, help="slow clients (default 50)")
    parser.add_argument("--seconds", type=float, default=14.0,
                        help="seconds of normal requests (default 14)")
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="data folder with small.geojson (default: a fresh sample)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, metavar="DIR")
    parser.add_argument("--stem", default=f"slowheads-{date.today().isoformat()}")
    args = parser.parse_args(argv)
    return Config(tuple(args.candidates), args.clients, args.seconds, args.out, args.stem,
                  args.data)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_config(argv))


if __name__ == "__main__":
    sys.exit(main())
