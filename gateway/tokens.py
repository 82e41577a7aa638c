"""Mints HS256 bearer tokens the gateway accepts: for tests and the development stack, never for production."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import jwt

from chassis.identity import Role

DEFAULT_ISSUER = "loanbook"
DEFAULT_AUDIENCE = "loanbook"


def mint_token(
    secret: str,
    role: Role | str,
    subject: str,
    customer_id: str | None = None,
    *,
    ttl: timedelta = timedelta(hours=1),
    issuer: str = DEFAULT_ISSUER,
    audience: str = DEFAULT_AUDIENCE,
    now: float | None = None,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    """A signed token for `subject` in `role`; a `customer` token also names the customer it is."""
    issued_at = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "role": str(role),
        "iat": issued_at,
        "exp": issued_at + int(ttl.total_seconds()),
    }
    if customer_id is not None:
        claims["customer_id"] = customer_id
    claims.update(extra_claims or {})
    return jwt.encode(claims, secret, algorithm="HS256")
