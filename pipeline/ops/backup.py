"""`ah backup` / `ah restore`: consistent, incremental snapshots of the cache (and the database).

A snapshot is `<backup_root>/<YYYYMMDDTHHMMSSZ>/`, a copy of the cache tree where files
unchanged since the previous snapshot (same size and mtime; the cache only ever
replaces files, never edits them) are hard links to that snapshot's copy and new or
changed files are copied. State is always copied. Consistency: the sync's task locks
are taken for the whole copy (a running sync makes the backup refuse; a sync started
meanwhile refuses), then every file is checked against the manifest written beside it
(`BACKUP_MANIFEST.json`: size, mtime, sha256). The snapshot is built under a hidden
`.partial` name and renamed when verified, so a listed snapshot is always complete.

The config file in force goes in too, as `config/<its name>` (owner-only, hashed in the
manifest's `config` entry), so a restore on a new box has the settings as well; it is
not copied back by `ah restore` (put it where you want it). `ah backup verify`
re-hashes every file of a snapshot (and its config copy) against the manifest. Each
backup is recorded in the cache (pipeline/ops/records.py) for health and the metrics.

With PostgreSQL configured, `pg_dump -Fc -n raw -n pit -n factors -n ops` goes in as
`postgres.dump`; the password reaches pg_dump through PGPASSWORD in its environment,
never its command line. Retention keeps the newest snapshot of each of the last
`keep_daily` days and `keep_weekly` ISO weeks.

Restore refuses while a task lock is held, copies the snapshot into a sibling folder
(verifying every hash), then swaps it in by two renames; the replaced cache is kept
beside it as `<cache>.pre-restore-<stamp>`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from cache.atomic import TMP_SUFFIX, write_bytes_atomic
from cache.layout import CacheLayout
from cache.locks import TaskLocks, task_locks
from foundation.config import Settings
from foundation.errors import AlphahomeError, UsageError
from foundation.logs import get_logger, scrub
from pipeline.backends import open_locks, open_state
from pipeline.ops.records import record_backup

log = get_logger("backup")

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
MANIFEST = "BACKUP_MANIFEST.json"
PG_DUMP_FILE = "postgres.dump"
CONFIG_DIR = "config"
PRIVATE_FILE_MODE = 0o600
PG_SCHEMAS = ("raw", "pit", "factors", "ops")
EXCLUDED_DIRS = (Path("state") / "locks",)
CHUNK = 1 << 20
PRIVATE_DIR_MODE = 0o700


class BackupError(AlphahomeError):
    """A backup or restore that could not be made or did not verify."""


@dataclass(frozen=True)
class BackupResult:
    """One snapshot made."""

    path: Path
    files: int
    copied: int
    linked: int
    bytes_copied: int
    pg_dump: Path | None
    removed: list[Path]


@dataclass(frozen=True)
class SnapshotInfo:
    """One snapshot found under the backup root."""

    name: str
    path: Path
    created: dt.datetime
    files: int
    bytes: int
    pg_dump: bool


# ---------------------------------------------------------------- where and when


def default_backup_root(layout: CacheLayout) -> Path:
    """`<cache>/../alphahome-backups`."""
    return layout.root.parent / "alphahome-backups"


def snapshot_time(name: str) -> dt.datetime | None:
    """The UTC time of a snapshot folder name, or None for anything else."""
    try:
        return dt.datetime.strptime(name, STAMP_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def snapshots(root: Path) -> list[Path]:
    """Complete snapshots (timestamp-named folders with a manifest), oldest first."""
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if p.is_dir() and snapshot_time(p.name) and (p / MANIFEST).exists()
    ]
    return sorted(found, key=lambda p: p.name)


def snapshots_to_keep(
    times: list[dt.datetime], keep_daily: int, keep_weekly: int
) -> set[dt.datetime]:
    """The newest snapshot of each of the last `keep_daily` days and `keep_weekly` ISO weeks
    that have one (the newest snapshot is always kept)."""
    newest_first = sorted(times, reverse=True)
    keep = set(newest_first[:1])
    days: set[dt.date] = set()
    weeks: set[tuple[int, int]] = set()
    for t in newest_first:
        if t.date() not in days and len(days) < keep_daily:
            days.add(t.date())
            keep.add(t)
        week = t.isocalendar()[:2]
        if week not in weeks and len(weeks) < keep_weekly:
            weeks.add(week)
            keep.add(t)
    return keep


def apply_retention(root: Path, keep_daily: int, keep_weekly: int) -> list[Path]:
    """Delete the snapshots the policy does not keep; returns what was removed."""
    found = {snapshot_time(p.name): p for p in snapshots(root)}
    keep = snapshots_to_keep([t for t in found if t], keep_daily, keep_weekly)
    removed = [p for t, p in found.items() if t not in keep]
    for path in removed:
        shutil.rmtree(path)
        log.info("retention: removed snapshot %s", path.name)
    return removed


# ---------------------------------------------------------------- files


def cache_files(root: Path) -> Iterator[Path]:
    """Regular files of the cache, relative to it, without lock files and temporaries."""
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if (here / d).relative_to(root) not in EXCLUDED_DIRS)
        for name in sorted(names):
            path = here / name
            if path.is_symlink() or not path.is_file() or name.endswith(TMP_SUFFIX):
                continue
            yield path.relative_to(root)


def copy_hashed(source: Path, target: Path) -> str:
    """Copy a file (mode and mtime kept) and return the sha256 of what was read."""
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    info = source.stat()
    os.chmod(target, info.st_mode & 0o7777)
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(snapshot: Path) -> dict[str, Any]:
    """The manifest of a snapshot (BackupError when it is missing or unreadable)."""
    try:
        return json.loads((snapshot / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        msg = f"{snapshot}: no readable {MANIFEST} ({exc})"
        raise BackupError(msg) from None


def _copy_config(settings: Settings, snapshot: Path) -> dict[str, Any] | None:
    """Copy the config file in force into `<snapshot>/config/` (owner-only); its entry."""
    if settings.config_file is None or not Path(settings.config_file).is_file():
        return None
    source = Path(settings.config_file).absolute()
    rel = f"{CONFIG_DIR}/{source.name}"
    target = snapshot / rel
    target.parent.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    sha = copy_hashed(source, target)
    target.chmod(PRIVATE_FILE_MODE)
    return {"file": rel, "source": str(source), "size": target.stat().st_size, "sha256": sha}


def verify_config_copy(snapshot: Path, manifest: Mapping[str, Any]) -> None:
    """The snapshot's copy of the config file matches its manifest entry (if it has one)."""
    entry = manifest.get("config")
    if not entry:
        return
    path = snapshot / entry["file"]
    if not path.is_file() or file_sha256(path) != entry["sha256"]:
        msg = f"backup {snapshot.name}: {entry['file']} is missing or does not match"
        raise BackupError(msg)


