"""The journal commits with the write it stands for; the relay drains it with leases, retries and backoff."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from alembic import command
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from chassis import schema_migrations
from migration import schema as migration_schema
from migration.journal import Journal, Pending, linked_context
from migration.relay import Relay
from migration.schema import upgrade_to_head


@pytest.fixture
async def pool(postgres_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    await upgrade_to_head(postgres_dsn)
    async with asyncpg.create_pool(postgres_dsn, min_size=1, max_size=6) as pool:
        yield pool


@pytest.fixture
def journal(pool: asyncpg.Pool) -> Journal:
    # A table name of its own per test keeps tests apart on the shared journal; copies settle at once unless a
    # test is about settling.
    return Journal(pool, f"test-{uuid.uuid4().hex[:8]}", lease=timedelta(seconds=30), settle=timedelta(0))


async def append(pool: asyncpg.Pool, journal: Journal, key: str, version: int = 1) -> int:
    async with pool.acquire() as connection, connection.transaction():
        return await journal.append(connection, key, version, [f"item:{key}", "owner:o-1"])


async def test_an_entry_commits_or_rolls_back_with_its_transaction(pool: asyncpg.Pool, journal: Journal) -> None:
    async def failed_write() -> None:
        async with pool.acquire() as connection, connection.transaction():
            await journal.append(connection, "lost", 1, ["item:lost"])
            raise RuntimeError("the write failed")

    with pytest.raises(RuntimeError):
        await failed_write()
    await append(pool, journal, "kept")

    assert await journal.has_pending(["item:lost"]) is None
    assert await journal.has_pending(["item:kept"]) is Pending.WRITE
    assert await journal.has_pending(["owner:o-1", "something-else"]) is Pending.WRITE
    assert not await journal.has_pending(["owner:o-2"])
    assert (await journal.backlog()).pending == 1


async def test_the_relay_copies_each_key_once_and_empties_the_journal(pool: asyncpg.Pool, journal: Journal) -> None:
    for version in (1, 2, 3):
        await append(pool, journal, "a", version)
    await append(pool, journal, "b")
    copies: Counter[str] = Counter()

    async def replicate(key: str) -> None:
        copies[key] += 1

    completed = await Relay(journal, replicate).drain()

    assert completed == 4
    assert copies == {"a": 1, "b": 1}
    assert (await journal.backlog()).pending == 0
    assert not await journal.has_pending(["item:a", "item:b"])


async def test_a_copied_entry_keeps_its_index_read_keys_pending_until_the_copy_settles(pool: asyncpg.Pool) -> None:
    journal = Journal(pool, f"test-{uuid.uuid4().hex[:8]}", settle=timedelta(seconds=30), settling_kinds=["owner"])
    await append(pool, journal, "a")
    await append(pool, journal, "b")

    async def replicate(key: str) -> None:
        return None

    await Relay(journal, replicate).drain()
    settling = (await journal.has_pending(["owner:o-1"]), await journal.has_pending(["item:a"]))
    forgotten_early = await journal.forget_settled()
    await pool.execute(  # the window runs out
        "UPDATE migration.journal_settling SET settles_at = now() WHERE table_name = $1", journal.table
    )
    settled = await journal.has_pending(["owner:o-1"])
    forgotten = await journal.forget_settled()

    assert (await journal.backlog()).pending == 0  # nothing left to copy: a settling copy is not a backlog
    # "owner" keys are read through an index and settle; "item" keys are read consistently and do not.
    assert settling == (Pending.SETTLING, None)
    assert forgotten_early == 0
    assert settled is None
    assert forgotten == 2
    assert (
        await pool.fetchval("SELECT count(*) FROM migration.journal_settling WHERE table_name = $1", journal.table) == 0
    )


async def test_a_running_relay_forgets_settled_copies(pool: asyncpg.Pool) -> None:
    journal = Journal(pool, f"test-{uuid.uuid4().hex[:8]}", settle=timedelta(seconds=1))

    async def replicate(key: str) -> None:
        return None

    async def settling() -> int:
        count: int = await pool.fetchval(
            "SELECT count(*) FROM migration.journal_settling WHERE table_name = $1", journal.table
        )
        return count

    relay = asyncio.create_task(Relay(journal, replicate, idle_seconds=0.05).run())
    try:
        await append(pool, journal, "a")
        async with asyncio.timeout(10):
            while await settling() == 0:  # the relay copies the entry: its keys settle (for a second)...
                await asyncio.sleep(0.02)
            while await settling() > 0:  # ...and, once settled, the running relay forgets them
                await asyncio.sleep(0.02)
    finally:
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay

    assert not await journal.has_pending(["item:a"])


async def test_a_failed_copy_stays_journaled_and_is_retried_after_a_backoff(
    pool: asyncpg.Pool, journal: Journal
) -> None:
    await append(pool, journal, "flaky")
    outcomes = iter([ConnectionError("DynamoDB down"), None])

    async def replicate(key: str) -> None:
        if (error := next(outcomes)) is not None:
            raise error

    relay = Relay(journal, replicate)
    assert await relay.drain_once() == 0
    backlog = await journal.backlog()
    row = await pool.fetchrow(
        "SELECT attempts, last_error, next_attempt_at > now() AS later FROM migration.journal WHERE table_name = $1",
        journal.table,
    )

    assert (backlog.pending, backlog.retrying) == (1, 1)
    assert row is not None
    assert (row["attempts"], row["last_error"]) == (1, "ConnectionError: DynamoDB down")
    # Make it due now instead of waiting out the jittered delay, then the retry succeeds.
    await pool.execute("UPDATE migration.journal SET next_attempt_at = now() WHERE table_name = $1", journal.table)
    assert await relay.drain() == 1
    assert (await journal.backlog()).pending == 0


async def test_entries_leased_by_a_relay_that_died_are_picked_up_after_the_lease(pool: asyncpg.Pool) -> None:
    journal = Journal(pool, f"test-{uuid.uuid4().hex[:8]}", lease=timedelta(seconds=0.5))
    await append(pool, journal, "orphaned")
    copied: list[str] = []

    async def replicate(key: str) -> None:
        copied.append(key)

    claimed = await journal.claim_due(10)  # a relay claims, then dies before copying
    assert [entry.item_key for entry in claimed] == ["orphaned"]
    assert await Relay(journal, replicate).drain() == 0  # still leased: nobody else takes it
    await asyncio.sleep(0.6)

    assert await Relay(journal, replicate).drain() == 1
    assert copied == ["orphaned"]


async def test_two_relays_draining_together_never_take_the_same_entry(pool: asyncpg.Pool, journal: Journal) -> None:
    for i in range(200):
        await append(pool, journal, f"k{i}")
    copies: Counter[str] = Counter()

    async def replicate(key: str) -> None:
        await asyncio.sleep(0.001)
        copies[key] += 1

    relays = [Relay(journal, replicate, batch_size=7) for _ in range(2)]
    completed = await asyncio.gather(*(relay.drain() for relay in relays))

    assert sum(completed) == 200
    assert len(copies) == 200
    assert set(copies.values()) == {1}
    assert all(relay.copied > 0 for relay in relays)


async def test_a_claim_leases_at_most_its_limit_even_with_other_claims_running(
    pool: asyncpg.Pool, journal: Journal
) -> None:
    for i in range(60):
        await append(pool, journal, f"k{i}")

    claims = await asyncio.gather(*(journal.claim_due(3) for _ in range(30)))
    leased = [entry.id for claim in claims for entry in claim]

    assert max(len(claim) for claim in claims) == 3
    assert len(leased) == len(set(leased)) == 60


async def test_an_entry_remembers_the_trace_of_its_write_and_a_claim_hands_it_back(
    pool: asyncpg.Pool, journal: Journal, spans: InMemorySpanExporter
) -> None:
    with trace.get_tracer("test").start_as_current_span("a write") as write:
        await append(pool, journal, "traced")
    await append(pool, journal, "untraced")

    claimed = {entry.item_key: entry for entry in await journal.claim_due(10)}

    context = write.get_span_context()
    assert (claimed["traced"].trace_context or "").startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")
    linked = linked_context(claimed["traced"].trace_context)
    assert linked is not None
    assert (linked.trace_id, linked.span_id) == (context.trace_id, context.span_id)
    assert claimed["untraced"].trace_context is None
    assert linked_context(None) is None
    assert all(entry.created_at is not None for entry in claimed.values())


async def test_the_trace_context_migration_applies_again_and_rolls_back_cleanly(
    postgres_dsn: str, pool: asyncpg.Pool, journal: Journal
) -> None:
    async def column() -> asyncpg.Record | None:
        return await pool.fetchrow(
            """SELECT data_type, is_nullable FROM information_schema.columns
               WHERE table_schema = 'migration' AND table_name = 'journal' AND column_name = 'trace_context'"""
        )

    config = schema_migrations.alembic_config(migration_schema.HERE, migration_schema.SCHEMA, postgres_dsn)
    await upgrade_to_head(postgres_dsn)  # at head already: nothing to do
    at_head = await column()
    await append(pool, journal, "kept")
    try:
        await asyncio.to_thread(command.downgrade, config, "0004")
        without = await column()
        still_there = await pool.fetchval("SELECT count(*) FROM migration.journal WHERE table_name = $1", journal.table)
    finally:
        await upgrade_to_head(postgres_dsn)
    # The pool's connections cached the table's old shape: a fresh one sees the column again.
    async with asyncpg.create_pool(postgres_dsn, min_size=1, max_size=1) as fresh:
        again = await fresh.fetchrow(
            """SELECT data_type, is_nullable FROM information_schema.columns
               WHERE table_schema = 'migration' AND table_name = 'journal' AND column_name = 'trace_context'"""
        )

    assert at_head is not None
    assert (at_head["data_type"], at_head["is_nullable"]) == ("text", "YES")
    assert without is None
    assert still_there == 1  # entries written before the upgrade (or after a rollback) carry no trace, and stay
    assert again is not None
    assert (again["data_type"], again["is_nullable"]) == ("text", "YES")
