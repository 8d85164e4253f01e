"""Retention: old run reports deleted (latest kept), rotated logs compressed, old
compressed logs deleted, live logs untouched."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from cache.layout import CacheLayout
from pipeline.ops.retention import DAY_S, apply_retention

NOW = 1_720_000_000.0


def _file(path: Path, text: str, age_days: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (NOW - age_days * DAY_S, NOW - age_days * DAY_S))
    return path


def test_reports_and_logs_age_out(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path / "cache")
    reports = layout.reports_dir
    old = [_file(reports / "sync-old.json", "{}", 100), _file(reports / "old.html", "x", 91)]
    kept = [
        _file(reports / "sync-new.json", "{}", 89),
        _file(reports / "latest.html", "x", 400),
        _file(reports / "latest.json", "{}", 400),
    ]
    logs = layout.logs_dir
    live = _file(logs / "alphahome.log", "now\n", 0)
    rotated = _file(logs / "alphahome.log.1", "yesterday\n" * 100, 1)
    ancient = _file(logs / "alphahome.log.20240101T000000.gz", "", 31)
    recent = _file(logs / "alphahome.log.20240601T000000.gz", "", 29)
    result = apply_retention(layout, keep_reports_days=90, keep_logs_days=30, now=NOW)
    assert sorted(result.reports_deleted) == sorted(old)
    assert not any(p.exists() for p in old) and all(p.exists() for p in kept)
    assert live.read_text() == "now\n" and not rotated.exists()
    (compressed,) = result.logs_compressed
    assert compressed.name.startswith("alphahome.log.") and compressed.suffix == ".gz"
    assert gzip.decompress(compressed.read_bytes()) == b"yesterday\n" * 100
    assert abs(compressed.stat().st_mtime - (NOW - DAY_S)) < 1  # its age is the log's
    assert result.logs_deleted == [ancient] and recent.exists() and not ancient.exists()
    # a second rotation of the same name never overwrites the first archive
    _file(logs / "alphahome.log.1", "again\n", 1)
    second = apply_retention(layout, 90, 30, now=NOW).logs_compressed
    assert len(second) == 1 and second[0] != compressed and compressed.exists()


def test_zero_keeps_everything(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path / "cache")
    report = _file(layout.reports_dir / "sync-old.json", "{}", 1000)
    archive = _file(layout.logs_dir / "alphahome.log.x.gz", "", 1000)
    result = apply_retention(layout, 0, 0, now=NOW)
    assert report.exists() and archive.exists() and not result.reports_deleted
