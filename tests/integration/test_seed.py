"""`loanbook seed`: historical payments and logs land in PostgreSQL, readable through the services' repositories."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import secrets
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from typer.testing import CliRunner

from chassis.money import MINOR_UNIT_DIGITS
from services.logging.adapters.postgres import PostgresLogRepository
from services.logging.domain import LogLevel
from services.payment.adapters.postgres import PostgresPaymentRepository
from services.payment.domain import PaymentStatus, request_fingerprint
from toolkit.cli import app
from toolkit.seeding import IdSource, SeedPlan, log_entries, payments, prepare_schemas, seed, synthetic_loans

END = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
async def pool(postgres_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    await prepare_schemas(postgres_dsn)
    async with asyncpg.create_pool(postgres_dsn, min_size=1, max_size=4) as pool:
        yield pool


def a_plan(**changes: object) -> SeedPlan:
    plan = SeedPlan(payments=0, logs=0, customers=1, days=90, log_days=2, seed=7, end=datetime.now(UTC))
    return dataclasses.replace(plan, **changes)  # type: ignore[arg-type]


async def funded_customers(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval(
        "SELECT count(DISTINCT customer_id) FROM customer.loan_applications WHERE status = 'FUNDED'"
    )
    return count


async def payment_ids(pool: asyncpg.Pool) -> set[uuid.UUID]:
    return {row["id"] for row in await pool.fetch("SELECT id FROM payment.payments")}


async def test_seeded_payments_are_valid_payments_of_funded_loans(postgres_dsn: str, pool: asyncpg.Pool) -> None:
    before = await payment_ids(pool)
    customers = await funded_customers(pool) + 40
    plan = a_plan(payments=3_000, customers=customers, end=END)

    result = await seed(postgres_dsn, plan)

    new = await payment_ids(pool) - before
    assert (result.payments, len(new), result.customers_created) == (3_000, 3_000, 40)
    loans = {
        row["id"]: row
        for row in await pool.fetch("SELECT id, customer_id, currency, status FROM customer.loan_applications")
    }
    repository = PostgresPaymentRepository(pool)
    seen = []
    for payment_id in new:
        payment = await repository.get(payment_id)
        assert payment is not None
        loan = loans[payment.loan_id]
        assert (loan["customer_id"], loan["status"]) == (payment.customer_id, "FUNDED")
        assert payment.amount.currency == loan["currency"].strip()
        assert payment.amount.currency in MINOR_UNIT_DIGITS
        assert payment.amount.minor_units > 0
        assert END - timedelta(days=90) <= payment.paid_at <= END
        assert payment.paid_at <= payment.created_at <= payment.updated_at <= END
        assert payment.version == (2 if payment.status is PaymentStatus.REVERSED else 1)
        assert payment.request_fingerprint == request_fingerprint(
            payment.customer_id, payment.loan_id, payment.amount, payment.method, payment.paid_at
        )
        assert await repository.get_by_idempotency_key(payment.idempotency_key) == payment
        seen.append(payment)
    statuses = Counter(p.status for p in seen)
    assert statuses[PaymentStatus.SETTLED] > 2_000
    assert statuses[PaymentStatus.REVERSED] > 0
    assert statuses[PaymentStatus.FAILED] > 0
    assert len({p.method for p in seen}) == 4
    assert len({p.customer_id for p in seen}) == customers  # every existing and created customer pays

    # The customer's listing is served newest first, as the service pages it.
    customer = seen[0].customer_id
    listed = await repository.list_for_customer(customer, None, None, None, 1_000)
    assert [p.paid_at for p in listed] == sorted((p.paid_at for p in listed), reverse=True)
    assert {p.id for p in seen if p.customer_id == customer} <= {p.id for p in listed}


async def test_payments_go_to_existing_funded_loans_when_there_are_enough(
    postgres_dsn: str, pool: asyncpg.Pool
) -> None:
    await seed(postgres_dsn, a_plan(payments=10, customers=await funded_customers(pool) + 3))
    funded = {
        row["id"] for row in await pool.fetch("SELECT id FROM customer.loan_applications WHERE status = 'FUNDED'")
    }
    before = await payment_ids(pool)

    result = await seed(postgres_dsn, a_plan(payments=500, customers=3))

    assert result.customers_created == 0
    loans = await pool.fetch(
        "SELECT loan_id FROM payment.payments WHERE id = ANY($1::uuid[])", list(await payment_ids(pool) - before)
    )
    assert len(loans) == 500
    assert {row["loan_id"] for row in loans} <= funded


async def test_seeding_again_adds_rows_instead_of_colliding(postgres_dsn: str, pool: asyncpg.Pool) -> None:
    services = (f"svc-{secrets.token_hex(4)}",)
    plan = a_plan(payments=400, logs=600, customers=5, log_services=services)
    payments_before = len(await payment_ids(pool))

    await seed(postgres_dsn, plan)
    await seed(postgres_dsn, plan)  # same seed, same values: only the ids and keys differ

    assert len(await payment_ids(pool)) == payments_before + 800
    logged = await pool.fetchval("SELECT count(*) FROM logging.entries WHERE service = $1", services[0])
    assert logged == 1_200


async def test_seeded_logs_are_readable_by_service_time_and_trace(postgres_dsn: str, pool: asyncpg.Pool) -> None:
    services = tuple(f"svc-{secrets.token_hex(4)}" for _ in range(3))
    end = datetime.now(UTC)
    plan = a_plan(logs=5_000, log_days=3, log_services=services, end=end)

    result = await seed(postgres_dsn, plan)

    assert result.logs == 5_000
    repository = PostgresLogRepository(pool)
    found = []
    for service in services:
        entries = await repository.query(service, end - timedelta(days=4), end, LogLevel.DEBUG, None, 10_000)
        assert entries, f"{service} has entries"
        assert all(e.service == service for e in entries)
        found += entries
    assert len(found) == 5_000
    times = sorted(e.time for e in found)
    assert times[0] >= end - timedelta(days=3)
    assert times[-1] - times[0] > timedelta(days=2)  # spread over the days, so over several partitions
    assert {e.level for e in found} == set(LogLevel)
    traced = [e for e in found if e.trace_id]
    assert 0.5 < len(traced) / len(found) < 0.9
    assert all(len(e.span_id) == 16 for e in traced)
    trace = await repository.trace(traced[0].trace_id, 100)
    assert traced[0] in trace
    assert all(e.trace_id == traced[0].trace_id for e in trace)
    days = await pool.fetchval(
        "SELECT count(DISTINCT tableoid) FROM logging.entries WHERE service = ANY($1::text[])", list(services)
    )
    assert days >= 3


def test_the_same_seed_generates_the_same_values_with_fresh_ids() -> None:
    def generate() -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], set[uuid.UUID]]:
        rng, ids = random.Random(3), IdSource()
        loans = synthetic_loans(20, rng, ids, END - timedelta(days=30))
        made = list(payments(loans, 200, rng, ids, END - timedelta(days=30), END))
        logs = list(log_entries(300, rng, ids, END - timedelta(days=1), END))
        return (
            [(p.amount, p.method, p.status, p.paid_at) for p in made],
            [(e.time, e.service, e.level, e.message, e.trace_id) for e in logs],
            {p.id for p in made} | {e.id for e in logs},
        )

    first, second = generate(), generate()

    assert first[:2] == second[:2]
    assert not first[2] & second[2]


def test_the_cli_seeds_and_reports(postgres_dsn: str) -> None:
    async def counts() -> tuple[int, int]:
        connection = await asyncpg.connect(postgres_dsn)
        try:
            return (
                await connection.fetchval("SELECT count(*) FROM payment.payments"),
                await connection.fetchval("SELECT count(*) FROM logging.entries"),
            )
        finally:
            await connection.close()

    payments_before, logs_before = asyncio.run(counts())
    result = CliRunner().invoke(
        app,
        ["seed", "--payments", "300", "--logs", "700", "--customers", "2", "--log-days", "1", "--seed", "5"],
        env={"LOANBOOK_MIGRATION_POSTGRES_DSN": postgres_dsn},
    )

    assert result.exit_code == 0, result.output
    assert asyncio.run(counts()) == (payments_before + 300, logs_before + 700)
    summary = " ".join(result.output.split())
    assert "seeded 300 payments" in summary
    assert "700 log entries" in summary


def test_the_cli_needs_a_dsn() -> None:
    result = CliRunner().invoke(app, ["seed", "--payments", "1"], env={"LOANBOOK_MIGRATION_POSTGRES_DSN": ""})

    assert result.exit_code == 2
    assert "LOANBOOK_MIGRATION_POSTGRES_DSN" in result.output
