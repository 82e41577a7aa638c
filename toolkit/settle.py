"""Waiting for every replica to follow a table's latest switch before a bulk copy relies on it."""

from __future__ import annotations

import asyncio

import asyncpg


async def wait_for_replicas(pool: asyncpg.Pool, table: str, seconds: float) -> float:
    """Sleeps until the table's latest mode change is `seconds` old; returns how long it waited.

    Replicas follow a change within milliseconds (NOTIFY), at worst within their poll interval; a request that read
    the old mode just before it may still be writing by the old mode's rules. A backfill that starts right after a
    switch to dual_write could pass the key of such a write (made to PostgreSQL alone) before it commits, and a
    reverse sync right after leaving dynamo_only could scan past one made to DynamoDB alone. Either would be reported
    by the next verification; waiting first keeps it from happening.
    """
    age = await pool.fetchval(
        "SELECT extract(epoch FROM now() - max(changed_at)) FROM migration.mode_changes WHERE table_name = $1", table
    )
    if age is None or float(age) >= seconds:
        return 0.0
    wait = seconds - float(age)
    await asyncio.sleep(wait)
    return wait
