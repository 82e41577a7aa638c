"""What the hybrid payment store tells an SRE: a CLIENT span per real store call saying which store and why, and the
metric catalogue's instruments, on real PostgreSQL and DynamoDB Local."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from migration.relay import Relay
from migration.runtime import sample_backlog
from migration.stages import Stage
from services.payment.domain import PaymentStatus
from tests.support import metrics
from tests.support.dynamodb import OwnDynamo
from tests.support.payment_harness import Harness
from tests.support.payments import a_payment

DURATION = "db.client.operation.duration"


@pytest.fixture(autouse=True)
def metric_reader() -> None:
    metrics.metric_reader()  # the global meter provider, before anything records


def named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in spans.get_finished_spans() if span.name == name]


def attributes(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


def consumed(span: ReadableSpan) -> list[dict[str, Any]]:
    """The span's aws.dynamodb.consumed_capacity entries, decoded."""
    value = (span.attributes or {}).get("aws.dynamodb.consumed_capacity", ())
    assert isinstance(value, tuple)
    return [json.loads(str(entry)) for entry in value]


def described(spans: Sequence[ReadableSpan]) -> list[tuple[str, object, dict[str, object]]]:
    """For assertion messages: what was traced."""
    return [(span.name, span.status.status_code, attributes(span)) for span in spans]


async def copied(harness: Harness) -> None:
    """Waits until every journaled payment write is in DynamoDB (an inline copy may miss its budget)."""
    replica = harness.replicas[0]
    async with asyncio.timeout(10):
        while (await replica.hybrid.journal.backlog()).pending:
            await replica.relay.drain()
            await asyncio.sleep(0.05)


async def test_a_served_read_and_its_shadow_are_client_spans_of_the_stores_they_called(
    harness: Harness, spans: InMemorySpanExporter
) -> None:
    replica = await harness.replica()
    await harness.set_stage(Stage.DYNAMO_LIVE)
    payment = await replica.store.create(a_payment())
    await copied(harness)
    served_before = metrics.total(
        DURATION, db__system="dynamodb", db__operation__name="get", loanbook__route__reason="stage"
    )
    shadow_before = metrics.total(
        DURATION, db__system="postgresql", db__operation__name="get", loanbook__route__reason="shadow"
    )
    matches_before = metrics.total(
        "loanbook.shadow.comparisons",
        db__collection__name="payments",
        db__operation__name="get",
        loanbook__migration__stage="dynamo_live",
        loanbook__shadow__result="match",
    )
    capacity_before = metrics.total(
        "loanbook.dynamodb.consumed_capacity",
        aws__dynamodb__table_name=harness.table_name,
        aws__dynamodb__index_name="",
        db__operation__name="GetItem",
        loanbook__capacity__kind="read",
    )
    spans.clear()

    with trace.get_tracer("test").start_as_current_span("the request") as request:
        assert await replica.store.get(payment.id) == payment
    await replica.hybrid.wait_for_shadow_reads()

    served, shadow = named(spans, "payments.get dynamodb"), named(spans, "payments.get postgres")
    assert (len(served), len(shadow)) == (1, 1), described(spans.get_finished_spans())
    assert served[0].kind is SpanKind.CLIENT
    assert shadow[0].kind is SpanKind.CLIENT
    assert served[0].status.status_code is StatusCode.UNSET
    assert attributes(served[0]) | {"aws.dynamodb.consumed_capacity": None} == {
        "db.system": "dynamodb",
        "db.collection.name": "payments",
        "db.operation.name": "get",
        "loanbook.store.backend": "dynamodb",
        "loanbook.migration.stage": "dynamo_live",
        "loanbook.route.reason": "stage",
        "aws.dynamodb.table_names": (harness.table_name,),
        "aws.dynamodb.consumed_capacity": None,
    }
    capacity = consumed(served[0])
    assert capacity[0]["TableName"] == harness.table_name
    assert capacity[0]["CapacityUnits"] > 0
    assert attributes(shadow[0])["db.system"] == "postgresql"
    assert attributes(shadow[0])["loanbook.route.reason"] == "shadow"
    assert attributes(shadow[0])["loanbook.shadow.result"] == "match"
    # Both in the request's trace: the shadow read runs after the answer, but for the same request.
    assert {served[0].context.trace_id, shadow[0].context.trace_id} == {request.get_span_context().trace_id}
    assert (
        metrics.total(DURATION, db__system="dynamodb", db__operation__name="get", loanbook__route__reason="stage")
        == served_before + 1
    )
    assert (
        metrics.total(DURATION, db__system="postgresql", db__operation__name="get", loanbook__route__reason="shadow")
        == shadow_before + 1
    )
    assert (
        metrics.total(
            "loanbook.shadow.comparisons",
            db__collection__name="payments",
            db__operation__name="get",
            loanbook__migration__stage="dynamo_live",
            loanbook__shadow__result="match",
        )
        == matches_before + 1
    )
    assert replica.hybrid.shadow.compared == 1  # the counters the migration status reads still count too
    assert (
        metrics.total(
            "loanbook.dynamodb.consumed_capacity",
            aws__dynamodb__table_name=harness.table_name,
            aws__dynamodb__index_name="",
            db__operation__name="GetItem",
            loanbook__capacity__kind="read",
        )
        > capacity_before
    )


