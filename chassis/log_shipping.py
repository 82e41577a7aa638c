"""Ships a process's own log records to the logging service in batches, in the background, never blocking.

`LogShipper.handler` is a `logging.Handler`: `emit` turns the record into a LogEntry (time, level, message,
trace and span ids of the active span, `extra=` fields as attributes) and appends it to a bounded queue; a
full queue drops the record and counts it. A background task sends a batch whenever `batch_size` records are
waiting or `flush_seconds` have passed; a failed send is retried with backoff, keeping the batch (entries carry
ids, so a batch that was stored but not acknowledged is stored once). `stop` flushes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from chassis.backoff import full_jitter
from chassis.identity import Caller, Role, caller_metadata
from chassis.ids import new_id
from chassis.structured_logging import STANDARD_RECORD_ATTRIBUTES
from chassis.timestamps import set_timestamp
from loanbook.logging.v1 import logging_pb2 as pb
from loanbook.logging.v1.logging_pb2_grpc import LoggingServiceStub

if TYPE_CHECKING:
    import grpc.aio

    from loanbook.logging.v1.logging_pb2_grpc import LoggingServiceAsyncStub

logger = logging.getLogger(__name__)

Sink = Callable[[Sequence[pb.LogEntry]], Awaitable[object]]

# The logging service's limits (services/logging/domain.py; a unit test holds the two equal): an entry is clipped to
# them, so a shipped entry is never refused for its size.
MAX_MESSAGE_BYTES = 8 * 1024
MAX_ATTRIBUTE_VALUE_BYTES = 1024
MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_KEY_LENGTH = 64
ELLIPSIS = "…"
LEVELS = ((50, pb.LOG_LEVEL_CRITICAL), (40, pb.LOG_LEVEL_ERROR), (30, pb.LOG_LEVEL_WARNING), (20, pb.LOG_LEVEL_INFO))
_ATTRIBUTE_KEY_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")

# Set inside the shipping task: records logged while shipping (a failed send, the gRPC client) are not shipped
# again, or a logging-service outage would feed on itself.
_shipping = contextvars.ContextVar("loanbook_log_shipping", default=False)


def _level(levelno: int) -> pb.LogLevel.ValueType:
    for threshold, level in LEVELS:
        if levelno >= threshold:
            return level
    return pb.LOG_LEVEL_DEBUG


def _attribute_key(key: str) -> bool:
    return 0 < len(key) <= MAX_ATTRIBUTE_KEY_LENGTH and key[0].isalnum() and set(key) <= _ATTRIBUTE_KEY_CHARACTERS


def clipped(text: str, max_bytes: int) -> str:
    """The text within `max_bytes` of UTF-8, an ellipsis marking a cut (never in the middle of a character)."""
    encoded = text.encode()
    if len(encoded) <= max_bytes:
        return text
    return encoded[: max_bytes - len(ELLIPSIS.encode())].decode(errors="ignore") + ELLIPSIS


_meter = metrics.get_meter("loanbook.log_shipping")
_sent = _meter.create_counter("loanbook.log_shipping.sent", unit="{record}", description="Log records shipped")
_dropped = _meter.create_counter(
    "loanbook.log_shipping.dropped", unit="{record}", description="Log records dropped instead of shipped"
)
# Why a record was dropped: the queue was full when it was logged, or a failed batch no longer fit back in.
_QUEUE_FULL = {"loanbook.outcome": "queue_full"}
_RETRY_OVERFLOW = {"loanbook.outcome": "retry_overflow"}


@dataclass
class ShippingCounters:
    queued: int = 0
    shipped: int = 0
    dropped: int = 0  # the queue was full
    failed_sends: int = 0  # attempts that failed (their batch was kept and retried)


class LogShipper:
    def __init__(
        self,
        service: str,
        sink: Sink,
        *,
        capacity: int = 10_000,
        batch_size: int = 500,
        flush_seconds: float = 1.0,
        retry_seconds: float = 1.0,
    ) -> None:
        self.service = service
        self._sink = sink
        self._capacity = capacity
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._retry_seconds = retry_seconds
        self._queue: deque[pb.LogEntry] = deque()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.counters = ShippingCounters()
        self.handler = _ShippingHandler(self)

    # --- the request path: must stay cheap and never block --------------------------------------------------

    def offer(self, record: logging.LogRecord) -> None:
        if _shipping.get():
            return
        if len(self._queue) >= self._capacity:
            self.counters.dropped += 1
            _dropped.add(1, _QUEUE_FULL)
            return
        self._queue.append(self._entry(record))
        self.counters.queued += 1
        if len(self._queue) >= self._batch_size and self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _entry(self, record: logging.LogRecord) -> pb.LogEntry:
        entry = pb.LogEntry(
            id=str(new_id()),
            service=self.service,
            level=_level(record.levelno),
            message=clipped(record.getMessage(), MAX_MESSAGE_BYTES),
        )
        set_timestamp(entry.time, datetime.fromtimestamp(record.created, UTC))
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry.trace_id = format(span.trace_id, "032x")
            entry.span_id = format(span.span_id, "016x")
        attributes = {"logger": record.name}
        for key, value in vars(record).items():
            if key not in STANDARD_RECORD_ATTRIBUTES and key not in ("trace_id", "span_id") and _attribute_key(key):
                attributes[key] = clipped(str(value), MAX_ATTRIBUTE_VALUE_BYTES)
        if record.exc_info and record.exc_info[1] is not None:
            # The last lines of a traceback say where it failed; the whole of it stays in the process's stderr.
            lines = traceback.format_exception(record.exc_info[1])
            attributes["exception"] = clipped("".join(lines[-3:]), MAX_ATTRIBUTE_VALUE_BYTES)
        entry.attributes.update(dict(list(attributes.items())[:MAX_ATTRIBUTES]))
        return entry

    # --- the background task --------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="log-shipper")

    async def stop(self, timeout: float = 2.0) -> None:
        """Stop the task, then send what is left (best effort within `timeout`)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            async with asyncio.timeout(timeout):
                await self.flush()
        except Exception as error:  # shutting down: say what is lost (it still reaches stderr)
            logger.warning(
                "log shipping: %d entries not shipped at shutdown (%s)", len(self._queue), type(error).__name__
            )

    async def flush(self) -> None:
        """Send everything queued now (shutdown, and tests that want the lines searchable right away)."""
        token = _shipping.set(True)
        try:
            while self._queue:
                await self._send(self._take())
        finally:
            _shipping.reset(token)

    def _take(self) -> list[pb.LogEntry]:
        batch: list[pb.LogEntry] = []
        while self._queue and len(batch) < self._batch_size:
            batch.append(self._queue.popleft())
        return batch

    async def _send(self, batch: list[pb.LogEntry]) -> None:
        await self._sink(batch)
        self.counters.shipped += len(batch)
        _sent.add(len(batch))

    async def _run(self) -> None:
        _shipping.set(True)
        # Shipping is plumbing, not a request: an unsampled parent keeps its RPCs and store calls out of traces.
        unsampled = SpanContext(
            trace_id=random.getrandbits(128) or 1,
            span_id=random.getrandbits(64) or 1,
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.DEFAULT),
        )
        otel_context.attach(trace.set_span_in_context(NonRecordingSpan(unsampled)))
        failures = 0
        while True:
            if len(self._queue) < self._batch_size:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._flush_seconds)
            batch = self._take()
            if not batch:
                continue
            try:
                await self._send(batch)
                failures = 0
            except Exception as error:
                self.counters.failed_sends += 1
                failures += 1
                self._requeue(batch)
                logger.warning("log shipping failed; retrying", extra={"error": type(error).__name__})
                await asyncio.sleep(full_jitter(failures, base=self._retry_seconds, cap=30.0))

    def _requeue(self, batch: list[pb.LogEntry]) -> None:
        """Put a failed batch back in front, as far as the capacity allows (the newest of it is dropped)."""
        room = max(0, self._capacity - len(self._queue))
        kept, lost = batch[:room], len(batch) - min(room, len(batch))
        self._queue.extendleft(reversed(kept))
        self.counters.dropped += lost
        if lost:
            _dropped.add(lost, _RETRY_OVERFLOW)


