"""Settings every loanbook process shares, read from the environment with a per-service prefix."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class ConfigurationError(RuntimeError):
    """A setting is missing or invalid; the message names the environment variable."""


class ProcessSettings(BaseSettings):
    """Settings of any loanbook process; subclasses set `env_prefix` (LOANBOOK_<SERVICE>_)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    environment: Environment = Environment.DEVELOPMENT
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    # Log lines as JSON (one object per line) or as plain text for a human at a terminal.
    log_json: bool = True
    # Where Prometheus scrapes this process's metrics (GET /metrics); unset, no endpoint is served. 0 picks a port.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"


class TlsSettings(BaseSettings):
    """Optional TLS for gRPC: a server certificate, and a client CA to demand client certificates (mTLS)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Servers: require client certificates signed by this CA. Clients: trust servers signed by this CA.
    tls_ca_file: Path | None = None

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> Self:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        for path in (self.tls_cert_file, self.tls_key_file, self.tls_ca_file):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file {path} does not exist")
        return self

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert_file is not None or self.tls_ca_file is not None


class LogShippingSettings(BaseSettings):
    """Where a process ships its own log records (chassis.log_shipping); unset, it only writes them to stderr."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    log_shipping_addr: str | None = Field(default=None, min_length=3)
    # Records waiting to be shipped; past this, new records are dropped (and counted) rather than held.
    log_shipping_capacity: int = Field(default=10_000, ge=100, le=1_000_000)


MAX_WORKERS = 64


class WorkerSettings(BaseSettings):
    """How many processes serve the port together (chassis.workers): each its own pools, relay, watcher and
    metrics endpoint (metrics_port + its index); more than one helps only a CPU-bound process on several cores."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    workers: int = Field(default=1, ge=1, le=MAX_WORKERS)

    @model_validator(mode="after")
    def _a_metrics_port_per_worker(self) -> Self:
        metrics_port = getattr(self, "metrics_port", None)
        if metrics_port and metrics_port + self.workers - 1 > 65535:
            raise ValueError(f"metrics_port {metrics_port} leaves no port for each of {self.workers} workers")
        return self


class GrpcServiceSettings(ProcessSettings, TlsSettings, LogShippingSettings, WorkerSettings):
    """Settings of a gRPC microservice."""

    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=0, ge=0, le=65535)
    # In-flight RPCs get this long to finish after SIGTERM before they are cancelled.
    shutdown_grace_seconds: float = Field(default=10.0, ge=0, le=300)
    # Readiness: the service's stores are probed this often, each probe failing after the timeout; gRPC health
    # reports NOT_SERVING while any probe fails.
    health_check_interval_seconds: float = Field(default=2.0, gt=0, le=300)
    health_check_timeout_seconds: float = Field(default=1.0, gt=0, le=60)
    # Signs page tokens; every replica of a service needs the same one. Optional only in development and
    # tests, where a random per-process secret is used (tokens then do not survive a restart).
    page_token_secret: SecretStr | None = None

    @model_validator(mode="after")
    def _page_token_secret_outside_development(self) -> Self:
        secret = self.page_token_secret.get_secret_value() if self.page_token_secret else ""
        if self.environment is Environment.PRODUCTION and len(secret) < 32:
            raise ValueError("page_token_secret of at least 32 characters is required in production")
        return self

    def page_token_secret_or_random(self) -> str:
        if self.page_token_secret is not None:
            return self.page_token_secret.get_secret_value()
        return secrets.token_urlsafe(32)


class PostgresSettings(BaseSettings):
    """Where a service's PostgreSQL is."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    postgres_dsn: SecretStr
    postgres_pool_min_size: int = Field(default=1, ge=0, le=100)
    postgres_pool_max_size: int = Field(default=10, ge=1, le=200)

    @field_validator("postgres_dsn")
    @classmethod
    def _a_postgresql_url(cls, dsn: SecretStr) -> SecretStr:
        # Checked here so a mistyped DSN is a bad setting (named, exit 2), not a traceback deep in a driver; the
        # message never echoes the value, which carries the password.
        if urlsplit(dsn.get_secret_value()).scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URL (postgresql://user:password@host:port/database)")
        return dsn


class DynamoSettings(BaseSettings):
    """Where a service's DynamoDB is; an endpoint URL selects DynamoDB Local."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    dynamodb_endpoint: str | None = Field(default=None, pattern=r"^https?://")
    aws_region: str = "us-east-1"
    dynamodb_table_prefix: str = Field(default="loanbook", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # Create the service's DynamoDB table (and its indexes, TTL) at start-up when absent. Unset: yes in development
    # and tests, no in production, where the tables are managed as code (deploy/aws) and the service's role may
    # not create them; it then only checks at start that the table and every index it queries exist.
    dynamodb_create_tables: bool | None = None

    def creates_tables(self, environment: Environment) -> bool:
        if self.dynamodb_create_tables is not None:
            return self.dynamodb_create_tables
        return environment is not Environment.PRODUCTION

    def table_name(self, table: str) -> str:
        """The DynamoDB table of a migrated table: the services and the migration toolkit must agree on it."""
        return f"{self.dynamodb_table_prefix}-{table}"


S = TypeVar("S", bound=BaseSettings)

# A folder holding one file per setting, named after its environment variable
# (/run/secrets/LOANBOOK_GATEWAY_JWT_SECRET): how containers get secrets without putting them in the environment.
# An environment variable still wins.
SECRETS_DIR_VARIABLE = "LOANBOOK_SECRETS_DIR"


def secrets_dir(env: Mapping[str, str] = os.environ) -> Path | None:
    """The folder LOANBOOK_SECRETS_DIR names, checked to be a readable folder; None when unset."""
    raw = env.get(SECRETS_DIR_VARIABLE, "").strip()
    if not raw:
        return None
    path = Path(raw)
    if not path.is_dir():
        raise ConfigurationError(f"invalid configuration: {SECRETS_DIR_VARIABLE}: {raw} is not a folder")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ConfigurationError(f"invalid configuration: {SECRETS_DIR_VARIABLE}: {raw} cannot be read")
    return path


def load_settings(settings_type: type[S], **values: Any) -> S:
    """Read settings from the environment (and LOANBOOK_SECRETS_DIR's files), turning pydantic's error into one that
    names each variable. `values` (e.g. from command-line options) win over both."""
    folder = secrets_dir()
    try:
        return settings_type(_secrets_dir=folder, **values)
    except ValidationError as error:
        prefix = str(settings_type.model_config.get("env_prefix", ""))
        problems = []
        for issue in error.errors():
            field = ".".join(str(part) for part in issue["loc"]) or "(settings)"
            variable = f"{prefix}{field}".upper() if issue["loc"] else settings_type.__name__
            missing = folder is not None and issue["type"] == "missing"
            where = f" (neither in the environment nor a file in {folder})" if missing else ""
            problems.append(f"{variable}: {issue['msg']}{where}")
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None
    except (OSError, SettingsError) as error:  # a secret file that cannot be read
        raise ConfigurationError(f"invalid configuration: {SECRETS_DIR_VARIABLE}: {error}") from None
