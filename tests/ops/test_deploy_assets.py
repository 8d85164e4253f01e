"""deploy/: the Prometheus rules and the Grafana dashboard parse and name only exported metrics.

The exported names are derived from pipeline/run/metrics.py (its METRICS registry, checked
against a textfile it actually writes), never from a list kept here.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pipeline.ops.records import record_backup, record_verify
from pipeline.run.metrics import METRICS, parse_samples, write_metrics
from pipeline.run.report import TaskOutcome
from tests.ops.conftest import SyntheticCache, make_report

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alphahome-rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "alphahome-dashboard.json"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
PROMTOOL = shutil.which("promtool")
METRIC = re.compile(r"\balphahome_[a-z0-9_]+\b")


def exported_names() -> set[str]:
    return {m.name for m in METRICS}


def full_metrics(synthetic: SyntheticCache) -> Path:
    """A textfile with every family: a run with a load, a backup and a verify recorded."""
    layout = synthetic.layout
    when = dt.datetime(2024, 6, 28, 3, tzinfo=dt.UTC)
    record_backup(layout, layout.root.parent / "b" / "20240628T030000Z", when, 10, 12345)
    record_verify(layout, 12, ["gaps", "gaps"], when)
    tasks = [TaskOutcome("daily", "success", duration_s=3.0), TaskOutcome("load", "success")]
    return write_metrics(layout, {**make_report(tasks=tasks), "alerts": []})


def test_registry_matches_what_is_written(synthetic: SyntheticCache) -> None:
    text = full_metrics(synthetic).read_text()
    written = {name for name, _, _ in parse_samples(text)}
    assert written == exported_names()


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (.ci/run installs it)")
def test_promtool_accepts_the_metrics_and_the_rules(synthetic: SyntheticCache) -> None:
    assert PROMTOOL is not None
    metrics = full_metrics(synthetic)
    done = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=metrics.read_bytes(), capture_output=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr
    done = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # the rules fire as meant: a holiday week is not stale, three open days behind are
    tests = metrics.parent / "rules-test.yml"
    tests.write_text(RULE_TESTS.format(rules=RULES))
    done = subprocess.run(
        [PROMTOOL, "test", "rules", str(tests)], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


RULE_TESTS = """
rule_files: ["{rules}"]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'alphahome_dataset_lag_sessions{{layer="raw",dataset="daily"}}'
        values: '0x180'
      - series: 'alphahome_dataset_lag_sessions{{layer="raw",dataset="weekly"}}'
        values: '3x180'
    alert_rule_test:
      - eval_time: 2h
        alertname: AlphahomeDatasetStale
        exp_alerts: []
  - interval: 1m
    input_series:
      - series: 'alphahome_dataset_lag_sessions{{layer="raw",dataset="daily"}}'
        values: '3x180'
    alert_rule_test:
      - eval_time: 2h
        alertname: AlphahomeDatasetStale
        exp_alerts:
          - exp_labels: {{severity: warning, layer: raw, dataset: daily}}
            exp_annotations:
              summary: 'raw.daily is 3 open days behind the market'
              description: >-
                Counted in open days of the exchange calendar, so holidays do not count.
                Run ah health.
"""


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    doc = parse_yaml_subset((PROVISIONING / "dashboards" / "alphahome.yaml").read_text())
    (provider,) = doc["providers"]
    assert doc["apiVersion"] == "1" and provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
    dashboard = json.loads(DASHBOARD.read_text())
    assert "__inputs" not in dashboard  # provisioning does not resolve import inputs
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    sources = parse_yaml_subset((PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    assert sources["datasources"][0]["type"] == "prometheus"


def _scalar(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return json.loads(text)
    return text


def parse_yaml_subset(text: str) -> Any:
    """Block mappings and sequences with scalar values, comments and blank lines: the
    subset the rules file is written in (no anchors, flow collections or multi-line scalars)."""
    lines = []
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        assert "\t" not in raw, "tabs are not YAML indentation"
        lines.append((len(raw) - len(raw.lstrip(" ")), raw.strip()))

    def block(i: int, indent: int) -> tuple[Any, int]:
        if lines[i][1].startswith("- "):
            items = []
            while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
                # a sequence item: re-read its first line as a mapping entry two columns in
                lines[i] = (indent + 2, lines[i][1][2:])
                value, i = block(i, indent + 2)
                items.append(value)
            return items, i
        mapping: dict[str, Any] = {}
        while i < len(lines) and lines[i][0] == indent and not lines[i][1].startswith("- "):
            key, sep, rest = lines[i][1].partition(":")
            assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), lines[i]
            assert key not in mapping, f"duplicate key {key}"
            i += 1
            if rest.strip():
                mapping[key] = _scalar(rest)
            else:
                assert i < len(lines) and lines[i][0] >= indent, f"{key} has no value"
                mapping[key], i = block(i, lines[i][0])
        return mapping, i

    doc, end = block(0, lines[0][0])
    assert end == len(lines), f"unparsed line {lines[end]}"
    return doc


def test_rules_parse_and_use_exported_metrics() -> None:
    doc = parse_yaml_subset(RULES.read_text())
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    assert doc["groups"][0]["name"] == "alphahome" and len(rules) >= 3
    used: set[str] = set()
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        assert rule["expr"].count("(") == rule["expr"].count(")")
        names = set(METRIC.findall(rule["expr"]))
        assert names, rule["alert"]
        used |= names
    assert used <= exported_names(), used - exported_names()
    alerts = " ".join(r["expr"] for r in rules)
    assert 'status="failed"' in alerts  # failed task
    assert "alphahome_task_last_success_timestamp_seconds" in alerts  # stale last success
    assert "alphahome_task_duration_seconds" in alerts  # long duration


def test_subset_parser_catches_mistakes() -> None:
    import pytest

    with pytest.raises(AssertionError):
        parse_yaml_subset("groups:\n  - name: a\n    rules:\n  bad indentation: 1\n")
    assert parse_yaml_subset("a:\n  - b: 'x: y'\n    c: 2\n") == {"a": [{"b": "x: y", "c": "2"}]}


def test_dashboard_parses_and_uses_exported_metrics() -> None:
    doc = json.loads(DASHBOARD.read_text())
    panels = doc["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)) >= 6
    used: set[str] = set()
    for panel in panels:
        assert panel["datasource"]["type"] == "prometheus"
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(METRIC.findall(target["expr"]))
            assert names, target
            used |= names
    assert used <= exported_names(), used - exported_names()
    assert {
        "alphahome_task_duration_seconds",
        "alphahome_task_status",
        "alphahome_run_success_rate",
        "alphahome_dataset_lag_sessions",
        "alphahome_backup_last_success_timestamp_seconds",
        "alphahome_verify_findings",
        "alphahome_load_last_success_timestamp_seconds",
    } <= used
