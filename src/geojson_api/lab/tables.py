"""Numbers and Markdown tables: what every benchmark report prints, and the JSON +
Markdown pair of files a benchmark script writes.

Used by the lab's report (:mod:`.report`) and by the benchmark scripts in
``loadtest/``. Units follow the lab: MB = 10^6 bytes.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

MB = 1e6


def fmt(value: float | None, unit: str = "") -> str:
    """Three significant figures or so, thousands separated; '-' when unknown."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return text + unit


def mb(nbytes: float) -> str:
    """Bytes as MB (10^6 bytes), formatted like :func:`fmt`."""
    return fmt(nbytes / MB)


def pct(fraction: float | None) -> str:
    if fraction is None:
        return "-"
    return "0 %" if fraction == 0 else f"{100 * fraction:.1f} %"


def factor(better: float | None, worse: float | None) -> str:
    """How many times ``better`` beats ``worse``, both in "bigger is better" units."""
    if not better or not worse:
        return "-"
    return f"{better / worse:,.1f}x"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], text_columns: int = 1) -> str:
    """A Markdown table: the first ``text_columns`` left-aligned, numbers right-aligned."""
    align = ["---" if i < text_columns else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def median(values: Iterable[float | None]) -> float | None:
    """The median of the values that are known; None when none is."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def write_pair(out_dir: Path, stem: str, document: dict[str, Any],
               markdown: str) -> tuple[Path, Path]:
    """``<stem>.json`` (indented) and ``<stem>.md`` in ``out_dir``; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(document, indent=1) + "\n")
    md_path.write_text(markdown)
    return json_path, md_path
