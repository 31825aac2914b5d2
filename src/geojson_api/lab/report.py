"""The lab's report: every run as JSON and CSV, the study's tables as Markdown, two graphs.

Files written into the output folder:

- ``runs.json``: the machine, the plan, the targets and every run (:class:`RunResult`).
- ``runs.csv``: one flat row per run.
- ``report.md``: the study's Table 1 (development server), Table 2 (production),
  Table 3 (200 users x large, with improvement factors), the study's numbers
  beside ours, Nginx static as the limit, error rates at 300 users, the
  closed-loop maxima (wrk) and the whole matrix.
- ``latency-vs-users.png`` and ``throughput-vs-users.png`` (see :mod:`.graphs`).

:func:`load` reads ``runs.json`` back, so a report can be rebuilt from it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import study
from .graphs import write_graphs
from .matrix import TARGETS
from .results import CSV_FIELDS, RunResult, csv_row
from .tables import factor, fmt, mb, pct, table

MB = 1e6
GB = 1e9

TARGET_NOTES = {
    "devserver": "the study's baseline: a naive Flask app reading the whole file per request "
                 "(`geojson_api/lab/files/baseline_app.py`) on `flask run`, the Werkzeug "
                 "development server (one thread per connection)",
    "gunicorn": "our app alone: `geojson-api serve`, Gunicorn with the checked-in config "
                "(gthread, 2 x cores + 1 workers, sendfile, the delivery fast lane)",
    "stack": "our full stack: `geojson-api stack up --instances 2 --offload nginx`, Nginx in "
             "front of 2 Gunicorn instances sharing Redis; Nginx sends the bytes after the "
             "app's `X-Accel-Redirect` and keeps small files 1 s (micro-cache); its "
             "per-address rate limit is lifted, the load generator being one address",
    "nginx": "Nginx serving the same files statically (sendfile, no access log): "
             "what this machine can do at all, the limit",
}

METHOD = """\
**How to read these figures.**

