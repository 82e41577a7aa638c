"""The gateway's admin migration routes against the real processes: list, switch and audit, refusals.

Other e2e modules share the database: whatever this module changes, payments are left in the mode they started in.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from chassis.identity import Role
from migration.stages import TABLES
from tests.support.rest import assert_error, bearer
from tests.support.system import RunningSystem


@pytest.fixture(scope="module")
async def client(running_system: RunningSystem) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=running_system.gateway_url, timeout=10) as client:
        yield client


@pytest.fixture
def admin(running_system: RunningSystem) -> dict[str, str]:
    return bearer(running_system, Role.ADMIN)


async def modes(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, dict[str, Any]]:
    response = await client.get("/v1/admin/migrations", headers=admin)
    assert response.status_code == 200, response.text
    return {mode["table"]: mode for mode in response.json()["tableModes"]}


async def test_an_admin_lists_every_migrated_table_with_its_backlog(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    listed = await modes(client, admin)

    # Every migrated table is listed; one nobody switched yet shows the default, as replicas treat it.
    assert set(listed) == set(TABLES)
    assert (listed["logs"]["stage"], listed["logs"]["fallback"]) == ("postgres_only", True)
    payments = listed["payments"]
    assert payments["stage"] == "dual_write"
    assert set(payments) == {
        "table",
        "stage",
        "fallback",
        "revision",
        "updateTime",
        "updatedBy",
        "journalBacklog",
        "oldestPendingSeconds",
        "watchdogEnabled",
    }
    assert int(payments["journalBacklog"]) >= 0
    assert payments["watchdogEnabled"] is True  # on unless `loanbook migrate watchdog payments off`
    assert payments["updatedBy"]


async def test_an_admin_switches_payments_to_shadow_and_back_with_an_audit_trail(
    client: httpx.AsyncClient, admin: dict[str, str], postgres_dsn: str
) -> None:
    before = (await modes(client, admin))["payments"]
    reason = f"e2e {uuid.uuid4()}"
    try:
        response = await client.put(
            "/v1/admin/migrations/payments", headers=admin, json={"stage": "shadow", "reason": reason}
        )
        assert response.status_code == 200, response.text
        changed = response.json()["tableMode"]
        assert changed["stage"] == "shadow"
        assert changed["fallback"] == before["fallback"]
        assert int(changed["revision"]) == int(before["revision"]) + 1
        assert changed["updatedBy"] == "admin:e2e-admin"
        assert (await modes(client, admin))["payments"]["stage"] == "shadow"
    finally:
        restored = await client.put(
            "/v1/admin/migrations/payments",
            headers=admin,
            json={"stage": before["stage"], "fallback": before["fallback"], "reason": reason},
        )
    assert restored.status_code == 200, restored.text
    after = (await modes(client, admin))["payments"]
    assert (after["stage"], after["fallback"]) == ("dual_write", before["fallback"])
    assert int(after["revision"]) == int(before["revision"]) + 2

    connection = await asyncpg.connect(postgres_dsn)
    try:
        audit = await connection.fetch(
            """SELECT from_stage, to_stage, changed_by FROM migration.mode_changes
               WHERE table_name = 'payments' AND reason = $1 ORDER BY id""",
            reason,
        )
    finally:
        await connection.close()
    assert [(row["from_stage"], row["to_stage"], row["changed_by"]) for row in audit] == [
        ("dual_write", "shadow", "admin:e2e-admin"),
        ("shadow", "dual_write", "admin:e2e-admin"),
    ]


@pytest.mark.parametrize("role", [Role.OFFICER, Role.SERVICE, Role.CUSTOMER])
async def test_only_admins_see_or_change_migration_modes(
    client: httpx.AsyncClient, running_system: RunningSystem, role: Role
) -> None:
    customer_id = str(uuid.uuid4()) if role is Role.CUSTOMER else None
    headers = bearer(running_system, role, customer_id)

    assert_error(await client.get("/v1/admin/migrations", headers=headers), 403, "PERMISSION_DENIED")
    response = await client.put("/v1/admin/migrations/payments", headers=headers, json={"stage": "shadow"})
    assert_error(response, 403, "PERMISSION_DENIED")


async def test_without_a_token_it_is_401(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v1/admin/migrations"), 401, "UNAUTHENTICATED")


async def test_an_unknown_table_is_400_naming_table(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    response = await client.put("/v1/admin/migrations/customers", headers=admin, json={"stage": "shadow"})

    error = assert_error(response, 400, "INVALID_ARGUMENT")
    assert [detail["field"] for detail in error["details"]] == ["table"]  # type: ignore[attr-defined]


async def test_an_unknown_stage_is_400_naming_stage(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    response = await client.put("/v1/admin/migrations/payments", headers=admin, json={"stage": "dynamo_maybe"})

    error = assert_error(response, 400, "INVALID_ARGUMENT")
    assert [detail["field"] for detail in error["details"]] == ["stage"]  # type: ignore[attr-defined]


async def test_dynamo_only_without_a_clean_full_verification_is_409(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    before = (await modes(client, admin))["payments"]
    response = await client.put("/v1/admin/migrations/payments", headers=admin, json={"stage": "dynamo_only"})

    error = assert_error(response, 409, "FAILED_PRECONDITION")
    assert "verification" in str(error["message"])
    after = (await modes(client, admin))["payments"]
    assert (after["stage"], after["revision"]) == (before["stage"], before["revision"])
