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
import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from foundation.errors import UsageError

CONFIG_FILENAME = "alphahome.toml"
MASK = "***"
MIN_SECRET_CHARS = 3  # shorter "secrets" would mask every matching letter of the logs
_SECRET_PARAM = re.compile(r"token|key|secret|pass|sig|auth|credential", re.IGNORECASE)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Upper bounds: far above any sensible value, low enough that a typo (10**20) is refused.
MAX_WORKERS = 256
MAX_RETRIES = 100
MAX_CONCURRENCY = 64
MAX_POINTS = 10_000_000
MAX_SIM_STOCKS = 8000
HOUR_S, DAY_S, WEEK_S = 3600.0, 86400.0, 604800.0
# `AH_` variables that are not `AH_<SECTION>_<KEY>` settings but are read all the same.
OTHER_ENV = ("AH_CONFIG", "AH_PROFILE")
TEST_ENV_PREFIX = "AH_TEST_"  # hooks of the crash and pause tests (pipeline, sinks)


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


def _between(lo: float, hi: float, optional: bool = False) -> Check:
    """A check that a number lies in [lo, hi] (None passes when `optional`)."""

    def check(v: Any) -> str | None:
        if v is None and optional:
            return None
        return None if lo <= v <= hi else f"a number between {lo:g} and {hi:g}"

    return check


def _above(lo: float, hi: float) -> Check:
    """A check that a number lies in (lo, hi]: a duration that must be positive."""

    def check(v: Any) -> str | None:
        return None if lo < v <= hi else f"a number > {lo:g} and <= {hi:g}"

    return check


def _path(v: Any) -> str | None:
    """A folder path: neither it nor the nearest existing folder above it is a file."""
    for where in (v, *v.parents):
        if where.exists():
            if where.is_dir():
                return None
            return (
                "a directory, not a file" if where == v else f"a directory, but {where} is a file"
            )
    return None


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


# Host names that always mean this machine or a cloud's metadata service.
_INTERNAL_NAMES = ("localhost", "metadata", "metadata.google.internal", "instance-data")


def internal_host(host: str) -> str | None:
    """Why `host` (a name or an address) is not a public destination, or None when it is:
    loopback, private, link-local (cloud metadata lives there), or otherwise reserved."""
    name = host.strip("[]").lower().rstrip(".")
    if name in _INTERNAL_NAMES or name.endswith((".localhost", ".internal")):
        return "an internal host name"
    try:
        address = ipaddress.ip_address(name.split("%")[0])
    except ValueError:
        return None  # a name: its addresses are checked when it is resolved
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for kind in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
        if getattr(address, f"is_{kind}"):
            return f"a {kind.replace('_', '-')} address"
    if address in ipaddress.ip_network("100.64.0.0/10"):
        return "a shared (carrier-grade NAT) address"
    return None


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
    load_streams: int | None = _spec(
        None,
        check=_between(1, MAX_CONCURRENCY, optional=True),
        help="parallel COPY streams (connections) of a new table's load; absent = CPUs / 2, 1 to 4",
    )


@dataclass(frozen=True)
class TushareConfig:
    """The Tushare Pro account and endpoint."""

    token: str | None = _spec(None, secret=True, env="TUSHARE_TOKEN", help="API token")
    base_url: str = _spec("http://api.tushare.pro", check=_http_url, help="service endpoint")
    points: int = _spec(
        2000, check=_between(0, MAX_POINTS), help="account points (sets default limits)"
    )
    timeout_s: float = _spec(30.0, check=_above(0, HOUR_S), help="per-request timeout")
    call_deadline_s: float = _spec(
        300.0,
        check=_above(0, DAY_S),
        help="most time one call may take, limit waits and retries included",
    )
    limits: dict[str, int] = _spec(factory=dict, help="calls per minute per API, e.g. daily = 500")


@dataclass(frozen=True)
class CacheConfig:
    """The Parquet cache root."""

    dir: Path = _spec(
        Path("data"), check=_path, help="cache root (raw/, pit/, factors/, state/, …)"
    )


