"""Issue 7's journey, end to end under load: payments and logs together from postgres_only through every stage to
dynamo_only and all the way back, while clients record, read, page and reverse payments and write and query logs
through the gateway. No request may fail, and every acknowledged write must be readable at its latest state.

The switches go through the gateway's admin route (the control plane, guarded and audited); backfill, verify and the
way back out of dynamo_only (reverse sync) run the toolkit's engine against the stack's own PostgreSQL, DynamoDB Local
and table prefix. Other e2e modules share the database: both tables are left in the mode they started in.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiobotocore.config import AioConfig

from chassis.identity import Role
from migration.stages import TABLES, Stage
from tests.support.demo import CASEY, CASEY_FUNDED_LOAN
from tests.support.dynamodb import local_session
from tests.support.rest import bearer, rfc3339
from tests.support.system import LOG_SHARDS, RETENTION, RunningSystem, table_name
from toolkit.backfill import BackfillOptions, run_backfill
from toolkit.reverse_sync import ReverseSyncOptions, rollback_out_of_dynamo_only
from toolkit.seeding import SeedPlan, seed
from toolkit.settle import wait_for_replicas
from toolkit.specs import table_specs
from toolkit.verify import VerifyOptions, VerifySummary, run_verify

PAYMENT_CLIENTS = 4
LOG_CLIENTS = 2
DWELL = 1.5  # seconds of load in each stage
SETTLE = 1.0  # the e2e stack has one replica per service, notified within milliseconds
WAY_BACK = "dynamo_only -> dynamo_primary (reverse sync)"


@dataclass
class Load:
    """Every response the clients got, what was acknowledged, and what was unexpected."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    payments: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (status, version) last acknowledged
    log_messages: set[str] = field(default_factory=set)
    stage: str = "postgres_only"
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def seen(self, route: str, response: httpx.Response, *expected: int) -> bool:
        self.statuses[(route, response.status_code)] += 1
        if response.status_code in expected:
            return True
        self.unexpected.append(f"[{self.stage}] {route} -> {response.status_code}: {response.text[:300]}")
        return False


@pytest.fixture(scope="module")
async def client(running_system: RunningSystem) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=running_system.gateway_url, timeout=10, limits=limits) as client:
        yield client


async def payment_client(client: httpx.AsyncClient, system: RunningSystem, load: Load, rng: random.Random) -> None:
    casey = bearer(system, Role.CUSTOMER, CASEY)
    officer = bearer(system, Role.OFFICER)
    body = {
        "customerId": CASEY,
        "loanId": CASEY_FUNDED_LOAN,
        "amount": {"currencyCode": "USD", "units": "25"},
        "method": "PAYMENT_METHOD_ACH",
    }
    mine: list[str] = []
    recorded_in_dynamo_only: list[str] = []
    while not load.stop.is_set():
        key = {"Idempotency-Key": f"journey-{secrets.token_hex(8)}"}
        response = await client.post("/v1/payments", json=body, headers={**casey, **key})
        if load.seen("record", response, 201):
            payment = response.json()["payment"]
            load.payments[payment["id"]] = (payment["status"], int(payment["version"]))
            mine.append(payment["id"])
            if load.stage == Stage.DYNAMO_ONLY.value:
                recorded_in_dynamo_only.append(payment["id"])
            if rng.random() < 0.2:  # a client's retry: the same payment, replayed
                again = await client.post("/v1/payments", json=body, headers={**casey, **key})
                if load.seen("replay", again, 200) and again.json()["payment"]["id"] != payment["id"]:
                    load.unexpected.append(f"[{load.stage}] replay answered another payment: {again.text[:300]}")
        if mine:
            payment_id = rng.choice(mine)
            targeted = load.stage == WAY_BACK and bool(recorded_in_dynamo_only)
            if targeted:
                # On the way back, reverse what PostgreSQL may not hold yet: payments recorded in dynamo_only.
                payment_id = recorded_in_dynamo_only.pop()
            got = await client.get(f"/v1/payments/{payment_id}", headers=casey)
            if load.seen("get", got, 200):
                status, version = got.json()["status"], int(got.json()["version"])
                if version < load.payments[payment_id][1]:
                    load.unexpected.append(f"[{load.stage}] get {payment_id}: version {version} older than acked")
                if status == "PAYMENT_STATUS_SETTLED" and (targeted or rng.random() < 0.3):
                    reversal = await client.post(
                        f"/v1/payments/{payment_id}/reverse",
                        headers=officer,
                        json={"version": str(version), "reason": "journey"},
                    )
                    if load.seen("reverse", reversal, 200):
                        load.payments[payment_id] = (reversal.json()["status"], int(reversal.json()["version"]))
                        stale = await client.post(
                            f"/v1/payments/{payment_id}/reverse", headers=officer, json={"version": str(version)}
                        )
                        load.seen("stale reverse", stale, 409)
        params: dict[str, Any] = {"pageSize": 20}
        page = await client.get(f"/v1/customers/{CASEY}/payments", headers=casey, params=params)
        if load.seen("history", page, 200) and (token := page.json().get("nextPageToken")):
            load.seen(
                "history",
                await client.get(
                    f"/v1/customers/{CASEY}/payments", headers=casey, params={**params, "pageToken": token}
                ),
                200,
            )


