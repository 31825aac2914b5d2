"""Small-file requests/s of two source trees in one run: did a change make serving slower?

    python loadtest/trees.py --before /path/to/old/checkout [--after .] [--rounds 3]

Each tree's own ``geojson-api serve`` (Gunicorn gthread, one worker, that tree's
``src`` first on ``PYTHONPATH``, so the fast lane of that tree answers) serves a copy
of the same small sample. wrk (``-c8``) then measures ``GET /geojson/small``
against each in turn, alternating before/after for ``--rounds`` rounds after a
warm-up, so that a noisy machine hurts both sides alike. Results go to
``--out`` as JSON and Markdown (median of the rounds, each round listed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from geojson_api.lab.machine import machine_info
from geojson_api.lab.tables import fmt, median, table, write_pair
from geojson_api.lab.wrk import parse_wrk, wrk_command
from geojson_api.sample import write_samples

CONNECTIONS = 8
READY_SECONDS = 60.0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(tree: Path, data: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``geojson-api serve`` of ``tree`` over ``data``; waits until /readyz answers."""
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GEOJSON_API_")},
           "PYTHONPATH": str(tree / "src"), "GEOJSON_API_SETTLE_SECONDS": "0"}
    argv = [sys.executable, "-m", "geojson_api", "serve", "--data", str(data),
            "--bind", f"127.0.0.1:{port}", "--workers", "1", "--worker-class", "gthread"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2):
                return proc, url
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"trees: the server of {tree} exited; see {log}") from None
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"trees: the server of {tree} did not become ready; see {log}")


def measure(url: str, duration: int) -> float:
    done = subprocess.run(wrk_command(f"{url}/geojson/small", CONNECTIONS, duration),
                          capture_output=True, text=True, check=True)
    stats = parse_wrk(done.stdout)
    if stats.errors:
        raise SystemExit(f"trees: {stats.errors} errors against {url}:\n{done.stdout}")
    return stats.requests_per_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the old checkout")
    parser.add_argument("--after", type=Path, default=Path("."), help="the new checkout")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--out", type=Path, default=Path("var/bench"))
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration < 1:
        parser.error("--rounds and --duration must be at least 1")
    work = Path(tempfile.mkdtemp(prefix="trees-"))
    servers = {}
    try:
        write_samples(work / "samples", ["small"])
        for side, tree in (("before", args.before), ("after", args.after)):
            data = work / side
            data.mkdir()
            shutil.copyfile(work / "samples" / "small.geojson", data / "small.geojson")
            servers[side] = start(tree.resolve(), data, work / f"{side}.log")
        for _, url in servers.values():
            measure(url, 2)  # warm-up: publish, page cache, the worker's memory
        rounds: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(args.rounds):
            for side in ("before", "after"):
                rounds[side].append(measure(servers[side][1], args.duration))
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    result = {"machine": machine_info(), "rounds": rounds, "connections": CONNECTIONS,
              "duration_s": args.duration,
              "trees": {"before": str(args.before.resolve()), "after": str(args.after.resolve())}}
    rows = [[f"round {i + 1}", fmt(b), fmt(a)]
            for i, (b, a) in enumerate(zip(rounds["before"], rounds["after"], strict=True))]
    rows.append(["median", fmt(median(rounds["before"])), fmt(median(rounds["after"]))])
    markdown = table(["GET /geojson/small, requests/s", "before", "after"], rows)
    write_pair(args.out, "trees", result, markdown)
    print(markdown, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