async def test_a_shadow_read_of_dynamodb_names_the_index_it_queried_and_a_mismatch(
    harness: Harness, spans: InMemorySpanExporter
) -> None:
    replica = await harness.replica()
    await harness.set_stage(Stage.SHADOW)
    payment = a_payment()
    await harness.postgres.put_if_newer(payment)
    await harness.dynamo.put_if_newer(dataclasses.replace(payment, status=PaymentStatus.REVERSED))  # they differ
    index_capacity_before = metrics.total(
        "loanbook.dynamodb.consumed_capacity",
        aws__dynamodb__table_name=harness.table_name,
        aws__dynamodb__index_name="by_customer",
        db__operation__name="Query",
    )
    spans.clear()

    await replica.store.list_for_customer(payment.customer_id, None, None, None, 10)
    await replica.hybrid.wait_for_shadow_reads()

    served = named(spans, "payments.list_for_customer postgres")
    shadow = named(spans, "payments.list_for_customer dynamodb")
    assert (len(served), len(shadow)) == (1, 1), described(spans.get_finished_spans())
    assert attributes(served[0])["loanbook.route.reason"] == "stage"
    assert shadow[0].kind is SpanKind.CLIENT
    assert attributes(shadow[0])["loanbook.route.reason"] == "shadow"
    assert attributes(shadow[0])["loanbook.shadow.result"] == "mismatch"
    assert attributes(shadow[0])["aws.dynamodb.index_name"] == "by_customer"
    assert consumed(shadow[0])
    assert (
        metrics.total(
            "loanbook.dynamodb.consumed_capacity",
            aws__dynamodb__table_name=harness.table_name,
            aws__dynamodb__index_name="by_customer",
            db__operation__name="Query",
        )
        > index_capacity_before
    )


async def test_a_read_with_a_pending_write_is_postgres_pending_write_and_the_dynamodb_read_is_discarded(
    harness: Harness, spans: InMemorySpanExporter
) -> None:
    replica = await harness.replica()
    await harness.set_stage(Stage.DYNAMO_PRIMARY)
    payment = a_payment()
    await harness.in_postgres_only(replica, payment)
    dynamo_before = metrics.total(DURATION, db__system="dynamodb", db__operation__name="get")
    pending_before = metrics.total(
        DURATION, db__system="postgresql", db__operation__name="get", loanbook__route__reason="pending_write"
    )
    spans.clear()

    assert await replica.store.get(payment.id) == payment

    discarded, served = named(spans, "payments.get dynamodb"), named(spans, "payments.get postgres")
    assert (len(discarded), len(served)) == (1, 1), described(spans.get_finished_spans())
    assert attributes(served[0])["loanbook.route.reason"] == "pending_write"
    assert served[0].kind is SpanKind.CLIENT
    # The speculative DynamoDB read was made (or begun) but not served: never a success, never in the latencies.
    assert attributes(discarded[0])["loanbook.store.outcome"] == "discarded"
    assert discarded[0].status.status_code is StatusCode.ERROR
    assert (discarded[0].status.description or "").startswith("discarded: pending_write")
    assert metrics.total(DURATION, db__system="dynamodb", db__operation__name="get") == dynamo_before
    assert (
        metrics.total(
            DURATION, db__system="postgresql", db__operation__name="get", loanbook__route__reason="pending_write"
        )
        == pending_before + 1
    )


async def test_a_listing_whose_fresh_copy_settles_is_postgres_settling_and_the_write_is_traced_in_three_calls(
    harness: Harness, spans: InMemorySpanExporter
) -> None:
    replica = await harness.replica(settle_seconds=30)
    await harness.set_stage(Stage.DYNAMO_PRIMARY)
    spans.clear()

    payment = await replica.store.create(a_payment())
    await replica.hybrid.wait_for_copies()  # the copy runs after the acknowledgement, in the write's trace
    write_spans = [s for s in spans.get_finished_spans() if s.name.startswith("payments.")]
    spans.clear()
    await replica.store.list_for_customer(payment.customer_id, None, None, None, 10)
    await replica.store.get(payment.id)  # a consistent GetItem: its key does not settle

    assert [(s.name, s.kind, attributes(s)["loanbook.route.reason"]) for s in write_spans] == [
        ("payments.create postgres", SpanKind.CLIENT, "stage"),
        ("payments.create.copy dynamodb", SpanKind.CLIENT, "stage"),
        ("payments.create.complete postgres", SpanKind.CLIENT, "stage"),
    ], described(write_spans)
    copy = write_spans[1]
    assert consumed(copy)[0]["CapacityUnits"] > 0
    listing = named(spans, "payments.list_for_customer postgres")
    assert [attributes(s)["loanbook.route.reason"] for s in listing] == ["settling"]
    got = named(spans, "payments.get dynamodb")
    assert [attributes(s)["loanbook.route.reason"] for s in got] == ["stage"]


