"""A rollback out of dynamo_only while payments are written and listed: no listing misses an acknowledged payment,
no request fails, and both stores end up holding every payment at its latest version."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from migration.control import ControlPlane
from migration.hybrid import HybridSettings
from migration.journal import DEFAULT_SETTLE, Journal
from migration.relay import Relay
from migration.runtime import hybrid_table
from migration.stages import Stage, TableMode
from migration.watcher import ModeWatcher
from services.payment.adapters.dynamodb import DynamoPaymentRepository
from services.payment.adapters.postgres import PostgresPaymentRepository
from services.payment.bootstrap import payment_store
from services.payment.domain import Payment, PaymentStatus
from services.payment.store import INDEX_READ_KINDS, HybridPaymentStore
from tests.support.payments import a_payment
from tests.support.toolkit import Stores, migrated_to_dynamo_only
from toolkit.dynamo_io import Pacing
from toolkit.migrate_commands import DEFAULT_READ_RATE
from toolkit.reverse_sync import ReverseSyncOptions, rollback_out_of_dynamo_only
from toolkit.verify import VerifyOptions

# The scans paced as `loanbook migrate rollback` paces them by default: a live system's traffic comes first.
AS_THE_CLI_PACES = Pacing(rate_limit=DEFAULT_READ_RATE)
# The load of the run that found listings missing payments during a rollback: 30 writes/s, 20 listings/s.
WRITES_PER_SECOND = 30
LISTINGS_PER_SECOND = 20
CUSTOMERS = 6  # few customers, so most listings hit a customer with a write in flight or settling
# Long enough that the switch, the settle wait, the sync and the verification all happen under load; the loops stop
# by themselves at this bound whatever happens.
MAX_LOAD_SECONDS = 60.0


@dataclasses.dataclass
class Load:
    """What the clients saw: every payment acknowledged (latest version), every listing that missed one, failures."""

    acknowledged: dict[uuid.UUID, Payment] = dataclasses.field(default_factory=dict)
    by_customer: dict[uuid.UUID, set[uuid.UUID]] = dataclasses.field(default_factory=lambda: defaultdict(set))
    listings: int = 0
    listings_on_the_way_back: int = 0  # while PostgreSQL still lacked the payments written in dynamo_only
    misses: list[tuple[uuid.UUID, set[uuid.UUID]]] = dataclasses.field(default_factory=list)
    failures: list[BaseException] = dataclasses.field(default_factory=list)
    writes_in_dynamo_only: int = 0


async def paced(rate: float, stop: asyncio.Event, step: Callable[[], Awaitable[None]]) -> None:
    """Runs `step` about `rate` times a second (each step one request) until `stop` or the bound."""
    started = time.monotonic()
    done = 0
    while not stop.is_set() and time.monotonic() - started < MAX_LOAD_SECONDS:
        await step()
        done += 1
        ahead = started + done / rate - time.monotonic()
        if ahead > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), ahead)


def following(watcher: ModeWatcher) -> Callable[[], TableMode]:
    return lambda: watcher.mode("payments")


async def test_a_rollback_from_dynamo_only_under_writes_and_listings_misses_nothing_and_fails_nothing(
    stores: Stores,
) -> None:
    await migrated_to_dynamo_only(stores, payments=300, logs=0)
    control = ControlPlane(stores.pool)
    postgres = PostgresPaymentRepository(stores.pool)
    dynamo = DynamoPaymentRepository(stores.dynamodb, stores.table_name("payments"))
    # Two replicas as the service runs them: defaults for timeouts and breaker, GSI listings settling for 3 s.
    replicas: list[tuple[ModeWatcher, HybridPaymentStore, asyncio.Task[None]]] = []
    for _ in range(2):
        watcher = ModeWatcher(stores.dsn, control, poll_interval=5)
        await watcher.start()
        hybrid = hybrid_table(
            "payments",
            following(watcher),
            stores.pool,
            HybridSettings(),
            settle=DEFAULT_SETTLE,
            index_read_kinds=INDEX_READ_KINDS,
        )
        store = payment_store(hybrid, stores.pool, stores.dynamodb, stores.table_name("payments"))
        replicas.append((watcher, store, asyncio.create_task(Relay(hybrid.journal, store.replicate).run())))
    customers = [uuid.uuid4() for _ in range(CUSTOMERS)]
    load, stop = Load(), asyncio.Event()
    rng = random.Random(7)

    async def write() -> None:
        _, store, _ = rng.choice(replicas)
        customer = rng.choice(customers)
        try:
            if load.acknowledged and rng.random() < 0.2:  # now and then a reversal of an earlier payment
                earlier = load.acknowledged[rng.choice(list(load.acknowledged))]
                current = await store.get(earlier.id, for_write=True)
                assert current is not None
                if current.status is PaymentStatus.SETTLED:
                    changed = current.reversed_at(datetime.now(UTC))
                    if await store.update(changed, expected_version=current.version):
                        load.acknowledged[changed.id] = changed
                return
            in_dynamo_only = replicas[0][0].mode("payments").stage is Stage.DYNAMO_ONLY
            payment = await store.create(a_payment(customer, paid_at=datetime.now(UTC) - timedelta(seconds=1)))
            load.acknowledged[payment.id] = payment
            load.by_customer[customer].add(payment.id)
            load.writes_in_dynamo_only += in_dynamo_only
        except Exception as error:
            load.failures.append(error)

    async def listing() -> None:
        watcher, store, _ = rng.choice(replicas)
        customer = rng.choice(customers)
        expected = set(load.by_customer[customer])  # acknowledged before the listing started
        mode = watcher.mode("payments")
        load.listings_on_the_way_back += mode.stage is not Stage.DYNAMO_ONLY and not mode.postgres_complete
        try:
            listed = await store.list_for_customer(customer, None, None, None, 500)
        except Exception as error:
            load.failures.append(error)
            return
        load.listings += 1
        missing = expected - {payment.id for payment in listed}
        if missing:
            load.misses.append((customer, missing))

    # Two clients of each kind, each at half the rate, so requests overlap as they do in a service.
    kinds = ((WRITES_PER_SECOND, write), (LISTINGS_PER_SECOND, listing))
    clients = [asyncio.create_task(paced(rate / 2, stop, step)) for rate, step in kinds for _ in range(2)]
    try:
        # Traffic in dynamo_only first, so PostgreSQL lacks payments the listings must show.
        async with asyncio.timeout(20):
            while load.writes_in_dynamo_only < 20:
                await asyncio.sleep(0.05)
        ways = await rollback_out_of_dynamo_only(
            stores.pool,
            stores.dynamodb,
            stores.specs("payments"),
            stores.table_name,
            who="oncall",
            options=ReverseSyncOptions(segments=4, settle_seconds=1.0, who="oncall", pacing=AS_THE_CLI_PACES),
            verify_options=VerifyOptions(workers=2, pacing=AS_THE_CLI_PACES),
        )
        listed_after = load.listings
        async with asyncio.timeout(20):  # a little traffic after the rollback too
            while load.listings < listed_after + 20:
                await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*clients)
        async with asyncio.timeout(20):  # inline copies that missed their budget are the relays' to finish
            while (await Journal(stores.pool, "payments").backlog()).pending:
                await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(*clients, return_exceptions=True)
        for watcher, _, relay in replicas:
            relay.cancel()
            await asyncio.gather(relay, return_exceptions=True)
            await watcher.stop()

    [way] = ways
    print(
        f"\nrollback under load: {len(load.acknowledged)} payments acknowledged ({load.writes_in_dynamo_only} in "
        f"dynamo_only), {load.listings} listings ({load.listings_on_the_way_back} while PostgreSQL was incomplete), "
        f"{len(load.misses)} missed a payment, {len(load.failures)} requests failed"
    )
    assert way.complete, way
    assert way.stage is Stage.DYNAMO_PRIMARY
    assert load.failures == []
    assert load.misses == []
    assert load.listings_on_the_way_back >= 10
    assert load.writes_in_dynamo_only >= 20
    # Every acknowledged payment is in both stores at the version last acknowledged (the relay copied any straggler).
    for payment in load.acknowledged.values():
        assert await postgres.get(payment.id) == payment
        assert await dynamo.get(payment.id) == payment
