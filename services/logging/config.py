"""Logging service settings (environment prefix LOANBOOK_LOGGING_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from chassis.config import DynamoSettings, GrpcServiceSettings, PostgresSettings


class LoggingSettings(GrpcServiceSettings, PostgresSettings, DynamoSettings):
    model_config = SettingsConfigDict(env_prefix="LOANBOOK_LOGGING_", extra="ignore", frozen=True)

    grpc_port: int = Field(default=50153, ge=0, le=65535)
