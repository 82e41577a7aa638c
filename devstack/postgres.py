"""A PostgreSQL 15 server run from the machine's binaries, with its state in a project-local folder."""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
from pathlib import Path
from urllib.parse import quote

import asyncpg

from devstack.processes import ChildProcess, RunAs, StartupError, free_port, log_tail, spawn
from devstack.tools import PostgresBinaries, find_postgres_binaries

log = logging.getLogger(__name__)

ADMIN_USER = "loanbook_admin"
APP_ROLE = "loanbook"
APP_DATABASE = "loanbook"
SERVICE_ACCOUNT = "loanbook-pg"
FALLBACK_ACCOUNT = "nobody"
RELOCATION_ROOT = Path("/var/lib/loanbook-devstack")

# Durability is worthless for throw-away test clusters and costs seconds per test run.
EPHEMERAL_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "shared_buffers": "32MB",
}
PERSISTENT_SETTINGS = {
    "shared_buffers": "128MB",
    "max_connections": "100",
}


def postgres_account() -> RunAs | None:
    """The account PostgreSQL runs as: None (the caller) unless the caller is root, which postgres refuses."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVICE_ACCOUNT)
    except KeyError:
        entry = _create_service_account()
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _create_service_account() -> pwd.struct_passwd:
    useradd = shutil.which("useradd")
    if useradd is not None:
        result = subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_ACCOUNT],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            return pwd.getpwnam(SERVICE_ACCOUNT)
        except KeyError:
            log.warning("useradd %s failed (%s); using %s", SERVICE_ACCOUNT, result.stderr.strip(), FALLBACK_ACCOUNT)
    else:
        log.warning("useradd is not available; running PostgreSQL as %s", FALLBACK_ACCOUNT)
    return pwd.getpwnam(FALLBACK_ACCOUNT)


def traversable_by(path: Path, account: RunAs) -> bool:
    """Whether `account` may search every folder from / down to `path` (projects may sit under 0700 /root)."""
    for folder in (path, *path.parents):
        mode = folder.stat()
        if mode.st_uid == account.uid:
            bit = stat.S_IXUSR
        elif mode.st_gid == account.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not mode.st_mode & bit:
            return False
    return True


def relocated_root(state_dir: Path, base: Path = RELOCATION_ROOT) -> Path:
    absolute = state_dir.resolve()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", absolute.parent.name).strip("-")[:40] or "state"
    digest = hashlib.sha256(str(absolute).encode()).hexdigest()[:10]
    return base / f"{name}-{digest}"


def _make_dirs(path: Path, mode: int) -> None:
    """Create missing folders with an explicit mode, whatever the umask; existing ones are left alone."""
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    for folder in reversed(missing):
        folder.mkdir()
        folder.chmod(mode)


def _own(path: Path, account: RunAs | None, mode: int) -> None:
    if account is not None:
        os.chown(path, account.uid, account.gid)
    path.chmod(mode)


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class PostgresServer(ChildProcess):
    """PostgreSQL for development (persistent) or tests (`ephemeral=True`), bound to 127.0.0.1 only."""

    def __init__(
        self,
        state_dir: Path,
        *,
        port: int = 0,
        ephemeral: bool = False,
        binaries: PostgresBinaries | None = None,
        relocation_base: Path = RELOCATION_ROOT,
        start_timeout: float = 30.0,
        stop_timeout: float = 15.0,
        name: str = "postgres",
    ) -> None:
        # SIGINT is PostgreSQL's fast shutdown: roll back open transactions, checkpoint, exit.
        super().__init__(name, stop_signal=signal.SIGINT, start_timeout=start_timeout, stop_timeout=stop_timeout)
        self.state_dir = state_dir.resolve()
        self.home = self.state_dir / "postgres"
        self.password_file = self.home / "password"
        self.log_path = self.home / "postgres.log"
        self.port = port
        self.ephemeral = ephemeral
        self._binaries = binaries
        self._relocation_base = relocation_base
        self._password = ""
        self.run_as: RunAs | None = None
        # Resolved in start(): <home>/cluster, or where its symlink points when relocated.
        self.data_root = self.home / "cluster"

    @property
    def data_dir(self) -> Path:
        return self.data_root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.data_root / "socket"

    @property
    def dsn(self) -> str:
        return self._dsn(APP_ROLE, APP_DATABASE)

    @property
    def admin_dsn(self) -> str:
        return self._dsn(ADMIN_USER, "postgres")

    def _dsn(self, user: str, database: str) -> str:
        return f"postgresql://{user}:{quote(self._password, safe='')}@127.0.0.1:{self.port}/{database}"

    async def start(self) -> None:
        binaries = self._binaries or find_postgres_binaries()
        self.run_as = postgres_account()
        _make_dirs(self.home, 0o755)
        self._prepare_data_root()
        self._password = self._load_or_create_password()
        if not (self.data_dir / "PG_VERSION").exists():
            await self._initdb(binaries)
        if self.port == 0:
            self.port = free_port()
        await self._launch(
            [binaries.postgres, "-D", self.data_dir, *self._settings()],
            self._accepts_connections,
            log_path=self.log_path,
            run_as=self.run_as,
            # Immediate shutdown: the postmaster takes its backends down with it.
            death_signal=signal.SIGQUIT,
        )
        await self._ensure_app_role()

    def _prepare_data_root(self) -> None:
        link = self.home / "cluster"
        if link.is_symlink():
            self.data_root = link.resolve()
        elif link.exists() or self.run_as is None or traversable_by(self.home, self.run_as):
            self.data_root = link
        else:
            self.data_root = relocated_root(self.state_dir, self._relocation_base)
            _make_dirs(self._relocation_base, 0o755)
            link.symlink_to(self.data_root, target_is_directory=True)
            log.info("%s is not reachable by %s", self.home, self.run_as.name)
        if not self.data_root.exists():
            self.data_root.mkdir()
        _own(self.data_root, self.run_as, 0o700)
        for folder in (self.data_dir, self.socket_dir):
            if not folder.exists():
                folder.mkdir()
                _own(folder, self.run_as, 0o700)
        log.info("PostgreSQL data directory: %s", self.data_dir)

    def _load_or_create_password(self) -> str:
        if self.password_file.exists():
            return self.password_file.read_text().strip()
        if (self.data_dir / "PG_VERSION").exists():
            raise StartupError(
                f"{self.data_dir} is initialised but its password file {self.password_file} is missing; "
                f"delete {self.data_root} to start with an empty cluster"
            )
        password = secrets.token_urlsafe(24)
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        return password

    async def _initdb(self, binaries: PostgresBinaries) -> None:
        # initdb runs as the service account, which cannot read the caller's 0600 password file.
        pwfile = self.data_root / ".initdb-password"
        pwfile.write_text(self._password + "\n")
        _own(pwfile, self.run_as, 0o600)
        try:
            process = await spawn(
                [
                    binaries.initdb,
                    "-D",
                    self.data_dir,
                    "-U",
                    ADMIN_USER,
                    f"--pwfile={pwfile}",
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-instructions",
                    *(["--no-sync"] if self.ephemeral else []),
                ],
                log_path=self.log_path,
                run_as=self.run_as,
            )
            returncode = await process.wait()
        finally:
            pwfile.unlink(missing_ok=True)
        if returncode != 0:
            raise StartupError(
                f"initdb failed with code {returncode}; last lines of {self.log_path}:\n{log_tail(self.log_path)}"
            )

    def _settings(self) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "logging_collector": "off",
            **(EPHEMERAL_SETTINGS if self.ephemeral else PERSISTENT_SETTINGS),
        }
        return [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]

    async def _accepts_connections(self) -> bool:
        try:
            connection = await asyncpg.connect(self.admin_dsn, timeout=2)
        except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError) as exc:
            raise StartupError(
                f"{self.name} rejected the password in {self.password_file} ({exc}); "
                f"delete {self.data_root} and {self.password_file} to start with an empty cluster"
            ) from exc
        except (OSError, TimeoutError, asyncpg.PostgresError):
            return False
        await connection.close()
        return True

    async def _ensure_app_role(self) -> None:
        connection = await asyncpg.connect(self.admin_dsn, timeout=5)
        try:
            password = _sql_literal(self._password)
            exists = await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", APP_ROLE)
            verb = "ALTER" if exists else "CREATE"
            await connection.execute(f"{verb} ROLE {APP_ROLE} WITH LOGIN PASSWORD {password}")
            if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", APP_DATABASE):
                await connection.execute(f"CREATE DATABASE {APP_DATABASE} OWNER {APP_ROLE}")
        finally:
            await connection.close()
