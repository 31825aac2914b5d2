"""``geojson-api bench``: from command line options to a plan, and exit codes.

``--soak MINUTES`` runs the soak instead of the matrix (:mod:`.soak`).

Exit codes: 0 done, 1 a target or a client failed (or a tool is missing),
2 bad options, 130 interrupted (Ctrl-C, SIGTERM, SIGHUP). In every case the
processes it started are stopped and the runs done so far are reported.
The benchmark scripts in ``loadtest/`` share these conventions
(:func:`exit_code`) and the parsing of comma lists (:func:`names_type`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from . import LabError, soak
from .matrix import TARGETS, full_matrix, quick_matrix, select, with_measure
from .procs import Interrupted, install_signal_handlers
from .report import load, write_report
from .runner import Plan, missing_tools, run

MB = 1_000_000
DEFAULT_OUT = "var/bench"
DEFAULT_MAX_TARGET_RSS = 4000  # MB
P = TypeVar("P")


def comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def known_names(text: str, known: Sequence[str], what: str) -> list[str]:
    """The names of a comma list, in its order; ValueError unless each is in ``known``."""
    names = comma_list(text)
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"unknown {what} {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(known)}")
    return names


def names_type(known: Sequence[str], what: str) -> Callable[[str], list[str]]:
    """An argparse ``type`` for a comma list of names from ``known``."""
    def parse(text: str) -> list[str]:
        try:
            return known_names(text, known, what)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def chosen_targets(text: str | None) -> list[str]:
    if text is None:
        return list(TARGETS)
    names = known_names(text, TARGETS, "target")
    return [t for t in TARGETS if t in names]


def plan_from(args: argparse.Namespace) -> Plan:
    """The plan the options describe (ValueError for bad options)."""
    if args.scenarios:
        scenarios = select(comma_list(args.scenarios), args.quick)
    else:
        scenarios = quick_matrix() if args.quick else full_matrix()
    if args.measure is not None:
        if args.measure < 1:
            raise ValueError("--measure must be at least 1 second")
        scenarios = with_measure(scenarios, args.measure)
    rss = DEFAULT_MAX_TARGET_RSS if args.max_target_rss is None else args.max_target_rss
    plan = Plan(targets=chosen_targets(args.targets), scenarios=scenarios,
                out=Path(args.out or DEFAULT_OUT).absolute(), quick=args.quick,
                data=Path(args.data).absolute() if args.data else None,
                max_target_rss=rss * MB)
    if args.quick:
        plan.quiet_limit = 3.0
    return plan


def rebuild(out: Path) -> int:
    """Rewrite the report and the graphs from ``out/runs.json`` (no run)."""
    try:
        meta, results = load(out / "runs.json")
    except (OSError, ValueError, KeyError) as exc:
        print(f"geojson-api bench: cannot read {out / 'runs.json'}: {exc}", file=sys.stderr)
        return 1
    print("report: " + ", ".join(str(p) for p in write_report(out, meta, results)))
    return 0


def main(args: argparse.Namespace) -> int:
    if soak.asked(args):
        return start(lambda: soak.plan_from(args), soak.missing, soak.run)
    if args.rebuild:
        return rebuild(Path(args.out or DEFAULT_OUT))
    return start(lambda: plan_from(args), missing_tools, run)


def start(make_plan: Callable[[], P], missing: Callable[[P], list[str]],
          work: Callable[[P], int]) -> int:
    """2 for bad options, 1 when a tool is missing, else :func:`exit_code` of the run."""
    try:
        plan = make_plan()
    except ValueError as exc:
        print(f"geojson-api bench: {exc}", file=sys.stderr)
        return 2
    absent = missing(plan)
    if absent:
        print(f"geojson-api bench: not found: {', '.join(absent)} (pip install "
              "'geojson-api[bench]'; apt-get install nginx-light redis-server wrk)",
              file=sys.stderr)
        return 1
    return exit_code("geojson-api bench", lambda: work(plan))


def exit_code(prog: str, work: Callable[[], int]) -> int:
    """``work()``'s exit code, 1 when it raised LabError, 130 when interrupted (Ctrl-C,
    SIGTERM, SIGHUP), each with a one-line message. ``work`` stops what it started."""
    install_signal_handlers()
    try:
        return work()
    except LabError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"{prog}: interrupted ({str(exc) or 'SIGINT'}); every process it started "
              "is stopped", file=sys.stderr)
        return 130


# -- the benchmark scripts of loadtest/ ------------------------------------------------------

QUICK_RUNS = (3, 1)  # seconds per run, rounds: what --quick means to a script


def at_least_one(text: str) -> int:
    """An argparse ``type``: a whole number, 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_run_options(parser: argparse.ArgumentParser, full: tuple[int, int], *, runs_of: str,
                    results: Path, quick: str) -> None:
    """A script's ``--duration`` and ``--rounds`` (defaults ``full``: seconds per wrk run,
    rounds; :data:`QUICK_RUNS` with ``--quick``), ``--out`` and ``--quick``."""
    parser.add_argument("--duration", type=at_least_one, metavar="SECONDS",
                        help=f"seconds per wrk run (default {full[0]}, {QUICK_RUNS[0]} with "
                             "--quick)")
    parser.add_argument("--rounds", type=at_least_one, metavar="N",
                        help=f"runs per {runs_of} (default {full[1]}, {QUICK_RUNS[1]} with "
                             "--quick)")
    parser.add_argument("--out", type=Path, default=results, metavar="DIR",
                        help="folder for the JSON and Markdown results (default: "
                             "%(default)s)")
    parser.add_argument("--quick", action="store_true", help=quick)


def run_length(args: argparse.Namespace, full: tuple[int, int]) -> tuple[int, int]:
    """(seconds per run, rounds) that the options of :func:`add_run_options` ask for."""
    seconds, rounds = QUICK_RUNS if args.quick else full
    return args.duration or seconds, args.rounds or rounds
