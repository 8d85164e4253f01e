"""Partitions and state files that cannot be read: moved aside, recorded, repaired later.

A Parquet file that cannot be read (empty, not Parquet, truncated, a page that does not
decode) would stop every reader of its dataset. `sweep_unreadable` moves such files out
of the dataset into `<cache>/quarantine/<layer>/<name>/…` (so globs and views no
longer see them) and records each move in `<cache>/state/quarantine.json`: what, where
it went, when and why. `ah health` and `ah verify` report the records; the next sync
re-fetches the units of a quarantined raw partition (`pipeline.sync.recover`), and
`ah repair` rebuilds what depends on them and then clears the records (`clear`).

Corrupt state documents (`unreadable_state_files`) are recorded the same way by the
reader that meets them (`read_state_json`) and rebuilt by their stage: a sync task's
committed units from what raw/ holds, the PIT and factor build states by a full build
of that stage.

Sweeps check the footer and schema only (cheap enough for every sync); `deep` reads
every page too (with checksums), as `ah verify` and `ah repair` do.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from cache.atomic import write_bytes_atomic
from cache.footers import footer
from cache.layout import LAYERS, CacheLayout, Layer, make_state_dir

__all__ = [
    "QuarantineEntry",
    "clear",
    "clear_restored",
    "forget",
    "quarantine_file",
    "quarantined",
    "read_state_json",
    "sweep_unreadable",
    "unreadable_reason",
    "unreadable_state_files",
]

QUARANTINE_DIR = "quarantine"
RECORD_FILE = "quarantine.json"
MAGIC = b"PAR1"  # a Parquet file starts and ends with it


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


def _dataset_base(layout: CacheLayout, dataset: str) -> Path:
    """The folder of a dataset's files (`raw.daily`, `state.tasks`, `state`)."""
    layer, _, name = dataset.partition(".")
    top = layout.state_dir if layer == "state" else layout.root / layer
    return top / name if name else top


def quarantine_file(layout: CacheLayout, dataset: str, path: Path, reason: str) -> QuarantineEntry:
    """Move `path` (a file of `dataset`, e.g. `raw.daily`) under `<cache>/quarantine/`
    with a time stamp, and record it."""
    layer, _, name = dataset.partition(".")
    base = _dataset_base(layout, dataset)
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


def unreadable_reason(path: Path, deep: bool = False) -> str | None:
    """Why the Parquet file cannot be used, None when it can: its footer and schema
    (an empty file, bad magic bytes, a cut end), and with `deep` every page as well
    (decompressed and decoded, checksums verified where written). A footer already read
    in this process for the same file version is not read again (`cache.footers`)."""
    try:
        if deep:
            reader = pq.ParquetFile(path, page_checksum_verification=True)
            for _batch in reader.iter_batches():
                pass
        else:
            footer(path)
        with path.open("rb") as fh:
            if fh.read(len(MAGIC)) != MAGIC:
                return "unreadable Parquet (no magic bytes at the start)"
    except FileNotFoundError:
        return None  # replaced or removed meanwhile: nothing to move
    except Exception as exc:  # any reader error means the file cannot be used
        text = " ".join(str(exc).split())[:200]
        return f"unreadable Parquet ({type(exc).__name__}: {text})"
    return None


def _document_reason(path: Path) -> str | None:
    """Why a JSON state document cannot be used (None when it can): it must parse as
    one JSON object (a task document also as a task state)."""
    try:
        doc = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, OSError) as exc:
        return f"unreadable state document ({type(exc).__name__})"
    if path.name == RECORD_FILE:
        return None if isinstance(doc, list) else "unreadable state document (not a list)"
    if not isinstance(doc, dict):
        return "unreadable state document (not an object)"
    if path.parent.name == "tasks" and not isinstance(doc.get("committed", []), list):
        return "unreadable task state (committed is not a list)"
    return None


def unreadable_state_files(layout: CacheLayout) -> dict[Path, str]:
    """Every state file that cannot be read, with why: the JSON documents under
    `<cache>/state` (task states, PIT and factor build states, the as-of date, the
    source, the records) and its Parquet files (the factors' stock lists). Lock files
    are the lock's business and are left out."""
    folder = layout.state_dir
    bad: dict[Path, str] = {}
    if not folder.is_dir():
        return bad
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix == ".json":
            reason = _document_reason(path)
        elif path.suffix == ".parquet":
            reason = unreadable_reason(path, deep=True)
        else:
            continue
        if reason is not None:
            bad[path] = reason
    return bad


def read_state_json(layout: CacheLayout, path: Path) -> dict[str, Any]:
    """A stage's JSON state document (`state/pit.json`, `state/factors.json`); empty
    when it is missing. One that does not parse is quarantined (recorded, so health,
    verify and the run's report name it) and read as empty: the stage then rebuilds
    what it recorded (a full build of that stage) and writes a new one."""
    if not path.is_file():
        return {}
    reason = _document_reason(path)
    if reason is not None:
        quarantine_file(layout, "state", path, reason)
        return {}
    doc = json.loads(path.read_text("utf-8"))
    return doc if isinstance(doc, dict) else {}


def sweep_unreadable(
    layout: CacheLayout,
    layers: tuple[Layer, ...] = LAYERS,
    names: tuple[str, ...] = (),
    deep: bool = False,
) -> list[QuarantineEntry]:
    """Quarantine every unreadable Parquet file of the datasets `names` (all when empty)
    of `layers` (`deep`: read every page, not only the footer); the entries of this
    sweep."""
    moved = []
    for layer in layers:
        base = layout.root / layer
        if not base.is_dir():
            continue
        for folder in sorted(p for p in base.iterdir() if p.is_dir()):
            if names and folder.name not in names:
                continue
            for path in sorted(folder.rglob("*.parquet")):
                reason = unreadable_reason(path, deep)
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


def forget(layout: CacheLayout, entry: QuarantineEntry) -> None:
    """Forget one record (a file its command writes again by itself); the file stays
    under `quarantine/` for inspection."""
    _save(layout, [e for e in quarantined(layout) if e != entry])


def clear_restored(layout: CacheLayout) -> list[QuarantineEntry]:
    """Forget the records of PIT, factor and state files that their stage has written
    again (a readable file at the same place); raw partitions are cleared by the sync
    that re-fetched their task. Returns the records removed."""
    entries = quarantined(layout)
    done = []
    for e in entries:
        layer = e.dataset.partition(".")[0]
        if layer not in ("pit", "factors", "state"):
            continue
        path = _dataset_base(layout, e.dataset) / e.partition
        if path.is_file() and (path.suffix != ".parquet" or unreadable_reason(path) is None):
            done.append(e)
    if done:
        _save(layout, [e for e in entries if e not in done])
    return done
