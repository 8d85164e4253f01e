"""`ah backup` / `ah restore`: incremental snapshots, locks, retention, pg_dump, atomic restore."""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import subprocess
from pathlib import Path

import polars as pl
import pytest

from cache.locks import FileLocks, LockHeld
from foundation.errors import UsageError
from pipeline.ops.backup import (
    MANIFEST,
    BackupError,
    apply_retention,
    create_backup,
    default_backup_root,
    describe_verify,
    find_pg_binary,
    list_backups,
    pg_command,
    render_backups,
    restore_backup,
    snapshots_to_keep,
    verify_backup,
)
from pipeline.ops.records import last_backup
from tests.ops.conftest import SyntheticCache, make_settings

T0 = dt.datetime(2024, 6, 28, 2, 30, tzinfo=dt.UTC)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root (locks and the last backup's record excluded) with its bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and "locks" not in p.relative_to(root).parts
        and p.relative_to(root).as_posix() != "state/ops/backup.json"
    }


def test_first_and_incremental_snapshot(synthetic: SyntheticCache) -> None:
    layout = synthetic.layout
    (layout.state_dir / "tasks").mkdir(parents=True)
    (layout.state_dir / "tasks" / "daily.json").write_text('{"task": "daily"}')
    settings = make_settings(layout.root)
    first = create_backup(settings, now=T0)
    assert first.path == default_backup_root(layout) / "20240628T023000Z"
    assert first.linked == 0 and first.copied == first.files == len(tree(layout.root))
    snapshot_files = {
        k: v for k, v in tree(first.path).items() if k != MANIFEST and not k.startswith("config/")
    }
    assert snapshot_files == tree(layout.root)

    changed = layout.dataset_dir("raw", "daily") / "year=2024" / "06.parquet"
    pl.read_parquet(changed).head(3).write_parquet(changed)
    added = layout.dataset_dir("raw", "daily") / "year=2024" / "07.parquet"
    pl.read_parquet(changed).write_parquet(added)
    second = create_backup(settings, now=T0 + dt.timedelta(days=1))
    state_files = 2  # the task state, and the first backup's record (state/ops/backup.json)
    assert second.copied == 2 + state_files and second.linked == second.files - second.copied
    assert second.files == first.files + 2
    for rel in tree(layout.root):
        same_inode = (
            os.path.samefile(first.path / rel, second.path / rel)
            if (first.path / rel).exists()
            else False
        )
        should_link = rel not in {
            changed.relative_to(layout.root).as_posix(),
            "state/tasks/daily.json",
            "state/ops/backup.json",
        }
        assert same_inode == (should_link and rel != added.relative_to(layout.root).as_posix()), rel
    assert {
        k: v for k, v in tree(second.path).items() if k != MANIFEST and not k.startswith("config/")
    } == tree(layout.root)
    listed = list_backups(default_backup_root(layout))
    assert [s.name for s in listed] == [first.path.name, second.path.name]
    assert second.path.name in render_backups(listed, default_backup_root(layout))


def test_backup_carries_the_config_file_and_verifies(
    synthetic: SyntheticCache, tmp_path: Path
) -> None:
    layout = synthetic.layout
    config = tmp_path / "alphahome.toml"
    config.write_text('[tushare]\ntoken = "abcdef123456"\n')
    config.chmod(0o600)
    settings = make_settings(layout.root, config=config)
    result = create_backup(settings, now=T0)
    copy = result.path / "config" / "alphahome.toml"
    assert copy.read_bytes() == config.read_bytes()
    assert copy.stat().st_mode & 0o077 == 0  # it holds the token: owner-only
    recorded = last_backup(layout)
    assert recorded is not None and recorded[0] == T0
    assert recorded[1]["snapshot"] == str(result.path) and recorded[1]["files"] == result.files
    root = default_backup_root(layout)
    verified = verify_backup(root)
    assert verified.files == result.files and verified.config == "config/alphahome.toml"
    assert "ok" in describe_verify(verified) and "config config/alphahome.toml" in describe_verify(
        verified
    )
    # a damaged file (or config copy) in the snapshot is found by name
    victim = next(p for p in sorted(result.path.rglob("*.parquet")))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(BackupError, match=re.escape(victim.name)):
        verify_backup(root, result.path.name)
    victim.unlink()
    copy.write_text("changed")
    with pytest.raises(BackupError, match=r"config/alphahome\.toml"):
        verify_backup(root)
    with pytest.raises(UsageError, match="no snapshot 'nope'"):
        verify_backup(root, "nope")


