"""What a stage means at run time for one table: where writes go, where reads are served, fallback, shadow."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final, TypeVar

import asyncpg
from circuitbreaker import CircuitBreaker
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from chassis.dynamodb_capacity import collected_per_span
from chassis.errors import DomainError, Unavailable
from chassis.telemetry import ATTR_MIGRATION_STAGE, ATTR_STORE_BACKEND, ATTR_STORE_FALLBACK, ATTR_STORE_MERGED
from migration.journal import Journal, Pending
from migration.observability import (
    ATTR_COLLECTION,
    ATTR_ERROR_TYPE,
    ATTR_OPERATION,
    ATTR_ROUTE_REASON,
    ATTR_SHADOW_RESULT,
    ATTR_STORE_OUTCOME,
    Route,
    error_type,
    inline_copy_failures,
    mark_failed,
    operation_duration,
    shadow_comparisons,
    store_attributes,
    store_errors,
    store_fallbacks,
    watch_breaker,
)
from migration.stages import Backend, TableMode

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("loanbook.migration")

T = TypeVar("T")
R = TypeVar("R")

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

# Kept beside `loanbook.route.reason` on the PostgreSQL span of a read DynamoDB could not serve: the runbook's queries.
ATTR_BREAKER_OPEN: Final = "loanbook.store.breaker_open"
BREAKER_OPEN: Final = "breaker_open"
# Outcomes of a store call whose answer was not used (`loanbook.store.outcome`).
DISCARDED: Final = "discarded"
CANCELLED: Final = "cancelled"


@dataclass(frozen=True)
class HybridSettings:
    dynamo_timeout_seconds: float = 0.2
    # Where a DynamoDB failure has nothing to fall back to (dynamo_only, fallback off): cutting a slow call short only
    # turns a slow answer into an error, so it gets the caller's patience instead (well within the gateway's 5 s).
    dynamo_timeout_without_fallback_seconds: float = 2.0
    breaker_failure_threshold: int = 5
    breaker_recovery_seconds: float = 1.0
    shadow_sample_ratio: float = 0.1
    shadow_budget_seconds: float = 0.5
    # Whether a write's acknowledgement waits for its DynamoDB copy. It need not: the journal entry commits with the
    # row, so the copy is durable either way, and reads of a key route to PostgreSQL until its copy lands. Waiting
    # adds a DynamoDB round trip (and its tail) to every write; not waiting leaves the copy a moment later, and lets
    # writers outrun DynamoDB (the relay takes the rest). Waiting is for a DynamoDB that must hold each write the
    # moment it is acknowledged (nothing in loanbook reads it that way).
    await_dynamodb_copy: bool = False
    # Copies in flight in the background at most; a write beyond it leaves its copy to the relay, so a slow
    # DynamoDB cannot pile up tasks (and memory) in the service under a burst of writes.
    background_copy_limit: int = 16
    # How long the relay leaves a journal entry to the write's own copy before copying it too: without it the relay
    # races every copy in flight and DynamoDB takes each write twice. Far above a copy's own timeout; a failed copy
    # hands its entry over at once, so only a replica that dies mid-copy makes the relay wait this long.
    relay_head_start_seconds: float = 2.0


@dataclass(frozen=True)
class JournalItem:
    """What a write journals: the item's key and version, and the read keys it makes stale in DynamoDB."""

    key: str
    version: int
    routing_keys: Sequence[str]


@dataclass
class ShadowCounters:
    compared: int = 0
    mismatched: int = 0
    skipped_pending: int = 0
    failed: int = 0
    # The latest mismatches (key, fields) for a quick look; the full record is migration.shadow_mismatches.
    mismatches: deque[tuple[str, list[str]]] = field(default_factory=lambda: deque(maxlen=100))


@dataclass
class DynamoReadCounters:
    """Reads this replica asked DynamoDB to serve, and how many PostgreSQL answered instead or none could: what the
    watchdog (migration.watchdog) judges, as loanbook_store_fallbacks_total does for the dashboards."""

    served: int = 0
    fell_back: int = 0
    failed: int = 0


