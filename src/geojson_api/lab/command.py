"""``geojson-api bench``: from command line options to a plan, and exit codes.

Exit codes: 0 done, 1 a target or a client failed (or a tool is missing),
2 bad options, 130 interrupted (Ctrl-C, SIGTERM, SIGHUP). In every case the
processes it started are stopped and the runs done so far are reported.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import LabError
from .matrix import TARGETS, full_matrix, quick_matrix, select, with_measure
from .procs import Interrupted, install_signal_handlers
from .report import load, write_report
from .runner import Plan, missing_tools, run

MB = 1_000_000


def comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def chosen_targets(text: str | None) -> list[str]:
    if text is None:
        return list(TARGETS)
    names = comma_list(text)
    unknown = [n for n in names if n not in TARGETS]
    if unknown or not names:
        raise ValueError(f"unknown target {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(TARGETS)}")
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
    plan = Plan(targets=chosen_targets(args.targets), scenarios=scenarios,
                out=Path(args.out).absolute(), quick=args.quick,
                data=Path(args.data).absolute() if args.data else None,
                max_target_rss=args.max_target_rss * MB)
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
    if args.rebuild:
        return rebuild(Path(args.out))
    try:
        plan = plan_from(args)
    except ValueError as exc:
        print(f"geojson-api bench: {exc}", file=sys.stderr)
        return 2
    missing = missing_tools(plan)
    if missing:
        print(f"geojson-api bench: not found: {', '.join(missing)} (pip install -e "
              "'.[bench]'; apt-get install nginx-light redis-server wrk)", file=sys.stderr)
        return 1
    install_signal_handlers()
    try:
        return run(plan)
    except LabError as exc:
        print(f"geojson-api bench: error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"geojson-api bench: interrupted ({exc or 'SIGINT'}); every process it started "
              "is stopped", file=sys.stderr)
        return 130
