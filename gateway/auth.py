"""Bearer-token authentication (PyJWT) and role checks, as typed FastAPI dependencies.

Tokens carry `iss`, `aud`, `sub`, `exp`, `role` (customer | officer | admin | service) and, for the customer role,
`customer_id`: the customer the token holder is. It is a claim of its own rather than `sub` because the subject is
the identity provider's user id, which need not be (and for a customer should not have to be) the domain id.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import grpc
import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chassis.identity import Caller, Role
from gateway.config import GatewaySettings
from gateway.errors import ApiError

HS256 = ("HS256",)
REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub", "role"]
# Verified tokens remembered, least recently used dropped first: a client sends the same token on every request
# of its session, and verifying it again each time was a measurable share of the gateway's time per request.
VERIFIED_TOKENS_KEPT = 4096
# With keys from a JWKS, a remembered token is verified again after this long, so a key withdrawn from the key set
# stops being accepted about as soon as without the cache (PyJWKClient keeps the key set for 300 s itself).
JWKS_REVERIFY_SECONDS = 60.0


class InvalidToken(Exception):
    """The token cannot be trusted; the message says why without repeating the token."""


class TokenVerifier:
    """Verifies a bearer token against the configured key source and returns the caller it names."""

    def __init__(self, settings: GatewaySettings) -> None:
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds
        self._secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        self._algorithms = list(HS256 if self._secret is not None else settings.jwt_algorithms)
        # PyJWKClient caches the key set and refetches it when a token names an unknown key id.
        self._jwks = jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True) if settings.jwt_jwks_url else None
        # token -> (its caller, the time.time() until which the token needs no verifying again)
        self._verified: OrderedDict[str, tuple[Caller, float]] = OrderedDict()

    async def verify(self, token: str) -> Caller:
        """The caller `token` names. A token verified before is not verified again while it is still good: the
        key source does not change under a running gateway (HS256) or is re-checked every JWKS_REVERIFY_SECONDS,
        the claims are signed so cannot differ, and time only ever makes `exp` fail, never `nbf` or `iat`, so
        `exp` plus the leeway bounds how long it is remembered. Refused tokens are not remembered."""
        remembered = self._verified.get(token)
        if remembered is not None:
            caller, good_until = remembered
            if time.time() < good_until:
                self._verified.move_to_end(token)
                return caller
            del self._verified[token]
        caller, expires = await self._verify(token)
        # PyJWT refuses a token once exp <= now - leeway.
        good_until = expires + self._leeway
        if self._jwks is not None:
            good_until = min(good_until, time.time() + JWKS_REVERIFY_SECONDS)
        self._verified[token] = (caller, good_until)
        if len(self._verified) > VERIFIED_TOKENS_KEPT:
            self._verified.popitem(last=False)
        return caller

    async def _verify(self, token: str) -> tuple[Caller, float]:
        try:
            key: Any
            if self._jwks is not None:
                # The JWKS client fetches over blocking urllib; keep it off the event loop.
                key = (await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)).key
            else:
                key = self._secret
            claims = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("the token's signature does not verify") from None
        except (jwt.InvalidAudienceError, jwt.InvalidIssuerError) as error:
            raise InvalidToken(f"the token is not for this API ({error})") from None
        except jwt.MissingRequiredClaimError as error:
            raise InvalidToken(f"the token lacks the {error.claim!r} claim") from None
        except jwt.PyJWKClientError:
            raise InvalidToken("the token's signing key is unknown") from None
        except jwt.InvalidTokenError:
            raise InvalidToken("the token is malformed or not valid") from None
        return _caller_from_claims(claims), float(claims["exp"])


def _caller_from_claims(claims: dict[str, Any]) -> Caller:
    try:
        role = Role(claims["role"])
    except (ValueError, TypeError):
        raise InvalidToken(f"the token's role is not one of {', '.join(r.value for r in Role)}") from None
    subject = claims["sub"]
    customer_id = claims.get("customer_id")
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("the token's 'sub' claim is empty")
    if role is Role.CUSTOMER and (not isinstance(customer_id, str) or not customer_id):
        raise InvalidToken("a customer token needs a 'customer_id' claim")
    return Caller(role=role, subject=subject, customer_id=customer_id if role is Role.CUSTOMER else None)


# auto_error=False: a missing header becomes our 401 body rather than FastAPI's 403.
bearer_scheme = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="A JWT with `sub`, `role` (customer, officer, admin, service), `exp`, `iss`, `aud` and, for "
    "customers, `customer_id`.",
)


def _unauthenticated(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.UNAUTHENTICATED, message, headers={"WWW-Authenticate": "Bearer"})


async def authenticated_caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
) -> Caller:
    """The caller named by the request's bearer token; 401 when there is none or it cannot be trusted."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise _unauthenticated("a bearer token is required (Authorization: Bearer <JWT>)")
    verifier: TokenVerifier = request.app.state.token_verifier
    try:
        return await verifier.verify(credentials.credentials)
    except InvalidToken as error:
        raise _unauthenticated(str(error)) from None


def caller_with_role(*roles: Role) -> Callable[[Caller], Awaitable[Caller]]:
    """A dependency admitting only callers in `roles`; any other authenticated caller gets 403."""
    allowed = frozenset(roles)

    async def dependency(caller: Annotated[Caller, Depends(authenticated_caller)]) -> Caller:
        if caller.role not in allowed:
            raise ApiError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"the {caller.role.value} role may not do this; allowed: {', '.join(sorted(r.value for r in allowed))}",
            )
        return caller

    return dependency


AdminCaller = Annotated[Caller, Depends(caller_with_role(Role.ADMIN))]
StaffCaller = Annotated[Caller, Depends(caller_with_role(Role.OFFICER, Role.ADMIN))]
# Log shippers: the `service` role writes logs and does nothing else.
ServiceCaller = Annotated[Caller, Depends(caller_with_role(Role.SERVICE))]
# People: customers, officers and admins; the `service` role only ingests logs.
PersonCaller = Annotated[Caller, Depends(caller_with_role(Role.CUSTOMER, Role.OFFICER, Role.ADMIN))]
