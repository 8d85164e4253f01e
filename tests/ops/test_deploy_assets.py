"""deploy/: the Prometheus rules and the Grafana dashboard parse and name only exported metrics.

The exported names are derived from pipeline/run/metrics.py (its METRICS registry, checked
against a textfile it actually writes), never from a list kept here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pipeline.run.metrics import METRICS, parse_samples, write_metrics
from tests.ops.conftest import SyntheticCache, make_report

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alphahome-rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "alphahome-dashboard.json"
METRIC = re.compile(r"\balphahome_[a-z0-9_]+\b")


def exported_names() -> set[str]:
    return {m.name for m in METRICS}


def test_registry_matches_what_is_written(synthetic: SyntheticCache) -> None:
    report = {**make_report(), "alerts": []}
    text = write_metrics(synthetic.layout, report).read_text()
    written = {name for name, _, _ in parse_samples(text)}
    assert written == exported_names()


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
    } <= used