class _ShippingHandler(logging.Handler):
    def __init__(self, shipper: LogShipper) -> None:
        super().__init__()
        self._shipper = shipper

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._shipper.offer(record)
        except Exception:  # a log call must never fail the code that made it
            self.handleError(record)


def grpc_sink(channel: grpc.aio.Channel, service: str, deadline_seconds: float = 5.0) -> Sink:
    """Sends a batch with WriteLogs as the `service` role (the logging service's ingestion identity)."""
    stub: LoggingServiceAsyncStub = LoggingServiceStub(channel)
    metadata = caller_metadata(Caller(Role.SERVICE, subject=service))

    async def send(entries: Sequence[pb.LogEntry]) -> None:
        await stub.WriteLogs(pb.WriteLogsRequest(entries=entries), timeout=deadline_seconds, metadata=metadata)

    return send


async def ship_logs(
    service: str, sink: Sink, stack: AsyncExitStack, *, capacity: int = 10_000, level: int = logging.INFO
) -> LogShipper:
    """Attach a shipper to the root logger for the life of `stack`; stopping it flushes what is queued."""
    shipper = LogShipper(service, sink, capacity=capacity)
    shipper.handler.setLevel(level)
    await shipper.start()
    root = logging.getLogger()
    root.addHandler(shipper.handler)

    async def detach() -> None:
        root.removeHandler(shipper.handler)
        await shipper.stop()

    stack.push_async_callback(detach)
    return shipper