@dataclass(frozen=True)
class RunConfig:
    """How runs behave and when they alert."""

    workers: int = _spec(2, check=_between(1, MAX_WORKERS), help="process-pool size")
    max_retries: int = _spec(5, check=_between(0, MAX_RETRIES), help="retries of a transient error")
    retry_delay_s: float = _spec(1.0, check=_between(0, HOUR_S), help="first backoff delay")
    task_deadline_s: float = _spec(
        21600.0, check=_above(0, WEEK_S), help="most time one sync task may take; then it fails"
    )
    batch_size: int | None = _spec(
        None,
        check=_between(1, 1_000_000, optional=True),
        help="sync: units per commit (tasks.<name>.batch_size wins; absent = built-in)",
    )
    log_level: str = _spec("INFO", check=_one_of(*LOG_LEVELS), help="console log level")
    log_json: bool = _spec(False, help="also write JSON-lines logs")
    success_rate_alert: float = _spec(0.8, check=_share, help="alert under this success rate")
    max_task_seconds_alert: float = _spec(3600.0, check=_above(0, WEEK_S), help="alert over this")
    slow_operation_s: float = _spec(
        10.0, check=_above(0, DAY_S), help="log operations slower than this"
    )
    exclude_tasks: list[str] = _spec(factory=list, help="tasks never run")
    alert_webhook: str | None = _spec(
        None, check=_optional_http_url, secret=True, help="POST alerts here (http or https)"
    )
    alert_allow_private: bool = _spec(
        False, help="let alert_webhook be a loopback, private or link-local address"
    )
    min_free_disk_gb: float = _spec(1.0, check=_between(0, 1e9), help="health: free disk floor")
    timeout_minutes: float = _spec(
        0.0, check=_between(0, 7 * 24 * 60), help="ah run stops cleanly after this (0 = no limit)"
    )
    freq: str = _spec(
        "weekly", check=_one_of("weekly", "monthly", "daily"), help="factor calc dates of ah run"
    )
    keep_reports_days: int = _spec(
        90, check=_between(0, 100_000), help="run reports older than this are deleted (0 = keep)"
    )
    keep_logs_days: int = _spec(
        30,
        check=_between(0, 100_000),
        help="rotated logs are compressed, deleted after this (0 = keep)",
    )
    max_backup_age_hours: float = _spec(
        36.0,
        check=_between(0, 100_000),
        help="health: the last backup older than this warns (0 = off)",
    )


def _emails(v: Any) -> str | None:
    bad = [a for a in v if not re.fullmatch(r"[^@\s]+@[^@\s]+", a)]
    return "a list of e-mail addresses" if bad else None


@dataclass(frozen=True)
class AlertsConfig:
    """Where alerts go besides the log and stderr (each configured channel gets them)."""

    email_to: list[str] = _spec(factory=list, check=_emails, help="mail alerts to these")
    email_from: str = _spec("alphahome@localhost", help="the From address of alert mail")
    smtp_host: str = _spec("localhost", help="SMTP server")
    smtp_port: int = _spec(25, check=_between(1, 65535), help="SMTP port (465 = implicit TLS)")
    smtp_user: str | None = _spec(None, help="SMTP login")
    smtp_password: str | None = _spec(None, secret=True, help="SMTP password")
    smtp_starttls: bool = _spec(False, help="STARTTLS before login")
    wecom_webhook: str | None = _spec(
        None, check=_optional_http_url, secret=True, help="WeCom (企业微信) group robot URL"
    )
    dingtalk_webhook: str | None = _spec(
        None, check=_optional_http_url, secret=True, help="DingTalk (钉钉) group robot URL"
    )
    dingtalk_secret: str | None = _spec(None, secret=True, help="DingTalk robot signing secret")


@dataclass(frozen=True)
class StateConfig:
    """Where task state and locks live."""

    backend: str = _spec("files", check=_one_of("files", "postgres"), help="files | postgres")
    dir: Path | None = _spec(
        None, help="files backend: task state and locks (absent = <cache>/state)"
    )


@dataclass(frozen=True)
class SimulatorSettings:
    """The built-in market used by `--source sim` and `ah sim serve`."""

    stocks: int = _spec(
        300, check=_between(1, MAX_SIM_STOCKS), help="stocks listed on 2024-06-28 (~2%/year after)"
    )
    start: dt.date = _spec(dt.date(2019, 1, 1), help="first day of history")
    today: dt.date = _spec(
        dt.date(2024, 6, 28), help="the simulated today (later: the same market, further on)"
    )
    seed: int = _spec(7, check=_between(0, 2**63 - 1), help="random seed")
    points: int = _spec(5000, check=_between(0, MAX_POINTS), help="simulated account points")
    limit_per_min: int | None = _spec(
        None, check=_between(0, 10**6, optional=True), help="server calls/min per API"
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
        None, check=_between(0, 100_000, optional=True), help="refresh window"
    )
    concurrency: int | None = _spec(
        None, check=_between(1, MAX_CONCURRENCY, optional=True), help="requests in flight"
    )
    max_retries: int | None = _spec(
        None, check=_between(0, MAX_RETRIES, optional=True), help="retries"
    )
    batch_size: int | None = _spec(
        None, check=_between(1, 1_000_000, optional=True), help="units per commit"
    )


