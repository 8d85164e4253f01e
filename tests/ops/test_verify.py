"""`ah verify`: each check finds what it should, names the rows, is quiet on a clean cache."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from cache.atomic import write_parquet_atomic
from foundation.errors import UsageError
from pipeline.ops.verify import Finding, select_datasets, verify_cache
from tests.ops.conftest import (
    BAR_SCHEMA,
    FETCHED,
    SyntheticCache,
    competition_ranks,
    factor_rows,
    income_rows,
    indicator_rows,
    last_open_per_week,
    open_days_between,
    write_bars,
    write_factor,
    write_income,
    write_indicators,
)


def by_check(findings: list[Finding]) -> dict[tuple[str, str], Finding]:
    return {(f.check, f.dataset): f for f in findings}


def test_clean_cache_has_no_findings(synthetic: SyntheticCache) -> None:
    report = verify_cache(synthetic.layout)
    assert report.findings == [], report.render()
    assert report.exit_code == 0
    assert "raw.daily" in report.datasets and "factors.g" in report.datasets
    assert report.render().splitlines()[-1] == "verify: 7 datasets checked, ok"


def test_corrupted_parquet_file_is_named(synthetic: SyntheticCache) -> None:
    folder = synthetic.layout.dataset_dir("raw", "daily") / "year=2024"
    target = folder / "03.parquet"
    data = bytearray(target.read_bytes())
    data[4:36] = b"\xff" * 32  # the first page header
    target.write_bytes(bytes(data))
    truncated = folder / "04.parquet"
    truncated.write_bytes(truncated.read_bytes()[:-30])  # no footer
    report = verify_cache(synthetic.layout, ["daily"])
    found = by_check(report.findings)[("corrupt", "raw.daily")]
    assert "2 unreadable" in found.message
    assert any("03.parquet" in e for e in found.examples) and any(
        "04.parquet" in e for e in found.examples
    )
    # the other files are still checked: March and April now look like gaps
    gaps = by_check(report.findings)[("gaps", "raw.daily")]
    march = [d for d in open_days_between(dt.date(2024, 3, 1), dt.date(2024, 4, 30))]
    assert gaps.message.startswith(f"{len(march)} expected daily dates")
    assert gaps.examples == [d.isoformat() for d in march[:5]]
    assert report.exit_code == 1 and "FAIL corrupt" in report.render()


def test_gaps_against_the_calendar(synthetic: SyntheticCache) -> None:
    layout = synthetic.layout
    dropped = {dt.date(2024, 3, 12), dt.date(2024, 5, 6), dt.date(2024, 5, 7)}
    for path in layout.dataset_dir("raw", "daily").rglob("*.parquet"):
        path.unlink()
    write_bars(layout, "daily", [d for d in synthetic.daily_dates if d not in dropped])
    weeks = last_open_per_week(open_days_between(dt.date(2024, 1, 2), dt.date(2024, 6, 28)))
    for path in layout.dataset_dir("raw", "weekly").rglob("*.parquet"):
        path.unlink()
    write_bars(layout, "weekly", [w for w in weeks if w != weeks[10]])
    found = by_check(verify_cache(layout, ["daily", "raw.weekly"]).findings)
    assert found[("gaps", "raw.daily")].examples == sorted(d.isoformat() for d in dropped)
    assert found[("gaps", "raw.weekly")].examples == [weeks[10].isoformat()]
    assert found[("gaps", "raw.weekly")].message.startswith("1 expected weekly dates")


def test_duplicate_keys_and_exact_duplicate_versions(synthetic: SyntheticCache) -> None:
    layout = synthetic.layout
    extra = pl.DataFrame(
        [
            {
                "ts_code": "600000.SH",
                "trade_date": dt.date(2024, 6, 3),
                "close": 1.0,
                "vol": 1.0,
                "_fetched_at": FETCHED,
            }
        ],
        schema=BAR_SCHEMA,
    )
    write_parquet_atomic(extra, layout.dataset_dir("raw", "daily") / "late.parquet")
    rows = income_rows()
    restated = {**rows[0], "revenue": 99.0}  # same key, other values: a legitimate version
    refetched = {**rows[1], "_fetched_at": FETCHED + dt.timedelta(days=1)}  # exact duplicate
    write_income(layout, [*rows, restated, refetched])
    found = by_check(verify_cache(layout, ["daily", "income"]).findings)
    daily = found[("duplicates", "raw.daily")]
    assert daily.message.startswith("1 duplicate keys (ts_code, trade_date)")
    assert daily.examples == ["ts_code=600000.SH, trade_date=2024-06-03, n=2"]
    income = found[("duplicates", "raw.income")]
    assert income.message.startswith("1 exact duplicate rows")
    key = "ann_date=2024-05-10, f_ann_date=2024-04-20, end_date=2024-03-31"
    assert income.examples == [f"ts_code={rows[1]['ts_code']}, {key}, n=2"]


def test_months_left_beside_a_closed_year_are_named_with_the_way_out(
    synthetic: SyntheticCache,
) -> None:
    folder = synthetic.layout.dataset_dir("raw", "daily")
    december = pl.DataFrame(
        [{"ts_code": "600000.SH", "trade_date": dt.date(2023, 12, 29), "close": 1.0,
          "vol": 1.0, "_fetched_at": FETCHED}],
        schema=BAR_SCHEMA,
    )  # fmt: skip
    write_parquet_atomic(december, folder / "2023.parquet")
    write_parquet_atomic(december, folder / "2023" / "2023-12.parquet")
    found = by_check(verify_cache(synthetic.layout, ["daily"]).findings)
    layout = found[("layout", "raw.daily")]
    assert layout.message == "monthly files of 2023 left beside the yearly file: run ah sync daily"
    assert ("duplicates", "raw.daily") in found


def test_pit_violations(synthetic: SyntheticCache) -> None:
    layout = synthetic.layout
    rows = indicator_rows()
    rows[3] = {**rows[3], "vis_date": rows[3]["knowledge_date"] + dt.timedelta(days=1)}
    write_indicators(layout, rows)
    p = factor_rows("p", synthetic.calc_dates)
    p[5] = {**p[5], "ann_date": p[5]["calc_date"] + dt.timedelta(days=3)}
    write_factor(layout, "p", p)
    found = by_check(verify_cache(layout, ["pit.indicators", "factors.p"]).findings)
    pit = found[("pit", "pit.indicators")]
    assert pit.message.startswith("1 rows used before they were visible")
    assert pit.examples[0].startswith(
        f"ts_code={rows[3]['ts_code']}, knowledge_date={rows[3]['knowledge_date']}"
    )
    factor = found[("pit", "factors.p")]
    assert f"calc_date={p[5]['calc_date']}" in factor.examples[0]


def test_factor_ranges_and_ranks(synthetic: SyntheticCache) -> None:
    layout = synthetic.layout
    p = factor_rows("p", synthetic.calc_dates)
    first_day = [r for r in p if r["calc_date"] == synthetic.calc_dates[0]]
    first_day[2]["p_score"] = 101.5  # out of range, and it changes the ranks of the day
    p_scores = [r["p_score"] for r in first_day]
    expected = competition_ranks(p_scores)
    wrong = sum(1 for r, e in zip(first_day, expected, strict=True) if r["p_rank"] != e)
    assert wrong > 1
    write_factor(layout, "p", p)
    g = factor_rows("g", synthetic.calc_dates, seed=4)
    last_day = [r for r in g if r["calc_date"] == synthetic.calc_dates[-1]]
    for r in last_day:
        if r["g_rank"] is not None:
            r["g_rank"] += 1  # every rank shifted: no rank 1 that day
    last_day[0]["rank_em"] = 0.0  # G ranks live in (0, 100]
    write_factor(layout, "g", g)
    report = verify_cache(layout, ["p", "g"])
    messages = [(f.check, f.dataset, f.message) for f in report.findings]
    assert ("ranges", "factors.p", "1 values of p_score outside [0, 100]") in messages
    rank_p = next(f for f in report.findings if f.dataset == "factors.p" and "p_rank" in f.message)
    assert rank_p.message.startswith(f"{wrong} rows where p_rank")
    rank_g = next(f for f in report.findings if f.dataset == "factors.g" and "g_rank" in f.message)
    scored = sum(1 for r in last_day if r["g_score"] is not None)
    assert rank_g.message.startswith(f"{scored} rows where g_rank")
    assert ("ranges", "factors.g", "1 values of rank_em outside (0, 100]") in messages
    assert report.exit_code == 1


def test_unknown_dataset_is_a_usage_error(synthetic: SyntheticCache) -> None:
    with pytest.raises(UsageError, match="no dataset 'nope'"):
        select_datasets(synthetic.layout, ["nope"])
    assert select_datasets(synthetic.layout, ["p", "raw.daily"]) == [
        ("factors", "p"),
        ("raw", "daily"),
    ]


@pytest.mark.postgres
def test_row_count_drift_against_postgres(synthetic: SyntheticCache, pg_url: str) -> None:
    import adbc_driver_postgresql.dbapi as pgdb

    indicators = len(indicator_rows())
    with pgdb.connect(pg_url, autocommit=True) as conn, conn.cursor() as cur:
        for schema in ("pit", "factors", "raw"):
            cur.execute(f"CREATE SCHEMA {schema}")
        cur.execute("CREATE TABLE pit.indicators (ts_code text)")
        cur.execute(f"INSERT INTO pit.indicators SELECT 'x' FROM generate_series(1, {indicators})")
        cur.execute("CREATE TABLE factors.p (ts_code text)")
        cur.execute("INSERT INTO factors.p VALUES ('only one row')")
        cur.execute("CREATE TABLE raw.daily (ts_code text)")
    report = verify_cache(
        synthetic.layout, ["pit.indicators", "p", "g", "daily"], pg_url, ["daily"]
    )
    drift = {f.dataset: f.message for f in report.findings if f.check == "drift"}
    p_rows = len(factor_rows("p", synthetic.calc_dates))
    daily_rows = 4 * len(synthetic.daily_dates)
    assert drift == {
        "factors.p": f"1 rows in PostgreSQL, {p_rows} in the cache",
        "factors.g": f"missing in PostgreSQL ({p_rows} rows in the cache): run ah load",
        "raw.daily": f"0 rows in PostgreSQL, {daily_rows} in the cache",
    }
    # raw datasets not loaded by the sink are not compared
    report = verify_cache(synthetic.layout, ["daily"], pg_url, [])
    assert [f for f in report.findings if f.check == "drift"] == []


def test_verify_ignores_temporary_files(synthetic: SyntheticCache, tmp_path: Path) -> None:
    stray = synthetic.layout.dataset_dir("raw", "daily") / ".01.parquet.123.tmp"
    stray.write_bytes(b"half written")
    assert verify_cache(synthetic.layout, ["daily"]).findings == []