def verify_snapshot(snapshot: Path, manifest: Mapping[str, Any], previous: Path | None) -> None:
    """Every file present with its size; copies re-hashed; links the same inode as before;
    the config file's copy."""
    verify_config_copy(snapshot, manifest)
    for rel, entry in manifest["files"].items():
        path = snapshot / rel
        if not path.is_file() or path.stat().st_size != entry["size"]:
            msg = f"backup {snapshot.name}: {rel} is missing or has the wrong size"
            raise BackupError(msg)
        if entry["linked"]:
            if previous is None or not os.path.samefile(path, previous / rel):
                msg = f"backup {snapshot.name}: {rel} is not linked to the previous snapshot"
                raise BackupError(msg)
        elif file_sha256(path) != entry["sha256"]:
            msg = f"backup {snapshot.name}: {rel} does not match the cache's bytes"
            raise BackupError(msg)


# ---------------------------------------------------------------- locks


def sync_locks(settings: Settings) -> tuple[TaskLocks, list[str]]:
    """The sync's lock backend and every task it may lock (lock files and stored states)."""
    store = open_state(settings)
    try:
        tasks = set(store.tasks())
    finally:
        store.close()
    locks = open_locks(settings)
    return locks, sorted(tasks | set(locks.known_tasks()))


# ---------------------------------------------------------------- PostgreSQL