SECTIONS: dict[str, type] = {
    "database": DatabaseConfig,
    "tushare": TushareConfig,
    "cache": CacheConfig,
    "run": RunConfig,
    "alerts": AlertsConfig,
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
    alerts: AlertsConfig
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
        """Secret values in force (token, credentials in URLs), for log scrubbing."""
        found = [self.tushare.token] if self.tushare.token else []
        urls = (self.database.url, self.run.alert_webhook, self.tushare.base_url)
        alerts = self.alerts
        for url in (*urls, alerts.wecom_webhook, alerts.dingtalk_webhook):
            if url:
                found += url_secrets(url)
        found += [s for s in (alerts.smtp_password, alerts.dingtalk_secret) if s]
        return found


def url_secrets(url: str) -> list[str]:
    """The credentials inside a URL: its password (or a lone user part), and the values of query
    parameters whose names say they are secret (token, key, secret, password, sig)."""
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
        if parts.username and not parts.password:
            found.append(parts.username)  # a lone user part is a token (https://TOKEN@host)
    except ValueError:
        return []
    found += [v for k, v in parse_qsl(parts.query) if _SECRET_PARAM.search(k)]
    return [f for f in found if len(f) >= MIN_SECRET_CHARS]


def mask_url(url: str) -> str:
    """The URL with its credentials replaced by *** (password, a lone user part taken as
    a token, and secret-looking query parameters), for anything shown or logged."""
    try:
        parts = urlsplit(url)
        password, username = parts.password, parts.username
    except ValueError:
        return MASK
    if "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        user = f"{username}:{MASK}" if password is not None else MASK
        parts = parts._replace(netloc=f"{user}@{host}")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if any(_SECRET_PARAM.search(k) for k, _ in pairs):
        masked = [(k, MASK if _SECRET_PARAM.search(k) else v) for k, v in pairs]
        parts = parts._replace(query=urlencode(masked, safe="*"))
    return urlunsplit(parts)


# ---------------------------------------------------------------- parsing and layering


_TYPE_NAMES: dict[Any, tuple[str, str]] = {
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    str: ("a string", "strings"),
    bool: ("true or false", "booleans"),
    Path: ("a non-empty path", "non-empty paths"),
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
        if isinstance(value, str) and not value.strip():
            raise _Mistyped  # Path("") would quietly mean the current directory
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


def _shown(raw: Any, secret: bool) -> str:
    """A refused value as an error shows it: as written (a flag's Path as its text), any
    URL with its credentials masked, a secret that is no URL not at all."""
    if isinstance(raw, str) and "://" in raw:
        return repr(mask_url(raw))
    if secret:
        return MASK
    return repr(str(raw) if isinstance(raw, Path) else raw)


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
            hint = did_you_mean(key, fields_, f"'{prefix}.{{}}'")
            known = ", ".join(sorted(fields_))
            msg = f"{where}: unknown key {path!r}{hint} (known keys of [{prefix}]: {known})"
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
            shown = _shown(raw, bool(f.metadata.get("secret")))
            msg = f"{where}: {path} must be {_type_name(tp)}, got {shown}"
            raise ConfigError(msg) from None
        check: Check | None = f.metadata.get("check")
        problem = check(value) if check else None
        if problem:
            shown = _shown(raw, bool(f.metadata.get("secret")))
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
            names = [*SECTIONS, "tasks", "profiles"]
            hint = did_you_mean(section, names, "[{}]")
            msg = f"{where}: unknown section [{section}]{hint} (known: {', '.join(names)})"
            raise ConfigError(msg)
        if not isinstance(table, Mapping):
            msg = f"{where}: [{section}] must be a table"
            raise ConfigError(msg)
        _apply(layer, cls, section, table, origin, where)


def _env_names(cls: type, prefix: str) -> list[tuple[str, str, str]]:
    """(variable, dotted path, key) of every scalar key under `cls`, nested tables too."""
    found: list[tuple[str, str, str]] = []
    for key, (tp, f) in _section_fields(cls).items():
        if dataclasses.is_dataclass(tp):
            found += _env_names(tp, f"{prefix}.{key}")  # type: ignore[arg-type]
            continue
        if get_origin(tp) is dict:
            continue
        found.append((f"AH_{prefix}_{key}".replace(".", "_").upper(), prefix, key))
        if f.metadata.get("env"):
            found.append((f.metadata["env"], prefix, key))  # the well-known name wins
    return found


def _env_layer(layer: _Layered, env: Mapping[str, str]) -> None:
    """`DATABASE_URL`, `TUSHARE_TOKEN` and `AH_<SECTION>_<KEY>` (e.g. AH_RUN_WORKERS);
    any other `AH_` variable is refused, so a misspelt one is not silently ignored."""
    known: list[str] = [*OTHER_ENV]
    for section, cls in SECTIONS.items():
        for name, prefix, key in _env_names(cls, section):
            known.append(name)
            if name in env:
                owner = _owner(cls, prefix.split(".")[1:])
                value = {key: env[name]}
                _apply(layer, owner, prefix, value, "env", f"env {name}", from_text=True)
    for name in sorted(env):
        if name.startswith("AH_") and name not in known and not name.startswith(TEST_ENV_PREFIX):
            hint = did_you_mean(name, known)
            msg = f"env {name}: unknown alphahome variable{hint} (expected AH_<SECTION>_<KEY>)"
            raise ConfigError(msg)


def _owner(cls: type, path: list[str]) -> type:
    """The dataclass of the nested table `path` under `cls`."""
    for part in path:
        cls = _section_fields(cls)[part][0]
    return cls


def did_you_mean(name: str, choices: Iterable[str], shape: str = "'{}'") -> str:
    """`" (did you mean 'x'?)"` for the closest of `choices` (shown through `shape`),
    or "" when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {shape.format(close[0])}?)" if close else ""


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
    except IsADirectoryError:
        msg = f"{path}: is a directory, not a config file"
        raise ConfigError(msg) from None
    except OSError as exc:
        msg = f"{path}: cannot read config file ({exc.strerror})"
        raise ConfigError(msg) from None
    except UnicodeDecodeError as exc:
        msg = f"{path}: not UTF-8 text (byte {exc.start}); save the config file as UTF-8"
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
    known_tasks: Collection[str] | None = None,
) -> Settings:
    """The effective settings: defaults < file < profile < env < flags.

    `flags` maps `section.key` paths (e.g. `cache.dir`, `run.workers`) to values given on
    the command line; None values are ignored. `known_tasks`, when given, are the task
    names `[tasks.<name>]` and `run.exclude_tasks` may use (the sync's catalogue, which
    this layer cannot import).
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
            defined = sorted(profiles) if isinstance(profiles, Mapping) else []
            hint = did_you_mean(profile, defined)
            known = ", ".join(defined)
            msg = f"{where}: unknown profile {profile!r}{hint} (defined: {known or 'none'})"
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
    settings = _build_settings(layer, profile, path)
    _check_across(settings, where, known_tasks)
    return settings


def _check_across(settings: Settings, where: str, known_tasks: Collection[str] | None) -> None:
    """The checks that involve more than one key, or names only the caller knows."""
    sim = settings.simulator
    if sim.start >= sim.today:
        msg = f"{where}: simulator.start must be before simulator.today ({sim.today})"
        msg += f", got {sim.start}"
        raise ConfigError(msg)
    tushare = settings.tushare
    if tushare.call_deadline_s < tushare.timeout_s:
        msg = f"{where}: tushare.call_deadline_s must be at least tushare.timeout_s"
        msg += f" ({tushare.timeout_s:g}), got {tushare.call_deadline_s:g}"
        raise ConfigError(msg)
    hook = settings.run.alert_webhook
    if hook and not settings.run.alert_allow_private:
        problem = internal_host(urlsplit(hook).hostname or "")
        if problem:
            msg = f"{where}: run.alert_webhook must be a public address, got {mask_url(hook)!r}"
            msg += f" ({problem}; set run.alert_allow_private = true to allow it)"
            raise ConfigError(msg)
    if known_tasks is not None:
        check_task_names(settings, known_tasks)


def check_task_names(settings: Settings, known_tasks: Collection[str]) -> None:
    """`ConfigError` when `[tasks.<name>]` or `run.exclude_tasks` names an unknown task
    (`known_tasks` come from the sync's catalogue, which this layer cannot import)."""
    where = str(settings.config_file) if settings.config_file else "config"
    for name in settings.tasks:
        if name not in known_tasks:
            hint = did_you_mean(name, known_tasks, "[tasks.{}]")
            msg = f"{where}: unknown task [tasks.{name}]{hint} (known: {', '.join(known_tasks)})"
            raise ConfigError(msg)
    for name in settings.run.exclude_tasks:
        if name not in known_tasks:
            hint = did_you_mean(name, known_tasks)
            msg = f"{where}: run.exclude_tasks names an unknown task {name!r}{hint}"
            raise ConfigError(msg)


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
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list | dict):
        return repr(value)
    return str(value)


# ---------------------------------------------------------------- editing the file

_SECTION = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]\s*(#.*)?$")
_STRING_VALUE = r"""("(?:[^"\\]|\\.)*"|'[^']*')"""


def set_file_string(path: Path, dotted: str, value: str) -> None:
    """Replace the string value of `section.key` in the TOML file at `path`, keeping every
    other line, comment and the file's permissions; read back to verify.

    For `ah db rename --update-config`; the key must already be written in its section
    as a one-line string (`url = "…"`), else `ConfigError` and the file is left as it was.
    """
    section, key = dotted.split(".", 1)
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    assignment = re.compile(rf"^(\s*{re.escape(key)}\s*=\s*){_STRING_VALUE}(.*)$", re.DOTALL)
    current: str | None = None
    found = None
    for number, line in enumerate(lines):
        header = _SECTION.match(line)
        if header:
            current = header.group(1)
            continue
        if current == section and assignment.match(line):
            found = number
            break
    if found is None:
        msg = f'{path}: no one-line string {key} = "…" under [{section}] to rewrite'
        raise ConfigError(msg)
    encoded = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    lines[found] = assignment.sub(lambda m: m.group(1) + encoded + m.group(3), lines[found])
    new_text = "".join(lines)
    if tomllib.loads(new_text).get(section, {}).get(key) != value:
        msg = f"{path}: rewriting {dotted} did not read back; file left unchanged"
        raise ConfigError(msg)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(new_text, encoding="utf-8")
    os.chmod(temporary, path.stat().st_mode & 0o7777)
    os.replace(temporary, path)


# ---------------------------------------------------------------- the example file

EXAMPLE_FILENAME = "alphahome.example.toml"
_EXAMPLE_HEAD = """\
# alphahome.example.toml: every configuration key, its default and its meaning.
# Generated from the config spec (foundation/config.py) by `ah config example`; do not edit.
# Copy it to alphahome.toml (or point --config / AH_CONFIG at a copy) and uncomment what
# you change. Layers: default < this file < [profiles.<name>] < environment < flags.
# Every key also reads from AH_<SECTION>_<KEY> (e.g. AH_RUN_WORKERS); secrets are best
# kept in the environment (DATABASE_URL, TUSHARE_TOKEN) or in an owner-only file.
"""
_EXAMPLE_TAIL = """\
# Per-task overrides, one table per task (names as in `ah tasks`):
# [tasks.daily]
{task_keys}
# Profiles overlay any of the tables above, chosen by --profile or AH_PROFILE:
# [profiles.production.run]
# workers = 8
"""


def _toml_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{k} = {_toml_literal(v)}" for k, v in value.items()) + " }"
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _example_keys(cls: type, section: str | None) -> list[str]:
    """Commented `key = default` lines, each under its meaning, for one section."""
    lines: list[str] = []
    instance = cls()
    for key, (tp, f) in _section_fields(cls).items():
        if dataclasses.is_dataclass(tp):
            continue
        default = getattr(instance, key)
        shown = "unset" if default is None else _toml_literal(default)
        top = section is not None and "." not in section and get_origin(tp) is not dict
        where = [f"AH_{section}_{key}".upper()] if top else []
        if f.metadata.get("env"):
            where.append(f.metadata["env"])
        env = f"; env {' or '.join(where)}" if where else ""
        lines.append(f"# {f.metadata.get('help', '')} ({_type_name(tp)}, default {shown}{env})")
        lines.append(f"# {key} = {'' if default is None else _toml_literal(default)}".rstrip())
    return lines


def example_config() -> str:
    """`alphahome.example.toml`: every key of the spec with its default and its help, all
    commented out, so the file loads as the defaults (`ah config example` prints it)."""
    parts = [_EXAMPLE_HEAD]

    def section(name: str, cls: type) -> None:
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        parts.append(f"\n[{name}]  # {doc}\n")
        parts.extend(line + "\n" for line in _example_keys(cls, name))
        for key, (tp, _f) in _section_fields(cls).items():
            if dataclasses.is_dataclass(tp):
                section(f"{name}.{key}", tp)  # type: ignore[arg-type]

    for name, cls in SECTIONS.items():
        section(name, cls)
    task_keys = "\n".join(_example_keys(TaskOverride, None))
    parts.append("\n" + _EXAMPLE_TAIL.format(task_keys=task_keys))
    return "".join(parts)
