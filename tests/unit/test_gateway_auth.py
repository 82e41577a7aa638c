"""Bearer tokens are verified (signature, expiry, audience, issuer, role) and weak secrets refuse to configure."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import jwt
import pytest

from chassis.config import ConfigurationError, load_settings
from chassis.identity import Caller, Role
from gateway.auth import InvalidToken, TokenVerifier
from gateway.config import GatewaySettings
from gateway.tokens import mint_token

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
ADDRESSES = {"customer_addr": "127.0.0.1:1", "payment_addr": "127.0.0.1:1", "logging_addr": "127.0.0.1:1"}


def settings(**overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {**ADDRESSES, "environment": "test", "jwt_secret": SECRET, **overrides}
    return GatewaySettings(**values)


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(settings(jwt_leeway_seconds=0))


async def test_a_valid_officer_token_names_the_caller(verifier: TokenVerifier) -> None:
    caller = await verifier.verify(mint_token(SECRET, Role.OFFICER, "officer-7"))

    assert caller == Caller(Role.OFFICER, "officer-7")


async def test_a_customer_token_names_the_customer_the_caller_is(verifier: TokenVerifier) -> None:
    caller = await verifier.verify(mint_token(SECRET, Role.CUSTOMER, "idp-user-1", customer_id="cust-1"))

    assert caller == Caller(Role.CUSTOMER, "idp-user-1", customer_id="cust-1")


async def test_a_customer_id_claim_on_a_staff_token_is_ignored(verifier: TokenVerifier) -> None:
    caller = await verifier.verify(mint_token(SECRET, Role.ADMIN, "root", customer_id="cust-1"))

    assert caller.customer_id is None


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (mint_token(SECRET, Role.ADMIN, "a", now=time.time() - 7200), "expired"),
        (mint_token("another-secret-that-is-also-long-enough!!", Role.ADMIN, "a"), "signature"),
        (mint_token(SECRET, Role.ADMIN, "a", audience="someone-else"), "not for this API"),
        (mint_token(SECRET, Role.ADMIN, "a", issuer="evil"), "not for this API"),
        (mint_token(SECRET, "superuser", "a"), "role is not one of"),
        (mint_token(SECRET, Role.CUSTOMER, "a"), "customer_id"),
        (mint_token(SECRET, Role.ADMIN, ""), "'sub' claim is empty"),
        ("not.a.jwt", "malformed"),
    ],
    ids=[
        "expired",
        "bad-signature",
        "wrong-audience",
        "wrong-issuer",
        "unknown-role",
        "customer-without-id",
        "empty-subject",
        "garbage",
    ],
)
async def test_an_untrustworthy_token_is_refused_saying_why(verifier: TokenVerifier, token: str, reason: str) -> None:
    with pytest.raises(InvalidToken, match=reason):
        await verifier.verify(token)


@pytest.mark.parametrize("claim", ["exp", "sub", "role", "iss", "aud"])
async def test_a_token_missing_a_required_claim_is_refused(verifier: TokenVerifier, claim: str) -> None:
    claims = jwt.decode(mint_token(SECRET, Role.ADMIN, "a"), options={"verify_signature": False})
    del claims[claim]

    with pytest.raises(InvalidToken):
        await verifier.verify(jwt.encode(claims, SECRET, algorithm="HS256"))


async def test_an_unsigned_token_is_refused(verifier: TokenVerifier) -> None:
    claims = jwt.decode(mint_token(SECRET, Role.ADMIN, "a"), options={"verify_signature": False})

    with pytest.raises(InvalidToken):
        await verifier.verify(jwt.encode(claims, None, algorithm="none"))  # type: ignore[arg-type]


async def test_leeway_tolerates_a_little_clock_skew() -> None:
    lenient = TokenVerifier(settings(jwt_leeway_seconds=60))
    token = mint_token(SECRET, Role.ADMIN, "a", ttl=timedelta(seconds=1), now=time.time() - 30)

    assert (await lenient.verify(token)).role is Role.ADMIN


@pytest.mark.parametrize("environment", ["test", "production"])
@pytest.mark.parametrize("secret", ["change-me", "Secret", "dev", "short-but-not-a-placeholder"])
def test_a_placeholder_or_short_secret_is_refused_outside_development(
    monkeypatch: pytest.MonkeyPatch, environment: str, secret: str
) -> None:
    for name, value in ADDRESSES.items():
        monkeypatch.setenv(f"LOANBOOK_GATEWAY_{name.upper()}", value)
    monkeypatch.setenv("LOANBOOK_GATEWAY_ENVIRONMENT", environment)
    monkeypatch.setenv("LOANBOOK_GATEWAY_JWT_SECRET", secret)

    with pytest.raises(ConfigurationError) as raised:
        load_settings(GatewaySettings)

    assert "LOANBOOK_GATEWAY_JWT_SECRET" in str(raised.value)
    assert f" {secret} " not in f" {raised.value} "


def test_a_placeholder_secret_is_allowed_in_development() -> None:
    assert settings(environment="development", jwt_secret="dev").jwt_secret is not None


@pytest.mark.parametrize("environment", ["development", "production"])
def test_without_a_secret_or_a_jwks_url_the_gateway_refuses_to_configure(
    monkeypatch: pytest.MonkeyPatch, environment: str
) -> None:
    for name, value in ADDRESSES.items():
        monkeypatch.setenv(f"LOANBOOK_GATEWAY_{name.upper()}", value)
    monkeypatch.setenv("LOANBOOK_GATEWAY_ENVIRONMENT", environment)
    monkeypatch.delenv("LOANBOOK_GATEWAY_JWT_SECRET", raising=False)
    monkeypatch.delenv("LOANBOOK_GATEWAY_JWT_JWKS_URL", raising=False)

    with pytest.raises(ConfigurationError, match="LOANBOOK_GATEWAY_JWT_SECRET"):
        load_settings(GatewaySettings)


def test_a_secret_and_a_jwks_url_together_are_ambiguous_and_refused() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        settings(jwt_jwks_url="https://idp.example/.well-known/jwks.json")


def test_a_jwks_key_source_refuses_symmetric_algorithms() -> None:
    with pytest.raises(ValueError, match="jwt_algorithms"):
        settings(jwt_secret=None, jwt_jwks_url="https://idp.example/jwks.json", jwt_algorithms=("HS256",))


async def test_rs256_tokens_verify_with_the_key_the_jwks_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    verifier = TokenVerifier(settings(jwt_secret=None, jwt_jwks_url="https://idp.example/jwks.json"))
    signing_key = jwt.PyJWK.from_dict({**jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)})
    assert verifier._jwks is not None
    monkeypatch.setattr(verifier._jwks, "get_signing_key_from_jwt", lambda token: signing_key)
    claims = {"iss": "loanbook", "aud": "loanbook", "sub": "o", "role": "officer", "exp": int(time.time()) + 60}

    caller = await verifier.verify(jwt.encode(claims, private_key, algorithm="RS256"))
    forged = jwt.encode(claims, SECRET, algorithm="HS256")

    assert caller.role is Role.OFFICER
    with pytest.raises(InvalidToken):
        await verifier.verify(forged)


async def test_a_remembered_token_goes_back_to_pyjwt_once_past_exp_and_the_leeway(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lenient = TokenVerifier(settings(jwt_leeway_seconds=10))
    token = mint_token(SECRET, Role.OFFICER, "o", ttl=timedelta(seconds=60))
    assert (await lenient.verify(token)).subject == "o"
    started = time.time()

    def pyjwt_at_that_time(*args: Any, **kwargs: Any) -> Any:
        raise jwt.ExpiredSignatureError("Signature has expired")

    monkeypatch.setattr(jwt, "decode", pyjwt_at_that_time)
    monkeypatch.setattr(time, "time", lambda: started + 65)  # past exp, within the leeway: still good
    assert (await lenient.verify(token)).subject == "o"
    monkeypatch.setattr(time, "time", lambda: started + 75)  # past exp and the leeway: verified again
    with pytest.raises(InvalidToken, match="expired"):
        await lenient.verify(token)


async def test_a_remembered_token_is_not_verified_again(
    verifier: TokenVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = mint_token(SECRET, Role.CUSTOMER, "u", customer_id="cust-1")
    first = await verifier.verify(token)

    def no_second_decode(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("decoded twice")

    monkeypatch.setattr(jwt, "decode", no_second_decode)
    assert await verifier.verify(token) == first


async def test_refused_tokens_are_not_remembered_and_the_memory_is_bounded(
    verifier: TokenVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.auth.VERIFIED_TOKENS_KEPT", 3)
    bad = mint_token("another-secret-that-is-long-enough-for-hs256", Role.ADMIN, "a")
    for _ in range(2):
        with pytest.raises(InvalidToken, match="signature"):
            await verifier.verify(bad)
    for subject in "abcde":
        await verifier.verify(mint_token(SECRET, Role.OFFICER, subject))

    assert len(verifier._verified) == 3
