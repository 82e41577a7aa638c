"""The logging service as deployed: batches and streams in, time-range and trace queries out, precise refusals,
and the same answers once table `logs` is switched to DynamoDB-served reads through the migration API."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from chassis.identity import Caller, Role, caller_metadata
from loanbook.logging.v1 import logging_pb2 as pb
from loanbook.logging.v1 import logging_pb2_grpc
from loanbook.migration.v1 import migration_pb2, migration_pb2_grpc
from loanbook.payment.v1 import payment_pb2_grpc
from tests.support.dynamodb import local_session
from tests.support.grpc import bad_request_fields
from tests.support.payments import record
from tests.support.system import LOG_SHARDS, RETENTION, RunningSystem, table_name
from toolkit.backfill import BackfillOptions, run_backfill
from toolkit.specs import table_specs
from toolkit.verify import run_verify

if TYPE_CHECKING:
    Stub = logging_pb2_grpc.LoggingServiceAsyncStub

NOW = datetime.now(UTC).replace(microsecond=0)


def at(time: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(time)
    return stamp


def an_entry(service: str, seconds_ago: float, level: int = pb.LOG_LEVEL_INFO, **fields: object) -> pb.LogEntry:
    values: dict[str, object] = {
        "service": service,
        "time": at(NOW - timedelta(seconds=seconds_ago)),
        "level": level,
        "message": f"{seconds_ago} s ago",
        **fields,
    }
    return pb.LogEntry(**values)  # type: ignore[arg-type]


def a_service() -> str:
    return f"e2e-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
async def stub(running_system: RunningSystem) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(running_system.grpc_addresses["logging"]) as channel:
        yield logging_pb2_grpc.LoggingServiceStub(channel)


async def query_all(stub: Stub, service: str, page_size: int, min_level: int = 0) -> list[pb.LogEntry]:
    found: list[pb.LogEntry] = []
    token = ""
    for _ in range(100):
        page = await stub.QueryLogs(
            pb.QueryLogsRequest(
                service=service,
                from_time=at(NOW - timedelta(minutes=30)),
                to_time=at(NOW + timedelta(seconds=1)),
                min_level=pb.LogLevel.ValueType(min_level),
                page_size=page_size,
                page_token=token,
            )
        )
        found.extend(page.entries)
        token = page.next_page_token
        if not token:
            return found
    raise AssertionError("paging did not end")


async def test_a_batch_is_queryable_newest_first_by_page_and_by_level(stub: Stub) -> None:
    service = a_service()
    levels = [pb.LOG_LEVEL_DEBUG, pb.LOG_LEVEL_INFO, pb.LOG_LEVEL_WARNING, pb.LOG_LEVEL_ERROR, pb.LOG_LEVEL_CRITICAL]
    batch = [an_entry(service, n, levels[n % 5], attributes={"n": str(n)}) for n in range(23)]

    written = await stub.WriteLogs(pb.WriteLogsRequest(entries=batch))
    everything = await query_all(stub, service, page_size=5)
    serious = await query_all(stub, service, page_size=4, min_level=pb.LOG_LEVEL_ERROR)

    assert written.accepted_count == 23
    assert [e.attributes["n"] for e in everything] == [str(n) for n in range(23)]
    assert all(e.id and e.service == service for e in everything)
    assert [e.attributes["n"] for e in serious] == [str(n) for n in range(23) if n % 5 >= 3]


async def test_a_trace_gathers_the_lines_of_several_services_in_time_order(stub: Stub) -> None:
    trace_id = secrets.token_hex(16)
    gateway, payment = a_service(), a_service()
    await stub.WriteLogs(pb.WriteLogsRequest(entries=[an_entry(payment, 1, trace_id=trace_id, span_id="b" * 16)]))
    await stub.WriteLogs(pb.WriteLogsRequest(entries=[an_entry(gateway, 2, trace_id=trace_id), an_entry(gateway, 3)]))

    found = await stub.GetTraceLogs(pb.GetTraceLogsRequest(trace_id=trace_id))

    assert [(e.service, e.message) for e in found.entries] == [(gateway, "2 s ago"), (payment, "1 s ago")]
    assert found.entries[1].span_id == "b" * 16


async def test_a_bad_entry_rejects_its_whole_batch_naming_index_and_field(stub: Stub) -> None:
    service = a_service()
    batch = [an_entry(service, 1), an_entry(service, 2, level=9), an_entry("", 3, message="x" * 10_000)]

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.WriteLogs(pb.WriteLogsRequest(entries=batch))

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(refused.value) == ["entries[1].level", "entries[2].service", "entries[2].message"]
    assert await query_all(stub, service, page_size=10) == []  # the good entry was not stored either


async def test_a_time_out_of_the_timestamp_range_is_reported_with_the_batchs_other_problems(stub: Stub) -> None:
    service = a_service()
    batch = [
        an_entry(service, 1),
        an_entry(service, 2, time=Timestamp(seconds=2**62)),
        an_entry("", 3, time=Timestamp(seconds=0, nanos=-5)),
        an_entry(service, 4, level=9),
    ]

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.WriteLogs(pb.WriteLogsRequest(entries=batch))

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(refused.value) == [
        "entries[1].time",
        "entries[2].time",
        "entries[2].service",
        "entries[3].level",
    ]
    assert await query_all(stub, service, page_size=10) == []


async def test_a_batch_checked_with_validate_only_is_answered_as_a_write_but_not_stored(stub: Stub) -> None:
    service = a_service()
    good = [an_entry(service, 1), an_entry(service, 2)]

    checked = await stub.WriteLogs(pb.WriteLogsRequest(entries=good, validate_only=True))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.WriteLogs(pb.WriteLogsRequest(entries=[*good, an_entry("", 3)], validate_only=True))

    assert checked.accepted_count == 2
    assert bad_request_fields(refused.value) == ["entries[2].service"]
    assert await query_all(stub, service, page_size=10) == []


async def test_a_stream_stores_each_good_message_and_stops_at_a_bad_one_naming_it(stub: Stub) -> None:
    service = a_service()
    future = pb.LogEntry(service=service, time=at(NOW + timedelta(hours=2)), level=pb.LOG_LEVEL_INFO, message="?")

    async def messages() -> AsyncIterator[pb.StreamLogsRequest]:
        yield pb.StreamLogsRequest(entries=[an_entry(service, 1), an_entry(service, 2)])
        yield pb.StreamLogsRequest(entries=[an_entry(service, 3)])
        yield pb.StreamLogsRequest(entries=[an_entry(service, 4), future])
        yield pb.StreamLogsRequest(entries=[an_entry(service, 5)])

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.StreamLogs(messages())

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(refused.value) == ["messages[2].entries[1].time"]
    assert "3 entries before it were stored" in (refused.value.details() or "")
    assert [e.message for e in await query_all(stub, service, page_size=10)] == ["1 s ago", "2 s ago", "3 s ago"]


@pytest.mark.parametrize(
    ("request_fields", "fields"),
    [
        ({"service": ""}, ["service"]),
        ({"service": "ok", "min_level": 42}, ["min_level"]),
        ({"service": "ok", "page_token": "forged"}, ["page_token"]),
        ({"service": "ok", "page_size": -1}, ["page_size"]),
    ],
)
async def test_bad_queries_are_invalid_argument_naming_the_field(
    stub: Stub, request_fields: dict[str, object], fields: list[str]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.QueryLogs(pb.QueryLogsRequest(**request_fields))  # type: ignore[arg-type]

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(refused.value) == fields


async def copy_logs_to_dynamodb(postgres_dsn: str, dynamodb_endpoint: str) -> None:
    """Backfill and verify the logs table, as `loanbook migrate backfill/verify logs` do: DynamoDB may serve only
    once the copy is proven whole (the control plane refuses dynamo_live before)."""
    specs = table_specs(["logs"], LOG_SHARDS, RETENTION)
    pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=8)
    try:
        async with local_session().client("dynamodb", endpoint_url=dynamodb_endpoint) as dynamodb:
            await run_backfill(pool, dynamodb, specs, table_name, BackfillOptions(workers=2, restart=True))
            verified = await run_verify(pool, dynamodb, specs, table_name)
    finally:
        await pool.close()
    assert [(v.clean, v.full) for v in verified] == [(True, True)], [(v.missing, v.extra) for v in verified]


async def copied(postgres_dsn: str, routing_key: str) -> None:
    """Wait until no journal entry for this read key is waiting for its DynamoDB copy."""
    connection = await asyncpg.connect(postgres_dsn)
    try:
        async with asyncio.timeout(10):
            while await connection.fetchval(
                "SELECT EXISTS (SELECT 1 FROM migration.journal WHERE $1 = ANY (routing_keys))", routing_key
            ):
                await asyncio.sleep(0.05)
    finally:
        await connection.close()


async def test_answers_stay_the_same_when_reads_move_to_dynamodb_and_back(
    stub: Stub, running_system: RunningSystem, postgres_dsn: str, dynamodb_endpoint: str
) -> None:
    service, trace_id = a_service(), secrets.token_hex(16)
    await stub.WriteLogs(pb.WriteLogsRequest(entries=[an_entry(service, n, trace_id=trace_id) for n in range(12)]))
    before = await query_all(stub, service, page_size=5)
    admin = caller_metadata(Caller(Role.ADMIN, "e2e-admin"))

    async with grpc.aio.insecure_channel(running_system.grpc_addresses["payment"]) as channel:
        migration = migration_pb2_grpc.MigrationServiceStub(channel)

        async def switch(stage: migration_pb2.MigrationStage.ValueType) -> None:
            await migration.UpdateTableMode(
                migration_pb2.UpdateTableModeRequest(table="logs", stage=stage, reason="e2e"), metadata=admin
            )
            # Replicas follow within a second (LISTEN/NOTIFY; measured in the integration tests), and the
            # logging service does not say which stage it is in, so give it that second.
            await asyncio.sleep(1.5)

        try:
            await switch(migration_pb2.MIGRATION_STAGE_DUAL_WRITE)  # from here every new batch lands in both stores
            await stub.WriteLogs(pb.WriteLogsRequest(entries=[an_entry(service, 0.5, trace_id=trace_id)]))
            await copy_logs_to_dynamodb(postgres_dsn, dynamodb_endpoint)
            await switch(migration_pb2.MIGRATION_STAGE_DYNAMO_LIVE)
            # Until its copy is in DynamoDB (inline, or by the relay if that timed out) the service's entries are
            # read from PostgreSQL (read-your-writes).
            await copied(postgres_dsn, f"service:{service}")
            traceparent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
            in_dynamo = await stub.QueryLogs(
                pb.QueryLogsRequest(
                    service=service, from_time=at(NOW - timedelta(seconds=1)), to_time=at(NOW + timedelta(seconds=1))
                ),
                metadata=(("traceparent", traceparent),),
            )
        finally:
            await switch(migration_pb2.MIGRATION_STAGE_POSTGRES_ONLY)

    spans = await running_system.receiver.wait_for(traceparent.split("-")[1], {"loanbook-logging"}, timeout=15)
    # DynamoDB served the query: no PostgreSQL read (neither a fallback nor a read-your-writes detour) beside it; a
    # sampled shadow read of PostgreSQL in the background is no detour.
    store_reads = {
        s.name
        for s in spans
        if s.name in ("logs.query dynamodb", "logs.query postgres")
        and s.attributes["loanbook.route.reason"] != "shadow"
    }
    assert store_reads == {"logs.query dynamodb"}
    # The backfilled entries and the one written in dual_write alike.
    assert [e.message for e in in_dynamo.entries] == ["0 s ago", "0.5 s ago", "1 s ago"]
    assert [e.id for e in in_dynamo.entries][::2] == [e.id for e in before[:2]]
    # Back on PostgreSQL nothing is missing: the entry written in dual_write sits between "0 s" and "1 s ago".
    after = [e.id for e in await query_all(stub, service, page_size=5)]
    assert after == [before[0].id, in_dynamo.entries[1].id, *(e.id for e in before[1:])]


async def test_a_services_own_log_lines_are_shipped_and_found_by_the_trace_id_of_their_request(
    running_system: RunningSystem, stub: Stub
) -> None:
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    async with grpc.aio.insecure_channel(running_system.grpc_addresses["payment"]) as channel:
        payments = payment_pb2_grpc.PaymentServiceStub(channel)
        recorded = await payments.RecordPayment(record(), metadata=(("traceparent", traceparent),))

    shipped: list[pb.LogEntry] = []
    for _ in range(100):  # the shipper sends at least once a second; allow for a slow machine
        found = await stub.GetTraceLogs(pb.GetTraceLogsRequest(trace_id=trace_id))
        shipped = [entry for entry in found.entries if entry.message == "payment recorded"]
        if shipped:
            break
        await asyncio.sleep(0.2)

    assert len(shipped) == 1, "the payment service's 'payment recorded' line never reached the logging service"
    line = shipped[0]
    assert (line.service, line.level, line.trace_id) == ("loanbook-payment", pb.LOG_LEVEL_INFO, trace_id)
    assert len(line.span_id) == 16
    assert line.attributes["payment_id"] == recorded.payment.id
    # Ids only: neither the amount nor the idempotency key is written to logs.
    assert not {"amount", "idempotency_key"} & set(line.attributes)