- **Locust rows** are the study's workload: each simulated user requests a file
  and then waits 1-3 s. So a population of N users asks for about N / 2
  requests per second in a steady state, however fast the server: 5 req/s for
  10 users, 150 req/s for 300 (a few percent more in a window that follows the
  ramp closely, as the users' first requests come without a wait). Up to that
  rate every server shows the same throughput and differs only in latency and
  errors; a server that falls behind shows up as throughput below it and
  latency growing. Requests per second far above N / 2 (as the study printed)
  are not possible with this workload.
- **wrk rows** keep {wrk_connections} connections busy without think time: the
  highest rate a target sustains on this machine (closed loop).
- Latency is timed to the last byte of the body. Statistics are reset once all
  users run (after the ramp). A request still in flight when a run stops is
  counted as *in flight*, with the time it had run so far; a latency figure that
  these requests could move is shown as a lower bound, "≥". A factor between
  two figures of which one is a bound is itself a bound ("≥", "≤"); between
  two bounds it is only indicative ("~"). Errors are failed requests
  (connection errors, HTTP errors, bodies cut short) over completed requests.
- **Peak CPU** is the highest use of the target's whole process tree between two
  samples {interval} s apart, in % of one core (200 % = both cores); **peak
  RSS** is the tree's summed RSS (shared pages counted in every process), with
  its idle value before the run. **Client CPU** is the load generator's own
  average: near 100 % a Locust process (one core) is the bottleneck.
- The load generator and the targets share the same {nproc} cores, and so do
  other jobs of this machine. **Others' CPU** is the machine's busy time during
  a run that was neither the target's, the client's nor the lab's: other jobs,
  and kernel work charged to no process (part of loopback networking). When it
  is high, the run measured a crowded machine. The load average before each run
  is in the JSON. Compare figures side by side within one run, not across runs.
- A run is **stopped by the memory guard** when the target's tree passes
  {guard:,.0f} MB of RSS (or the machine runs short of memory); its figures
  cover the time until then.
- MB = 10^6 bytes, GB = 10^9 bytes. Clients send `Accept-Encoding: identity`, so
  every target sends the same bytes.
"""


# -- formatting -----------------------------------------------------------------------------

def latency(result: RunResult | None, key: str) -> str:
    """A latency figure of a row, "≥" when it is a lower bound."""
    if result is None:
        return "-"
    value = getattr(result, f"{key}_ms")
    bound = "≥ " if key in result.censored and value is not None else ""
    return bound + fmt(value)


# -- finding rows ---------------------------------------------------------------------------

def find(results: Sequence[RunResult], target: str, scenario: str) -> RunResult | None:
    for result in results:
        if result.target == target and result.scenario == scenario:
            return result
    return None


def targets_in(results: Sequence[RunResult]) -> list[str]:
    present = {r.target for r in results}
    return [t for t in TARGETS if t in present] + sorted(present - set(TARGETS))


def scenario_name(users: int, profile: str, client: str) -> str:
    return f"wrk-{users}c-{profile}" if client == "wrk" else f"{users}u-{profile}"


# -- the study's tables: one row per source (the study, or a target and a client) ----------

COLUMNS = ["avg ms", "p95 ms", "req/s", "MB/s", "errors", "in flight", "peak CPU",
           "peak RSS MB"]


def claim_cells(claim: study.Claim) -> list[str]:
    return [claim.latency_text(), "-", fmt(claim.rps), fmt(study.implied_gb_per_s(claim) * 1000),
            pct(claim.error_rate), "-", "-", "-"]


def result_cells(result: RunResult | None) -> list[str]:
    if result is None:
        return ["not run"] + ["-"] * (len(COLUMNS) - 1)
    guard = " (stopped: memory)" if result.stopped_by_guard else ""
    return [latency(result, "avg"), latency(result, "p95"), fmt(result.rps),
            fmt(result.mb_per_s), pct(result.error_rate) + guard, in_flight(result),
            f"{result.target_peak_cpu:.0f} %", mb(result.target_peak_rss)]


def _value(result: RunResult | None, key: str) -> float | None:
    return None if result is None else getattr(result, key)


def _bound(old: RunResult | None, new: RunResult | None, key: str) -> str:
    """A latency factor from lower bounds is itself a bound (or unknown: "~")."""
    censored = (old is not None and key in old.censored, new is not None and key in new.censored)
    return {(True, False): "≥ ", (False, True): "≤ ", (True, True): "~ "}.get(censored, "")


def _latency_factor(old: RunResult | None, new: RunResult | None, key: str) -> str:
    text = factor(_value(old, f"{key}_ms"), _value(new, f"{key}_ms"))
    return text if text == "-" else _bound(old, new, key) + text


def in_flight(result: RunResult) -> str:
    """Requests cut by the end of a run (wrk does not count them)."""
    return "-" if result.client == "wrk" else str(result.unfinished)


def factor_cells(old: RunResult | None, new: RunResult | None) -> list[str]:
    """Times better: latency old / new, throughput new / old; none from a run the
    memory guard stopped (its figures cover only part of the run)."""
    if any(r is not None and r.stopped_by_guard for r in (old, new)):
        return ["(stopped: memory)"] + ["-"] * 7
    return [_latency_factor(old, new, "avg"), _latency_factor(old, new, "p95"),
            factor(_value(new, "rps"), _value(old, "rps")),
            factor(_value(new, "mb_per_s"), _value(old, "mb_per_s"))] + ["-"] * 4


Source = tuple[str, str, str]  # label, target, client


def scenario_rows(results: Sequence[RunResult], claim: study.Claim, claim_label: str,
                  sources: Sequence[Source]) -> list[list[str]]:
    rows = [[f"{claim.users} users · {claim.profile}", claim_label, *claim_cells(claim)]]
    for label, target, client in sources:
        result = find(results, target, scenario_name(claim.users, claim.profile, client))
        rows.append(["", label, *result_cells(result)])
    return rows


def table1(results: Sequence[RunResult]) -> str:
    """The study's development-server scenarios: its numbers, then ours."""
    sources = [("devserver · Locust", "devserver", "locust"),
               ("devserver · wrk", "devserver", "wrk")]
    rows = [row for claim in study.DEV_SERVER
            for row in scenario_rows(results, claim, "study (its 2 vCPU VM)", sources)]
    return table(["Scenario", "Source", *COLUMNS], rows, text_columns=2)


def table2(results: Sequence[RunResult]) -> str:
    """The study's production claims beside our stack, and Nginx static as the limit."""
    sources = [("**stack** · Locust", "stack", "locust"), ("**stack** · wrk", "stack", "wrk"),
               ("nginx static · Locust", "nginx", "locust"),
               ("nginx static · wrk (limit)", "nginx", "wrk")]
    rows = [row for claim in study.PRODUCTION
            for row in scenario_rows(results, claim, "study's claim", sources)]
    return table(["Scenario", "Source", *COLUMNS], rows, text_columns=2)


def table3_rows(results: Sequence[RunResult], client: str) -> list[list[str]]:
    users, profile = study.HEADLINE_USERS, study.HEADLINE_PROFILE
    name = scenario_name(users, profile, client)
    dev, stack, limit = (find(results, t, name) for t in ("devserver", "stack", "nginx"))
    label = "Locust" if client == "locust" else "wrk"
    return [[f"ours · {label}: devserver", *result_cells(dev)],
            [f"ours · {label}: **stack**", *result_cells(stack)],
            [f"ours · {label}: factor, stack vs devserver", *factor_cells(dev, stack)],
            [f"ours · {label}: nginx static (limit)", *result_cells(limit)]]


def table3(results: Sequence[RunResult]) -> str:
    dev, prod = study.DEV_SERVER[-1], study.PRODUCTION[-1]
    study_factor = [factor(dev.avg_ms, prod.avg_ms), "-", factor(prod.rps, dev.rps),
                    factor(study.implied_gb_per_s(prod), study.implied_gb_per_s(dev))]
    rows = [["study: dev server", *claim_cells(dev)],
            ["study: production (claimed)", *claim_cells(prod)],
            ["study: factor", *study_factor, "-", "-", "-", "-"],
            *table3_rows(results, "locust"), *table3_rows(results, "wrk")]
    return table(["200 users · large", *COLUMNS], rows)


def physical_note(results: Sequence[RunResult]) -> str:
    """The study's headline claim against the most this machine moved."""
    claim = study.PRODUCTION[-1]
    best = max((r.mb_per_s or 0 for r in results if r.target == "nginx"), default=0)
    needed = study.implied_gb_per_s(claim)
    if not best:
        return (f"The study's claim of {fmt(claim.rps)} req/s of a 50 MB file implies "
                f"{needed:.0f} GB/s. (Nginx static did not run, so this run has no limit.)\n")
    return (f"The study's claim of {fmt(claim.rps)} req/s of a 50 MB file implies "
            f"{needed:.0f} GB/s. The most Nginx moved in any run here, serving the files "
            f"statically, was {best / 1000:.2f} GB/s: the claim is "
            f"{needed * 1000 / best:,.0f}x what this machine can send at all.\n")


# -- the matrix -----------------------------------------------------------------------------

def errors_at(results: Sequence[RunResult], users: int) -> str:
    """Error rate (and requests in flight at the end) per profile and target."""
    chosen = [r for r in results if r.users == users and r.client == "locust"]
    targets = targets_in(chosen)
    profiles = list(dict.fromkeys(r.profile for r in chosen))
    rows = []
    for profile in profiles:
        cells = []
        for target in targets:
            r = find(chosen, target, f"{users}u-{profile}")
            guard = ", stopped: memory" if r and r.stopped_by_guard else ""
            cells.append(f"{pct(r.error_rate)} ({r.unfinished} in flight{guard})" if r else "-")
        rows.append([profile, *cells])
    return table(["Profile", *targets], rows) if rows else "(no run at this user count)\n"


def matrix_table(results: Sequence[RunResult]) -> str:
    header = ["Users", "Target", "#", "avg ms", "p50 ms", "p95 ms", "p99 ms", "req/s", "MB/s",
              "errors", "in flight", "peak CPU", "peak RSS MB (idle)", "client CPU avg / peak",
              "others' CPU"]
    rows = [[str(r.users), r.target + (" ⚠" if r.stopped_by_guard else ""), str(r.index),
             latency(r, "avg"), latency(r, "p50"), latency(r, "p95"), latency(r, "p99"),
             fmt(r.rps), fmt(r.mb_per_s), pct(r.error_rate), in_flight(r),
             f"{r.target_peak_cpu:.0f} %",
             f"{mb(r.target_peak_rss)} ({mb(r.target_idle_rss)})",
             f"{r.client_avg_cpu:.0f} / {r.client_peak_cpu:.0f} %", f"{r.other_cpu:.0f} %"]
            for r in sorted(results, key=lambda r: (r.users, TARGETS.index(r.target)
                                                     if r.target in TARGETS else 99))]
    return table(header, rows, text_columns=2)


def matrix_sections(results: Sequence[RunResult]) -> list[str]:
    """One table per client and profile."""
    parts = []
    keys = list(dict.fromkeys((r.client, r.profile) for r in results))
    for client, profile in keys:
        rows = [r for r in results if r.client == client and r.profile == profile]
        unit = "connections" if client == "wrk" else "users"
        parts.append(f"### {profile} ({client}; the Users column counts {unit})\n")
        parts.append(matrix_table(rows))
    return parts


def guard_notes(results: Sequence[RunResult]) -> str:
    stopped = [r for r in results if r.stopped_by_guard]
    if not stopped:
        return ""
    lines = [f"- #{r.index} {r.scenario} · {r.target}: {r.stopped_by_guard}" for r in stopped]
    return "Runs stopped by the memory guard (⚠):\n\n" + "\n".join(lines) + "\n"


def top_errors(results: Sequence[RunResult]) -> str:
    lines = [f"- #{r.index} {r.scenario} · {r.target}: " + "; ".join(
        f"{e['count']}x {e['error']}" for e in r.errors[:3]) for r in results if r.errors]
    return ("Most frequent errors per run:\n\n" + "\n".join(lines) + "\n") if lines else ""


# -- the document ---------------------------------------------------------------------------

def machine_line(meta: dict[str, Any]) -> str:
    m = meta["machine"]
    versions = ", ".join(f"{k} {m[k]}" for k in ("flask", "werkzeug", "gunicorn", "locust")
                         if m.get(k))
    load = ", ".join(f"{x:.2f}" for x in m["loadavg_at_start"])
    return (f"**Date:** {m['date']}. **Machine:** {m['nproc']} cores ({m['cpu_model']}), "
            f"{m['mem_total_bytes'] / GB:.1f} GB RAM, {m.get('os') or 'Linux'}, kernel "
            f"{m['kernel']}. **Software:** Python {m['python']}, {versions}, "
            f"{m['nginx']}, {m['wrk']}, {m['redis']}. **Load average at the start:** {load} "
            f"(`uptime`: {m.get('uptime')}).\n")


def durations_line(meta: dict[str, Any]) -> str:
    scenarios = meta["plan"]["scenarios"]
    measured: dict[str, set[int]] = {}
    for s in scenarios:
        measured.setdefault(f"{s['profile']} ({s['client']})", set()).add(s["measure_s"])
    parts = ", ".join(f"{k} {'/'.join(str(v) for v in sorted(vs))} s"
                      for k, vs in measured.items())
    ramps = sorted({s["ramp_s"] for s in scenarios if s["client"] == "locust"})
    pause, quiet = meta["plan"]["cool_down_s"]
    mode = "quick (smoke run, not for conclusions)" if meta["plan"]["quick"] else "full"
    return (f"**Mode:** {mode}. **Durations:** Locust users start over "
            f"{' or '.join(str(r) for r in ramps)} s (ramp-up), then are measured for: "
            f"{parts}. Cool-down after each run: {pause:g} s, then until the target is idle "
            f"(at most {quiet:g} s). The whole run took "
            f"{meta.get('wall_seconds', 0) / 60:.1f} minutes.\n")


def targets_section(meta: dict[str, Any]) -> str:
    lines = []
    for t in meta.get("targets", []):
        note = TARGET_NOTES.get(t["name"], "")
        lines.append(f"- **{t['name']}**: {note}. PIDs {', '.join(map(str, t['pids']))}; "
                     f"ready in {t['startup_seconds']:.1f} s.")
    return "\n".join(lines) + "\n"


def headline_sections(results: Sequence[RunResult]) -> list[str]:
    return [
        "## Table 1: the development server (the study's baseline)\n",
        "The study's figures for each of its scenarios, then ours on the `devserver` target: "
        "with Locust (the study's workload, 1-3 s think time) and with wrk (closed loop, as "
        "many connections as the study had users). The study's MB/s are its requests/s x "
        "the file size.\n", table1(results),
        "## Table 2: the production stack\n",
        "The study's claims, then our stack and Nginx serving the same files statically, the "
        "limit of this machine; our app alone (`gunicorn`) is in the full tables below.\n",
        table2(results),
        "## Table 3: 200 users · large, improvement factors\n",
        'Factors are "times better": latency old / new, throughput new / old.\n',
        table3(results), physical_note(results),
    ]


def wrk_connections(meta: dict[str, Any]) -> str:
    counts = sorted({s["users"] for s in meta["plan"]["scenarios"] if s["client"] == "wrk"})
    return " or ".join(map(str, counts)) or "its"


def document(meta: dict[str, Any], results: Sequence[RunResult]) -> str:
    m = meta["machine"]
    parts = ["# Load-test lab: the study's scenarios, measured\n"]
    if not meta["complete"]:
        parts.append(f"**INCOMPLETE RUN**: {meta['error']}\n")
    parts += [machine_line(meta), durations_line(meta), "## Targets\n", targets_section(meta),
              METHOD.format(wrk_connections=wrk_connections(meta),
                            interval=meta["plan"]["sample_interval_s"], nproc=m["nproc"],
                            guard=meta["plan"]["max_target_rss"] / MB)]
    parts += headline_sections(results)
    parts += ["## Error rates at 300 users\n",
              "Errors over completed requests (requests still in flight at the end).\n",
              errors_at(results, 300), guard_notes(results),
              "## Graphs\n", "![Latency vs users](latency-vs-users.png)\n",
              "![Throughput vs users](throughput-vs-users.png)\n",
              "## Every run\n", *matrix_sections(results), top_errors(results)]
    return "\n".join(p for p in parts if p)


def write_report(out: Path, meta: dict[str, Any], results: Sequence[RunResult]) -> list[Path]:
    """Write every file of the report; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    runs_json = out / "runs.json"
    runs_json.write_text(json.dumps({**meta, "runs": [r.as_dict() for r in results]},
                                    indent=1, ensure_ascii=False) + "\n")
    runs_csv = out / "runs.csv"
    with open(runs_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(csv_row(r) for r in results)
    graphs = write_graphs(out, results)
    report = out / "report.md"
    report.write_text(document(meta, results))
    return [report, runs_json, runs_csv, *graphs]


def load(path: Path) -> tuple[dict[str, Any], list[RunResult]]:
    """``runs.json`` back into its metadata and rows."""
    data = json.loads(path.read_text())
    runs = [RunResult.from_dict(r) for r in data.pop("runs")]
    return data, runs
