"""What a stage means at run time for one table: where writes go, where reads are served, fallback, shadow."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg
from circuitbreaker import CircuitBreaker
from opentelemetry import trace

from chassis.errors import DomainError, Unavailable
from chassis.telemetry import ATTR_MIGRATION_STAGE, ATTR_STORE_BACKEND, ATTR_STORE_FALLBACK, ATTR_STORE_MERGED
from migration.journal import Journal
from migration.stages import Backend, TableMode

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("loanbook.migration")

T = TypeVar("T")
R = TypeVar("R")

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


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


class DynamoUnavailable(Unavailable):
    """DynamoDB failed, timed out, or its circuit breaker is open."""


class HybridTable:
    """Stage machinery for one table, shared by every table that migrates (payments, logs).

    Writes, in every stage that writes PostgreSQL, commit the row and a journal entry in one transaction and
    then copy to DynamoDB inline; a failed inline copy is left to the relay. A read served by DynamoDB is
    routed to PostgreSQL while any of its keys has a pending journal entry or a copy still settling into a GSI
    (read-your-writes; see Journal.has_pending), and falls back
    to PostgreSQL when DynamoDB fails, wherever PostgreSQL still receives writes and fallback is on.

    On the way back from dynamo_only PostgreSQL lacks the writes made there until the reverse sync is verified
    (`TableMode.postgres_complete` is false): a read whose key has a pending write then reads both stores and merges
    them (by id, the newer version winning), since neither alone is whole, and nothing falls back to PostgreSQL.
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
        self.breaker = CircuitBreaker(
            failure_threshold=settings.breaker_failure_threshold,
            recovery_timeout=settings.breaker_recovery_seconds,
            expected_exception=_is_dynamo_failure,
            name=f"dynamodb-{name}",
        )
        self.shadow = ShadowCounters()
        self._background: set[asyncio.Task[None]] = set()

    @property
    def mode(self) -> TableMode:
        return self._mode()

    # --- calls to each store, traced -----------------------------------------------------------------------

    async def _postgres(
        self, operation: str, call: Callable[[], Awaitable[T]], *, fallback: bool = False, merged: bool = False
    ) -> T:
        with tracer.start_as_current_span(f"{self.name}.{operation} postgres") as span:
            span.set_attribute(ATTR_STORE_BACKEND, Backend.POSTGRES.value)
            span.set_attribute(ATTR_MIGRATION_STAGE, self.mode.stage.value)
            if fallback:
                span.set_attribute(ATTR_STORE_FALLBACK, True)
            if merged:
                span.set_attribute(ATTR_STORE_MERGED, True)
            return await call()

    async def _dynamo(self, operation: str, call: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        """DynamoDB behind a per-call timeout and the circuit breaker; failures become DynamoUnavailable.

        `timeout` overrides the settings' per-call timeout for calls that are many requests (a batch write).
        """
        with tracer.start_as_current_span(f"{self.name}.{operation} dynamodb") as span:
            span.set_attribute(ATTR_STORE_BACKEND, Backend.DYNAMODB.value)
            span.set_attribute(ATTR_MIGRATION_STAGE, self.mode.stage.value)
            if self.breaker.opened:
                span.set_attribute("loanbook.store.breaker_open", True)
                raise DynamoUnavailable(f"{self.name}: DynamoDB circuit breaker is open")
            limit = timeout or self._timeout(operation)

            async def bounded() -> T:
                # asyncio.timeout rather than wait_for: no extra task per DynamoDB call on the read path.
                async with asyncio.timeout(limit):
                    return await call()

            try:
                result: T = await self.breaker.call_async(bounded)
                return result
            except DomainError as error:
                if isinstance(error, Unavailable):
                    raise DynamoUnavailable(f"{self.name}: DynamoDB unavailable") from error
                raise
            except (TimeoutError, OSError) as error:
                raise DynamoUnavailable(f"{self.name}: DynamoDB timed out or unreachable") from error

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

        async def in_transaction() -> tuple[T, int | None]:
            async with self._pool.acquire() as connection, connection.transaction():
                result = await postgres(connection)
                item = journal_item(result) if policy.writes_dynamo else None
                entry = None
                if item is not None:
                    entry = await self.journal.append(connection, item.key, item.version, item.routing_keys)
                return result, entry

        result, entry = await self._postgres(operation, in_transaction)
        if entry is not None:
            try:
                await self._dynamo(f"{operation}.copy", lambda: copy_to_dynamo(result), dynamo_timeout)
            except DynamoUnavailable as error:
                logger.warning("inline DynamoDB copy failed; the relay will copy it", extra={"error": str(error)})
            else:
                await self.journal.complete([entry])
        return result

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

        try:
            if policy.writes_postgres:
                # Read-your-writes: DynamoDB may not hold a write we acknowledged yet. The journal check and the
                # DynamoDB read run side by side, so the check costs no extra round trip on the common path.
                served = asyncio.create_task(self._dynamo(operation, dynamo, dynamo_timeout))
                try:
                    has_pending = await self._has_pending(routing_keys)
                except BaseException:  # the request itself was cancelled: take the DynamoDB read with it
                    served.cancel()
                    raise
                if has_pending and not mode.postgres_complete:
                    return await self._merged(operation, served, postgres, merge)
                if has_pending:
                    served.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await served
                    return await self._postgres(operation, postgres)
                result = await served
            else:
                result = await self._dynamo(operation, dynamo, dynamo_timeout)
        except DynamoUnavailable:
            if not (mode.fallback and policy.fallback_possible and mode.postgres_complete):
                raise
            return await self._postgres(operation, postgres, fallback=True)
        if policy.compares and compare is not None:
            self._shadow(
                lambda: self._compare(operation, postgres, result, compare, routing_keys, item_key, Backend.POSTGRES)
            )
        return result

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
        return await self._merged(operation, asyncio.create_task(self._dynamo(operation, dynamo)), postgres, merge)

    async def _merged(
        self,
        operation: str,
        from_dynamo: asyncio.Task[R],
        postgres: Callable[[], Awaitable[R]],
        merge: Callable[[R, R], R],
    ) -> R:
        """Both stores' answers combined: DynamoDB's (already under way) and PostgreSQL's, read side by side."""
        try:
            from_postgres = await self._postgres(operation, postgres, merged=True)
        except BaseException:
            from_dynamo.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await from_dynamo
            raise
        return merge(await from_dynamo, from_postgres)

    async def _has_pending(self, routing_keys: Sequence[str]) -> bool:
        try:
            return await self.journal.has_pending(routing_keys)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            # Without PostgreSQL nothing new can be acknowledged either; serve what DynamoDB has.
            logger.warning("journal unreachable; serving from DynamoDB", extra={"table": self.name})
            return False

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
        with tracer.start_as_current_span(f"{self.name}.{operation} shadow-compare") as span:
            span.set_attribute(ATTR_STORE_BACKEND, other_backend.value)
            span.set_attribute(ATTR_MIGRATION_STAGE, self.mode.stage.value)
            try:
                secondary = await asyncio.wait_for(other(), self._settings.shadow_budget_seconds)
                differing = compare(served, secondary)
                # An in-flight write explains a difference; check after reading, so a write landing between
                # the two reads is caught too.
                if differing and await self.journal.has_pending(routing_keys):
                    self.shadow.skipped_pending += 1
                    span.set_attribute("loanbook.shadow.result", "skipped_pending")
                    return
            except Exception as error:  # the comparison must never hurt the request it shadows
                self.shadow.failed += 1
                span.set_attribute("loanbook.shadow.result", "failed")
                logger.info("shadow read failed", extra={"table": self.name, "error": type(error).__name__})
                return
            self.shadow.compared += 1
            if not differing:
                span.set_attribute("loanbook.shadow.result", "match")
                return
            self.shadow.mismatched += 1
            span.set_attribute("loanbook.shadow.result", "mismatch")
            span.set_attribute("loanbook.shadow.fields", differing)
            self.shadow.mismatches.append((item_key, differing))
            await self._record_mismatch(item_key, differing)

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
