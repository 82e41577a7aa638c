"""Gateway settings (environment prefix LOANBOOK_GATEWAY_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from chassis.config import ProcessSettings, TlsSettings


class GatewaySettings(ProcessSettings, TlsSettings):
    model_config = SettingsConfigDict(env_prefix="LOANBOOK_GATEWAY_", extra="ignore", frozen=True)

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=58080, ge=0, le=65535)
    # Peer gRPC services; required so a misconfigured gateway fails at start-up, not on the first request.
    customer_addr: str = Field(min_length=3)
    payment_addr: str = Field(min_length=3)
    logging_addr: str = Field(min_length=3)
    grpc_deadline_seconds: float = Field(default=5.0, gt=0, le=60)
    readiness_timeout_seconds: float = Field(default=1.0, gt=0, le=10)
