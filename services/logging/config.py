"""Logging service settings (environment prefix LOANBOOK_LOGGING_)."""

from datetime import timedelta

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from chassis.config import DynamoSettings, GrpcServiceSettings, PostgresSettings
from migration.settings import MigratingTableSettings


class LoggingSettings(GrpcServiceSettings, PostgresSettings, DynamoSettings, MigratingTableSettings):
    model_config = SettingsConfigDict(env_prefix="LOANBOOK_LOGGING_", extra="ignore", frozen=True)

    grpc_port: int = Field(default=50153, ge=0, le=65535)
    migrate_on_start: bool = True
    # Entries older than this are refused, expire in DynamoDB (TTL) and are dropped with their day's
    # partition in PostgreSQL.
    retention_days: int = Field(default=30, ge=1, le=3650)
    # Partitions per service and hour in DynamoDB. May grow, never shrink (older entries sit in every shard).
    dynamodb_shards: int = Field(default=8, ge=1, le=256)
    # A time-range query is several Queries (hours x shards): it gets a longer budget than one GetItem.
    dynamo_timeout_seconds: float = Field(default=1.0, gt=0, le=30)
    # One batch of up to 1000 entries is up to 40 BatchWriteItem calls.
    dynamo_batch_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    partition_maintenance_seconds: float = Field(default=3600, gt=0, le=86400)

    @property
    def retention(self) -> timedelta:
        return timedelta(days=self.retention_days)