class DynamoBreaker(CircuitBreaker):  # type: ignore[misc]  # circuitbreaker ships no type hints
    """The library's breaker, except that a call given up on (cancelled) counts neither way: the library would count
    it as a success and reset the failures, so reads discarded for a pending write kept an ailing DynamoDB's breaker
    from ever opening."""

    def __exit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None, traceback: Any) -> bool:
        if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            return False
        result: bool = super().__exit__(exc_type, exc_value, traceback)
        return result


class DynamoUnavailable(Unavailable):
    """DynamoDB failed, timed out, or its circuit breaker is open (`error_type`: timeout, unavailable, breaker_open)."""

    def __init__(self, message: str, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def _is_answer(error: BaseException) -> bool:
    """A domain error other than Unavailable is the store's answer (a refused write, a conflict), not a failure."""
    return isinstance(error, DomainError) and not isinstance(error, Unavailable)


def _end_unused(span: Span, outcome: str, description: str, end_time: int | None = None) -> None:
    """Ends the span of a call whose answer nobody used: never to be read as a served success."""
    span.set_attribute(ATTR_STORE_OUTCOME, outcome)
    span.set_status(Status(StatusCode.ERROR, description))
    span.end(end_time=end_time)


class _Speculative:
    """A DynamoDB read started before its reader knows whether it will use the answer: the journal check runs beside
    it (read-your-writes). Its span stays open until the reader says, so a read that was not used never counts as
    served, in the trace or in the latency histogram."""

    __slots__ = ("_attributes", "_elapsed", "_ended_ns", "_span", "reason", "verdict")

    def __init__(self) -> None:
        self.reason = Route.STAGE
        # Why the answer will not be used (outcome, description), once the reader knows.
        self.verdict: tuple[str, str] | None = None
        self._span: Span | None = None
        self._attributes: dict[str, str] = {}
        self._elapsed = 0.0
        self._ended_ns = 0

    def answered(self, span: Span, attributes: dict[str, str], elapsed: float) -> None:
        """DynamoDB answered: the span waits for the reader's verdict (or takes the one already given)."""
        self._span, self._attributes, self._elapsed, self._ended_ns = span, attributes, elapsed, time.time_ns()
        if self.verdict is not None:
            self._end_unused()

    def used(self) -> None:
        """The reader serves (or merges) the answer."""
        span, self._span = self._span, None
        if span is None:
            return
        if self._attributes[ATTR_ROUTE_REASON] != self.reason.value:
            self._attributes[ATTR_ROUTE_REASON] = self.reason.value
            span.set_attribute(ATTR_ROUTE_REASON, self.reason.value)
        operation_duration.record(self._elapsed, self._attributes)
        span.end(end_time=self._ended_ns)

    def unused(self, outcome: str, description: str) -> None:
        """The reader will not use the answer; call before cancelling the read's task."""
        self.verdict = (outcome, description)
        if self._span is not None:
            self._end_unused()

    def _end_unused(self) -> None:
        span, self._span = self._span, None
        assert span is not None and self.verdict is not None
        _end_unused(span, *self.verdict, end_time=self._ended_ns)


class HybridTable:
    """Stage machinery for one table, shared by every table that migrates (payments, logs).

    Writes, in every stage that writes PostgreSQL, commit the row and a journal entry in one transaction and
    then copy to DynamoDB, after the acknowledgement unless `await_dynamodb_copy` says to wait for it; a failed
    (or, past `background_copy_limit`, never started) copy is left to the relay. A read served by DynamoDB is
    routed to PostgreSQL while any of its keys has a pending journal entry or a copy still settling into a GSI
    (read-your-writes; see Journal.has_pending), and falls back
    to PostgreSQL when DynamoDB fails, wherever PostgreSQL still receives writes and fallback is on.

    On the way back from dynamo_only PostgreSQL lacks the writes made there until the reverse sync is verified
    (`TableMode.postgres_complete` is false): a read whose key has a pending write then reads both stores and merges
    them (by id, the newer version winning), since neither alone is whole, and nothing falls back to PostgreSQL.

    Every store call is a CLIENT span `{table}.{operation} {backend}` with `loanbook.route.reason` saying why that
    store was called, and a `db.client.operation.duration` recording; a DynamoDB call the breaker refused has no span
    (it was not made), only a `loanbook.store.errors` count (see migration.observability).
    """

    def __init__(
        self,
        name: str,
        mode: Callable[[], TableMode],
        pool: asyncpg.Pool,
        journal: Journal,
        settings: HybridSettings,
        *,
        sample: Callable[[], float] = random.random,
    ) -> None:
        self.name = name
        self._mode = mode
        self._pool = pool
        self.journal = journal
        self._settings = settings
        self._sample = sample
        self.breaker = DynamoBreaker(
            failure_threshold=settings.breaker_failure_threshold,
            recovery_timeout=settings.breaker_recovery_seconds,
            expected_exception=_is_dynamo_failure,
            name=f"dynamodb-{name}",
        )
        watch_breaker(name, self.breaker)
        self.shadow = ShadowCounters()
        self.dynamo_reads = DynamoReadCounters()
        self._background: set[asyncio.Task[None]] = set()
        self._copies: set[asyncio.Task[None]] = set()
        self._background_slots = 0  # copies running in the background, or about to once their write commits
        self._relay_head_start = timedelta(seconds=settings.relay_head_start_seconds)

    @property
    def mode(self) -> TableMode:
        return self._mode()

    # --- calls to each store, traced and measured ----------------------------------------------------------

    def _span(self, backend: Backend, operation: str, reason: Route) -> tuple[Span, dict[str, str]]:
        """A started CLIENT span of one store call, and the attributes its duration is recorded with."""
        attributes = store_attributes(self.name, operation, backend, self.mode.stage.value, reason)
        span_attributes: dict[str, str | bool] = dict(attributes)
        if reason is Route.FALLBACK or reason is Route.BREAKER_OPEN:
            span_attributes[ATTR_STORE_FALLBACK] = True
            if reason is Route.BREAKER_OPEN:
                span_attributes[ATTR_BREAKER_OPEN] = True
        elif reason is Route.MERGED and backend is Backend.POSTGRES:
            span_attributes[ATTR_STORE_MERGED] = True
        span = tracer.start_span(
            f"{self.name}.{operation} {backend.value}", kind=SpanKind.CLIENT, attributes=span_attributes
        )
        return span, attributes

    def _failed(self, span: Span, attributes: dict[str, str], elapsed: float, error: BaseException) -> str:
        """Records a failed store call on its span and in the metrics; returns its `error.type`."""
        kind = error_type(error)
        mark_failed(span, error, kind)
        attributes[ATTR_ERROR_TYPE] = kind
        operation_duration.record(elapsed, attributes)
        store_errors.add(
            1,
            {
                ATTR_COLLECTION: self.name,
                ATTR_OPERATION: attributes[ATTR_OPERATION],
                ATTR_STORE_BACKEND: attributes[ATTR_STORE_BACKEND],
                ATTR_ERROR_TYPE: kind,
            },
        )
        return kind

    async def _postgres(self, operation: str, call: Callable[[], Awaitable[T]], reason: Route = Route.STAGE) -> T:
        span, attributes = self._span(Backend.POSTGRES, operation, reason)
        started = time.perf_counter()
        try:
            with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                result = await call()
        except asyncio.CancelledError:
            _end_unused(span, CANCELLED, "cancelled before PostgreSQL answered")
            raise
        except Exception as error:
            if _is_answer(error):
                operation_duration.record(time.perf_counter() - started, attributes)
            else:
                self._failed(span, attributes, time.perf_counter() - started, error)
            span.end()
            raise
        operation_duration.record(time.perf_counter() - started, attributes)
        span.end()
        return result

    def _breaker_refused(self, operation: str) -> None:
        store_errors.add(
            1,
            {
                ATTR_COLLECTION: self.name,
                ATTR_OPERATION: operation,
                ATTR_STORE_BACKEND: Backend.DYNAMODB.value,
                ATTR_ERROR_TYPE: BREAKER_OPEN,
            },
        )

    async def _dynamo(
        self,
        operation: str,
        call: Callable[[], Awaitable[T]],
        timeout: float | None = None,
        reason: Route = Route.STAGE,
        speculative: _Speculative | None = None,
    ) -> T:
        """DynamoDB behind a per-call timeout and the circuit breaker; failures become DynamoUnavailable.

        `timeout` overrides the settings' per-call timeout for calls that are many requests (a batch write). A
        `speculative` read's span is ended by its reader (see _Speculative).
        """
        if self.breaker.opened:
            # No call, so no span: the breaker's refusal is counted, and the read's PostgreSQL span says why.
            self._breaker_refused(operation)
            raise DynamoUnavailable(f"{self.name}: DynamoDB circuit breaker is open", BREAKER_OPEN)
        limit = timeout or self._timeout(operation)

        async def bounded() -> T:
            # asyncio.timeout rather than wait_for: no extra task per DynamoDB call on the read path.
            with collected_per_span():
                async with asyncio.timeout(limit):
                    return await call()

        span, attributes = self._span(Backend.DYNAMODB, operation, speculative.reason if speculative else reason)
        started = time.perf_counter()
        try:
            with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                result: T = await self.breaker.call_async(bounded)
        except asyncio.CancelledError:
            verdict = speculative.verdict if speculative is not None else None
            _end_unused(span, *(verdict or (CANCELLED, "cancelled before DynamoDB answered")))
            raise
        except Exception as error:
            elapsed = time.perf_counter() - started
            if _is_answer(error):
                operation_duration.record(elapsed, attributes)
                span.end()
                raise
            kind = self._failed(span, attributes, elapsed, error)
            span.end()
            if isinstance(error, Unavailable | TimeoutError | OSError):
                raise DynamoUnavailable(f"{self.name}: DynamoDB {kind}", kind) from error
            raise
        if speculative is not None:
            speculative.answered(span, attributes, time.perf_counter() - started)
        else:
            operation_duration.record(time.perf_counter() - started, attributes)
            span.end()
        return result

    def _timeout(self, operation: str) -> float:
        """Short where a failure falls back (a read to PostgreSQL) or is retried by the relay (an inline copy)."""
        mode = self.mode
        falls_back = mode.fallback and mode.policy.fallback_possible
        if falls_back or operation.endswith(".copy"):
            return self._settings.dynamo_timeout_seconds
        return max(self._settings.dynamo_timeout_seconds, self._settings.dynamo_timeout_without_fallback_seconds)

    # --- writes --------------------------------------------------------------------------------------------

    async def write(
        self,
        operation: str,
        *,
        postgres: Callable[[Connection], Awaitable[T]],
        journal_item: Callable[[T], JournalItem | None],
        copy_to_dynamo: Callable[[T], Awaitable[object]],
        dynamo_only: Callable[[], Awaitable[T]],
        dynamo_timeout: float | None = None,
    ) -> T:
        """Run a write where the stage says. `journal_item` returns None when nothing was written (a replay)."""
        policy = self.mode.policy
        if not policy.writes_postgres:
            return await self._dynamo(operation, dynamo_only, dynamo_timeout)

        # A write that will copy its own entry takes a copy slot before its transaction, and gives the relay a
        # head start to wait; past the limit (or not writing DynamoDB) the relay takes the entry at once.
        background = not self._settings.await_dynamodb_copy
        copies_itself = policy.writes_dynamo and (
            not background or self._background_slots < self._settings.background_copy_limit
        )
        if copies_itself and background:
            self._background_slots += 1
        due_in = self._relay_head_start if copies_itself else timedelta(0)

        async def in_transaction() -> tuple[T, int | None]:
            async with self._pool.acquire() as connection, connection.transaction():
                result = await postgres(connection)
                item = journal_item(result) if policy.writes_dynamo else None
                entry = None
                if item is not None:
                    # Inside the PostgreSQL span: the entry carries its trace context for the relay's link.
                    entry = await self.journal.append(connection, item.key, item.version, item.routing_keys, due_in)
                return result, entry

        try:
            result, entry = await self._postgres(operation, in_transaction)
        except BaseException:
            if copies_itself and background:
                self._background_slots -= 1
            raise
        if entry is None or not copies_itself:
            if copies_itself and background:
                self._background_slots -= 1
            return result
        if not background:
            await self._copy(operation, entry, lambda: copy_to_dynamo(result), dynamo_timeout)
            return result
        # Started inside the write's span context: the copy's spans stay in the write's trace, after its answer.
        task = asyncio.create_task(self._copy(operation, entry, lambda: copy_to_dynamo(result), dynamo_timeout))
        self._copies.add(task)
        task.add_done_callback(self._copy_done)
        return result

    def _copy_done(self, task: asyncio.Task[None]) -> None:
        self._copies.discard(task)
        self._background_slots -= 1

    async def _copy(
        self, operation: str, entry: int, copy_to_dynamo: Callable[[], Awaitable[object]], timeout: float | None
    ) -> None:
        """A committed write's copy to DynamoDB and, once it landed, its journal entry's completion. Never raises
        but cancellation: whatever fails here, the entry stays in the journal and the relay copies it."""
        copy = f"{operation}.copy"
        try:
            await self._dynamo(copy, copy_to_dynamo, timeout)
        except DynamoUnavailable as error:
            inline_copy_failures.add(
                1, {ATTR_COLLECTION: self.name, ATTR_OPERATION: copy, ATTR_ERROR_TYPE: error.error_type}
            )
            logger.warning("inline DynamoDB copy failed; the relay will copy it", extra={"error": str(error)})
        except Exception as error:  # a refused conditional write or a bug: the relay's copy re-reads PostgreSQL
            inline_copy_failures.add(
                1, {ATTR_COLLECTION: self.name, ATTR_OPERATION: copy, ATTR_ERROR_TYPE: error_type(error)}
            )
            logger.warning("inline DynamoDB copy failed; the relay will copy it", extra={"error": type(error).__name__})
        else:
            await self._journal_quietly(f"{operation}.complete", self.journal.complete([entry]))
            return
        await self._journal_quietly(f"{operation}.hand_over", self.journal.due_now(entry))

    async def _journal_quietly(self, operation: str, change: Coroutine[Any, Any, None]) -> None:
        """A journal change after a copy; if PostgreSQL refuses it, the entry's head start runs out and the relay
        copies it (again: a no-op for a copy that landed) and completes it."""
        try:
            await self._postgres(operation, lambda: change)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            logger.warning("could not update a journal entry; the relay will", extra={"error": type(error).__name__})

    async def wait_for_copies(self) -> None:
        """For tests and shutdown: let the copies in flight land (or fail over to the relay)."""
        if self._copies:
            await asyncio.gather(*self._copies, return_exceptions=True)

    # --- reads ---------------------------------------------------------------------------------------------

    async def read(
        self,
        operation: str,
        *,
        postgres: Callable[[], Awaitable[R]],
        dynamo: Callable[[], Awaitable[R]],
        merge: Callable[[R, R], R],
        routing_keys: Sequence[str],
        compare: Callable[[R, R], list[str]] | None = None,
        item_key: str = "",
        dynamo_timeout: float | None = None,
    ) -> R:
        """A read for a caller, served where the stage says. `merge(from_dynamo, from_postgres)` combines both
        stores' answers where neither alone is whole (see the class)."""
        mode = self.mode
        policy = mode.policy
        if policy.serves is Backend.POSTGRES:
            result = await self._postgres(operation, postgres)
            if policy.compares and compare is not None:
                self._shadow(
                    lambda: self._compare(operation, dynamo, result, compare, routing_keys, item_key, Backend.DYNAMODB)
                )
            return result

        falls_back = mode.fallback and policy.fallback_possible and mode.postgres_complete
        self.dynamo_reads.served += 1
        if falls_back and self.breaker.opened:
            # PostgreSQL holds every write and answers at once: neither a DynamoDB call nor a journal check.
            self._breaker_refused(operation)
            self._fell_back(operation, BREAKER_OPEN)
            return await self._postgres(operation, postgres, Route.BREAKER_OPEN)
        try:
            if policy.writes_postgres:
                # Read-your-writes: DynamoDB may not hold a write we acknowledged yet. The journal check and the
                # DynamoDB read run side by side, so the check costs no extra round trip on the common path.
                speculative = _Speculative()
                served = asyncio.create_task(self._dynamo(operation, dynamo, dynamo_timeout, speculative=speculative))
                try:
                    pending = await self._has_pending(routing_keys)
                except BaseException:  # the request itself was cancelled: take the DynamoDB read with it
                    speculative.unused(CANCELLED, "the read was cancelled")
                    served.cancel()
                    raise
                if pending is not None and not mode.postgres_complete:
                    speculative.reason = Route.MERGED
                    return await self._merged(operation, served, postgres, merge, speculative)
                if pending is not None:
                    route = Route(pending.value)
                    speculative.unused(DISCARDED, f"discarded: {route.value} routed the read to PostgreSQL")
                    served.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await served
                    return await self._postgres(operation, postgres, route)
                result = await served
                speculative.used()
            else:
                result = await self._dynamo(operation, dynamo, dynamo_timeout)
        except DynamoUnavailable as error:
            if not falls_back:
                self.dynamo_reads.failed += 1
                raise
            self._fell_back(operation, error.error_type)
            route = Route.BREAKER_OPEN if error.error_type == BREAKER_OPEN else Route.FALLBACK
            return await self._postgres(operation, postgres, route)
        if policy.compares and compare is not None:
            self._shadow(
                lambda: self._compare(operation, postgres, result, compare, routing_keys, item_key, Backend.POSTGRES)
            )
        return result

    def _fell_back(self, operation: str, why: str) -> None:
        self.dynamo_reads.fell_back += 1
        store_fallbacks.add(
            1,
            {
                ATTR_COLLECTION: self.name,
                ATTR_OPERATION: operation,
                ATTR_MIGRATION_STAGE: self.mode.stage.value,
                ATTR_ERROR_TYPE: why,
            },
        )

    async def read_for_write(
        self,
        operation: str,
        *,
        postgres: Callable[[], Awaitable[R]],
        dynamo: Callable[[], Awaitable[R]],
        merge: Callable[[R, R], R],
    ) -> R:
        """A lookup a write makes before writing (an idempotency key, the version a change starts from), answered by
        the store that is authoritative for writes in this stage, whatever serves readers and whatever the fallback
        switch says: wherever writes commit in PostgreSQL first and it is complete, a write never waits on
        DynamoDB, so an outage cannot refuse it. In dynamo_only, DynamoDB; on the way back from it, both merged."""
        mode = self.mode
        if not mode.policy.writes_postgres:
            return await self._dynamo(operation, dynamo)
        if mode.postgres_complete:
            return await self._postgres(operation, postgres)
        from_dynamo = asyncio.create_task(self._dynamo(operation, dynamo, reason=Route.MERGED))
        return await self._merged(operation, from_dynamo, postgres, merge)

    async def _merged(
        self,
        operation: str,
        from_dynamo: asyncio.Task[R],
        postgres: Callable[[], Awaitable[R]],
        merge: Callable[[R, R], R],
        speculative: _Speculative | None = None,
    ) -> R:
        """Both stores' answers combined: DynamoDB's (already under way) and PostgreSQL's, read side by side."""
        try:
            from_postgres = await self._postgres(operation, postgres, Route.MERGED)
        except BaseException:
            if speculative is not None:
                speculative.unused(CANCELLED, "PostgreSQL's half of the merged read failed")
            from_dynamo.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await from_dynamo
            raise
        from_dynamo_answer = await from_dynamo
        if speculative is not None:
            speculative.used()
        return merge(from_dynamo_answer, from_postgres)

    async def _has_pending(self, routing_keys: Sequence[str]) -> Pending | None:
        try:
            return await self.journal.has_pending(routing_keys)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            # Without PostgreSQL nothing new can be acknowledged either; serve what DynamoDB has.
            logger.warning("journal unreachable; serving from DynamoDB", extra={"table": self.name})
            return None

    # --- shadow comparison ---------------------------------------------------------------------------------

    def _shadow(self, comparison: Callable[[], Coroutine[object, object, None]]) -> None:
        """Run a sampled comparison in the background: the request never waits for the other store."""
        if self._sample() >= self._settings.shadow_sample_ratio:
            return
        task = asyncio.create_task(comparison())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _compare(
        self,
        operation: str,
        other: Callable[[], Awaitable[R]],
        served: R,
        compare: Callable[[R, R], list[str]],
        routing_keys: Sequence[str],
        item_key: str,
        other_backend: Backend,
    ) -> None:
        """The shadow read: a CLIENT span of the store it reads (reason "shadow") that ends with the comparison's
        `loanbook.shadow.result`; the duration recorded is the read's alone."""
        span, attributes = self._span(other_backend, operation, Route.SHADOW)
        result, differing = "failed", list[str]()
        try:
            with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                result, differing = await self._shadow_read(span, attributes, other, served, compare, routing_keys)
        except asyncio.CancelledError:
            span.set_attribute(ATTR_STORE_OUTCOME, CANCELLED)
            raise
        finally:
            span.set_attribute(ATTR_SHADOW_RESULT, result)
            if differing:
                span.set_attribute("loanbook.shadow.fields", differing)
            span.end()
            shadow_comparisons.add(
                1,
                {
                    ATTR_COLLECTION: self.name,
                    ATTR_OPERATION: operation,
                    ATTR_MIGRATION_STAGE: attributes[ATTR_MIGRATION_STAGE],
                    ATTR_SHADOW_RESULT: result,
                },
            )
        if result == "mismatch":
            self.shadow.mismatches.append((item_key, differing))
            await self._record_mismatch(item_key, differing)

    async def _shadow_read(
        self,
        span: Span,
        attributes: dict[str, str],
        other: Callable[[], Awaitable[R]],
        served: R,
        compare: Callable[[R, R], list[str]],
        routing_keys: Sequence[str],
    ) -> tuple[str, list[str]]:
        """Reads the other store and compares: the result and the fields that differ. Raises nothing but
        cancellation: the comparison must never hurt the request it shadows."""
        started = time.perf_counter()
        try:
            with collected_per_span():
                async with asyncio.timeout(self._settings.shadow_budget_seconds):
                    secondary = await other()
        except Exception as error:
            self.shadow.failed += 1
            self._failed(span, attributes, time.perf_counter() - started, error)
            logger.info("shadow read failed", extra={"table": self.name, "error": type(error).__name__})
            return "failed", []
        operation_duration.record(time.perf_counter() - started, attributes)
        try:
            differing = compare(served, secondary)
            # An in-flight write explains a difference; check after reading, so a write landing between the two
            # reads is caught too.
            if differing and await self.journal.has_pending(routing_keys):
                self.shadow.skipped_pending += 1
                return "skipped_pending", []
        except Exception as error:
            self.shadow.failed += 1
            logger.info("shadow comparison failed", extra={"table": self.name, "error": type(error).__name__})
            return "failed", []
        self.shadow.compared += 1
        if not differing:
            return "match", []
        self.shadow.mismatched += 1
        return "mismatch", differing

    async def _record_mismatch(self, item_key: str, fields: list[str]) -> None:
        try:
            await self._pool.execute(
                """INSERT INTO migration.shadow_mismatches (table_name, item_key, stage, fields)
                   VALUES ($1, $2, $3, $4)""",
                self.name,
                item_key,
                self.mode.stage.value,
                fields,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            logger.warning("could not record a shadow mismatch", extra={"table": self.name, "key": item_key})
        logger.warning("shadow mismatch", extra={"table": self.name, "key": item_key, "fields": fields})

    async def wait_for_shadow_reads(self) -> None:
        """For tests and shutdown: let comparisons in flight finish."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


def _is_dynamo_failure(exc_type: type[BaseException], exc_value: BaseException) -> bool:
    # Only outages trip the breaker; a refused conditional write or a missing item is an answer, not a failure.
    return isinstance(exc_value, Unavailable | TimeoutError | OSError)