def find_pg_binary(name: str) -> Path | None:
    """A PostgreSQL client binary: PATH, `pg_config --bindir`, /usr/lib/postgresql/*/bin."""
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    return next((c / name for c in candidates if (c / name).exists()), None)


def pg_command(binary: Path, url: str, args: list[str]) -> tuple[list[str], dict[str, str]]:
    """argv and environment for a libpq tool: the URL without its password, which goes
    into PGPASSWORD of the child's environment."""
    parts = urlsplit(url)
    env = dict(os.environ)
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = (f"{parts.username}@" if parts.username else "") + host
    netloc += f":{parts.port}" if parts.port else ""
    safe_url = urlunsplit(parts._replace(netloc=netloc))
    return [str(binary), f"--dbname={safe_url}", *args], env


def run_pg_tool(name: str, url: str, args: list[str]) -> None:
    """Run pg_dump / pg_restore; BackupError with its scrubbed stderr on failure."""
    binary = find_pg_binary(name)
    if binary is None:
        msg = f"{name} not found (PATH, pg_config --bindir, /usr/lib/postgresql/*/bin)"
        raise BackupError(msg)
    argv, env = pg_command(binary, url, args)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        password = unquote(urlsplit(url).password or "") or None
        text = " ".join(done.stderr.split())[:300]
        text = text.replace(password, "***") if password else text
        msg = f"{name} failed (exit {done.returncode}): {scrub(text)}"
        raise BackupError(msg)


def dump_database(url: str, target: Path) -> Path:
    """`pg_dump -Fc` of the raw, pit, factors and ops schemas into `target`."""
    schemas = [arg for s in PG_SCHEMAS for arg in ("-n", s)]
    run_pg_tool("pg_dump", url, ["--format=custom", f"--file={target}", *schemas])
    return target


# ---------------------------------------------------------------- backup


def _unchanged(rel: Path, entry: Mapping[str, Any], info: os.stat_result) -> bool:
    """True when the previous snapshot's copy is still the file (same size and mtime);
    state is always copied, as it is small and rewritten in place by some tools."""
    return (
        rel.parts[0] != "state"
        and entry["size"] == info.st_size
        and entry["mtime_ns"] == info.st_mtime_ns
    )


def _snapshot_files(cache: Path, partial: Path, previous: Path | None) -> dict[str, dict[str, Any]]:
    """Copy or link every cache file into `partial`; the manifest entries."""
    before = read_manifest(previous)["files"] if previous else {}
    entries: dict[str, dict[str, Any]] = {}
    for rel in cache_files(cache):
        info = (cache / rel).stat()
        key = rel.as_posix()
        old = before.get(key)
        target = partial / rel
        linked = False
        if previous is not None and old is not None and _unchanged(rel, old, info):
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(previous / rel, target)
                linked = True
            except OSError as exc:
                log.debug("cannot hard-link %s (%s); copying", rel, exc)
        sha = old["sha256"] if linked and old else copy_hashed(cache / rel, target)
        entries[key] = {
            "size": info.st_size,
            "mtime_ns": info.st_mtime_ns,
            "sha256": sha,
            "linked": linked,
        }
    return entries


