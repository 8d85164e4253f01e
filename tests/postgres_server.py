"""A real, throwaway PostgreSQL server for the tests.

`TEST_DATABASE_URL` when set; otherwise initdb + pg_ctl from the machine's binaries
(PATH, `pg_config --bindir`, /usr/lib/postgresql/*/bin) in a temporary folder on a
free loopback port, run as the `postgres` user when the tests run as root.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


class PostgresUnavailable(RuntimeError):
    """No server binaries and no TEST_DATABASE_URL."""


@dataclass(frozen=True)
class PostgresServer:
    """Connection facts of a running server; `url` points at its maintenance database."""

    url: str
    bindir: Path | None
    data: Path | None = None  # the data folder of a server these tests started
    options: str = ""

    def _ctl(self, *args: str) -> None:
        if self.bindir is None or self.data is None:
            msg = "not a server these tests started: it cannot be stopped or started"
            raise PostgresUnavailable(msg)
        cmd = [str(self.bindir / "pg_ctl"), "-D", str(self.data), *args]
        subprocess.run(_as_server_user(cmd), check=True, capture_output=True)

    def crash(self) -> None:
        """Stop the server as a crash would (`pg_ctl stop -m immediate`: no checkpoint,
        every backend killed)."""
        self._ctl("-m", "immediate", "-w", "stop")

    def start(self) -> None:
        """Start the server again on the same data folder (it recovers from its WAL)."""
        self._ctl("-o", self.options, "-l", str(self.data.parent / "log"), "-w", "start")

    def database_url(self, dbname: str) -> str:
        """The URL of another database on the same server."""
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path=f"/{dbname}"))


def find_bindir() -> Path | None:
    """The folder holding initdb and pg_ctl, or None."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@contextlib.contextmanager
def throwaway_server() -> Iterator[PostgresServer]:
    """Start a server (or use TEST_DATABASE_URL) for the duration of the block."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield PostgresServer(url=url, bindir=find_bindir())
        return
    bindir = find_bindir()
    if bindir is None:
        msg = "no PostgreSQL server binaries (initdb/pg_ctl) found and TEST_DATABASE_URL unset"
        raise PostgresUnavailable(msg)
    base = Path(tempfile.mkdtemp(prefix="ah-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    password = secrets.token_hex(12)
    pwfile = base / "pw"
    pwfile.write_text(password)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
        shutil.chown(pwfile, "postgres")
    port = _free_port()
    run = lambda cmd: subprocess.run(_as_server_user(cmd), check=True, capture_output=True)  # noqa: E731
    run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--pwfile",
            str(pwfile),
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "-E",
            "UTF8",
            "--locale=C",
        ]
    )
    opts = (
        f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50"
    )
    run(
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            opts,
            "-l",
            str(base / "log"),
            "-w",
            "start",
        ]
    )
    try:
        yield PostgresServer(
            url=f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres",
            bindir=bindir, data=data, options=opts,
        )  # fmt: skip
    finally:
        subprocess.run(
            _as_server_user(
                [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
            ),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)
