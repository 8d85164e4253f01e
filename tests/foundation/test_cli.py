"""`ah` as a user runs it: a subprocess, exit codes, one-line errors, masked output."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cli_runner import ROOT, ah


def test_version_and_help(tmp_path: Path) -> None:
    out = ah("--version", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("alphahome ")
    out = ah("--help", cwd=tmp_path)
    assert out.returncode == 0
    for group in ("config",):
        assert group in out.stdout


def test_config_example_prints_the_shipped_example(tmp_path: Path) -> None:
    out = ah("config", "example", cwd=tmp_path)
    assert out.returncode == 0
    assert out.stdout == (ROOT / "alphahome.example.toml").read_text(encoding="utf-8")


def test_config_show_masks_and_names_origins(tmp_path: Path) -> None:
    (tmp_path / "alphahome.toml").write_text('[tushare]\ntoken = "abcd-secret-token"\n')
    out = ah(
        "--cache-dir",
        "/tmp/cachehere",
        "config",
        "show",
        cwd=tmp_path,
        env={
            "DATABASE_URL": "postgresql://bob:topsecretpw@localhost:5432/ah",
            "AH_RUN_WORKERS": "3",
        },
    )
    assert out.returncode == 0, out.stderr
    assert "abcd-secret-token" not in out.stdout and "topsecretpw" not in out.stdout
    lines = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    assert lines["tushare.token"].endswith("[file]")
    assert "postgresql://bob:***@localhost:5432/ah" in lines["database.url"]
    assert lines["run.workers"].split()[1] == "3" and lines["run.workers"].endswith("[env]")
    assert "/tmp/cachehere" in lines["cache.dir"] and lines["cache.dir"].endswith("[flag]")


def test_config_check_exit_codes(tmp_path: Path) -> None:
    assert ah("config", "check", cwd=tmp_path).returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('[database]\nurl = "postgresql://u:leakme@:x/"\n')
    out = ah("--config", str(bad), "config", "check", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: ")
    assert "Traceback" not in out.stderr and "leakme" not in out.stderr
    assert str(bad) in out.stderr and "database.url" in out.stderr


def test_unknown_option_is_usage_error(tmp_path: Path) -> None:
    out = ah("--no-such-flag", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("pit", "--target", "bogus"), ["'bogus'", "income", "industry", "all"]),
        (("pit", "--executor", "bogus"), ["'bogus'", "inline", "process", "dask://HOST:PORT"]),
        (("run", "--executor", "bogus"), ["'bogus'", "inline", "process", "dask://HOST:PORT"]),
        (("sim", "serve", "--stocks", "9000"), ["9000", "between 1 and 8000"]),
    ],
)
def test_bad_values_are_usage_errors(
    tmp_path: Path, args: tuple[str, ...], named: list[str]
) -> None:
    out = ah("--cache-dir", str(tmp_path / "cache"), *args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "unexpected" not in out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    for word in named:
        assert word in lines[0]


def one_line_error(out: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The single `error: ...` line of a failed `ah`, checked: exit code, no traceback."""
    assert out.returncode == code, (out.returncode, out.stderr)
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert "Traceback" not in out.stderr and "unexpected" not in out.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("sync", "--start", "2024-13-01"), ["ah sync", "--start", "2024-13-01"]),
        (("--no-such-flag",), ["No such option: --no-such-flag"]),
        (("db", "rename"), ["ah db rename", "Missing argument 'old'"]),
        (("health", "--stale-days", "x"), ["ah health", "--stale-days"]),
        (("sync", "--workers", "-1"), ["run.workers", "between 1 and 256", "-1"]),
        (("load", "../../etc"), ["unknown dataset '../../etc'"]),
        (("run", "--skip", "nosuch"), ["unknown stage 'nosuch'", "sync, pit, factors, load"]),
        (("run", "--skip", "sync,bogus"), ["unknown stage 'bogus'"]),
        (("run", "--stages", "pit", "--skip", "sync,pit"), ["no stage left to run"]),
        (("run", "--source", "bogus", "--stages", "pit"), ["unknown source 'bogus'", "sim"]),
        (
            ("factors", "p", "--start", "2024-01-10", "--end", "2023-01-01"),
            ["--start 2024-01-10 is after --end 2023-01-01"],
        ),
        (
            ("factors", "rerank", "--start", "2024-01-10", "--end", "2023-01-01"),
            ["--start 2024-01-10 is after --end 2023-01-01"],
        ),
        (("--config", "nowhere.toml", "config", "check"), ["nowhere.toml", "not found"]),
        (("--config", ".", "config", "check"), ["is a directory, not a config file"]),
    ],
)
def test_every_usage_error_is_one_line_exit_2(
    tmp_path: Path, args: tuple[str, ...], named: list[str]
) -> None:
    line = one_line_error(ah("--cache-dir", str(tmp_path / "cache"), *args, cwd=tmp_path))
    for word in named:
        assert word in line, line


def test_verify_of_a_cache_folder_that_does_not_exist_fails_and_creates_nothing(
    tmp_path: Path,
) -> None:
    wrong = tmp_path / "no-such-cache"
    line = one_line_error(ah("--cache-dir", str(wrong), "verify", cwd=tmp_path))
    assert f"no cache at {wrong}" in line
    assert not wrong.exists()


def test_config_problems_from_the_command_line(tmp_path: Path) -> None:
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"[run]\nworkers = 2 # \xff\xfe\n")
    assert "not UTF-8" in one_line_error(
        ah("--config", str(latin), "config", "check", cwd=tmp_path)
    )
    a_file = tmp_path / "plain-file"
    a_file.write_text("x")
    for cache in (a_file, a_file / "below"):
        line = one_line_error(ah("--cache-dir", str(cache), "config", "check", cwd=tmp_path))
        assert "cache.dir must be a directory" in line and str(a_file) in line
    line = one_line_error(ah("config", "check", cwd=tmp_path, env={"AH_RUN_WROKERS": "3"}))
    assert "AH_RUN_WROKERS" in line and "did you mean 'AH_RUN_WORKERS'" in line
    (tmp_path / "alphahome.toml").write_text("[tasks.daliy]\nenabled = false\n")
    line = one_line_error(ah("config", "check", cwd=tmp_path))
    assert "unknown task [tasks.daliy] (did you mean [tasks.daily]?)" in line
    (tmp_path / "alphahome.toml").write_text("[tasks.daily]\nenabled = false\n")
    assert ah("config", "check", cwd=tmp_path).returncode == 0


def test_config_show_masks_credentials_of_every_url(tmp_path: Path) -> None:
    (tmp_path / "alphahome.toml").write_text(
        "[run]\n"
        'alert_webhook = "https://ops:hookpw123@hooks.example.com/x?token=tk999"\n'
        "[tushare]\n"
        'base_url = "http://proxy:proxypw456@proxy.example.com/"\n'
    )
    out = ah("config", "show", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for secret in ("hookpw123", "tk999", "proxypw456"):
        assert secret not in out.stdout
    assert "https://ops:***@hooks.example.com/x?token=***" in out.stdout