async def test_an_outage_falls_back_then_an_open_breaker_makes_no_dynamodb_span(
    outage_harness: tuple[Harness, OwnDynamo], spans: InMemorySpanExporter
) -> None:
    harness, dynamo = outage_harness
    replica = await harness.replica(
        dynamo_timeout_seconds=0.2, breaker_failure_threshold=1, breaker_recovery_seconds=60
    )
    await harness.set_stage(Stage.DYNAMO_LIVE, fallback=True)
    payment = await harness.postgres.create(a_payment())
    await harness.dynamo.put_if_newer(payment)

    def counted() -> tuple[float, ...]:
        return (
            metrics.total("loanbook.store.errors", db__collection__name="payments", db__operation__name="get",
                          loanbook__store__backend="dynamodb", error__type="timeout"),
            metrics.total("loanbook.store.fallbacks", db__collection__name="payments", db__operation__name="get",
                          loanbook__migration__stage="dynamo_live", error__type="timeout"),
            metrics.total("loanbook.store.errors", db__collection__name="payments", db__operation__name="get",
                          loanbook__store__backend="dynamodb", error__type="breaker_open"),
            metrics.total("loanbook.store.fallbacks", db__collection__name="payments", db__operation__name="get",
                          loanbook__migration__stage="dynamo_live", error__type="breaker_open"),
        )  # fmt: skip

    before = counted()
    spans.clear()
    dynamo.freeze()
    try:
        assert await replica.store.get(payment.id) == payment  # DynamoDB times out: the breaker opens
        timed_out = spans.get_finished_spans()
        spans.clear()
        assert await replica.store.get(payment.id) == payment  # the breaker is open: no DynamoDB call at all
        refused = spans.get_finished_spans()
        breaker_gauge = metrics.total("loanbook.dynamodb.breaker.open", db__collection__name="payments")
    finally:
        dynamo.thaw()

    failed = [s for s in timed_out if s.name == "payments.get dynamodb"]
    assert len(failed) == 1, described(timed_out)
    assert failed[0].status.status_code is StatusCode.ERROR
    assert attributes(failed[0])["error.type"] == "timeout"
    assert [e.name for e in failed[0].events] == ["exception"]
    event = dict(failed[0].events[0].attributes or {})
    assert "exception.message" not in event  # types and stack only: a store's message may quote what it was sent
    assert event["exception.type"] == "TimeoutError"
    assert str(payment.id) not in str(event)
    assert [attributes(s)["loanbook.route.reason"] for s in timed_out if s.name == "payments.get postgres"] == [
        "fallback"
    ]
    assert [s.name for s in refused] == ["payments.get postgres"], described(refused)
    assert attributes(refused[0])["loanbook.route.reason"] == "breaker_open"
    assert attributes(refused[0])["loanbook.store.breaker_open"] is True
    assert breaker_gauge == 1
    assert counted() == tuple(value + 1 for value in before)


