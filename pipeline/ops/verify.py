"""`ah verify [DATASET…]`: data-quality checks of the cache, exit 1 on any finding.

- corrupt: every Parquet file is read to the last page (footer, page headers,
  decompression, page checksums when written); unreadable files are named and left
  out of the other checks;
- gaps: per-trade-date datasets with no rows on an expected date (open day, week's or
  month's last open day) between their first and last date;
- duplicates: natural keys seen twice (market datasets, PIT tables, factors); exact
  duplicate rows (ignoring `_fetched_at`) in the statement version logs;
- pit: a value used before it was visible (vis_date or ann_date after knowledge_date in
  PIT tables, ann_date after calc_date in factors);
- ranges: scores and sub-scores outside [0, 100], G ranks outside (0, 100], p_rank /
  g_rank not the competition rank of the score on its calc date (1..n, ties share the
  smallest rank, rank 1 present);
- damage: files quarantined and not yet repaired, state files that do not parse (task
  states, PIT and factor build states, records), and PIT or factor files a finished
  build made that are gone (`ah repair`);
- drift: count(*) of each PostgreSQL table against the cache's row count.

Each finding names the first offending keys.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from cache.catalogue.datasets import DatasetSpec, UnknownDatasetError, dataset
from cache.layout import LAYERS, CacheLayout, Layer
from cache.partitions import unfinished_closings
from cache.quarantine import quarantined, unreadable_reason, unreadable_state_files
from foundation.errors import UsageError
from pipeline.factor_step import missing_factor_files
from pipeline.ops.stats import (
    TRADE_DATE_CADENCE,
    dataset_files,
    dataset_stats,
    scan_files,
    trade_calendar,
    unit_dates,
)
from pipeline.pit.step import missing_parts, stray_files
from sinks.pg_inspect import row_counts

EXAMPLES = 5
SCORE_COLUMNS = ("p_score", "s_gpa", "s_roe", "s_roa", "g_score")
G_RANK_COLUMNS = ("rank_em", "rank_es", "rank_rm", "rank_pm")
RANKS = {"p": ("p_score", "p_rank"), "g": ("g_score", "g_rank")}
IGNORED_IN_DUPLICATES = ("_fetched_at",)


@dataclass(frozen=True)
class Finding:
    """One problem: which check, which dataset, what, and the first offending rows."""

    check: str
    dataset: str
    message: str
    examples: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line for the terminal."""
        shown = "; ".join(self.examples)
        return f"FAIL {self.check:<10} {self.dataset}: {self.message}" + (
            f" — {shown}" if shown else ""
        )


@dataclass(frozen=True)
class VerifyReport:
    """What `ah verify` checked and found."""

    datasets: list[str]
    findings: list[Finding]
    notes: list[str]

    @property
    def exit_code(self) -> int:
        """1 when anything was found, else 0."""
        return 1 if self.findings else 0

    def to_dict(self) -> dict[str, Any]:
        """`ah verify --json`: datasets checked, findings, notes and the verdict."""
        return {
            "ok": not self.findings,
            "datasets": list(self.datasets),
            "findings": [asdict(f) for f in self.findings],
            "notes": list(self.notes),
        }

    def render(self) -> str:
        """Findings, notes about checks skipped, and a verdict line."""
        lines = [f.line() for f in self.findings] + [f"note {n}" for n in self.notes]
        verdict = "ok" if not self.findings else f"{len(self.findings)} findings"
        lines.append(f"verify: {len(self.datasets)} datasets checked, {verdict}")
        return "\n".join(lines)


# ---------------------------------------------------------------- helpers


def _describe_rows(frame: pl.DataFrame, limit: int = EXAMPLES) -> list[str]:
    """'col=value, col=value' for the first rows of a (small) frame of offending keys."""
    head = frame.head(limit).with_columns(pl.all().cast(pl.String).fill_null("null"))
    columns = head.columns
    return [", ".join(f"{c}={v}" for c, v in zip(columns, row, strict=True)) for row in head.rows()]


