"""`ah`: the alphahome command line. Thin: parse, call one function, print."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.config import ConfigError, Settings, describe, load_settings
from pipeline.errors import AlphahomeError
from pipeline.logs import get_logger, register_secrets, scrub, setup_logging

app = typer.Typer(
    name="ah",
    help="alphahome: Tushare Pro to a point-in-time Parquet cache, P and G factors, PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show and check the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


def _version() -> str:
    try:
        return version("alphahome")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass
class AppState:
    """Global options, and the settings loaded from them on first use."""

    config: Path | None = None
    profile: str | None = None
    log_level: str | None = None
    cache_dir: Path | None = None
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self, **flags: Any) -> Settings:
        """Load the effective settings (command flags win over everything else)."""
        if self._settings is None or flags:
            all_flags = {"run.log_level": self.log_level, "cache.dir": self.cache_dir, **flags}
            self._settings = load_settings(self.config, self.profile, all_flags)
            register_secrets(self._settings.secrets())
        return self._settings

    def start_logging(self, settings: Settings) -> None:
        """Console plus rotating files under the cache's logs/."""
        setup_logging(
            settings.run.log_level,
            Path(settings.cache.dir).absolute() / "logs",
            json_lines=settings.run.log_json,
        )


STATE = AppState()


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"alphahome {_version()}")
        raise typer.Exit


@app.callback()
def main_options(
    config: Annotated[Path | None, typer.Option("--config", help="TOML config file.")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Profile overlay.")] = None,
    log_level: Annotated[str | None, typer.Option("--log-level", help="DEBUG…ERROR.")] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Cache root.")] = None,
    _version_flag: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print version."),
    ] = False,
) -> None:
    """Global options (they override the config file and the environment)."""
    STATE.config, STATE.profile = config, profile
    STATE.log_level = log_level.upper() if log_level else None
    STATE.cache_dir = cache_dir
    STATE._settings = None


@config_app.command("show")
def config_show() -> None:
    """Print the effective configuration (secrets masked) and where each value came from."""
    settings = STATE.settings()
    rows = describe(settings)
    source = str(settings.config_file) if settings.config_file else "(no config file)"
    typer.echo(f"# config file: {source}; profile: {settings.profile or '(none)'}")
    width = max(len(k) for k, _, _ in rows)
    for key, shown, origin in rows:
        typer.echo(f"{key:<{width}}  {shown}  [{origin}]")


@config_app.command("check")
def config_check() -> None:
    """Validate the configuration; exit 0 when valid, 2 otherwise."""
    settings = STATE.settings()
    typer.echo(f"configuration ok ({settings.config_file or 'defaults and environment'})")


def main(argv: list[str] | None = None) -> int:
    """Run `ah`; user errors print one line and exit non-zero, never a traceback."""
    try:
        app(args=argv, prog_name="ah")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except ConfigError as exc:
        typer.echo(f"error: {scrub(str(exc))}", err=True)
        return 2
    except AlphahomeError as exc:
        typer.echo(f"error: {scrub(str(exc))}", err=True)
        return exc.exit_code
    except Exception as exc:  # the last line of defence: one line here, traceback in the log
        get_logger().debug("unexpected error", exc_info=True)
        typer.echo(f"error: unexpected {type(exc).__name__}: {scrub(str(exc))}", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
