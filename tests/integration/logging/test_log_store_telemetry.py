"""The hybrid log store's DynamoDB spans name the table, index and capacity of every call they stand for, and the
capacity counter adds it up, on real PostgreSQL and DynamoDB Local."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from chassis.ids import new_id
from migration.stages import Stage
from services.logging.domain import LogBatch, LogLevel
from tests.support import metrics
from tests.support.log_harness import LogHarness
from tests.support.logs import a_service, a_trace, an_entry, recent_hour


@pytest.fixture(autouse=True)
def metric_reader() -> None:
    metrics.metric_reader()  # the global meter provider, before anything records


def consumed(span: ReadableSpan) -> list[dict[str, Any]]:
    value = (span.attributes or {}).get("aws.dynamodb.consumed_capacity", ())
    assert isinstance(value, tuple)
    return [json.loads(str(entry)) for entry in value]


def only(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [span for span in spans.get_finished_spans() if span.name == name]
    assert len(found) == 1, [span.name for span in spans.get_finished_spans()]
    return found[0]


async def test_a_batch_copy_and_the_reads_carry_every_call_they_made(
    log_harness: LogHarness, spans: InMemorySpanExporter
) -> None:
    replica = await log_harness.replica()
    await log_harness.set_stage(Stage.DYNAMO_PRIMARY)
    service, t0, trace = a_service(), recent_hour(), a_trace()
    # 30 entries: two BatchWriteItem calls (25 + 5), sent side by side.
    batch = LogBatch(new_id(), [an_entry(service, t0 + timedelta(seconds=n), trace_id=trace) for n in range(30)])

    def written() -> float:
        return metrics.total(
            "loanbook.dynamodb.consumed_capacity",
            aws__dynamodb__table_name=log_harness.table_name,
            aws__dynamodb__index_name="",
            db__operation__name="BatchWriteItem",
            loanbook__capacity__kind="write",
        )

    def read() -> float:
        return metrics.total(
            "loanbook.dynamodb.consumed_capacity",
            aws__dynamodb__table_name=log_harness.table_name,
            db__operation__name="Query",
            loanbook__capacity__kind="read",
        )

    written_before, read_before = written(), read()
    spans.clear()

    await replica.store.write(batch)
    await replica.hybrid.wait_for_copies()  # the copy runs after the acknowledgement
    entries = await replica.store.query(service, t0, t0 + timedelta(hours=1), LogLevel.DEBUG, None, 100)
    traced = await replica.store.trace(trace, 100)

    assert len(entries) == len(traced) == 30
    copy = only(spans, "logs.write.copy dynamodb")
    assert copy.kind is SpanKind.CLIENT
    assert (copy.attributes or {})["aws.dynamodb.table_names"] == (log_harness.table_name,)
    assert len(consumed(copy)) == 2  # one entry per BatchWriteItem, from both concurrent calls
    query = only(spans, "logs.query dynamodb")
    assert len(consumed(query)) >= log_harness.layout.shards  # a Query per shard of the hour, at least
    assert "aws.dynamodb.index_name" not in (query.attributes or {})
    by_trace = only(spans, "logs.trace dynamodb")
    assert (by_trace.attributes or {})["aws.dynamodb.index_name"] == "by_trace"
    assert {entry["TableName"] for entry in consumed(by_trace)} == {log_harness.table_name}
    assert written() > written_before
    assert read() > read_before