def select_datasets(layout: CacheLayout, names: Sequence[str]) -> list[tuple[Layer, str]]:
    """(layer, name) for `layer.name` or bare names (every layer holding one); all if none."""
    present = [(layer, name) for layer in LAYERS for name in layout.datasets(layer)]
    if not names:
        return present
    chosen: list[tuple[Layer, str]] = []
    for wanted in names:
        layer, _, name = wanted.rpartition(".")
        matches = [p for p in present if p[1] == name and (not layer or p[0] == layer)]
        if not matches:
            known = ", ".join(f"{lay}.{n}" for lay, n in present) or "none"
            msg = f"no dataset {wanted!r} in the cache {layout.root} (present: {known})"
            raise UsageError(msg)
        chosen += [m for m in matches if m not in chosen]
    return chosen


# ---------------------------------------------------------------- the checks


def unreadable_files(files: Sequence[Path]) -> dict[Path, str]:
    """Files whose footer or pages cannot be read, with the reader's error (one line)."""
    bad: dict[Path, str] = {}
    for path in files:
        try:
            reader = pq.ParquetFile(path, page_checksum_verification=True)
            for _batch in reader.iter_batches():
                pass
        except (OSError, ValueError) as exc:
            bad[path] = " ".join(str(exc).split())[:160]
    return bad


def _known(layer: Layer, name: str) -> DatasetSpec | None:
    try:
        return dataset(layer, name)
    except UnknownDatasetError:
        return None


def is_version_log(layer: Layer, name: str) -> bool:
    """A dataset stored as a version log (statements): only exact duplicates are wrong."""
    spec = _known(layer, name)
    return spec is not None and spec.storage == "versions"


def natural_key(layer: Layer, name: str, columns: Sequence[str]) -> tuple[str, ...] | None:
    """The key a dataset must not repeat: all columns but `_fetched_at` for version logs,
    else the dataset catalogue's key; None for a dataset the catalogue does not know or
    whose files lack a key column."""
    if is_version_log(layer, name):
        return tuple(c for c in columns if c not in IGNORED_IN_DUPLICATES)
    spec = _known(layer, name)
    key = spec.key if spec else ()
    return key if key and set(key) <= set(columns) else None


def duplicate_keys(scan: pl.LazyFrame, key: Sequence[str]) -> pl.DataFrame:
    """Keys that occur more than once, with their count `n`, sorted by key."""
    return (
        scan.group_by(list(key))
        .agg(n=pl.len())
        .filter(pl.col("n") > 1)
        .sort(list(key), nulls_last=True)
        .collect()
    )


def missing_dates(present: pl.Series, expected: pl.Series) -> pl.Series:
    """Expected dates between the first and last present date that have no rows."""
    if present.is_empty():
        return expected.clear()
    inside = expected.filter((expected >= present.min()) & (expected <= present.max()))
    return inside.filter(~inside.is_in(present.implode()))


def pit_violations(scan: pl.LazyFrame, columns: Sequence[str], used_on: str) -> pl.DataFrame:
    """Rows where a visibility column (vis_date, ann_date) is after the date it was used."""
    visible = [c for c in ("vis_date", "ann_date") if c in columns]
    late = pl.any_horizontal([pl.col(c) > pl.col(used_on) for c in visible])
    keys = [c for c in ("ts_code", used_on, *visible) if c in columns]
    return scan.filter(late).select(keys).sort(keys).collect()


def rank_mismatches(scan: pl.LazyFrame, score: str, rank: str) -> pl.DataFrame:
    """Rows whose rank is not the competition rank of the score (descending) on its calc date."""
    expected = pl.col(score).rank("min", descending=True).over("calc_date").cast(pl.Int64)
    return (
        scan.select("ts_code", "calc_date", score, rank)
        .with_columns(expected_rank=expected)
        .filter(pl.col(rank).cast(pl.Int64).ne_missing(pl.col("expected_rank")))
        .sort("calc_date", "ts_code")
        .collect()
    )


def out_of_range(
    scan: pl.LazyFrame, column: str, low: float, high: float, open_low: bool
) -> pl.DataFrame:
    """Rows with `column` outside [low, high] (or (low, high] when `open_low`)."""
    value = pl.col(column)
    below = value <= low if open_low else value < low
    return (
        scan.filter(below | (value > high) | value.is_nan())
        .select("ts_code", "calc_date", column)
        .sort("calc_date", "ts_code")
        .collect()
    )


