"""What a stage reports: figures, each with its target and whether the run met it.

A miss is reported, never raised: the harness measures, the reader judges. A figure
without a target is information (the raw timings behind a ratio, row counts).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Comparison = Literal["<", "<=", ">=", "=="]
Status = Literal["PASS", "MISS", "info"]

RSS_LIMIT_MB = 4096.0


@dataclass(frozen=True)
class Target:
    """A bound a figure should meet, e.g. `Target(">=", 0.95)`."""

    op: Comparison
    bound: float
    note: str = ""

    def holds(self, value: float) -> bool:
        """Whether `value` meets the bound."""
        if self.op == "<":
            return value < self.bound
        if self.op == "<=":
            return value <= self.bound
        if self.op == ">=":
            return value >= self.bound
        return value == self.bound

    def text(self, unit: str) -> str:
        """The bound as printed, e.g. `>= 0.95` or `< 50 ms`."""
        bound = f"{self.bound:g}"
        shown = f"{self.op} {bound}{' ' + unit if unit and unit not in ('x', '') else ''}"
        if unit == "x":
            shown += "x"
        return f"{shown} ({self.note})" if self.note else shown


@dataclass(frozen=True)
class Figure:
    """One number of the table: its value, unit, target and how it was obtained."""

    name: str
    value: float
    unit: str
    target: Target | None = None
    detail: str = ""

    @property
    def status(self) -> Status:
        """PASS or MISS against the target; `info` when there is none."""
        if self.target is None:
            return "info"
        return "PASS" if self.target.holds(self.value) else "MISS"

    def to_json(self) -> dict[str, Any]:
        """The figure as a JSON object."""
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "target": self.target.text(self.unit) if self.target else None,
            "status": self.status,
            "detail": self.detail,
        }


@dataclass
class StageResult:
    """Everything one stage measured: figures, the medians behind them, memory, notes."""

    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    timings: dict[str, list[float]] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def add_timings(self, timings: dict[str, list[float]]) -> None:
        """Record the per-repetition seconds of measured operations."""
        self.timings.update(timings)

    def median(self, name: str) -> float:
        """The median seconds of a measured operation."""
        return median(self.timings[name])

    def add_rss_figure(self, *measured: str) -> None:
        """The pipeline's peak memory in this stage (the largest of the `measured`
        children's peaks; all children when none named) against 4 GB. References'
        peaks stay in `peak_rss_mb` only: they are not the pipeline's."""
        names = measured or tuple(self.peak_rss_mb)
        worst = max(names, key=self.peak_rss_mb.__getitem__)
        self.figures.append(
            Figure(
                "peak RSS",
                round(self.peak_rss_mb[worst], 1),
                "MB",
                Target("<=", RSS_LIMIT_MB, "4 GB"),
                f"process tree of: {worst}",
            )
        )

    def to_json(self) -> dict[str, Any]:
        """The stage as a JSON object."""
        return {
            "title": self.title,
            "error": self.error,
            "seconds": round(self.seconds, 2),
            "figures": [f.to_json() for f in self.figures],
            "median_s": {k: round(median(v), 6) for k, v in self.timings.items() if v},
            "timings_s": {k: [round(x, 6) for x in v] for k, v in self.timings.items()},
            "peak_rss_mb": {k: round(v, 1) for k, v in self.peak_rss_mb.items()},
            "facts": self.facts,
            "notes": self.notes,
        }


def median(values: Sequence[float]) -> float:
    """The median of repetitions (a float, so the JSON stays numeric)."""
    if not values:
        msg = "median of no repetitions"
        raise ValueError(msg)
    return float(statistics.median(values))


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, rounded for the table."""
    if denominator <= 0:
        msg = f"ratio with a denominator of {denominator}"
        raise ValueError(msg)
    return round(numerator / denominator, 3)