def test_backup_refuses_while_a_sync_holds_a_lock(synthetic: SyntheticCache) -> None:
    settings = make_settings(synthetic.layout.root)
    sync = FileLocks(synthetic.layout)
    sync.acquire(["daily"])
    try:
        with pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
            create_backup(settings, now=T0)
    finally:
        sync.release()
    root = default_backup_root(synthetic.layout)
    assert list(root.iterdir()) == []  # no partial snapshot left behind
    assert create_backup(settings, now=T0).files > 0  # free again


def test_backup_holds_the_locks_while_copying(
    synthetic: SyntheticCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.ops.backup as backup

    creator = FileLocks(synthetic.layout)
    creator.acquire(["daily"])  # creates the lock file
    creator.release()
    seen: list[str] = []
    real = backup.copy_hashed

    def copy_and_try_the_lock(source: Path, target: Path) -> str:
        if not seen:
            other = FileLocks(synthetic.layout)
            with pytest.raises(LockHeld) as refused:
                other.acquire(["daily"])
            seen.append(str(refused.value))
        return real(source, target)

    monkeypatch.setattr(backup, "copy_hashed", copy_and_try_the_lock)
    create_backup(make_settings(synthetic.layout.root), now=T0)
    assert seen and "daily" in seen[0]


def test_dest_inside_the_cache_is_refused(synthetic: SyntheticCache) -> None:
    settings = make_settings(synthetic.layout.root)
    with pytest.raises(UsageError, match="inside the cache"):
        create_backup(settings, dest=synthetic.layout.root / "backups", now=T0)


def test_restore_swaps_in_the_snapshot(synthetic: SyntheticCache) -> None:
    layout = synthetic.layout
    settings = make_settings(layout.root)
    snap = create_backup(settings, now=T0)
    before = tree(layout.root)
    victim = next(layout.dataset_dir("factors", "p").rglob("*.parquet"))
    victim.unlink()
    (layout.root / "stray.txt").write_text("written after the backup")
    result = restore_backup(settings, now=T0 + dt.timedelta(hours=1))
    assert result.snapshot == snap.path and result.files == len(before)
    assert tree(layout.root) == before
    assert result.previous_cache is not None and (result.previous_cache / "stray.txt").exists()
    assert not any(p.name.startswith(".cache.restore") for p in layout.root.parent.iterdir())


def test_restore_into_a_missing_cache(synthetic: SyntheticCache) -> None:
    import shutil

    layout = synthetic.layout
    settings = make_settings(layout.root)
    create_backup(settings, now=T0)
    before = tree(layout.root)
    shutil.rmtree(layout.root)
    result = restore_backup(settings, now=T0 + dt.timedelta(hours=1))
    assert result.previous_cache is None and tree(layout.root) == before
    assert sorted(p.name for p in layout.root.parent.iterdir()) == [
        "alphahome-backups",
        "alphahome.toml",
        "cache",
    ]


def test_restore_over_a_locked_cache_is_refused(synthetic: SyntheticCache) -> None:
    layout = synthetic.layout
    settings = make_settings(layout.root)
    create_backup(settings, now=T0)
    (layout.root / "after.txt").write_text("newer than the backup")
    sync = FileLocks(layout)
    sync.acquire(["daily"])
    try:
        with pytest.raises(LockHeld):
            restore_backup(settings, now=T0 + dt.timedelta(hours=1))
    finally:
        sync.release()
    assert (layout.root / "after.txt").exists()  # untouched
    assert [p.name for p in layout.root.parent.iterdir() if "restore" in p.name] == []


def test_restore_refuses_a_damaged_snapshot(synthetic: SyntheticCache) -> None:
    layout = synthetic.layout
    settings = make_settings(layout.root)
    snap = create_backup(settings, now=T0)
    damaged = next((snap.path / "raw" / "daily").rglob("*.parquet"))
    damaged.write_bytes(damaged.read_bytes()[:-10] + b"0123456789")
    before = tree(layout.root)
    with pytest.raises(BackupError, match="does not match its manifest"):
        restore_backup(settings, snap.path.name, now=T0 + dt.timedelta(hours=1))
    assert tree(layout.root) == before
    with pytest.raises(UsageError, match="no snapshot"):
        restore_backup(settings, "20000101T000000Z")


def keep_reference(times: list[dt.datetime], daily: int, weekly: int) -> set[dt.datetime]:
    """Straight from the policy: the newest of each of the last `daily` days and `weekly`
    weeks that have snapshots, plus the newest snapshot."""
    days = sorted({t.date() for t in times}, reverse=True)[:daily]
    weeks = sorted({tuple(t.isocalendar()[:2]) for t in times}, reverse=True)[:weekly]
    keep = {max(times)} if times else set()
    for d in days:
        keep.add(max(t for t in times if t.date() == d))
    for w in weeks:
        keep.add(max(t for t in times if tuple(t.isocalendar()[:2]) == w))
    return keep


def test_retention_policy_matches_the_reference() -> None:
    rng = random.Random(11)
    for _ in range(200):
        times = sorted(
            {
                T0 - dt.timedelta(hours=rng.randrange(0, 24 * 60))
                for _ in range(rng.randrange(0, 40))
            }
        )
        daily, weekly = rng.randrange(0, 9), rng.randrange(0, 6)
        assert snapshots_to_keep(times, daily, weekly) == keep_reference(times, daily, weekly)


def test_retention_deletes_old_snapshots(tmp_path: Path) -> None:
    root = tmp_path / "backups"
    times = [T0 - dt.timedelta(days=i) for i in range(40)]
    for t in times:
        snap = root / t.strftime("%Y%m%dT%H%M%SZ")
        snap.mkdir(parents=True)
        (snap / MANIFEST).write_text('{"files": {}}')
    removed = apply_retention(root, keep_daily=7, keep_weekly=4)
    left = sorted(p.name for p in root.iterdir())
    assert len(left) == len(keep_reference(times, 7, 4)) and len(removed) == 40 - len(left)


def test_pg_dump_command_keeps_the_password_out_of_argv() -> None:
    argv, env = pg_command(
        Path("/usr/bin/pg_dump"), "postgresql://ah:p%40ss-w0rd@db.example:5433/alpha", ["-n", "raw"]
    )
    assert "p%40ss-w0rd" not in " ".join(argv) and "p@ss-w0rd" not in " ".join(argv)
    assert env["PGPASSWORD"] == "p@ss-w0rd"
    assert argv[:2] == ["/usr/bin/pg_dump", "--dbname=postgresql://ah@db.example:5433/alpha"]


@pytest.mark.postgres
@pytest.mark.skipif(find_pg_binary("pg_dump") is None, reason="no pg_dump binary")
def test_backup_and_restore_with_postgres(synthetic: SyntheticCache, pg_url: str) -> None:
    import adbc_driver_postgresql.dbapi as pgdb

    with pgdb.connect(pg_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("CREATE SCHEMA factors")
        cur.execute("CREATE TABLE factors.p (ts_code text primary key, p_score double precision)")
        cur.execute("INSERT INTO factors.p VALUES ('600000.SH', 42.5)")
        cur.execute("CREATE TABLE public.not_ours (x int)")
    settings = make_settings(synthetic.layout.root, database__url=pg_url)
    snap = create_backup(settings, now=T0)
    assert snap.pg_dump is not None and snap.pg_dump.stat().st_size > 0
    listing = subprocess.run(
        [str(find_pg_binary("pg_restore")), "--list", str(snap.pg_dump)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "TABLE factors p" in listing and "not_ours" not in listing
    with pgdb.connect(pg_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("UPDATE factors.p SET p_score = 0")
    restore_backup(settings, with_database=True, now=T0 + dt.timedelta(hours=1))
    with pgdb.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT p_score FROM factors.p")
        assert cur.fetchall() == [(42.5,)]
