"""`ah` as a user runs it: a subprocess, exit codes, one-line errors, masked output."""

from __future__ import annotations

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
