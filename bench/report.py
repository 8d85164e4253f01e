"""The results of a run: one document, printed as a table, saved as JSON and Markdown.

The Markdown is meant to be read on its own (in review, or pasted in the README): it
says what was run, on what, how each figure was measured and what it is compared with.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cache.atomic import write_bytes_atomic

COLUMNS = ("stage", "figure", "value", "target", "status")


def format_value(value: float, unit: str) -> str:
    """A number as the table shows it, with its unit."""
    if value != value:  # NaN
        text = "n/a"
    elif (not unit and float(value).is_integer()) or abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.1f}"
    elif abs(value) >= 1 or value == 0:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    if unit == "x":
        return text + "x"
    return f"{text} {unit}" if unit else text


def table_rows(doc: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(stage, figure, value, target, status) for every figure, and one row per failed stage."""
    rows = []
    for name, stage in doc["stages"].items():
        if stage["error"]:
            last = stage["error"].strip().splitlines()[-1]
            rows.append((name, "ERROR", last[:100], "", "ERROR"))
        for figure in stage["figures"]:
            rows.append(
                (
                    name,
                    figure["name"],
                    format_value(figure["value"], figure["unit"]),
                    figure["target"] or "",
                    figure["status"],
                )
            )
    return rows


def render_table(doc: dict[str, Any]) -> str:
    """The figures as a plain-text table (what the command prints)."""
    rows = [COLUMNS, *table_rows(doc)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    summary = doc["summary"]
    lines.append(
        f"\n{summary['pass']} pass, {summary['miss']} miss, {summary['errors']} stage error(s); "
        f"scenario {doc['scenario']['name']}, {doc['reps']} repetition(s), "
        f"{doc['seconds']:.0f} s"
    )
    return "\n".join(line.rstrip() for line in lines)


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(doc: dict[str, Any]) -> str:
    """The whole document as Markdown: context, the table, how each stage was measured."""
    sc, machine = doc["scenario"], doc["machine"]
    out = [
        f"# alphahome benchmarks: `{sc['name']}` scenario",
        "",
        f"Run {doc['finished']} by `python -m bench --scenario {sc['name']}` "
        f"(`make bench{'-full' if sc['name'] == 'full' else ''}`) in {doc['seconds']:.0f} s, "
        f"on {machine['cpus']} CPU(s), {machine['memory_gb']} GB, Python {machine['python']}.",
        "",
        f"Market: the simulator's seeded market of {sc['stocks']:,} stocks from "
        f"{sc['start']} to {sc['today']} ({sc['years']} years, seed {sc['seed']}); the "
        f"pipeline's own sync built the cache (fingerprint `{sc['fingerprint']}`).",
        "",
        "How to read it: every time is the **median of "
        f"{doc['reps']} repetition(s)**, each measured piece in its own spawned process; "
        "targets are ratios to a reference measured side by side in the same run (the "
        "usual way of doing it, or the raw mechanism underneath), or bounds with a wide "
        "margin, because absolute times drift on shared machines. A MISS is a gap we "
        "track, not a failure of the run. Peak RSS is the peak of the summed resident "
        "memory of the measured process and its children (sampled every 0.1 s), never "
        "less than the process's own VmHWM.",
        "",
        "| stage | figure | value | target | status |",
        "|---|---|---|---|---|",
    ]
    for row in table_rows(doc):
        out.append("| " + " | ".join(_markdown_cell(c) for c in row) + " |")
    summary = doc["summary"]
    out += [
        "",
        f"**{summary['pass']} pass, {summary['miss']} miss, {summary['errors']} stage error(s).**",
        "",
        "## How each stage was measured",
    ]
    for name, stage in doc["stages"].items():
        out += ["", f"### {name}: {stage['title']}", ""]
        out += [f"- {note}" for note in stage["notes"]]
        if stage["median_s"]:
            medians = ", ".join(f"{k} {v:.4g} s" for k, v in stage["median_s"].items())
            out.append(f"- Medians: {medians}.")
        if stage["facts"]:
            facts = "; ".join(
                f"{k} `{json.dumps(v, ensure_ascii=False)}`" for k, v in stage["facts"].items()
            )
            out.append(f"- Facts: {facts}.")
        if stage["error"]:
            out += ["", "```", stage["error"].strip()[-3000:], "```"]
    return "\n".join(out) + "\n"


def write_results(doc: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    """Save `latest-<scenario>.json` and `.md` under `folder` (atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"latest-{doc['scenario']['name']}"
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    text = json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    write_bytes_atomic(text.encode("utf-8"), json_path)
    write_bytes_atomic(render_markdown(doc).encode("utf-8"), md_path)
    return json_path, md_path


def machine_facts() -> dict[str, Any]:
    """CPUs, memory and Python of this machine (for the reader of the results)."""
    import platform

    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(pages / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