def create_backup(
    settings: Settings,
    dest: Path | None = None,
    keep_daily: int = 7,
    keep_weekly: int = 4,
    now: dt.datetime | None = None,
) -> BackupResult:
    """Snapshot the cache (and the database when configured), verify it, apply retention.

    Raises LockHeld when a sync holds a task lock, BackupError when something fails (the
    partial snapshot is removed).
    """
    layout = CacheLayout(settings.cache.dir)
    if not layout.root.is_dir():
        msg = f"no cache at {layout.root}"
        raise UsageError(msg)
    root = Path(dest).expanduser().absolute() if dest else default_backup_root(layout)
    if root == layout.root or layout.root in root.parents:
        msg = f"backup root {root} is inside the cache {layout.root}: choose another --dest"
        raise UsageError(msg)
    root.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    stamp = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime(STAMP_FORMAT)
    final, partial = root / stamp, root / f".{stamp}.partial"
    if final.exists():
        msg = f"snapshot {final} already exists"
        raise BackupError(msg)
    older = snapshots(root)
    previous = older[-1] if older else None
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(mode=PRIVATE_DIR_MODE)
    locks, tasks = sync_locks(settings)
    try:
        with task_locks(locks, tasks):
            entries = _snapshot_files(layout.root, partial, previous)
            dump = (
                dump_database(settings.database.url, partial / PG_DUMP_FILE)
                if settings.database.url
                else None
            )
        manifest = {
            "created": stamp,
            "cache": str(layout.root),
            "files": entries,
            "pg_dump": PG_DUMP_FILE if dump else None,
            "previous": previous.name if previous else None,
            "config": _copy_config(settings, partial),
        }
        write_bytes_atomic(json.dumps(manifest, indent=1).encode("utf-8"), partial / MANIFEST)
        verify_snapshot(partial, manifest, previous)
        os.rename(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    copied = [e for e in entries.values() if not e["linked"]]
    total = sum(e["size"] for e in entries.values())
    record_backup(
        layout, final, snapshot_time(stamp) or dt.datetime.now(dt.UTC), len(entries), total
    )
    result = BackupResult(
        path=final,
        files=len(entries),
        copied=len(copied),
        linked=len(entries) - len(copied),
        bytes_copied=sum(e["size"] for e in copied),
        pg_dump=final / PG_DUMP_FILE if dump else None,
        removed=apply_retention(root, keep_daily, keep_weekly),
    )
    log.info(
        "backup %s: %d files (%d copied, %d linked)",
        final,
        result.files,
        result.copied,
        result.linked,
    )
    return result


def list_backups(root: Path) -> list[SnapshotInfo]:
    """Complete snapshots under `root`, oldest first, from their manifests."""
    found = []
    for path in snapshots(root):
        manifest = read_manifest(path)
        files = manifest["files"]
        found.append(
            SnapshotInfo(
                name=path.name,
                path=path,
                created=snapshot_time(path.name) or dt.datetime.min.replace(tzinfo=dt.UTC),
                files=len(files),
                bytes=sum(e["size"] for e in files.values()),
                pg_dump=bool(manifest.get("pg_dump")),
            )
        )
    return found


def render_backups(found: list[SnapshotInfo], root: Path) -> str:
    """The `ah backup list` table."""
    if not found:
        return f"no snapshots under {root}"
    lines = [f"snapshots under {root}", f"{'name':<18}  {'files':>7}  {'size':>12}  database"]
    lines += [
        f"{s.name:<18}  {s.files:>7}  {s.bytes:>12,}  {'pg_dump' if s.pg_dump else '-'}"
        for s in found
    ]
    return "\n".join(lines)


def describe_backup(result: BackupResult) -> str:
    """What `ah backup` prints."""
    lines = [
        f"backup {result.path}: {result.files} files ({result.copied} copied, "
        f"{result.linked} hard-linked to the previous snapshot; "
        f"{result.bytes_copied:,} bytes copied)"
    ]
    if result.pg_dump:
        lines.append(f"database dump {result.pg_dump} ({result.pg_dump.stat().st_size:,} bytes)")
    lines += [f"retention removed {p.name}" for p in result.removed]
    return "\n".join(lines)


@dataclass(frozen=True)
class VerifyResult:
    """`ah backup verify`: a snapshot whose every file matched its manifest."""

    snapshot: Path
    files: int
    bytes: int
    config: str | None
    pg_dump: bool


def verify_backup(root: Path, name: str | None = None) -> VerifyResult:
    """Re-hash every file of a snapshot (the newest by default) and its config copy
    against the manifest; BackupError on the first mismatch. The database dump is
    checked to be present and non-empty (pg_restore --list would need the server's tools)."""
    snapshot = resolve_snapshot(root, name)
    manifest = read_manifest(snapshot)
    verify_config_copy(snapshot, manifest)
    total = 0
    for rel, entry in manifest["files"].items():
        path = snapshot / rel
        if not path.is_file() or file_sha256(path) != entry["sha256"]:
            msg = f"backup {snapshot.name}: {rel} is missing or does not match its manifest"
            raise BackupError(msg)
        total += entry["size"]
    dump = bool(manifest.get("pg_dump"))
    if dump and not (
        (snapshot / PG_DUMP_FILE).is_file() and (snapshot / PG_DUMP_FILE).stat().st_size
    ):
        msg = f"backup {snapshot.name}: {PG_DUMP_FILE} is missing or empty"
        raise BackupError(msg)
    config = (manifest.get("config") or {}).get("file")
    return VerifyResult(snapshot, len(manifest["files"]), total, config, dump)


def describe_verify(result: VerifyResult) -> str:
    """What `ah backup verify` prints."""
    extra = [f"config {result.config}" if result.config else "no config file"]
    if result.pg_dump:
        extra.append(PG_DUMP_FILE)
    return (
        f"backup {result.snapshot}: ok, {result.files} files ({result.bytes:,} bytes) match "
        f"the manifest; {', '.join(extra)}"
    )


# ---------------------------------------------------------------- restore


@dataclass(frozen=True)
class RestoreResult:
    """What a restore did."""

    snapshot: Path
    cache: Path
    previous_cache: Path | None
    files: int
    database: bool


def resolve_snapshot(root: Path, name: str | None) -> Path:
    """A snapshot by name (or path); the newest when `name` is None."""
    if name is None:
        found = snapshots(root)
        if not found:
            msg = f"no snapshots under {root}"
            raise UsageError(msg)
        return found[-1]
    candidate = Path(name) if Path(name).is_absolute() else root / name
    if not (candidate / MANIFEST).exists():
        msg = f"no snapshot {name!r} under {root} (ah backup list shows them)"
        raise UsageError(msg)
    return candidate


def restore_backup(
    settings: Settings,
    snapshot: str | None = None,
    dest: Path | None = None,
    with_database: bool = False,
    now: dt.datetime | None = None,
) -> RestoreResult:
    """Replace the cache by a snapshot (the newest by default), atomically from a reader's
    point of view; with `with_database`, also `pg_restore --clean` its dump in one transaction.

    Refuses (LockHeld) while any task lock is held; a missing cache is simply created.
    """
    layout = CacheLayout(settings.cache.dir)
    root = Path(dest).expanduser().absolute() if dest else default_backup_root(layout)
    source = resolve_snapshot(root, snapshot)
    manifest = read_manifest(source)
    if with_database and not (manifest.get("pg_dump") and settings.database.url):
        msg = f"snapshot {source.name} has no database dump, or no database.url is configured"
        raise UsageError(msg)
    stamp = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime(STAMP_FORMAT)
    staging = layout.root.parent / f".{layout.root.name}.restore-{stamp}"
    kept = layout.root.parent / f"{layout.root.name}.pre-restore-{stamp}"
    had_cache = layout.root.exists()
    guard = task_locks(*sync_locks(settings)) if had_cache else contextlib.nullcontext()
    with guard:
        try:
            for rel, entry in manifest["files"].items():
                if copy_hashed(source / rel, staging / rel) != entry["sha256"]:
                    msg = f"snapshot {source.name}: {rel} does not match its manifest"
                    raise BackupError(msg)
            (staging / "state").mkdir(exist_ok=True, mode=PRIVATE_DIR_MODE)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if had_cache:
            os.rename(layout.root, kept)
        os.rename(staging, layout.root)
        if with_database and settings.database.url:
            args = [
                "--clean",
                "--if-exists",
                "--single-transaction",
                "--no-owner",
                str(source / PG_DUMP_FILE),
            ]
            run_pg_tool("pg_restore", settings.database.url, args)
    log.info("restored %s into %s", source, layout.root)
    return RestoreResult(
        source, layout.root, kept if had_cache else None, len(manifest["files"]), with_database
    )


def describe_restore(result: RestoreResult) -> str:
    """What `ah restore` prints."""
    lines = [f"restored {result.files} files from {result.snapshot} into {result.cache}"]
    if result.previous_cache:
        lines.append(f"the replaced cache is kept in {result.previous_cache} (delete it when done)")
    if result.database:
        lines.append(
            "database restored from the snapshot's dump (pg_restore --clean, one transaction)"
        )
    return "\n".join(lines)
