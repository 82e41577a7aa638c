"""Gateway settings (environment prefix LOANBOOK_GATEWAY_)."""

from typing import Self

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from chassis.config import Environment, ProcessSettings, TlsSettings, WorkerSettings

# Values people paste from examples; refused (like anything shorter than 32 bytes) outside development.
# Packed by hand (fmt: skip): the formatter would give each value a line of its own.
PLACEHOLDER_SECRETS = frozenset(
    {"change-me", "changeme", "change_me", "secret", "dev", "development", "test", "password", "jwt-secret",
     "loanbook", "please-change-me", "your-secret", "your-256-bit-secret", "insecure", "example"}
)  # fmt: skip
MIN_SECRET_BYTES = 32


class GatewaySettings(ProcessSettings, TlsSettings, WorkerSettings):
    model_config = SettingsConfigDict(env_prefix="LOANBOOK_GATEWAY_", extra="ignore", frozen=True)

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=58080, ge=0, le=65535)
    # Idle keep-alive connections are closed after this long (uvicorn's timeout_keep_alive).
    http_keep_alive_seconds: int = Field(default=5, ge=1, le=300)
    # Request bodies larger than this are refused with 413 before they are parsed.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    # Peer gRPC services; required so a misconfigured gateway fails at start-up, not on the first request.
    customer_addr: str = Field(min_length=3)
    payment_addr: str = Field(min_length=3)
    logging_addr: str = Field(min_length=3)
    grpc_deadline_seconds: float = Field(default=5.0, gt=0, le=60)
    # Connections to each service, calls taking turns: one connection's calls all reach the one server process that
    # accepted it, so a service with several workers (or replicas behind one address) needs several to share out.
    upstream_connections: int = Field(default=4, ge=1, le=32)
    readiness_timeout_seconds: float = Field(default=1.0, gt=0, le=10)
    # Ship the gateway's own log records (its access lines among them) to the logging service at logging_addr,
    # so GET /v1/logs?traceId= shows the gateway's part of a request next to the services'.
    ship_own_logs: bool = False

    # Bearer tokens: an HS256 shared secret (local stacks, tests) or RS256 keys from a JWKS endpoint.
    jwt_secret: SecretStr | None = None
    jwt_jwks_url: str | None = Field(default=None, pattern=r"^https?://")
    jwt_algorithms: tuple[str, ...] = ("RS256",)
    jwt_issuer: str = Field(default="loanbook", min_length=1)
    jwt_audience: str = Field(default="loanbook", min_length=1)
    # Clock skew tolerated on exp/nbf/iat.
    jwt_leeway_seconds: float = Field(default=30.0, ge=0, le=300)

    @field_validator("jwt_secret")
    @classmethod
    def _strong_secret_outside_development(cls, secret: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if secret is None or info.data.get("environment") == Environment.DEVELOPMENT:
            return secret
        value = secret.get_secret_value()
        if value.strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("is a placeholder; generate one (e.g. `openssl rand -base64 48`)")
        if len(value.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"is shorter than {MIN_SECRET_BYTES} bytes; generate one (e.g. `openssl rand -base64 48`)")
        return secret

    @field_validator("jwt_algorithms")
    @classmethod
    def _asymmetric_algorithms_only(cls, algorithms: tuple[str, ...]) -> tuple[str, ...]:
        # Keys from a JWKS are public keys: accepting HS* or "none" with them would let anyone forge tokens.
        allowed = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
        if not algorithms or not set(algorithms) <= allowed:
            raise ValueError(f"must be a non-empty list of {sorted(allowed)}")
        return algorithms

    @model_validator(mode="after")
    def _exactly_one_key_source(self) -> Self:
        if (self.jwt_secret is None) == (self.jwt_jwks_url is None):
            raise ValueError(
                "set exactly one of LOANBOOK_GATEWAY_JWT_SECRET (HS256) and LOANBOOK_GATEWAY_JWT_JWKS_URL (RS256)"
            )
        return self