# ---------------------------------------------------------------- one dataset


def verify_dataset(
    layout: CacheLayout, layer: Layer, name: str, calendar: pl.DataFrame
) -> tuple[list[Finding], list[str]]:
    """Every cache-only check of one dataset: (findings, notes)."""
    label = f"{layer}.{name}"
    files = dataset_files(layout, layer, name)
    findings: list[Finding] = []
    notes: list[str] = []
    bad = unreadable_files(files)
    if bad:
        examples = [
            f"{p.relative_to(layout.root)} ({err})" for p, err in list(bad.items())[:EXAMPLES]
        ]
        findings.append(Finding("corrupt", label, f"{len(bad)} unreadable Parquet files", examples))
    good = [p for p in files if p not in bad]
    if not good:
        return findings, notes
    scan = scan_files(good)
    columns = scan.collect_schema().names()

    key = natural_key(layer, name, columns)
    if key is None:
        notes.append(f"{label}: no natural key known, duplicate check skipped")
    else:
        dups = duplicate_keys(scan, key)
        if not dups.is_empty():
            versions = is_version_log(layer, name)
            shown = dups.select([*key[:4], "n"]) if versions else dups
            what = "exact duplicate rows" if versions else "duplicate keys"
            findings.append(
                Finding(
                    "duplicates",
                    label,
                    f"{dups.height} {what} ({', '.join(key[:6])})",
                    _describe_rows(shown),
                )
            )

    cadence = TRADE_DATE_CADENCE.get(name) if layer == "raw" else None
    if cadence is not None and "trade_date" in columns:
        if calendar.is_empty():
            notes.append(f"{label}: raw/trade_cal not cached, gap check skipped")
        else:
            present = scan.select(pl.col("trade_date").unique().sort()).collect()["trade_date"]
            present = present.drop_nulls()
            newest = present.max()  # None when no row has a trade date
            expected = (
                unit_dates(calendar, cadence, newest) if isinstance(newest, dt.date) else present
            )
            gaps = missing_dates(present, expected)
            if not gaps.is_empty():
                message = f"{gaps.len()} expected {cadence} dates without rows"
                findings.append(
                    Finding("gaps", label, message, [d.isoformat() for d in gaps.head(EXAMPLES)])
                )

    used_on = {"pit": "knowledge_date", "factors": "calc_date"}.get(layer)
    if used_on in columns and {"vis_date", "ann_date"} & set(columns):
        late = pit_violations(scan, columns, str(used_on))
        if not late.is_empty():
            message = f"{late.height} rows used before they were visible (after {used_on})"
            findings.append(Finding("pit", label, message, _describe_rows(late)))

    if layer == "factors":
        findings += factor_findings(scan, name, columns)
    return findings, notes


def factor_findings(scan: pl.LazyFrame, name: str, columns: Sequence[str]) -> list[Finding]:
    """Score ranges and rank consistency of factors.p / factors.g."""
    label = f"factors.{name}"
    findings = []
    for column in [c for c in SCORE_COLUMNS if c in columns]:
        bad = out_of_range(scan, column, 0.0, 100.0, open_low=False)
        if not bad.is_empty():
            message = f"{bad.height} values of {column} outside [0, 100]"
            findings.append(Finding("ranges", label, message, _describe_rows(bad)))
    for column in [c for c in G_RANK_COLUMNS if c in columns]:
        bad = out_of_range(scan, column, 0.0, 100.0, open_low=True)
        if not bad.is_empty():
            message = f"{bad.height} values of {column} outside (0, 100]"
            findings.append(Finding("ranges", label, message, _describe_rows(bad)))
    score, rank = RANKS.get(name, ("", ""))
    if score in columns and rank in columns:
        wrong = rank_mismatches(scan, score, rank)
        if not wrong.is_empty():
            message = (
                f"{wrong.height} rows where {rank} is not the rank of {score} on its calc date "
                "(1..n, ties share the smallest rank)"
            )
            findings.append(Finding("ranges", label, message, _describe_rows(wrong)))
    return findings


