"""Payment service settings (environment prefix LOANBOOK_PAYMENT_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from chassis.config import DynamoSettings, GrpcServiceSettings, PostgresSettings
from migration.settings import MigratingTableSettings


class PaymentSettings(GrpcServiceSettings, PostgresSettings, DynamoSettings, MigratingTableSettings):
    model_config = SettingsConfigDict(env_prefix="LOANBOOK_PAYMENT_", extra="ignore", frozen=True)

    grpc_port: int = Field(default=50152, ge=0, le=65535)
    # The customer service, asked whether a loan exists, belongs to the customer and is funded.
    customer_addr: str = Field(min_length=3)
    customer_deadline_seconds: float = Field(default=1.0, gt=0, le=30)
    migrate_on_start: bool = True
