"""DynamoDB's reported capacity becomes the catalogue's counter and span attributes; failures get their error.type."""

from __future__ import annotations

import asyncio
import json

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from chassis.dynamodb_capacity import MAX_ENTRIES_PER_SPAN, collected_per_span, describe_call, record_consumed
from chassis.errors import NotFound, Unavailable
from migration.hybrid import DynamoUnavailable
from migration.observability import error_type
from tests.support import metrics

CAPACITY = "loanbook.dynamodb.consumed_capacity"


@pytest.fixture
def tracer() -> tuple[trace.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def capacity(table: str, index: str, operation: str, kind: str) -> float:
    return metrics.total(
        CAPACITY,
        aws__dynamodb__table_name=table,
        aws__dynamodb__index_name=index,
        db__operation__name=operation,
        loanbook__capacity__kind=kind,
    )


def consumed(span: ReadableSpan) -> list[object]:
    value = (span.attributes or {}).get("aws.dynamodb.consumed_capacity", ())
    assert isinstance(value, tuple)
    return [json.loads(str(entry)) for entry in value]


def test_capacity_is_counted_per_table_and_index_and_put_on_the_span(
    tracer: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    metrics.metric_reader()
    table_before = capacity("unit-payments", "", "PutItem", "write")
    index_before = capacity("unit-payments", "by_customer", "PutItem", "write")
    untouched_before = capacity("unit-payments", "by_loan", "PutItem", "write")
    entry = {
        "TableName": "unit-payments",
        "CapacityUnits": 3.0,
        "Table": {"CapacityUnits": 1.0},
        "GlobalSecondaryIndexes": {"by_customer": {"CapacityUnits": 2.0}, "by_loan": {"CapacityUnits": 0.0}},
    }
    with tracer[0].start_as_current_span("call"):
        describe_call("unit-payments", "by_customer")
        record_consumed("PutItem", {"ConsumedCapacity": entry, "Item": {"secret": {"S": "never read"}}})

    [span] = tracer[1].get_finished_spans()
    assert capacity("unit-payments", "", "PutItem", "write") == table_before + 1.0
    assert capacity("unit-payments", "by_customer", "PutItem", "write") == index_before + 2.0
    assert capacity("unit-payments", "by_loan", "PutItem", "write") == untouched_before  # nothing consumed: no add
    assert consumed(span) == [entry]
    assert (span.attributes or {})["aws.dynamodb.table_names"] == ("unit-payments",)
    assert (span.attributes or {})["aws.dynamodb.index_name"] == "by_customer"
    assert "never read" not in str(span.attributes)


def test_a_total_only_or_missing_report_and_the_list_form_are_understood() -> None:
    metrics.metric_reader()
    total_before = capacity("unit-logs", "", "Query", "read")
    batch_before = capacity("unit-logs", "", "BatchWriteItem", "write")

    record_consumed("Query", {"ConsumedCapacity": {"TableName": "unit-logs", "CapacityUnits": 0.5}})
    record_consumed("Query", {"Items": []})  # a `send` of its own that did not ask: nothing to count
    record_consumed(
        "BatchWriteItem", {"ConsumedCapacity": [{"TableName": "unit-logs", "Table": {"CapacityUnits": 25.0}}]}
    )

    assert capacity("unit-logs", "", "Query", "read") == total_before + 0.5
    assert capacity("unit-logs", "", "BatchWriteItem", "write") == batch_before + 25.0


async def test_calls_a_span_fans_out_to_add_up_on_it_to_a_bound(
    tracer: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    async def query(shard: int) -> None:
        await asyncio.sleep(0)
        record_consumed("Query", {"ConsumedCapacity": {"TableName": f"shard-{shard}", "CapacityUnits": 0.5}})

    with tracer[0].start_as_current_span("one store call"), collected_per_span():
        await asyncio.gather(*(query(shard) for shard in range(MAX_ENTRIES_PER_SPAN + 8)))
    with tracer[0].start_as_current_span("a call outside any collection"):
        record_consumed("Query", {"ConsumedCapacity": {"TableName": "alone", "CapacityUnits": 0.5}})
        record_consumed("Query", {"ConsumedCapacity": {"TableName": "alone-again", "CapacityUnits": 0.5}})

    fanned_out, alone = tracer[1].get_finished_spans()
    assert len(consumed(fanned_out)) == MAX_ENTRIES_PER_SPAN
    assert consumed(alone) == [{"TableName": "alone-again", "CapacityUnits": 0.5}]  # the latest call's


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TimeoutError(), "timeout"),
        (Unavailable("down"), "unavailable"),
        (ConnectionResetError(), "unavailable"),
        (DynamoUnavailable("payments: DynamoDB circuit breaker is open", "breaker_open"), "breaker_open"),
        (NotFound("payment", "p-1"), "NotFound"),
        (ValueError("a bug"), "ValueError"),
    ],
)
def test_a_failure_is_named_by_the_catalogue_error_types(error: BaseException, expected: str) -> None:
    assert error_type(error) == expected