async def log_client(client: httpx.AsyncClient, system: RunningSystem, load: Load, service: str) -> None:
    shipper, sre = bearer(system, Role.SERVICE), bearer(system, Role.OFFICER)
    n = 0
    while not load.stop.is_set():
        now = datetime.now(UTC)
        messages = [f"{service} line {n + i}" for i in range(5)]
        entries = [
            {
                "service": service,
                "time": now.isoformat().replace("+00:00", "Z"),
                "level": "LOG_LEVEL_INFO",
                "message": message,
                "traceId": secrets.token_hex(16),
            }
            for message in messages
        ]
        n += len(entries)
        response = await client.post("/v1/logs", json={"entries": entries}, headers=shipper)
        if load.seen("write logs", response, 200):
            load.log_messages.update(messages)
        window: dict[str, str | int] = {
            "service": service,
            "from": rfc3339(now - timedelta(minutes=10)),
            "to": rfc3339(now + timedelta(minutes=1)),
            "pageSize": 50,
        }
        load.seen("query logs", await client.get("/v1/logs", headers=sre, params=window), 200)
        await asyncio.sleep(0.02)


async def all_log_messages(
    client: httpx.AsyncClient, headers: dict[str, str], service: str, since: datetime
) -> set[str]:
    found: set[str] = set()
    token = ""
    window = {"service": service, "from": rfc3339(since), "to": rfc3339(datetime.now(UTC) + timedelta(minutes=1))}
    while True:
        response = await client.get("/v1/logs", headers=headers, params={**window, "pageSize": 500, "pageToken": token})
        assert response.status_code == 200, response.text
        found.update(entry["message"] for entry in response.json().get("entries", []))
        token = response.json().get("nextPageToken", "")
        if not token:
            return found


