"""Configuration: one TOML file, profiles, environment and flags (DESIGN section 3).

Every key is optional and declared once, as a field of a section dataclass below, with
its validation in the field's metadata. Values are layered default < file < profile <
env < flag, and each value remembers where it came from so `ah config show` can say so.
A wrong key, type or value raises `ConfigError` with one line naming the file, the key
and the expected form.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit, urlunsplit

from foundation.errors import UsageError

CONFIG_FILENAME = "alphahome.toml"
MASK = "***"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(UsageError):
    """A configuration problem, already phrased as the one line the user sees."""


class _Mistyped(ConfigError):
    """`_coerce` cannot read a value as the wanted type; `_apply` phrases the message."""


Check = Callable[[Any], str | None]


def _spec(
    default: Any = None,
    *,
    check: Check | None = None,
    help: str = "",
    secret: bool = False,
    env: str | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    meta = {"check": check, "help": help, "secret": secret, "env": env}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _positive(v: Any) -> str | None:
    return None if v > 0 else "a number > 0"


def _non_negative(v: Any) -> str | None:
    return None if v >= 0 else "a number >= 0"


def _share(v: Any) -> str | None:
    return None if 0 <= v <= 1 else "a number between 0 and 1"


def _one_of(*choices: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v in choices else "one of " + ", ".join(repr(c) for c in choices)

    return check


def _database_url(v: Any) -> str | None:
    if v is None:
        return None
    expected = "a PostgreSQL URL like postgresql://user:password@host:5432/dbname"
    try:
        parts = urlsplit(v)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return expected
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        return expected
    if not parts.path.strip("/"):
        return expected
    return None


def _http_url(v: Any) -> str | None:
    parts = urlsplit(v)
    return None if parts.scheme in ("http", "https") and parts.netloc else "an http(s) URL"


def _optional_http_url(v: Any) -> str | None:
    return None if v is None else _http_url(v)


@dataclass(frozen=True)
class DatabaseConfig:
    """Where results are loaded: PostgreSQL when `url` is set, else the embedded DuckDB file."""

    url: str | None = _spec(
        None,
        check=_database_url,
        secret=True,
        env="DATABASE_URL",
        help="PostgreSQL URL; absent = the embedded DuckDB sink",
    )


@dataclass(frozen=True)
class TushareConfig:
    """The Tushare Pro account and endpoint."""

    token: str | None = _spec(None, secret=True, env="TUSHARE_TOKEN", help="API token")
    base_url: str = _spec("http://api.tushare.pro", check=_http_url, help="service endpoint")
    points: int = _spec(2000, check=_non_negative, help="account points (sets default limits)")
    timeout_s: float = _spec(30.0, check=_positive, help="per-request timeout")
    limits: dict[str, int] = _spec(factory=dict, help="calls per minute per API, e.g. daily = 500")


@dataclass(frozen=True)
class CacheConfig:
    """The Parquet cache root."""

    dir: Path = _spec(Path("data"), help="cache root (raw/, pit/, factors/, state/, …)")


@dataclass(frozen=True)
class RunConfig:
    """How runs behave and when they alert."""

    workers: int = _spec(2, check=_positive, help="process-pool size")
    max_retries: int = _spec(5, check=_non_negative, help="retries of a transient error")
    retry_delay_s: float = _spec(1.0, check=_non_negative, help="first backoff delay")
    log_level: str = _spec("INFO", check=_one_of(*LOG_LEVELS), help="console log level")
    log_json: bool = _spec(False, help="also write JSON-lines logs")
    success_rate_alert: float = _spec(0.8, check=_share, help="alert under this success rate")
    max_task_seconds_alert: float = _spec(3600.0, check=_positive, help="alert over this")
    slow_operation_s: float = _spec(10.0, check=_positive, help="log operations slower than this")
    exclude_tasks: list[str] = _spec(factory=list, help="tasks never run")
    alert_webhook: str | None = _spec(None, check=_optional_http_url, help="POST alerts here")
    min_free_disk_gb: float = _spec(1.0, check=_non_negative, help="health: free disk floor")


@dataclass(frozen=True)
class StateConfig:
    """Where task state and locks live."""

    backend: str = _spec("files", check=_one_of("files", "postgres"), help="files | postgres")


@dataclass(frozen=True)
class SimulatorSettings:
    """The built-in market used by `--source sim` and `ah sim serve`."""

    stocks: int = _spec(300, check=_positive, help="stocks ever listed")
    start: dt.date = _spec(dt.date(2019, 1, 1), help="first day of history")
    today: dt.date = _spec(dt.date(2024, 6, 28), help="the simulated today")
    seed: int = _spec(7, help="random seed")
    points: int = _spec(5000, check=_non_negative, help="simulated account points")
    limit_per_min: int | None = _spec(
        None,
        check=lambda v: None if v is None or v >= 0 else "a number >= 0",
        help="server calls/min per API",
    )
    fault_rate: float = _spec(0.0, check=_share, help="share of requests that fail")


@dataclass(frozen=True)
class SourceConfig:
    """Which source fetching commands use."""

    kind: str = _spec("tushare", check=_one_of("tushare", "sim"), help="tushare | sim")


@dataclass(frozen=True)
class SyncConfig:
    """Which tasks `ah sync` and `ah run` take when none are named."""

    groups: list[str] = _spec(
        factory=list,
        help="task groups synced by default: default (the 26), all, or an area "
        "(stock, index, fund, futures, options, bond, macro, hk, us, fx, other)",
    )


@dataclass(frozen=True)
class DuckDBSinkConfig:
    """The embedded sink."""

    materialize: bool = _spec(False, help="native tables instead of views")


@dataclass(frozen=True)
class SinksConfig:
    """What `ah load` loads."""

    raw_datasets: list[str] = _spec(factory=list, help="raw datasets loaded besides pit/factors")
    duckdb: DuckDBSinkConfig = field(default_factory=DuckDBSinkConfig)


@dataclass(frozen=True)
class TaskOverride:
    """Per-task overrides under `[tasks.<name>]`."""

    enabled: bool = _spec(True, help="run this task")
    start_date: dt.date | None = _spec(None, help="first unit fetched")
    lookback_units: int | None = _spec(
        None,
        check=lambda v: None if v is None or v >= 0 else "a number >= 0",
        help="refresh window",
    )
    concurrency: int | None = _spec(
        None,
        check=lambda v: None if v is None or v > 0 else "a number > 0",
        help="requests in flight",
    )
    max_retries: int | None = _spec(
        None, check=lambda v: None if v is None or v >= 0 else "a number >= 0", help="retries"
    )
    batch_size: int | None = _spec(
        None,
        check=lambda v: None if v is None or v > 0 else "a number > 0",
        help="units per commit",
    )


SECTIONS: dict[str, type] = {
    "database": DatabaseConfig,
    "tushare": TushareConfig,
    "cache": CacheConfig,
    "run": RunConfig,
    "state": StateConfig,
    "simulator": SimulatorSettings,
    "source": SourceConfig,
    "sync": SyncConfig,
    "sinks": SinksConfig,
}


@dataclass(frozen=True)
class Settings:
    """The effective configuration and the origin of every value."""

    database: DatabaseConfig
    tushare: TushareConfig
    cache: CacheConfig
    run: RunConfig
    state: StateConfig
    simulator: SimulatorSettings
    source: SourceConfig
    sync: SyncConfig
    sinks: SinksConfig
    tasks: dict[str, TaskOverride]
    profile: str | None
    config_file: Path | None
    origins: dict[str, str]

    def task(self, name: str) -> TaskOverride:
        """The overrides of one task (defaults when it has none)."""
        return self.tasks.get(name, TaskOverride())

    def secrets(self) -> list[str]:
        """Secret values in force (token, database password), for log scrubbing."""
        found = [self.tushare.token] if self.tushare.token else []
        if self.database.url:
            password = urlsplit(self.database.url).password
            if password:
                found.append(password)
        return found


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":" + MASK
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[1]}"))


# ---------------------------------------------------------------- parsing and layering


_TYPE_NAMES: dict[Any, tuple[str, str]] = {
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    str: ("a string", "strings"),
    bool: ("true or false", "booleans"),
    Path: ("a path", "paths"),
    dt.date: ("a date (YYYY-MM-DD)", "dates (YYYY-MM-DD)"),
}


def _type_name(tp: Any, plural: bool = False) -> str:
    origin = get_origin(tp)
    args = [a for a in get_args(tp) if a is not type(None)]
    if origin is list:
        return f"a list of {_type_name(args[0], plural=True)}"
    if origin is dict:
        return f"a table of {_type_name(args[1], plural=True)}"
    if origin is not None and len(args) == 1:
        return _type_name(args[0], plural)
    singular, many = _TYPE_NAMES.get(tp, (str(tp), str(tp)))
    return many if plural else singular


def _coerce(value: Any, tp: Any, from_text: bool) -> Any:
    """`value` as type `tp`, or raise `_Mistyped`. Text (env, flags) is parsed leniently."""
    origin = get_origin(tp)
    args = [a for a in get_args(tp) if a is not type(None)]
    if origin is not None and type(None) in get_args(tp):
        if value is None or (from_text and value == ""):
            return None
        return _coerce(value, args[0], from_text)
    if origin is list:
        if from_text and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise _Mistyped
        return [_coerce(v, args[0], from_text) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise _Mistyped
        return {str(k): _coerce(v, args[1], from_text) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_text and str(value).lower() in (
            "1",
            "true",
            "yes",
            "on",
            "0",
            "false",
            "no",
            "off",
        ):
            return str(value).lower() in ("1", "true", "yes", "on")
        raise _Mistyped
    if tp is int:
        if isinstance(value, bool):
            raise _Mistyped
        if isinstance(value, int):
            return value
        if from_text and re.fullmatch(r"[+-]?\d+", str(value).strip()):
            return int(value)
        raise _Mistyped
    if tp is float:
        if isinstance(value, bool):
            raise _Mistyped
        if isinstance(value, int | float):
            return float(value)
        if from_text:
            try:
                return float(value)
            except ValueError:
                raise _Mistyped from None
        raise _Mistyped
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mistyped
    if tp is Path:
        if isinstance(value, str | Path):
            return Path(value)
        raise _Mistyped
    if tp is dt.date:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        if isinstance(value, str):
            text = value.strip()
            fmt = "%Y%m%d" if re.fullmatch(r"\d{8}", text) else "%Y-%m-%d"
            try:
                return dt.datetime.strptime(text, fmt).date()
            except ValueError:
                raise _Mistyped from None
        raise _Mistyped
    raise _Mistyped


@dataclass
class _Layered:
    """Flat `section.key` values with their origins, built up layer by layer."""

    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)


def _section_fields(cls: type) -> dict[str, tuple[Any, dataclasses.Field[Any]]]:
    hints = get_type_hints(cls)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(cls)}


def _apply(
    layer: _Layered,
    cls: type,
    prefix: str,
    table: Mapping[str, Any],
    origin: str,
    where: str,
    from_text: bool = False,
) -> None:
    fields_ = _section_fields(cls)
    for key, raw in table.items():
        path = f"{prefix}.{key}"
        if key not in fields_:
            known = ", ".join(sorted(fields_))
            msg = f"{where}: unknown key {path!r} (known keys of [{prefix}]: {known})"
            raise ConfigError(msg)
        tp, f = fields_[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(raw, Mapping):
                msg = f"{where}: {path} must be a table"
                raise ConfigError(msg)
            _apply(layer, tp, path, raw, origin, where, from_text)  # type: ignore[arg-type]
            continue
        try:
            value = _coerce(raw, tp, from_text)
        except _Mistyped:
            shown = MASK if f.metadata.get("secret") else repr(raw)
            msg = f"{where}: {path} must be {_type_name(tp)}, got {shown}"
            raise ConfigError(msg) from None
        check: Check | None = f.metadata.get("check")
        problem = check(value) if check else None
        if problem:
            shown = MASK if f.metadata.get("secret") else repr(raw)
            if f.metadata.get("secret") and isinstance(value, str) and "://" in value:
                shown = repr(mask_url(value))
            msg = f"{where}: {path} must be {problem}, got {shown}"
            raise ConfigError(msg)
        layer.values[path] = value
        layer.origins[path] = origin


def _apply_document(layer: _Layered, doc: Mapping[str, Any], origin: str, where: str) -> None:
    for section, table in doc.items():
        if section in ("profiles",):
            continue
        if section == "tasks":
            if not isinstance(table, Mapping):
                msg = f"{where}: [tasks] must hold tables like [tasks.daily]"
                raise ConfigError(msg)
            for task, overrides in table.items():
                if not isinstance(overrides, Mapping):
                    msg = f"{where}: tasks.{task} must be a table of overrides"
                    raise ConfigError(msg)
                _apply(layer, TaskOverride, f"tasks.{task}", overrides, origin, where)
            continue
        cls = SECTIONS.get(section)
        if cls is None:
            known = ", ".join([*SECTIONS, "tasks", "profiles"])
            msg = f"{where}: unknown section [{section}] (known: {known})"
            raise ConfigError(msg)
        if not isinstance(table, Mapping):
            msg = f"{where}: [{section}] must be a table"
            raise ConfigError(msg)
        _apply(layer, cls, section, table, origin, where)


def _env_layer(layer: _Layered, env: Mapping[str, str]) -> None:
    """`DATABASE_URL`, `TUSHARE_TOKEN` and `AH_<SECTION>_<KEY>` (e.g. AH_RUN_WORKERS)."""
    for section, cls in SECTIONS.items():
        for key, (tp, f) in _section_fields(cls).items():
            if dataclasses.is_dataclass(tp) or get_origin(tp) is dict:
                continue
            names = [f"AH_{section}_{key}".upper()]
            if f.metadata.get("env"):
                names.append(f.metadata["env"])  # the well-known name wins
            for name in names:
                if name in env:
                    _apply(
                        layer, cls, section, {key: env[name]}, "env", f"env {name}", from_text=True
                    )


def find_config_file(explicit: str | Path | None, env: Mapping[str, str]) -> Path | None:
    """`--config PATH`, else `AH_CONFIG`, else ./alphahome.toml when it exists."""
    if explicit:
        return Path(explicit)
    if env.get("AH_CONFIG"):
        return Path(env["AH_CONFIG"])
    local = Path(CONFIG_FILENAME)
    return local if local.exists() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = f"{path}: config file not found"
        raise ConfigError(msg) from None
    except OSError as exc:
        msg = f"{path}: cannot read config file ({exc.strerror})"
        raise ConfigError(msg) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path}: not valid TOML ({exc})"
        raise ConfigError(msg) from None


def load_settings(
    config_file: str | Path | None = None,
    profile: str | None = None,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """The effective settings: defaults < file < profile < env < flags.

    `flags` maps `section.key` paths (e.g. `cache.dir`, `run.workers`) to values given on
    the command line; None values are ignored.
    """
    env = dict(os.environ if env is None else env)
    path = find_config_file(config_file, env)
    layer = _Layered()
    doc = _read_toml(path) if path else {}
    where = str(path) if path else "config"
    _apply_document(layer, doc, "file", where)
    profile = profile or env.get("AH_PROFILE") or None
    if profile:
        profiles = doc.get("profiles", {})
        if not isinstance(profiles, Mapping) or profile not in profiles:
            known = ", ".join(sorted(profiles)) if isinstance(profiles, Mapping) else ""
            msg = f"{where}: unknown profile {profile!r} (defined: {known or 'none'})"
            raise ConfigError(msg)
        _apply_document(
            layer, profiles[profile], f"profile {profile}", f"{where} [profiles.{profile}]"
        )
    _env_layer(layer, env)
    for dotted, value in (flags or {}).items():
        if value is None:
            continue
        section, key = dotted.split(".", 1)
        _apply(
            layer,
            SECTIONS[section],
            section,
            {key: value},
            "flag",
            "command line",
            from_text=isinstance(value, str),
        )
    return _build_settings(layer, profile, path)


def _build_section(cls: type, prefix: str, layer: _Layered, origins: dict[str, str]) -> Any:
    kwargs: dict[str, Any] = {}
    for key, (tp, _f) in _section_fields(cls).items():
        path = f"{prefix}.{key}"
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build_section(tp, path, layer, origins)  # type: ignore[arg-type]
            continue
        origins[path] = layer.origins.get(path, "default")
        if path in layer.values:
            kwargs[key] = layer.values[path]
    return cls(**kwargs)


def _build_settings(layer: _Layered, profile: str | None, path: Path | None) -> Settings:
    origins: dict[str, str] = {}
    sections = {name: _build_section(cls, name, layer, origins) for name, cls in SECTIONS.items()}
    task_names = sorted({p.split(".")[1] for p in layer.values if p.startswith("tasks.")})
    tasks = {t: _build_section(TaskOverride, f"tasks.{t}", layer, origins) for t in task_names}
    return Settings(**sections, tasks=tasks, profile=profile, config_file=path, origins=origins)


def describe(settings: Settings) -> list[tuple[str, str, str]]:
    """(key, shown value, origin) for every setting, secrets masked, for `ah config show`."""
    rows: list[tuple[str, str, str]] = []

    def walk(obj: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            path = f"{prefix}.{f.name}"
            if dataclasses.is_dataclass(value):
                walk(value, path)
                continue
            shown = _show(value, secret=bool(f.metadata.get("secret")))
            rows.append((path, shown, settings.origins.get(path, "default")))

    for name in SECTIONS:
        walk(getattr(settings, name), name)
    for task, override in settings.tasks.items():
        walk(override, f"tasks.{task}")
    return rows


def _show(value: Any, secret: bool) -> str:
    if value is None:
        return "(unset)"
    if secret:
        return mask_url(value) if "://" in str(value) else MASK
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list | dict):
        return repr(value)
    return str(value)
