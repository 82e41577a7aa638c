"""Talking to the gateway in tests: bearer tokens, RFC 3339 times and error bodies."""

from __future__ import annotations

from datetime import datetime

import httpx

from chassis.identity import Role
from gateway.tokens import mint_token
from tests.support.system import RunningSystem


def bearer(system: RunningSystem, role: Role, customer_id: str | None = None, **kwargs: float) -> dict[str, str]:
    token = mint_token(system.jwt_secret, role, f"e2e-{role.value}", customer_id=customer_id, **kwargs)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {token}"}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert isinstance(body["error"]["details"], list)
    assert "Traceback" not in response.text
    error: dict[str, object] = body["error"]
    return error


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