def calendar_gaps(layout: CacheLayout, name: str, calendar: pl.DataFrame) -> list[dt.date]:
    """Expected dates (open days, week's or month's last open day) between a per-trade-
    date raw dataset's first and last date that have no row (`ah repair` re-fetches
    them); empty for other datasets or without a calendar."""
    cadence = TRADE_DATE_CADENCE.get(name)
    files = [p for p in dataset_files(layout, "raw", name) if unreadable_reason(p) is None]
    if cadence is None or calendar.is_empty() or not files:
        return []
    scan = scan_files(files)
    if "trade_date" not in scan.collect_schema().names():
        return []
    present = scan.select(pl.col("trade_date").unique().sort()).collect()["trade_date"]
    present = present.drop_nulls()
    newest = present.max()
    if not isinstance(newest, dt.date):
        return []
    return missing_dates(present, unit_dates(calendar, cadence, newest)).to_list()


def damage_findings(layout: CacheLayout, datasets: Sequence[str] | None) -> list[Finding]:
    """Quarantined files not yet repaired, state files that do not parse, months a killed
    closing of a year left, and PIT or factor files a finished build made that are gone
    (of `datasets`, all if None)."""
    findings = [
        Finding("quarantine", e.dataset, f"{e.partition}: {e.reason} (moved to {e.moved_to})")
        for e in quarantined(layout)
        if datasets is None or e.dataset in datasets
    ]
    if datasets is None:
        for path, reason in unreadable_state_files(layout).items():
            findings.append(Finding("state", f"state.{path.stem}", f"{path}: {reason}"))
    for name in layout.datasets("raw"):
        label = f"raw.{name}"
        years = unfinished_closings(layout, name)
        if years and (datasets is None or label in datasets):
            shown = ", ".join(map(str, years))
            message = f"monthly files of {shown} left beside the yearly file: run ah sync {name}"
            findings.append(Finding("layout", label, message))
    gone = missing_parts(layout) + missing_factor_files(layout)
    odd = [(path, "missing", "is missing") for path in gone]
    odd += [(path, "stray", "is not a file of the last build") for path in stray_files(layout)]
    for path, check, what in odd:
        relative = path.relative_to(layout.root)
        label = ".".join(relative.parts[:2])
        if datasets is None or label in datasets:
            findings.append(Finding(check, label, f"{relative} {what}: run ah repair"))
    return findings


# ---------------------------------------------------------------- the command


def verify_cache(
    layout: CacheLayout,
    datasets: Sequence[str] = (),
    database_url: str | None = None,
    sink_raw_datasets: Sequence[str] = (),
) -> VerifyReport:
    """Check the chosen datasets (all by default); with a database URL, also row-count drift
    of PIT, factors and the raw datasets loaded (`sinks.raw_datasets`). `UsageError` for
    a cache folder that does not exist (a wrong `cache.dir` is not a clean cache)."""
    if not layout.root.is_dir():
        msg = f"no cache at {layout.root} (cache.dir): nothing to verify"
        raise UsageError(msg)
    chosen = select_datasets(layout, datasets)
    calendar = trade_calendar(layout)
    findings: list[Finding] = []
    notes: list[str] = []
    for layer, name in chosen:
        found, noted = verify_dataset(layout, layer, name, calendar)
        findings += found
        notes += noted
    findings += damage_findings(layout, [f"{lay}.{n}" for lay, n in chosen] if datasets else None)
    if database_url:
        loaded = [(lay, n) for lay, n in chosen if lay != "raw" or n in sink_raw_datasets]
        counts = row_counts(database_url, loaded)
        for layer, name in loaded:
            in_sink = counts[(layer, name)]
            in_cache = dataset_stats(layout, layer, name).rows
            if in_sink is None:
                message = f"missing in PostgreSQL ({in_cache} rows in the cache): run ah load"
                findings.append(Finding("drift", f"{layer}.{name}", message))
            elif in_sink != in_cache:
                message = f"{in_sink} rows in PostgreSQL, {in_cache} in the cache"
                findings.append(Finding("drift", f"{layer}.{name}", message))
    else:
        notes.append("no database.url: sink drift not checked (DuckDB views read the cache)")
    return VerifyReport([f"{lay}.{n}" for lay, n in chosen], findings, notes)
