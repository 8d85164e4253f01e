"""Configuration: precedence, origins, every validation path, secret masking."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from foundation.config import (
    EXAMPLE_FILENAME,
    ConfigError,
    describe,
    example_config,
    load_settings,
    mask_url,
    set_file_string,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alphahome.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file_or_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(env={})
    assert s.config_file is None
    assert s.cache.dir == Path("data")
    assert s.database.url is None
    assert s.source.kind == "tushare"
    assert s.run.success_rate_alert == 0.8
    assert all(origin == "default" for origin in s.origins.values())


def test_precedence_default_file_profile_env_flag(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        """
[run]
workers = 3
max_retries = 7
retry_delay_s = 2
log_level = "DEBUG"
[profiles.production.run]
workers = 5
max_retries = 9
""",
    )
    env = {"AH_RUN_WORKERS": "6", "AH_RUN_MAX_RETRIES": "11"}
    s = load_settings(cfg, "production", flags={"run.workers": 8}, env=env)
    assert s.run.workers == 8 and s.origins["run.workers"] == "flag"
    assert s.run.max_retries == 11 and s.origins["run.max_retries"] == "env"
    assert s.run.retry_delay_s == 2.0 and s.origins["run.retry_delay_s"] == "file"
    assert s.run.log_level == "DEBUG"
    assert s.run.slow_operation_s == 10.0 and s.origins["run.slow_operation_s"] == "default"
    s2 = load_settings(cfg, "production", env={})
    assert s2.run.workers == 5 and s2.origins["run.workers"] == "profile production"
    s3 = load_settings(cfg, None, env={"AH_PROFILE": "production"})
    assert s3.profile == "production" and s3.run.max_retries == 9


def test_config_file_from_env_and_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path, '[cache]\ndir = "/srv/ah"\n')
    assert load_settings(env={"AH_CONFIG": str(cfg)}).cache.dir == Path("/srv/ah")
    monkeypatch.chdir(tmp_path)
    assert load_settings(env={}).config_file == Path("alphahome.toml")


def test_well_known_env_names_win(tmp_path: Path) -> None:
    cfg = write(tmp_path, '[tushare]\ntoken = "filetoken"\n')
    env = {"TUSHARE_TOKEN": "envtoken", "DATABASE_URL": "postgresql://u:p@db:5432/ah"}
    s = load_settings(cfg, env=env)
    assert s.tushare.token == "envtoken" and s.origins["tushare.token"] == "env"
    assert s.database.url == "postgresql://u:p@db:5432/ah"


def test_tasks_limits_sinks_and_simulator_sections(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        """
[tushare.limits]
daily = 500
[tasks.daily]
enabled = false
start_date = 2020-01-01
lookback_units = 5
[simulator]
today = "20240105"
[sinks.duckdb]
materialize = true
""",
    )
    s = load_settings(cfg, env={})
    assert s.tushare.limits == {"daily": 500}
    assert s.task("daily").enabled is False
    assert s.task("daily").start_date == dt.date(2020, 1, 1)
    assert s.task("income").enabled is True
    assert s.simulator.today == dt.date(2024, 1, 5)
    assert s.sinks.duckdb.materialize is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[run]\nworkers = -1\n", "run.workers must be a number between 1 and 256, got -1"),
        ("[run]\nworkers = 100000000000000000000\n", "got 100000000000000000000"),
        ("[run]\nmax_retries = 1000\n", "run.max_retries must be a number between 0 and 100"),
        ("[tushare]\ntimeout_s = inf\n", "tushare.timeout_s must be a number > 0 and <= 3600"),
        ("[tushare]\ntimeout_s = nan\n", "tushare.timeout_s must be a number > 0"),
        ("[simulator]\nstocks = 9000\n", "simulator.stocks must be a number between 1 and 8000"),
        ("[tasks.daily]\nconcurrency = 1000\n", "tasks.daily.concurrency must be a number betw"),
        ('[cache]\ndir = ""\n', "cache.dir must be a non-empty path, got ''"),
        ('[cache]\ndir = "  "\n', "cache.dir must be a non-empty path"),
        (
            "[simulator]\nstart = 2024-07-01\ntoday = 2024-06-28\n",
            "simulator.start must be before simulator.today (2024-06-28), got 2024-07-01",
        ),
        ("[rnu]\nworkers = 2\n", "unknown section [rnu] (did you mean [run]?)"),
        (
            "[tushare]\ntimeout_s = 60\ncall_deadline_s = 30\n",
            "tushare.call_deadline_s must be at least tushare.timeout_s (60), got 30",
        ),
        ("[run]\nmax_retires = 2\n", "(did you mean 'run.max_retries'?)"),
        ("[sinks.duckdb]\nmaterialise = true\n", "(did you mean 'sinks.duckdb.materialize'?)"),
        ('[run]\nworkers = "four"\n', "run.workers must be an integer, got 'four'"),
        ("[run]\nwrokers = 2\n", "unknown key 'run.wrokers'"),
        ("[bogus]\nx = 1\n", "unknown section [bogus]"),
        ("[run]\nsuccess_rate_alert = 1.5\n", "must be a number between 0 and 1, got 1.5"),
        ('[run]\nlog_level = "LOUD"\n', "run.log_level must be one of"),
        ('[state]\nbackend = "redis"\n', "state.backend must be one of 'files', 'postgres'"),
        ('[source]\nkind = "bloomberg"\n', "source.kind must be one of"),
        ('[database]\nurl = "mysql://u:pw@h/db"\n', "database.url must be a PostgreSQL URL"),
        ('[database]\nurl = "postgresql://u:pw@h:notaport/db"\n', "database.url must be"),
        ('[tushare]\nbase_url = "ftp://x"\n', "tushare.base_url must be an http(s) URL"),
        ("[tushare.limits]\ndaily = 1.5\n", "tushare.limits must be a table of integers"),
        ('[simulator]\nstart = "yesterday"\n', "simulator.start must be a date (YYYY-MM-DD)"),
        ("[tasks.daily]\nconcurrency = 0\n", "tasks.daily.concurrency must be a number betwe"),
        ("[tasks]\ndaily = 1\n", "tasks.daily must be a table of overrides"),
        ("run = 3\n", "[run] must be a table"),
        ("[run\n", "not valid TOML"),
    ],
)
def test_validation_errors_are_one_line_naming_file_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    cfg = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(str(cfg))
    assert expected in message


def test_bad_env_and_flag_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"env AH_RUN_WORKERS: run.workers must be an integer"):
        load_settings(env={"AH_RUN_WORKERS": "many"})
    with pytest.raises(
        ConfigError, match=r"command line: run.workers must be a number between 1 and 256"
    ):
        load_settings(env={}, flags={"run.workers": "0"})


def test_missing_file_and_unknown_profile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", env={})
    cfg = write(tmp_path, "[profiles.dev.run]\nworkers = 1\n")
    with pytest.raises(ConfigError, match=r"unknown profile 'prod' \(defined: dev\)"):
        load_settings(cfg, "prod", env={})


def test_secrets_never_shown(tmp_path: Path) -> None:
    cfg = write(tmp_path, '[tushare]\ntoken = "t0k3n-SECRET"\n')
    env = {"DATABASE_URL": "postgresql://alice:pa55word@db.example:5432/ah"}
    s = load_settings(cfg, env=env)
    shown = "\n".join(f"{k} {v} {o}" for k, v, o in describe(s))
    assert "t0k3n-SECRET" not in shown and "pa55word" not in shown
    assert "postgresql://alice:***@db.example:5432/ah" in shown
    assert sorted(s.secrets()) == ["pa55word", "t0k3n-SECRET"]


def test_bad_database_url_error_masks_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env={"DATABASE_URL": "postgresql://u:hunter22@:5432/"})
    assert "hunter22" not in str(err.value)


def test_mask_url() -> None:
    assert mask_url("postgresql://u:p@h/db") == "postgresql://u:***@h/db"
    assert mask_url("postgresql://h/db") == "postgresql://h/db"
    assert mask_url("https://xoxb-tokenvalue@hooks.example/x") == "https://***@hooks.example/x"
    assert mask_url("https://h/x?api_key=abc&b=2") == "https://h/x?api_key=***&b=2"
    assert mask_url("http://h:notaport/") == "http://h:notaport/"


def test_cache_dir_naming_a_file_is_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match=r"cache.dir must be a directory, not a file"):
        load_settings(env={}, flags={"cache.dir": str(a_file)})


def test_non_utf8_and_directory_config_files(tmp_path: Path) -> None:
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'[run]\nlog_level = "INFO" # caf\xe9\n')
    with pytest.raises(ConfigError, match=r"latin.toml: not UTF-8 text \(byte 30\)") as err:
        load_settings(latin, env={})
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"is a directory, not a config file"):
        load_settings(tmp_path, env={})


def test_unknown_task_names_with_a_suggestion(tmp_path: Path) -> None:
    known = ("daily", "weekly", "income")
    cfg = write(tmp_path, "[tasks.daliy]\nenabled = false\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={}, known_tasks=known)
    assert "unknown task [tasks.daliy] (did you mean [tasks.daily]?)" in str(err.value)
    assert str(err.value).startswith(str(cfg))
    cfg = write(tmp_path, '[run]\nexclude_tasks = ["weekly", "incme"]\n')
    with pytest.raises(ConfigError, match=r"unknown task 'incme' \(did you mean 'income'\?\)"):
        load_settings(cfg, env={}, known_tasks=known)
    assert load_settings(cfg, env={}).run.exclude_tasks == ["weekly", "incme"]  # names unchecked


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("AH_RUN_WROKERS", " (did you mean 'AH_RUN_WORKERS'?)"),
        ("AH_CACHE_DRI", " (did you mean 'AH_CACHE_DIR'?)"),
        ("AH_NOTHING_LIKE_IT", ""),
        ("AH_PROFIEL", " (did you mean 'AH_PROFILE'?)"),
    ],
)
def test_unknown_ah_variables_are_errors(tmp_path: Path, name: str, hint: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env={name: "3"})
    message = str(err.value)
    assert message.startswith(f"env {name}: unknown alphahome variable{hint}")
    assert "\n" not in message


def test_other_ah_variables_stay_accepted(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[profiles.dev.run]\nworkers = 1\n")
    env = {
        "AH_CONFIG": str(cfg),
        "AH_PROFILE": "dev",
        "AH_TEST_CRASH_AT": "state:3",
        "AH_TEST_LOAD_PAUSE_S": "1",
        "AH_SINKS_DUCKDB_MATERIALIZE": "true",
        "AH_SIMULATOR_LIMIT_PER_MIN": "10",
    }
    s = load_settings(env=env)
    assert s.run.workers == 1 and s.sinks.duckdb.materialize is True
    assert s.origins["sinks.duckdb.materialize"] == "env"
    assert s.simulator.limit_per_min == 10


def test_unknown_profile_suggests_the_closest(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[profiles.production.run]\nworkers = 1\n")
    with pytest.raises(
        ConfigError, match=r"unknown profile 'prodution' \(did you mean 'production'"
    ):
        load_settings(cfg, "prodution", env={})


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/hook",
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "http://[::ffff:169.254.169.254]/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://0.0.0.0/",
    ],
)
def test_webhook_to_internal_addresses_is_refused_unless_allowed(tmp_path: Path, url: str) -> None:
    cfg = write(tmp_path, f'[run]\nalert_webhook = "{url}"\n')
    with pytest.raises(ConfigError, match=r"run.alert_webhook must be a public address") as err:
        load_settings(cfg, env={})
    assert "alert_allow_private" in str(err.value)
    cfg = write(tmp_path, f'[run]\nalert_webhook = "{url}"\nalert_allow_private = true\n')
    assert load_settings(cfg, env={}).run.alert_webhook == url


def test_webhook_scheme_and_public_hosts(tmp_path: Path) -> None:
    for url in ("file:///etc/passwd", "gopher://x/", "ftp://hooks.example/"):
        cfg = write(tmp_path, f'[run]\nalert_webhook = "{url}"\n')
        with pytest.raises(ConfigError, match=r"run.alert_webhook must be an http"):
            load_settings(cfg, env={})
    cfg = write(tmp_path, '[run]\nalert_webhook = "https://hooks.example.com/T0/B1"\n')
    assert load_settings(cfg, env={}).run.alert_webhook == "https://hooks.example.com/T0/B1"


def test_credentials_in_every_url_are_masked(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        """
[run]
alert_webhook = "https://hookuser:hookpass99@hooks.example.com/x?token=qtok777&room=ops"
[tushare]
base_url = "https://proxyuser:proxypass55@proxy.example.com/dataapi"
""",
    )
    s = load_settings(cfg, env={})
    shown = "\n".join(f"{k} {v} {o}" for k, v, o in describe(s))
    for secret in ("hookpass99", "qtok777", "proxypass55"):
        assert secret not in shown
        assert secret in s.secrets()
    assert "https://hookuser:***@hooks.example.com/x?token=***&room=ops" in shown
    assert "https://proxyuser:***@proxy.example.com/dataapi" in shown


def test_refused_urls_are_shown_masked(tmp_path: Path) -> None:
    cfg = write(tmp_path, '[tushare]\nbase_url = "ftp://user:s3cretpw@proxy.example/"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    assert "s3cretpw" not in str(err.value) and "ftp://user:***@proxy.example/" in str(err.value)


def test_unknown_task_and_dataset_names_suggest_the_closest() -> None:
    from cache.catalogue.datasets import UnknownDatasetError, dataset
    from foundation.errors import UsageError
    from pipeline.sync.tasks import task

    with pytest.raises(UsageError, match=r"unknown task 'daliy' \(did you mean 'daily'\?\)"):
        task("daliy")
    with pytest.raises(UnknownDatasetError, match=r"'balancesheat' \(did you mean 'balancesheet'"):
        dataset("raw", "balancesheat")


def test_set_file_string_rewrites_one_value_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "alphahome.toml"
    text = (
        "[database]  # sink\n  url = 'postgresql://a@h/x' # db\n"
        '[profiles.p.database]\nurl = "postgresql://a@h/x"\n'
    )
    path.write_text(text)
    set_file_string(path, "database.url", 'postgresql://a@h/y"z')
    assert path.read_text() == text.replace("'postgresql://a@h/x'", '"postgresql://a@h/y\\"z"', 1)
    assert load_settings(path, env={}).database.url == 'postgresql://a@h/y"z'
    path.write_text("[database]\n")
    with pytest.raises(ConfigError, match=r"no one-line string url"):
        set_file_string(path, "database.url", "postgresql://a@h/y")
    assert path.read_text() == "[database]\n"


def test_the_shipped_example_is_the_spec_and_loads_as_the_defaults(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parents[2] / EXAMPLE_FILENAME
    assert shipped.read_text(encoding="utf-8") == example_config(), (
        "alphahome.example.toml is stale: `ah config example > alphahome.example.toml`"
    )
    settings = load_settings(shipped, env={})
    rows = describe(settings)
    assert {origin for _key, _shown, origin in rows} == {"default"}
    text = shipped.read_text(encoding="utf-8")
    for key, _shown, _origin in rows:  # every key is there, commented, under its section
        section, name = key.rsplit(".", 1)
        block = text.split(f"\n[{section}]", 1)[1].split("\n[", 1)[0]
        assert f"\n# {name} =" in block, key
    uncommented = tmp_path / "all.toml"  # uncommenting every set default changes nothing
    sections = text.split("# Per-task overrides")[0]
    lines = [ln[2:] if re.match(r"# \w+ = .", ln) else ln for ln in sections.splitlines()]
    uncommented.write_text("\n".join(lines) + "\n", encoding="utf-8")
    again = load_settings(uncommented, env={})
    assert [(k, v) for k, v, _ in describe(again)] == [(k, v) for k, v, _ in rows]
