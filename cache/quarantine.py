"""Partitions and state files that cannot be read: moved aside, recorded, repaired later.

A Parquet file whose footer cannot be read (truncated, overwritten, not Parquet) would
stop every reader of its dataset. `sweep_unreadable` moves such files out of the dataset
into `<cache>/quarantine/<layer>/<name>/…` (so globs and views no longer see them) and
records each move in `<cache>/state/quarantine.json`: what, where it went, when and
why. `ah health` and `ah verify` report the records; the next sync re-fetches the units
of a quarantined raw partition, and `ah repair` rebuilds what depends on them and then
clears the records (`clear`). Corrupt state documents are recorded the same way.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from cache.atomic import write_bytes_atomic
from cache.footers import footer
from cache.layout import LAYERS, CacheLayout, Layer, make_state_dir

__all__ = [
    "QuarantineEntry",
    "clear",
    "clear_restored",
    "quarantine_file",
    "quarantined",
    "sweep_unreadable",
    "unreadable_reason",
]

QUARANTINE_DIR = "quarantine"
RECORD_FILE = "quarantine.json"


@dataclass(frozen=True)
class QuarantineEntry:
    """One file moved aside: its dataset (`raw.daily`, `state.tasks`), its path inside
    the dataset, where it is now, when (UTC, ISO) and why."""

    dataset: str
    partition: str
    moved_to: str
    when: str
    reason: str

    def line(self) -> str:
        """One line for health, verify and the run's log."""
        return f"{self.dataset} {self.partition}: {self.reason} (moved to {self.moved_to})"


def _record_path(layout: CacheLayout) -> Path:
    return layout.state_dir / RECORD_FILE


def quarantined(layout: CacheLayout) -> list[QuarantineEntry]:
    """The recorded moves, oldest first (none when nothing was ever quarantined)."""
    path = _record_path(layout)
    try:
        docs = json.loads(path.read_text("utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except ValueError:
        return [QuarantineEntry("state", RECORD_FILE, str(path), "", "record unreadable")]
    return [QuarantineEntry(**doc) for doc in docs if isinstance(doc, dict)]


def _save(layout: CacheLayout, entries: list[QuarantineEntry]) -> None:
    text = json.dumps([asdict(e) for e in entries], indent=1, ensure_ascii=False)
    make_state_dir(layout)
    write_bytes_atomic(text.encode("utf-8"), _record_path(layout))


def quarantine_file(layout: CacheLayout, dataset: str, path: Path, reason: str) -> QuarantineEntry:
    """Move `path` (a file of `dataset`, e.g. `raw.daily`) under `<cache>/quarantine/`
    with a time stamp, and record it."""
    layer, _, name = dataset.partition(".")
    base = layout.root / layer / name if name else layout.root / layer
    relative = path.relative_to(base) if path.is_relative_to(base) else Path(path.name)
    now = dt.datetime.now(dt.UTC)
    stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
    target = layout.root / QUARANTINE_DIR / layer / name / f"{relative}.{stamp}.bad"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    entry = QuarantineEntry(
        dataset, relative.as_posix(), str(target), now.isoformat(timespec="seconds"), reason
    )
    _save(layout, [*quarantined(layout), entry])
    return entry


def unreadable_reason(path: Path) -> str | None:
    """Why the Parquet file cannot be opened (its footer and schema), None when it can
    (a file version already read in this process is not read again: `cache.footers`)."""
    try:
        footer(path)
    except FileNotFoundError:
        return None  # replaced or removed meanwhile: nothing to move
    except Exception as exc:  # any reader error means the file cannot be used
        return f"unreadable Parquet ({type(exc).__name__}: {str(exc)[:200]})"
    return None


def sweep_unreadable(
    layout: CacheLayout, layers: tuple[Layer, ...] = LAYERS, names: tuple[str, ...] = ()
) -> list[QuarantineEntry]:
    """Quarantine every unreadable Parquet file of the datasets `names` (all when empty)
    of `layers`; the entries of this sweep."""
    moved = []
    for layer in layers:
        base = layout.root / layer
        if not base.is_dir():
            continue
        for folder in sorted(p for p in base.iterdir() if p.is_dir()):
            if names and folder.name not in names:
                continue
            for path in sorted(folder.rglob("*.parquet")):
                reason = unreadable_reason(path)
                if reason is not None:
                    moved.append(quarantine_file(layout, f"{layer}.{folder.name}", path, reason))
    return moved


def clear(layout: CacheLayout, datasets: tuple[str, ...] = ()) -> list[QuarantineEntry]:
    """Forget the records of `datasets` (all when empty) once repaired; the files stay
    under `quarantine/` for inspection. Returns the records removed."""
    entries = quarantined(layout)
    gone = [e for e in entries if not datasets or e.dataset in datasets]
    if gone:
        _save(layout, [e for e in entries if e not in gone])
    return gone


def clear_restored(layout: CacheLayout) -> list[QuarantineEntry]:
    """Forget the records of PIT, factor and state files that their stage has written
    again (a readable file at the same place); raw partitions are cleared by the sync
    that re-fetched their task. Returns the records removed."""
    entries = quarantined(layout)
    done = []
    for e in entries:
        layer, _, name = e.dataset.partition(".")
        if layer not in ("pit", "factors", "state"):
            continue
        path = layout.root / layer / name / e.partition
        if path.is_file() and (path.suffix != ".parquet" or unreadable_reason(path) is None):
            done.append(e)
    if done:
        _save(layout, [e for e in entries if e not in done])
    return done
