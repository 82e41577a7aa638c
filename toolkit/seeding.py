"""Realistic historical payments and log entries, generated reproducibly and loaded into PostgreSQL with COPY."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import asyncpg

from chassis.ids import new_id
from chassis.money import Money
from services.customer.adapters.postgres import APPLICATION_COLUMNS, CUSTOMER_COLUMNS
from services.customer.schema import upgrade_to_head as upgrade_customer_schema
from services.logging.adapters.postgres import ensure_partitions
from services.logging.domain import LogEntry, LogLevel
from services.logging.schema import upgrade_to_head as upgrade_logging_schema
from services.payment.adapters.postgres import COLUMNS as PAYMENT_COLUMNS
from services.payment.adapters.postgres import row_values
from services.payment.domain import Payment, PaymentMethod, PaymentStatus, request_fingerprint
from services.payment.schema import upgrade_to_head as upgrade_payment_schema

# Rows per COPY: big enough that a round trip is noise, small enough that a chunk's records stay a few MB.
CHUNK = 20_000
# Entries per batch_id, as a log shipper would send them in one WriteLogs call.
LOG_BATCH = 500
Progress = Callable[[int], None]
T = TypeVar("T")


def _no_progress(_: int) -> None:
    return None


class IdSource:
    """UUIDv7 ids carrying a record's own timestamp, with random bits that never repeat across runs.

    The data is reproducible from `--seed`, the ids are not: re-running a seed adds rows instead of colliding.
    """

    def __init__(self) -> None:
        self._bits = random.Random(secrets.randbits(128))  # noqa: S311 - uniqueness, not secrecy

    def at(self, when: datetime) -> uuid.UUID:
        millis = int(when.timestamp() * 1000)
        rand = self._bits.getrandbits(74)
        return uuid.UUID(int=millis << 80 | 0x7 << 76 | (rand >> 62) << 64 | 0b10 << 62 | (rand & (1 << 62) - 1))


@dataclass(frozen=True)
class FundedLoan:
    """What a payment needs to know about the loan it pays into."""

    id: uuid.UUID
    customer_id: uuid.UUID
    principal: Money
    term_months: int
    annual_rate_bps: int
    purpose: str = "personal"

    @property
    def installment(self) -> int:
        """The monthly annuity payment in minor units (what most payments of this loan are)."""
        monthly = self.annual_rate_bps / 10_000 / 12
        if monthly == 0:
            return max(1, self.principal.minor_units // self.term_months)
        return max(1, round(self.principal.minor_units * monthly / (1 - (1 + monthly) ** -self.term_months)))


# (purpose, principal range in major units, terms in months, share of loans)
LOAN_KINDS = [
    ("car", (5_000, 60_000), (36, 48, 60, 72), 35),
    ("home", (80_000, 900_000), (180, 240, 360), 15),
    ("personal", (1_000, 25_000), (12, 24, 36, 60), 30),
    ("equipment", (5_000, 150_000), (24, 36, 60), 10),
    ("education", (5_000, 80_000), (60, 120), 10),
]
CURRENCIES = (("USD", 85), ("EUR", 6), ("GBP", 5), ("CAD", 4))
METHODS = ((PaymentMethod.ACH, 60), (PaymentMethod.CARD, 25), (PaymentMethod.WIRE, 10), (PaymentMethod.CASH, 5))
# Tables packed by hand (fmt: skip): the formatter would give each value a line of its own.
FIRST_NAMES = (
    "Ada", "Ben", "Chloe", "Dev", "Elif", "Femi", "Gia", "Hugo", "Ines", "Jun", "Kofi", "Lena", "Mo", "Noor", "Omar",
    "Priya", "Quinn", "Rosa", "Sam", "Uma", "Wen",
)  # fmt: skip
LAST_NAMES = (
    "Adams", "Baker", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Haddad", "Ito", "Jones", "Kim", "Lopez",
    "Moreau", "Nowak", "Okafor", "Patel",
)  # fmt: skip


def _weighted(rng: random.Random, choices: Sequence[tuple[T, int]]) -> T:
    return rng.choices([value for value, _ in choices], weights=[weight for _, weight in choices])[0]


def time_of(uuid7: uuid.UUID) -> datetime:
    """The creation time a UUIDv7 carries (millisecond precision)."""
    return datetime.fromtimestamp((uuid7.int >> 80) / 1000, UTC)


def synthetic_loans(customers: int, rng: random.Random, ids: IdSource, before: datetime) -> list[FundedLoan]:
    """Funded loans of `customers` fresh customers (a fifth of them with a second loan), funded before `before`."""
    loans = []
    for _ in range(customers):
        customer = ids.at(before - timedelta(days=rng.uniform(200, 3000)))
        for _ in range(2 if rng.random() < 0.2 else 1):
            purpose, (low, high), terms, _ = rng.choices(LOAN_KINDS, weights=[kind[3] for kind in LOAN_KINDS])[0]
            principal = Money(_weighted(rng, CURRENCIES), rng.randrange(low, high) // 100 * 100 * 100)
            funded = before - timedelta(days=rng.uniform(1, 180))
            loans.append(
                FundedLoan(ids.at(funded), customer, principal, rng.choice(terms), rng.randrange(300, 2500), purpose)
            )
    return loans


def payments(
    loans: Sequence[FundedLoan], count: int, rng: random.Random, ids: IdSource, start: datetime, end: datetime
) -> Iterator[Payment]:
    """`count` payments into `loans`, paid between `start` and `end`, as the payment service would have stored them.

    Mostly the loan's installment, settled, by ACH; some partial or extra payments; a few failed; recent ones
    still pending; about 4 % settled then reversed (version 2, updated days later).
    """
    span = (end - start).total_seconds()
    pending_after = end - timedelta(days=3)
    for _ in range(count):
        loan = rng.choice(loans)
        paid_at = start + timedelta(seconds=rng.uniform(0, span))
        roll = rng.random()
        minor = loan.installment
        if roll < 0.12:
            minor = max(1, round(minor * rng.uniform(0.3, 0.95)))
        elif roll < 0.16:
            minor = round(minor * rng.uniform(1.1, 3.0))
        amount = Money(loan.principal.currency, minor)
        method = _weighted(rng, METHODS)
        created_at = paid_at + timedelta(seconds=rng.uniform(0, 90))
        updated_at, version = created_at, 1
        roll = rng.random()
        if paid_at > pending_after and roll < 0.5:
            status = PaymentStatus.PENDING
        elif roll < 0.06:
            status = PaymentStatus.FAILED
        elif roll < 0.10 and created_at + timedelta(days=1) < end:
            status, version = PaymentStatus.REVERSED, 2
            updated_at = min(end, created_at + timedelta(days=rng.uniform(1, 20)))
        else:
            status = PaymentStatus.SETTLED
        payment_id = ids.at(created_at)
        yield Payment(
            id=payment_id,
            customer_id=loan.customer_id,
            loan_id=loan.id,
            amount=amount,
            method=method,
            status=status,
            paid_at=paid_at,
            created_at=created_at,
            updated_at=updated_at,
            version=version,
            idempotency_key=f"seed-{payment_id}",
            request_fingerprint=request_fingerprint(loan.customer_id, loan.id, amount, method, paid_at),
        )


# A request enters at the gateway and fans out; each hop logs a line or two under the same trace id.
CALL_CHAINS = (
    ("gateway", "payment", "customer"),
    ("gateway", "customer"),
    ("gateway", "payment", "payment"),
    ("gateway", "logging"),
    ("payment", "migration-relay"),
)
SERVICES = ("gateway", "payment", "customer", "logging", "migration-relay", "auth", "scheduler")
LEVELS = (
    (LogLevel.DEBUG, 15), (LogLevel.INFO, 65), (LogLevel.WARNING, 13), (LogLevel.ERROR, 6), (LogLevel.CRITICAL, 1),
)  # fmt: skip
MESSAGES = {
    LogLevel.DEBUG: ("cache lookup", "query planned", "span exported", "connection reused"),
    LogLevel.INFO: ("request served", "payment recorded", "loan checked", "application moved", "batch stored",
                    "journal entry applied"),
    LogLevel.WARNING: ("slow query", "retrying after throttling", "deadline close to expiry", "circuit half-open"),
    LogLevel.ERROR: ("upstream unavailable", "version conflict", "request failed", "journal entry retried"),
    LogLevel.CRITICAL: ("store unreachable", "circuit open"),
}  # fmt: skip
ROUTES = ("/v1/payments", "/v1/customers/{id}/payments", "/v1/loans/{id}/payments", "/v1/applications", "/v1/logs")


def log_entries(
    count: int,
    rng: random.Random,
    ids: IdSource,
    start: datetime,
    end: datetime,
    services: Sequence[str] | None = None,
) -> Iterator[LogEntry]:
    """`count` entries evenly spread from `start` to `end`, in time order.

    Two thirds come from requests: a trace id shared by the lines of every service the request went through.
    The rest are background lines (no trace). `services` replaces the default service names (the request
    chains then pick among them).
    """
    step = (end - start) / count
    names = list(services) if services else None
    n = 0
    while n < count:
        traced = rng.random() < 0.66
        chain: Sequence[str]
        if traced:
            chain = [rng.choice(names) for _ in range(rng.randint(1, 4))] if names else rng.choice(CALL_CHAINS)
            trace_id = f"{rng.getrandbits(128):032x}"
        else:
            chain, trace_id = (rng.choice(names or SERVICES),), ""
        for service in chain[: count - n]:
            when = start + step * n
            level = _weighted(rng, LEVELS)
            attributes = {"logger": f"{service}.{rng.choice(('api', 'store', 'relay', 'client'))}"}
            if traced:
                attributes["route"] = rng.choice(ROUTES)
                attributes["duration_ms"] = str(rng.randint(1, 400))
            yield LogEntry(
                id=ids.at(when),
                time=when,
                service=service,
                level=level,
                message=rng.choice(MESSAGES[level]),
                attributes=attributes,
                trace_id=trace_id,
                span_id=f"{rng.getrandbits(64):016x}" if traced else "",
            )
            n += 1


@dataclass(frozen=True)
class SeedPlan:
    payments: int
    logs: int
    customers: int  # spread payments over at least this many customers (created if fewer have funded loans)
    days: int  # payments span this many days before `end`
    log_days: int  # log entries span this many days before `end`
    seed: int
    end: datetime
    log_services: tuple[str, ...] = ()  # empty: the system's own services (gateway, payment, ...)


@dataclass(frozen=True)
class SeedResult:
    customers_created: int
    loans_used: int
    payments: int
    logs: int
    partitions_created: list[date]


async def prepare_schemas(dsn: str) -> None:
    """Bring the customer, payment and logging schemas to head, as each service does at start-up."""
    await upgrade_customer_schema(dsn)
    await upgrade_payment_schema(dsn)
    await upgrade_logging_schema(dsn)


async def funded_loans(pool: asyncpg.Pool, customers: int) -> list[FundedLoan]:
    """The FUNDED loans of up to `customers` customers (lowest ids first, so the pick is repeatable)."""
    rows = await pool.fetch(
        """SELECT id, customer_id, principal_minor, currency, term_months, annual_rate_bps, purpose
           FROM customer.loan_applications
           WHERE status = 'FUNDED' AND customer_id IN (
               SELECT DISTINCT customer_id FROM customer.loan_applications WHERE status = 'FUNDED'
               ORDER BY customer_id LIMIT $1)
           ORDER BY id""",
        customers,
    )
    return [
        FundedLoan(
            row["id"],
            row["customer_id"],
            Money(row["currency"].strip(), row["principal_minor"]),
            row["term_months"],
            row["annual_rate_bps"],
            row["purpose"],
        )
        for row in rows
    ]


async def create_customers(
    pool: asyncpg.Pool, count: int, rng: random.Random, ids: IdSource, before: datetime
) -> list[FundedLoan]:
    """`count` customers with funded loans (and the loans' workflow events) at a few SEED branches."""
    branches = await _seed_branches(pool)
    officers = await pool.fetch(
        "SELECT id, branch_id FROM customer.loan_officers WHERE branch_id = ANY($1::uuid[]) ORDER BY id", branches
    )
    loans = synthetic_loans(count, rng, ids, before)
    customer_rows, loan_rows, event_rows = [], [], []
    placed: dict[uuid.UUID, asyncpg.Record] = {}
    for loan in loans:
        if loan.customer_id not in placed:
            officer = placed[loan.customer_id] = rng.choice(officers)
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            joined = time_of(loan.customer_id)
            customer_rows.append(
                (
                    loan.customer_id,
                    officer["branch_id"],
                    f"{first} {last}",
                    f"{first}.{last}.{loan.customer_id.hex[-12:]}@example.test".lower(),
                    f"+1{rng.randrange(2, 10)}{rng.randrange(10**8, 10**9)}",
                    date(rng.randrange(1950, 2004), rng.randrange(1, 13), rng.randrange(1, 29)),
                    f"{rng.randrange(100, 900)}-{rng.randrange(10, 100)}-{rng.randrange(1000, 10000)}",
                    1,
                    joined,
                    joined,
                )
            )
        officer = placed[loan.customer_id]
        funded = time_of(loan.id)
        submitted = funded - timedelta(days=rng.uniform(3, 30))
        loan_rows.append(
            (
                loan.id,
                loan.customer_id,
                officer["branch_id"],
                officer["id"],
                loan.principal.minor_units,
                loan.principal.currency,
                loan.term_months,
                loan.annual_rate_bps,
                loan.purpose,
                "FUNDED",
                4,
                submitted,
                funded,
            )
        )
        moves = (
            ("REVIEW", "SUBMITTED", "UNDER_REVIEW"),
            ("APPROVE", "UNDER_REVIEW", "APPROVED"),
            ("FUND", "APPROVED", "FUNDED"),
        )
        for version, (action, before_status, after_status) in enumerate(moves, start=2):
            when = submitted + (funded - submitted) * (version - 1) / 3
            event_rows.append((loan.id, action, before_status, after_status, version, "seeded history", when))
    async with pool.acquire() as connection, connection.transaction():
        await connection.copy_records_to_table(
            "customers",
            schema_name="customer",
            records=customer_rows,
            columns=[*CUSTOMER_COLUMNS, "version", "created_at", "updated_at"],
        )
        await connection.copy_records_to_table(
            "loan_applications",
            schema_name="customer",
            records=loan_rows,
            columns=[*APPLICATION_COLUMNS, "version", "created_at", "updated_at"],
        )
        await connection.copy_records_to_table(
            "loan_application_events",
            schema_name="customer",
            records=event_rows,
            columns=["application_id", "action", "from_status", "to_status", "version", "reason", "occurred_at"],
        )
    return loans


async def _seed_branches(pool: asyncpg.Pool) -> list[uuid.UUID]:
    """Four SEED-nn branches with three officers each, created on first use and found again afterwards."""
    async with pool.acquire() as connection, connection.transaction():
        for b in range(1, 5):
            branch = await connection.fetchval(
                """INSERT INTO customer.branches (id, code, name, address) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (code) DO UPDATE SET code = EXCLUDED.code RETURNING id""",
                uuid.uuid4(),
                f"SEED-{b:02d}",
                f"Seeded branch {b}",
                f"{b} History Lane",
            )
            for o in range(1, 4):
                await connection.execute(
                    """INSERT INTO customer.loan_officers (id, branch_id, name, email) VALUES ($1, $2, $3, $4)
                       ON CONFLICT DO NOTHING""",
                    uuid.uuid4(),
                    branch,
                    f"Officer {b}-{o}",
                    f"officer-{b}-{o}@seed.loanbook",
                )
        rows = await connection.fetch("SELECT id FROM customer.branches WHERE code LIKE 'SEED-%' ORDER BY code")
    return [row["id"] for row in rows]


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _log_record(entry: LogEntry, batch_id: uuid.UUID) -> tuple[Any, ...]:
    return (
        entry.service,
        entry.time,
        entry.id,
        int(entry.level),
        entry.message,
        json.dumps(entry.attributes, separators=(",", ":")),
        entry.trace_id or None,
        entry.span_id or None,
        batch_id,
    )


async def _copy_all(
    pool: asyncpg.Pool,
    table: str,
    schema: str,
    columns: list[str],
    chunks: Iterable[list[tuple[Any, ...]]],
    progress: Progress,
) -> None:
    """COPY chunk after chunk, one in flight while the next is generated, so PostgreSQL and Python overlap."""
    in_flight: asyncio.Task[None] | None = None

    async def copy(records: list[tuple[Any, ...]]) -> None:
        async with pool.acquire() as connection:
            await connection.copy_records_to_table(table, schema_name=schema, records=records, columns=columns)
        progress(len(records))

    for records in chunks:
        if in_flight is not None:
            await in_flight
        in_flight = asyncio.create_task(copy(records))
        await asyncio.sleep(0)  # let the COPY start sending before the next chunk is generated
    if in_flight is not None:
        await in_flight


async def copy_payments(pool: asyncpg.Pool, rows: Iterable[Payment], progress: Progress = _no_progress) -> None:
    """COPY payments into payment.payments (then ANALYZE, so the listings' plans see the new volume)."""
    columns = [column.strip() for column in PAYMENT_COLUMNS.split(",")]
    records = (row_values(payment) for payment in rows)
    await _copy_all(pool, "payments", "payment", columns, _chunks(records, CHUNK), progress)
    await pool.execute("ANALYZE payment.payments")


async def copy_logs(pool: asyncpg.Pool, entries: Iterable[LogEntry], progress: Progress = _no_progress) -> None:
    """COPY entries into logging.entries, LOG_BATCH entries per batch_id; their days' partitions must exist."""

    def records() -> Iterator[tuple[Any, ...]]:
        for batch in _chunks(entries, LOG_BATCH):
            batch_id = new_id()  # as the service names a WriteLogs batch
            yield from (_log_record(entry, batch_id) for entry in batch)

    columns = ["service", "time", "id", "level", "message", "attributes", "trace_id", "span_id", "batch_id"]
    await _copy_all(pool, "entries", "logging", columns, _chunks(records(), CHUNK), progress)
    await pool.execute("ANALYZE logging.entries")


def log_days(start: datetime, end: datetime) -> list[date]:
    """The UTC days (daily partitions) from `start` to `end`, both included."""
    return [start.date() + timedelta(days=n) for n in range((end.date() - start.date()).days + 1)]


async def seed_payments(
    pool: asyncpg.Pool,
    loans: Sequence[FundedLoan],
    plan: SeedPlan,
    rng: random.Random,
    ids: IdSource,
    progress: Progress = _no_progress,
) -> int:
    start = plan.end - timedelta(days=plan.days)
    await copy_payments(pool, payments(loans, plan.payments, rng, ids, start, plan.end), progress)
    return plan.payments


async def seed_logs(
    pool: asyncpg.Pool, plan: SeedPlan, rng: random.Random, ids: IdSource, progress: Progress = _no_progress
) -> tuple[int, list[date]]:
    start = plan.end - timedelta(days=plan.log_days)
    created = await ensure_partitions(pool, log_days(start, plan.end))
    await copy_logs(pool, log_entries(plan.logs, rng, ids, start, plan.end, plan.log_services), progress)
    return plan.logs, created


async def seed(
    dsn: str,
    plan: SeedPlan,
    on_payments: Progress = _no_progress,
    on_logs: Progress = _no_progress,
) -> SeedResult:
    """Load `plan` into the PostgreSQL at `dsn`: customers and loans if too few, then payments, then logs."""
    await prepare_schemas(dsn)
    rng = random.Random(plan.seed)  # noqa: S311 - reproducible demo data, not secrets
    ids = IdSource()
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=3)
    try:
        loans: list[FundedLoan] = []
        created = 0
        if plan.payments:
            loans = await funded_loans(pool, plan.customers)
            missing = plan.customers - len({loan.customer_id for loan in loans})
            if missing > 0:
                before = plan.end - timedelta(days=plan.days)
                fresh = await create_customers(pool, missing, rng, ids, before)
                created = len({loan.customer_id for loan in fresh})
                loans += fresh
            await seed_payments(pool, loans, plan, rng, ids, on_payments)
        logs, partitions = (await seed_logs(pool, plan, rng, ids, on_logs)) if plan.logs else (0, [])
    finally:
        await pool.close()
    return SeedResult(created, len(loans), plan.payments, logs, partitions)