async def test_both_tables_to_dynamo_only_and_back_under_load_with_no_failed_request(
    client: httpx.AsyncClient, running_system: RunningSystem, postgres_dsn: str, dynamodb_endpoint: str
) -> None:
    admin = bearer(running_system, Role.ADMIN)
    timings: dict[str, float] = {}
    started = time.monotonic()
    load = Load()

    async def switch(stage: Stage, *, fallback: bool | None = None, attempts: int = 1) -> None:
        for attempt in range(attempts):
            wanted: dict[str, Any] = {"stage": stage.value, "reason": "migration journey e2e"}
            if fallback is not None:
                wanted["fallback"] = fallback
            responses = [
                await client.put(f"/v1/admin/migrations/{table}", headers=admin, json=wanted) for table in TABLES
            ]
            if all(response.status_code == 200 for response in responses):
                load.stage = stage.value
                await asyncio.sleep(0.3)  # every replica follows (NOTIFY)
                return
            if attempt + 1 == attempts:
                raise AssertionError(f"switch to {stage.value}: {[r.text for r in responses]}")
            await asyncio.sleep(0.3)  # e.g. the journal still holds writes in flight

    async def timed(name: str, work: Callable[[], Awaitable[Any]]) -> Any:
        began = time.monotonic()
        result = await work()
        timings[name] = time.monotonic() - began
        return result

    def clean(summaries: list[VerifySummary]) -> None:
        assert [(s.table, s.clean, s.full) for s in summaries] == [(t, True, True) for t in TABLES], [
            (s.table, s.missing, s.extra, s.differing, s.differences[:5]) for s in summaries
        ]

    listed = await client.get("/v1/admin/migrations", headers=admin)
    assert listed.status_code == 200, listed.text
    initial = {mode["table"]: (mode["stage"], mode["fallback"]) for mode in listed.json()["tableModes"]}
    for table in TABLES:  # from wherever other modules left it, back to the start: postgres_only, fallback on
        start = {"stage": "postgres_only", "fallback": True, "reason": "journey start"}
        response = await client.put(f"/v1/admin/migrations/{table}", headers=admin, json=start)
        assert response.status_code == 200, response.text

    # History that PostgreSQL alone holds: a few hundred payments and log entries, as `loanbook seed` loads them.
    since = datetime.now(UTC)
    plan = SeedPlan(
        payments=300,
        logs=400,
        customers=5,
        days=60,
        log_days=1,
        seed=random.randrange(10**9),
        end=since - timedelta(minutes=1),
    )
    await timed("seed", lambda: seed(postgres_dsn, plan))

    pool = await asyncpg.create_pool(postgres_dsn, min_size=2, max_size=40)
    config = AioConfig(max_pool_connections=64)
    specs = table_specs(TABLES, LOG_SHARDS, RETENTION)
    rng = random.Random()
    service = f"journey-{secrets.token_hex(3)}"
    try:
        async with local_session().client("dynamodb", endpoint_url=dynamodb_endpoint, config=config) as dynamodb:
            clients = [
                asyncio.create_task(payment_client(client, running_system, load, random.Random(rng.random())))
                for _ in range(PAYMENT_CLIENTS)
            ]
            clients += [
                asyncio.create_task(log_client(client, running_system, load, f"{service}-{n}"))
                for n in range(LOG_CLIENTS)
            ]
            try:
                journey = time.monotonic()
                await asyncio.sleep(DWELL)
                await switch(Stage.DUAL_WRITE)
                for table in TABLES:  # as `loanbook migrate backfill` does: every replica follows the switch first
                    await wait_for_replicas(pool, table, SETTLE)
                options = BackfillOptions(workers=2, batch_rows=200, restart=True)
                await timed("backfill", lambda: run_backfill(pool, dynamodb, specs, table_name, options))
                clean(await timed("verify after backfill", lambda: run_verify(pool, dynamodb, specs, table_name)))
                for stage in (Stage.SHADOW, Stage.DYNAMO_LIVE, Stage.DYNAMO_PRIMARY):
                    await switch(stage)
                    await asyncio.sleep(DWELL)
                clean(await timed("verify in dynamo_primary", lambda: run_verify(pool, dynamodb, specs, table_name)))
                await switch(Stage.DYNAMO_ONLY, attempts=20)
                await asyncio.sleep(2 * DWELL)  # payments and logs written to DynamoDB alone

                load.stage = WAY_BACK
                ways = await timed(
                    "rollback out of dynamo_only",
                    lambda: rollback_out_of_dynamo_only(
                        pool,
                        dynamodb,
                        specs,
                        table_name,
                        who="e2e journey",
                        options=ReverseSyncOptions(segments=4, settle_seconds=SETTLE),
                        verify_options=VerifyOptions(workers=2),
                    ),
                )
                load.stage = "dynamo_primary"
                assert [(w.table, w.stage, w.fallback, w.complete) for w in ways] == [
                    (t, Stage.DYNAMO_PRIMARY, True, True) for t in TABLES
                ], ways
                synced = {w.table: w.sync for w in ways}
                assert synced["payments"] is not None
                assert synced["payments"].inserted > 0  # payments recorded in dynamo_only
                assert synced["logs"] is not None
                assert synced["logs"].inserted > 0
                await asyncio.sleep(DWELL)
                for stage in (Stage.SHADOW, Stage.DUAL_WRITE):
                    await switch(stage)
                    await asyncio.sleep(DWELL)
                clean(await timed("verify in dual_write", lambda: run_verify(pool, dynamodb, specs, table_name)))
                await switch(Stage.POSTGRES_ONLY)
                await asyncio.sleep(DWELL)
                timings["journey under load"] = time.monotonic() - journey
            finally:
                load.stop.set()
                await asyncio.gather(*clients, return_exceptions=True)
            for task in clients:
                if task.exception() is not None:
                    raise AssertionError("a load client broke") from task.exception()

            # Every acknowledged payment reads back with its latest status, from PostgreSQL now serving alone.
            casey = bearer(running_system, Role.CUSTOMER, CASEY)
            for payment_id, (status, version) in load.payments.items():
                got = await client.get(f"/v1/payments/{payment_id}", headers=casey)
                assert got.status_code == 200, got.text
                assert (got.json()["status"], int(got.json()["version"])) == (status, version), payment_id
            stored = await pool.fetchval(
                "SELECT count(*) FROM payment.payments WHERE id = ANY($1::uuid[])", list(load.payments)
            )
            assert stored == len(load.payments)
            officer = bearer(running_system, Role.OFFICER)
            for n in range(LOG_CLIENTS):
                found = await all_log_messages(client, officer, f"{service}-{n}", since - timedelta(minutes=1))
                wanted = {message for message in load.log_messages if message.startswith(f"{service}-{n} ")}
                assert wanted <= found, f"{len(wanted - found)} acknowledged log lines missing"
    finally:
        await pool.close()
        for table, (stage, fallback) in initial.items():
            with contextlib.suppress(httpx.HTTPError):
                await client.put(
                    f"/v1/admin/migrations/{table}",
                    headers=admin,
                    json={"stage": stage, "fallback": fallback, "reason": "journey end"},
                )

    timings["test"] = time.monotonic() - started
    requests = sum(load.statuses.values())
    spent = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items())
    print(
        f"\njourney: {requests} requests, {len(load.payments)} payments, {len(load.log_messages)} log lines; "
        f"statuses {dict(sorted(load.statuses.items()))}; timings: {spent}"
    )
    assert not load.unexpected, f"{len(load.unexpected)} failed requests:\n" + "\n".join(load.unexpected[:20])
    assert load.statuses[("reverse", 200)] > 0
    assert load.statuses[("stale reverse", 409)] == load.statuses[("reverse", 200)]
    assert timings["journey under load"] < 120
