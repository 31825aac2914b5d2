"""What the lab shares with the benchmark scripts of loadtest/: stopping real children
(each by its signal, then the cleanups), the block that records how a run ended, exit codes,
option parsing, wrk's exit, a child started as another user."""

from __future__ import annotations

import argparse
import os
import pwd
import signal
import sys
import time
from pathlib import Path

import pytest

from geojson_api.lab import LabError
from geojson_api.lab.command import (
    QUICK_RUNS,
    add_run_options,
    at_least_one,
    exit_code,
    known_names,
    names_type,
    run_length,
)
from geojson_api.lab.procs import Supervisor, supervised
from geojson_api.lab.runner import rotated
from geojson_api.lab.sampling import TreeSample
from geojson_api.lab.watch import Watched
from geojson_api.lab.wrk import checked_output

# A child that writes the name of the signal that stopped it, then exits.
RECORDER = """
import signal, sys, time
out = sys.argv[1]
def stop(signum, frame):
    with open(out, "w") as f:
        f.write(signal.Signals(signum).name)
    sys.exit(0)
for s in (signal.SIGTERM, signal.SIGINT):
    signal.signal(s, stop)
print("ready", flush=True)
time.sleep(120)
"""


def wait_ready(log: Path) -> None:
    deadline = time.monotonic() + 30
    while "ready" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, log
        time.sleep(0.05)


def test_children_stop_each_by_its_own_signal_then_cleanups_run(
        tmp_path: Path) -> None:
    supervisor = Supervisor()
    cleaned: list[bool] = []
    try:
        database = supervisor.start("database", [sys.executable, "-c", RECORDER,
                                                 str(tmp_path / "database")],
                                    tmp_path / "database.log", stop_signal=signal.SIGINT)
        client = supervisor.start("client", [sys.executable, "-c", RECORDER,
                                             str(tmp_path / "client")], tmp_path / "client.log")
        supervisor.cleanups.append(lambda: cleaned.append(
            not database.alive() and not client.alive()))
        wait_ready(tmp_path / "database.log")
        wait_ready(tmp_path / "client.log")
    finally:
        supervisor.stop_all(timeout=30)
    assert (tmp_path / "database").read_text() == "SIGINT"
    assert (tmp_path / "client").read_text() == "SIGTERM"
    assert cleaned == [True]


def test_supervised_records_how_the_block_ended_and_always_reports() -> None:
    reported: list[dict[str, object]] = []
    meta: dict[str, object] = {"machine": "m"}
    with supervised(meta, lambda: reported.append(dict(meta))) as supervisor:
        assert isinstance(supervisor, Supervisor)
        assert meta["complete"] is False and meta["error"] == "interrupted before the end"
    assert meta["complete"] is True and meta["error"] is None and reported == [meta]
    failed: dict[str, object] = {}
    with pytest.raises(LabError), supervised(failed, lambda: reported.append(dict(failed))):
        raise LabError("nginx exited\nits log: ...")
    assert failed == {"complete": False, "error": "nginx exited"} and reported[-1] == failed
    interrupted: dict[str, object] = {}
    with pytest.raises(KeyboardInterrupt), supervised(interrupted, lambda: None):
        raise KeyboardInterrupt
    assert interrupted["error"] == "interrupted before the end"


def test_exit_codes_and_their_one_line_messages(capsys: pytest.CaptureFixture[str]) -> None:
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        assert exit_code("wholefile", lambda: 0) == 0

        def fails() -> int:
            raise LabError("wrk could not connect to nginx")

        def interrupted() -> int:
            raise KeyboardInterrupt

        assert exit_code("wholefile", fails) == 1
        assert capsys.readouterr().err == "wholefile: error: wrk could not connect to nginx\n"
        assert exit_code("features", interrupted) == 130
        assert capsys.readouterr().err.startswith("features: interrupted (SIGINT); every")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def test_comma_lists_of_known_names() -> None:
    assert known_names("tipg, ours", ("ours", "tipg"), "server") == ["tipg", "ours"]
    with pytest.raises(ValueError, match="unknown server mapserver; choose from ours, tipg"):
        known_names("ours,mapserver", ("ours", "tipg"), "server")
    with pytest.raises(argparse.ArgumentTypeError, match=r"\(none given\)"):
        names_type(("ours",), "server")(" , ")


def test_run_options_and_their_defaults() -> None:
    parser = argparse.ArgumentParser()
    add_run_options(parser, (10, 2), runs_of="scenario", results=Path("/r"), quick="smoke")
    assert run_length(parser.parse_args([]), (10, 2)) == (10, 2)
    assert run_length(parser.parse_args(["--quick"]), (10, 2)) == QUICK_RUNS
    assert run_length(parser.parse_args(["--quick", "--rounds", "4"]), (10, 2)) == (3, 4)
    assert parser.parse_args([]).out == Path("/r")
    assert at_least_one("7") == 7
    for bad in ("0", "-1", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            at_least_one(bad)


def test_rotated() -> None:
    assert rotated("abc", 0) == ["a", "b", "c"]
    assert rotated("abc", 4) == ["b", "c", "a"]
    assert rotated([], 3) == []


def test_wrk_output_is_an_error_unless_wrk_succeeded_or_the_guard_stopped_it(
        tmp_path: Path) -> None:
    log = tmp_path / "wrk.log"
    log.write_text("unable to connect to 127.0.0.1:1 Connection refused\n")
    idle = TreeSample(0.0, 0.0, {}, {})
    with pytest.raises(LabError, match=r"wrk could not connect \(exit code 1\)"):
        checked_output(log, Watched(idle=idle, returncode=1))
    guarded = Watched(idle=idle, returncode=1, stopped_by_guard="target RSS passed")
    assert checked_output(log, guarded).startswith("unable to connect")
    assert checked_output(log, Watched(idle=idle, returncode=0)).startswith("unable")


def test_series_is_relative_to_the_idle_sample() -> None:
    watched = Watched(idle=TreeSample(10.0, 2.0, {1: 100}, {1: 1}),
                      samples=[TreeSample(10.5, 2.25, {1: 150, 2: 50}, {1: 1, 2: 1})])
    assert watched.series() == [(0.5, 200, 0.25)]


def test_a_child_runs_as_the_user_given_with_that_users_group(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root may start a process as another user")
    account = pwd.getpwnam("nobody")
    supervisor = Supervisor()
    try:
        child = supervisor.start("as-nobody", ["sh", "-c", "id -u; id -g; id -G"],
                                 tmp_path / "ids.log", user="nobody")
        child.popen.wait(timeout=30)
    finally:
        supervisor.stop_all()
    uid, gid = str(account.pw_uid), str(account.pw_gid)
    assert (tmp_path / "ids.log").read_text().split() == [uid, gid, gid]  # root's groups gone
