"""Toolkit settings (environment prefix LOANBOOK_MIGRATION_): the stores and table names the services use."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from chassis.config import DynamoSettings, PostgresSettings


class ToolkitSettings(PostgresSettings, DynamoSettings):
    model_config = SettingsConfigDict(env_prefix="LOANBOOK_MIGRATION_", extra="ignore", frozen=True)

    # Tables are named by DynamoSettings.table_name, as in the services: the prefix must be theirs
    # (LOANBOOK_PAYMENT_/LOGGING_DYNAMODB_TABLE_PREFIX). The log layout must match the logging service's
    # (LOANBOOK_LOGGING_DYNAMODB_SHARDS, _RETENTION_DAYS) or backfilled items would land in other partitions.
    log_shards: int = Field(default=8, ge=1, le=256)
    log_retention_days: int = Field(default=30, ge=1, le=3650)
    postgres_pool_max_size: int = Field(default=20, ge=1, le=200)

    @property
    def log_retention(self) -> timedelta:
        return timedelta(days=self.log_retention_days)
