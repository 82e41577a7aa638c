"""The log shipping handler: batches with trace ids, a bounded queue that drops and counts, retries, flush at stop."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from chassis import log_shipping
from chassis.log_shipping import LogShipper, clipped, ship_logs
from loanbook.logging.v1 import logging_pb2 as pb
from services.logging import domain
from services.logging.api import candidate
from services.logging.domain import check_batch
from tests.support.metrics import metric_reader, total

DROPPED = "loanbook.log_shipping.dropped"
TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7


class RecordingSink:
    """Keeps every batch it is sent; fails the first `failures` sends, as a logging service that is down."""

    def __init__(self, failures: int = 0) -> None:
        self.batches: list[list[pb.LogEntry]] = []
        self.failures = failures
        self._received = asyncio.Condition()

    async def __call__(self, entries: Sequence[pb.LogEntry]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("logging service unavailable")
        self.batches.append(list(entries))
        async with self._received:
            self._received.notify_all()

    async def holding(self, count: int) -> None:
        """Returns once the sink holds at least `count` entries."""
        async with self._received:
            await self._received.wait_for(lambda: len(self.entries) >= count)

    @property
    def entries(self) -> list[pb.LogEntry]:
        return [entry for batch in self.batches for entry in batch]


def a_record(message: str = "payment recorded", level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "services.payment", "levelno": level, "levelname": "INFO", "msg": message})
    record.__dict__.update(extra)
    return record


async def test_records_become_entries_with_the_active_trace_and_extra_fields() -> None:
    sink = RecordingSink()
    shipper = LogShipper("loanbook-payment", sink)
    span = NonRecordingSpan(SpanContext(TRACE_ID, SPAN_ID, is_remote=False, trace_flags=TraceFlags(1)))

    with trace.use_span(span):
        shipper.handler.handle(a_record(level=logging.WARNING, payment_id="p-1"))
    await shipper.flush()

    (entry,) = sink.entries
    assert entry.service == "loanbook-payment"
    assert entry.level == pb.LOG_LEVEL_WARNING
    assert entry.message == "payment recorded"
    assert (entry.trace_id, entry.span_id) == (f"{TRACE_ID:032x}", f"{SPAN_ID:016x}")
    assert dict(entry.attributes) == {"logger": "services.payment", "payment_id": "p-1"}
    assert abs(entry.time.ToDatetime(UTC) - datetime.now(UTC)).total_seconds() < 5


async def test_whatever_a_process_logs_is_accepted_by_the_logging_service_s_rules() -> None:
    sink = RecordingSink()
    shipper = LogShipper("loanbook-gateway", sink)
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    record = a_record("é" * 50_000, logging.ERROR, **{"weird key!": "dropped", "long": "ü" * 5000})
    record.exc_info = exc_info

    shipper.handler.handle(record)
    shipper.handler.handle(a_record(level=5))  # below DEBUG: shipped as DEBUG
    await shipper.flush()

    entries, problems = check_batch([candidate(entry) for entry in sink.entries], datetime.now(UTC), timedelta(days=30))
    assert problems == []
    assert len(entries) == 2
    assert "weird key!" not in entries[0].attributes
    assert "ValueError: boom" in entries[0].attributes["exception"]


def test_the_shipper_clips_to_the_logging_service_s_own_limits() -> None:
    assert (log_shipping.MAX_MESSAGE_BYTES, log_shipping.MAX_ATTRIBUTE_VALUE_BYTES) == (
        domain.MAX_MESSAGE_BYTES,
        domain.MAX_ATTRIBUTE_VALUE_BYTES,
    )
    assert (log_shipping.MAX_ATTRIBUTES, log_shipping.MAX_ATTRIBUTE_KEY_LENGTH) == (
        domain.MAX_ATTRIBUTES,
        domain.MAX_ATTRIBUTE_KEY_LENGTH,
    )


def test_clipping_keeps_all_that_fits_and_never_splits_a_character() -> None:
    limit = domain.MAX_MESSAGE_BYTES

    assert clipped("a" * limit, limit) == "a" * limit  # what the service accepts ships whole
    cut = clipped("a" * (limit - 4) + "€€€", limit)  # a 3-byte character straddles the limit
    assert cut.endswith("…")
    assert len(cut.encode()) <= limit
    assert cut.encode().decode() == cut
    assert cut.startswith("a" * (limit - 4))


async def test_a_full_queue_drops_new_records_and_counts_them_without_blocking() -> None:
    sink = RecordingSink()
    shipper = LogShipper("loanbook-payment", sink, capacity=100, batch_size=1000)

    for n in range(250):
        shipper.handler.handle(a_record(f"line {n}"))

    assert (shipper.counters.queued, shipper.counters.dropped) == (100, 150)
    await shipper.flush()
    assert [entry.message for entry in sink.entries] == [f"line {n}" for n in range(100)]  # the oldest are kept


async def test_shipped_and_dropped_records_are_counted_as_metrics_by_reason() -> None:
    metric_reader()
    sent, full = total("loanbook.log_shipping.sent"), total(DROPPED, loanbook__outcome="queue_full")
    overflow = total(DROPPED, loanbook__outcome="retry_overflow")
    sink = RecordingSink()
    shipper = LogShipper("loanbook-payment", sink, capacity=100, batch_size=40)
    for n in range(130):
        shipper.handler.handle(a_record(f"line {n}"))
    # A failed batch of 40 put back into a queue that refilled to the brim: the shipper's own retry path.
    failed_batch = shipper._take()
    for n in range(40):
        shipper.handler.handle(a_record(f"late {n}"))
    shipper._requeue(failed_batch)
    await shipper.flush()

    assert total(DROPPED, loanbook__outcome="queue_full") - full == 30
    assert total(DROPPED, loanbook__outcome="retry_overflow") - overflow == 40
    assert total("loanbook.log_shipping.sent") - sent == len(sink.entries) == 100


async def ship_in_background(shipper: LogShipper, sink: RecordingSink, lines: int, timeout: float) -> None:
    """Runs the shipper's background task while `lines` records ("line 0", ...) are logged, until the sink holds
    them all (or `timeout` seconds pass), then stops it."""
    await shipper.start()
    try:
        for n in range(lines):
            shipper.handler.handle(a_record(f"line {n}"))
        async with asyncio.timeout(timeout):
            await sink.holding(lines)
    finally:
        await shipper.stop()


async def test_a_background_task_ships_full_batches_and_stragglers_after_the_flush_interval() -> None:
    sink = RecordingSink()
    shipper = LogShipper("loanbook-payment", sink, batch_size=10, flush_seconds=0.05)
    await ship_in_background(shipper, sink, lines=25, timeout=2)

    assert [len(batch) for batch in sink.batches][:2] == [10, 10]
    assert [entry.message for entry in sink.entries] == [f"line {n}" for n in range(25)]


async def test_a_failed_send_keeps_its_batch_and_retries_it_in_order() -> None:
    sink = RecordingSink(failures=2)
    shipper = LogShipper("loanbook-payment", sink, batch_size=5, flush_seconds=0.02, retry_seconds=0.01)
    await ship_in_background(shipper, sink, lines=12, timeout=3)

    assert shipper.counters.failed_sends == 2
    assert [entry.message for entry in sink.entries] == [f"line {n}" for n in range(12)]
    assert len({entry.id for entry in sink.entries}) == 12  # the ids stay, so a re-sent entry is stored once


async def test_stopping_flushes_what_is_queued_and_detaches_from_the_root_logger() -> None:
    sink = RecordingSink()
    async with AsyncExitStack() as stack:
        shipper = await ship_logs("loanbook-customer", sink, stack)
        logging.getLogger("services.customer").warning("shutting down soon")
        assert shipper.handler in logging.getLogger().handlers
    assert shipper.handler not in logging.getLogger().handlers

    assert [entry.message for entry in sink.entries] == ["shutting down soon"]


async def test_records_below_the_shipping_level_stay_local() -> None:
    sink = RecordingSink()
    async with AsyncExitStack() as stack:
        await ship_logs("loanbook-customer", sink, stack, level=logging.WARNING)
        logging.getLogger("services.customer").info("chatty")
        logging.getLogger("services.customer").error("important")

    assert [entry.message for entry in sink.entries] == ["important"]


async def test_what_is_logged_while_shipping_is_not_shipped_again() -> None:
    """A logging-service outage logs warnings; shipping those too would feed the outage on itself."""

    async def noisy_sink(entries: Sequence[pb.LogEntry]) -> None:
        logging.getLogger("grpc").warning("send failed")
        sent.extend(entries)

    sent: list[pb.LogEntry] = []
    shipper = LogShipper("loanbook-payment", noisy_sink)
    logging.getLogger().addHandler(shipper.handler)
    try:
        shipper.handler.handle(a_record("real work"))
        await shipper.flush()
        await shipper.flush()
    finally:
        logging.getLogger().removeHandler(shipper.handler)

    assert [entry.message for entry in sent] == ["real work"]


@pytest.fixture(autouse=True)
def _root_logger_passes_everything() -> Iterator[None]:
    """The root logger lets every record through to the handlers, so each test's own level is what filters."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    yield
    root.setLevel(level)