async def test_the_relay_copy_is_a_client_span_linked_to_the_write_it_copies(
    outage_harness: tuple[Harness, OwnDynamo], spans: InMemorySpanExporter
) -> None:
    harness, dynamo = outage_harness
    replica = await harness.replica(dynamo_timeout_seconds=0.2, breaker_failure_threshold=1000)
    await harness.set_stage(Stage.DUAL_WRITE)
    relay = Relay(replica.hybrid.journal, replica.store.replicate, mode=lambda: replica.hybrid.mode)
    inline_failures_before = metrics.total(
        "loanbook.inline_copy.failures",
        db__collection__name="payments",
        db__operation__name="create.copy",
        error__type="timeout",
    )
    copies_before = metrics.total("loanbook.relay.copies", db__collection__name="payments", loanbook__outcome="copied")
    lag_before = metrics.total("loanbook.relay.lag", db__collection__name="payments")
    dynamo.freeze()
    try:
        with trace.get_tracer("test").start_as_current_span("the request") as request:
            payment = await replica.store.create(a_payment())
        await replica.hybrid.wait_for_copies()  # its copy times out: the relay's job now
    finally:
        dynamo.thaw()
    write = named(spans, "payments.create postgres")[-1]
    spans.clear()

    assert await relay.drain() == 1
    idle = await relay.drain_once()

    copy = named(spans, "payments.relay.copy dynamodb")
    assert len(copy) == 1, described(spans.get_finished_spans())
    assert copy[0].kind is SpanKind.CLIENT
    assert attributes(copy[0]) | {"aws.dynamodb.consumed_capacity": None, "aws.dynamodb.table_names": None} == {
        "db.system": "dynamodb",
        "db.collection.name": "payments",
        "db.operation.name": "relay.copy",
        "loanbook.store.backend": "dynamodb",
        "loanbook.migration.stage": "dual_write",
        "loanbook.route.reason": "stage",
        "loanbook.copy.path": "relay",
        "loanbook.relay.entries": 1,
        "aws.dynamodb.consumed_capacity": None,
        "aws.dynamodb.table_names": None,
    }
    # Linked to the write's PostgreSQL span, in the request's trace: the catch-up copy is found from the request.
    assert [(link.context.trace_id, link.context.span_id) for link in copy[0].links] == [
        (request.get_span_context().trace_id, write.context.span_id)
    ]
    assert write.context.trace_id == request.get_span_context().trace_id
    complete = named(spans, "payments.relay.complete postgres")
    drain = named(spans, "payments.relay.drain")
    assert len(complete) == 1
    assert len(drain) == 1
    assert complete[0].kind is SpanKind.CLIENT
    assert attributes(complete[0])["db.system"] == "postgresql"
    assert copy[0].parent is not None
    assert copy[0].parent.span_id == drain[0].context.span_id
    # A cycle that finds nothing due makes no span.
    assert idle == 0
    assert len(named(spans, "payments.relay.drain")) == 1
    assert await harness.in_dynamo(payment) == payment
    assert (
        metrics.total(
            "loanbook.inline_copy.failures",
            db__collection__name="payments",
            db__operation__name="create.copy",
            error__type="timeout",
        )
        == inline_failures_before + 1
    )
    assert (
        metrics.total("loanbook.relay.copies", db__collection__name="payments", loanbook__outcome="copied")
        == copies_before + 1
    )
    assert metrics.total("loanbook.relay.lag", db__collection__name="payments") == lag_before + 1


async def test_a_failed_relay_copy_is_counted_and_its_span_says_why(
    outage_harness: tuple[Harness, OwnDynamo], spans: InMemorySpanExporter
) -> None:
    harness, dynamo = outage_harness
    replica = await harness.replica()
    await harness.set_stage(Stage.DUAL_WRITE)
    payment = a_payment()
    await harness.in_postgres_only(replica, payment)
    failed_before = metrics.total("loanbook.relay.copies", db__collection__name="payments", loanbook__outcome="failed")
    spans.clear()

    dynamo.freeze()
    try:
        assert await replica.relay.drain_once() == 0
    finally:
        dynamo.thaw()

    copy = named(spans, "payments.relay.copy dynamodb")
    assert len(copy) == 1, described(spans.get_finished_spans())
    assert copy[0].status.status_code is StatusCode.ERROR
    assert attributes(copy[0])["error.type"] in {"timeout", "unavailable"}
    assert named(spans, "payments.relay.complete postgres") == []
    assert (
        metrics.total("loanbook.relay.copies", db__collection__name="payments", loanbook__outcome="failed")
        == failed_before + 1
    )


async def test_the_journal_gauges_follow_the_backlog_as_a_sampler_sees_it(harness: Harness) -> None:
    replica = await harness.replica()
    await harness.set_stage(Stage.DUAL_WRITE)

    async def gauges_reach(pending: int) -> None:
        async with asyncio.timeout(5):
            while metrics.total("loanbook.journal.backlog", db__collection__name="payments") != pending:
                await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample_backlog(replica.hybrid.journal, 0.05))
    try:
        await harness.in_postgres_only(replica, a_payment())
        await harness.in_postgres_only(replica, a_payment())
        await gauges_reach(2)
        oldest = metrics.total("loanbook.journal.oldest_age", db__collection__name="payments")
        await replica.relay.drain()
        await gauges_reach(0)
    finally:
        sampler.cancel()

    assert oldest >= 0
    assert metrics.points("loanbook.journal.oldest_age", db__collection__name="payments")


async def test_the_stage_index_gauge_reports_the_stage_this_replica_runs(harness: Harness) -> None:
    await harness.replica()

    await harness.set_stage(Stage.DYNAMO_PRIMARY, fallback=False)

    points = metrics.points("loanbook.migration.stage_index", db__collection__name="payments")
    assert [(dict(p.attributes or {}), p.value) for p in points if isinstance(p, NumberDataPoint)] == [
        (
            {
                "db.collection.name": "payments",
                "loanbook.migration.stage": "dynamo_primary",
                "loanbook.migration.fallback": "false",
            },
            4,
        )
    ]
