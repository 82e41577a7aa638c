"""Customer service settings (environment prefix LOANBOOK_CUSTOMER_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from chassis.config import GrpcServiceSettings, PostgresSettings


class CustomerSettings(GrpcServiceSettings, PostgresSettings):
    model_config = SettingsConfigDict(env_prefix="LOANBOOK_CUSTOMER_", extra="ignore", frozen=True)

    grpc_port: int = Field(default=50151, ge=0, le=65535)
    # Apply pending schema migrations at start-up (replicas serialise on an advisory lock).
    migrate_on_start: bool = True
    # Load the demo branches, officers, customers and funded loans (idempotent); the local stack turns it on.
    seed_demo_data: bool = False
