"""The Prometheus textfile: valid exposition format, escaping, carried-over series."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from cache.state import FileStateStore, TaskState
from pipeline.ops.records import record_backup, record_verify
from pipeline.run.metrics import METRICS, metrics_path, refresh_metrics, write_metrics
from pipeline.run.report import TaskOutcome
from tests.ops.conftest import TODAY, SyntheticCache, build_cache, make_report

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\["\\n])*"'
SAMPLE = re.compile(rf"^({NAME})(\{{(?:[a-zA-Z_][a-zA-Z0-9_]*={LABEL_VALUE},?)*\}})? (\S+)$")


def parse_strictly(text: str) -> dict[str, list[tuple[str, float]]]:
    """Exposition-format checker written from the spec: HELP and TYPE before each family's
    samples, families contiguous, one TYPE per family, values parse as floats."""
    assert text.endswith("\n")
    families: dict[str, list[tuple[str, float]]] = {}
    helped: set[str] = set()
    typed: set[str] = set()
    current = None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert name not in helped
            helped.add(name)
            current = name
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name == current and name not in typed and kind == "gauge"
            typed.add(name)
            families[name] = []
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.group(1), match.group(2) or "", match.group(3)
        assert name == current and name in typed, f"{name} sample outside its family"
        families[name].append((labels, float(value)))
    return families


def values(families: dict[str, list[tuple[str, float]]], name: str) -> dict[str, float]:
    return dict(families.get(name, []))


def test_textfile_is_valid_and_complete(synthetic: SyntheticCache) -> None:
    report = make_report()
    path = write_metrics(synthetic.layout, report)
    assert path == synthetic.layout.metrics_dir / "alphahome.prom"
    assert [p.name for p in path.parent.iterdir()] == ["alphahome.prom"]  # no temporary left
    families = parse_strictly(path.read_text())
    assert set(families) <= {m.name for m in METRICS}
    durations = values(families, "alphahome_task_duration_seconds")
    assert durations == {
        '{task="trade_cal"}': 1.5,
        '{task="daily"}': 42.0,
        '{task="income"}': 5.0,
        '{task="moneyflow"}': 0.5,
    }
    assert values(families, "alphahome_task_retries")['{task="daily"}'] == 1
    assert values(families, "alphahome_task_errors")['{task="moneyflow"}'] == 1
    status = values(families, "alphahome_task_status")
    assert status['{task="moneyflow",status="failed"}'] == 1
    assert status['{task="moneyflow",status="success"}'] == 0
    assert sum(v for k, v in status.items() if 'task="daily"' in k) == 1
    finished = dt.datetime.fromisoformat(report["finished"]).timestamp()
    success = values(families, "alphahome_task_last_success_timestamp_seconds")
    assert success == {
        '{task="trade_cal"}': finished,
        '{task="daily"}': finished,
        '{task="income"}': finished,
    }
    assert values(families, "alphahome_run_success_rate")[""] == pytest.approx(0.75)
    assert values(families, "alphahome_run_tasks")['{status="failed"}'] == 1
    rows = values(families, "alphahome_dataset_rows")
    assert rows['{layer="raw",dataset="daily"}'] == 4 * len(synthetic.daily_dates)
    newest = values(families, "alphahome_dataset_newest_date_timestamp_seconds")
    expected = dt.datetime.combine(synthetic.daily_dates[-1], dt.time(), tzinfo=dt.UTC).timestamp()
    assert newest['{layer="raw",dataset="daily"}'] == expected


def test_label_values_are_escaped(synthetic: SyntheticCache) -> None:
    odd = 'we"ird\\task\nname'
    report = make_report(tasks=[TaskOutcome(odd, "success", duration_s=2.0)])
    text = write_metrics(synthetic.layout, report).read_text()
    parse_strictly(text)
    assert '{task="we\\"ird\\\\task\\nname"} 2' in text
    # read back through the next write: the escaped task survives unchanged
    write_metrics(synthetic.layout, make_report("r2", tasks=[TaskOutcome("daily", "success")]))
    again = metrics_path(synthetic.layout).read_text()
    assert '{task="we\\"ird\\\\task\\nname"} 2' in again


def test_series_of_tasks_not_in_this_run_are_kept(synthetic: SyntheticCache) -> None:
    layout = synthetic.layout
    first = make_report("r1", dt.datetime(2024, 6, 27, 10, tzinfo=dt.UTC))
    write_metrics(layout, first)
    t1 = dt.datetime.fromisoformat(first["finished"]).timestamp()
    second = make_report(
        "r2",
        dt.datetime(2024, 6, 28, 10, tzinfo=dt.UTC),
        [TaskOutcome("daily", "failed", reason="HTTP 502", duration_s=3.0)],
    )
    families = parse_strictly(write_metrics(layout, second).read_text())
    success = values(families, "alphahome_task_last_success_timestamp_seconds")
    assert success['{task="daily"}'] == t1  # failed now: its last success is the old one
    assert success['{task="trade_cal"}'] == t1  # not in this run: kept
    assert values(families, "alphahome_task_duration_seconds")['{task="income"}'] == 5.0
    assert values(families, "alphahome_task_status")['{task="daily",status="failed"}'] == 1
    assert values(families, "alphahome_run_tasks")['{status="failed"}'] == 1  # this run only


def test_last_success_from_task_state(synthetic: SyntheticCache) -> None:
    store = FileStateStore(synthetic.layout)
    store.save(TaskState("stk_limit", status="success", last_success="2024-06-20T18:00:00+00:00"))
    families = parse_strictly(write_metrics(synthetic.layout, make_report()).read_text())
    success = values(families, "alphahome_task_last_success_timestamp_seconds")
    expected = dt.datetime(2024, 6, 20, 18, tzinfo=dt.UTC).timestamp()
    assert success['{task="stk_limit"}'] == expected


def test_alert_count(synthetic: SyntheticCache) -> None:
    report = {**make_report(), "alerts": [{"kind": "failed_task"}, {"kind": "stale_data"}]}
    families = parse_strictly(write_metrics(synthetic.layout, report).read_text())
    assert values(families, "alphahome_run_alerts")[""] == 2
    families = parse_strictly(write_metrics(synthetic.layout, report, alerts=0).read_text())
    assert values(families, "alphahome_run_alerts")[""] == 0


def _lag(path: Any, name: str, dataset: str = "daily") -> float:
    families = parse_strictly(path.read_text())
    return values(families, name)[f'{{layer="raw",dataset="{dataset}"}}']


def test_lag_counts_open_days_so_a_holiday_is_not_stale(tmp_path: Any) -> None:
    # raw.daily up to the Thursday before Spring Festival (Feb 9-16 closed)
    cache = build_cache(tmp_path / "cache", daily_until=dt.date(2024, 2, 8))
    sunday_after = {**make_report(), "market_today": "2024-02-18"}  # ten days on the wall
    path = write_metrics(cache.layout, sunday_after)
    assert _lag(path, "alphahome_dataset_lag_sessions") == 0
    assert _lag(path, "alphahome_dataset_stale") == 0
    wednesday = {**make_report(), "market_today": "2024-02-21"}  # three open days later
    path = write_metrics(cache.layout, wednesday)
    assert _lag(path, "alphahome_dataset_lag_sessions") == 3
    assert _lag(path, "alphahome_dataset_stale") == 1
    # weekly bars up to TODAY's week are ahead of that day: nothing behind
    assert _lag(path, "alphahome_dataset_lag_sessions", "weekly") == 0


def test_backup_verify_and_load_series(synthetic: SyntheticCache) -> None:
    layout = synthetic.layout
    tasks = [TaskOutcome("daily", "success"), TaskOutcome("load", "success")]
    report = make_report(tasks=tasks)
    path = write_metrics(layout, report)
    families = parse_strictly(path.read_text())
    finished = values(families, "alphahome_run_finished_timestamp_seconds")[""]
    assert values(families, "alphahome_load_last_success_timestamp_seconds") == {"": finished}
    assert "alphahome_backup_last_success_timestamp_seconds" not in families
    # a backup and a verify refresh their series and keep the run's
    when = dt.datetime(2024, 6, 29, 2, 30, tzinfo=dt.UTC)
    record_backup(layout, layout.root.parent / "snap", when, 3, 4096)
    record_verify(layout, 9, ["gaps", "pit", "gaps"], when)
    path = refresh_metrics(layout, TODAY)
    families = parse_strictly(path.read_text())
    assert values(families, "alphahome_backup_last_success_timestamp_seconds") == {
        "": when.timestamp()
    }
    assert values(families, "alphahome_backup_bytes") == {"": 4096}
    findings = values(families, "alphahome_verify_findings")
    assert findings['{check="gaps"}'] == 2 and findings['{check="pit"}'] == 1
    assert findings['{check="corrupt"}'] == 0  # every check is named, found or not
    assert values(families, "alphahome_run_finished_timestamp_seconds") == {"": finished}
    assert values(families, "alphahome_load_last_success_timestamp_seconds") == {"": finished}
    # the next run without a load keeps the last load's time
    later = make_report(run_id="r2", started=dt.datetime(2024, 7, 1, tzinfo=dt.UTC))
    families = parse_strictly(write_metrics(layout, later).read_text())
    assert values(families, "alphahome_load_last_success_timestamp_seconds") == {"": finished}
    assert values(families, "alphahome_backup_bytes") == {"": 4096}
