"""Talking to the gateway in tests: bearer tokens, RFC 3339 times, error bodies and the admin API's switch."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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


async def switch_payments(
    system: RunningSystem, stage: str, fallback: bool = True, reason: str = "e2e"
) -> dict[str, Any]:
    """Switches payments through the admin API; the mode it had before."""
    admin = bearer(system, Role.ADMIN)
    async with httpx.AsyncClient(base_url=system.gateway_url, timeout=30) as client:
        before = await client.get("/v1/admin/migrations", headers=admin)
        response = await client.put(
            "/v1/admin/migrations/payments",
            headers=admin,
            json={"stage": stage, "fallback": fallback, "reason": reason},
        )
    assert response.status_code == 200, response.text
    [payments] = [mode for mode in before.json()["tableModes"] if mode["table"] == "payments"]
    return dict(payments)
