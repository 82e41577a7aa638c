"""The verify engine: row-level comparison of PostgreSQL and DynamoDB, optionally repairing.

A full verification is two streams side by side, each reducing every item to (key, digest of its content):
PostgreSQL's rows read in keyset ranges and mapped by the adapters' own item functions, and a parallel segmented
Scan of DynamoDB (items taken as the wire's JSON, see chassis.dynamodb_wire). Both go by COPY into two temporary
tables of one scratch session, and one FULL OUTER JOIN in PostgreSQL names the keys that are missing, extra or
differing; only those are then read again from both stores for the report (and the repair). Nothing of a table is
held in Python, whatever its size. A sampled verification compares whole key ranges at random instead, page by
page against BatchGetItem, and scans a matching fraction of segments for extras. An incremental verification
compares only the keys written since the verification it follows, taken from the key history that every journaled
write leaves (migration.verifications says when a chain of them stands for a full one).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import random
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import asyncpg
import orjson
from botocore.exceptions import ClientError

from chassis.dynamodb_capacity import RETURN_CONSUMED_CAPACITY
from chassis.dynamodb_tables import error_code
from chassis.dynamodb_wire import scan_page
from chassis.errors import FailedPrecondition
from migration.stages import POLICIES
from migration.table_spec import Item, ItemKey, Key, TableSpec
from migration.verifications import chain_head
from toolkit.backfill import SAMPLE_PER_RANGE, NoProgress, Progress, current_stage
from toolkit.collector import bulk_allocation
from toolkit.dynamo_io import (
    RETURN_TOTAL,
    UNPACED,
    Consumed,
    Pacer,
    PaceReport,
    Pacing,
    batch_get,
    batch_write,
    record,
    scanned,
)
from toolkit.leases import VERIFY_UNITS, Leases, holder_name
from toolkit.runs import UnitCounts, VerifyRuns, digest_table, lock_key, split_ranges
from toolkit.telemetry import MeteredProgress, count_differences, traced_job

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

Kind = Literal["missing", "extra", "differing"]
# Differences kept for the report; the counts go on whatever their number.
REPORTED = 1000
# Full verification: pages of (key, digest) waiting for the scratch session's COPY (bounds the memory), and
# suspect keys re-read from both stores at a time.
SCRATCH_QUEUE = 16
SUSPECTS_PER_RECHECK = 500
# Journal keys per page of an incremental verification: one PostgreSQL read and one BatchGetItem round each.
INCREMENTAL_PAGE = 500
# Covered key history dropped per statement after a clean verification (a long delete would hold its locks).
FORGET_PER_STATEMENT = 10_000
Digests = list[tuple[list[str], bytes]]
_Page = tuple[str, Digests, asyncio.Future[None]]  # (digest table, rows for it, set once they are copied in)


# Which units of a shared full verification a worker claims: PostgreSQL key ranges, or DynamoDB Scan segments.
KEY_RANGES = "segment IS NULL"
SCAN_SEGMENTS = "segment IS NOT NULL"


@dataclass
class _Streamed:
    """What a unit streamed: its counts, and each page's copy into the digest table (set once it is in)."""

    counts: UnitCounts = field(default_factory=UnitCounts)
    copies: list[asyncio.Future[None]] = field(default_factory=list)


async def _queue(pages: asyncio.Queue[_Page | None], side: str, digests: Digests) -> asyncio.Future[None]:
    copied: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    await pages.put((side, digests, copied))
    return copied


def _key(value: list[str] | None) -> Key | None:
    return tuple(value) if value is not None else None


@dataclass(frozen=True)
class Difference:
    kind: Kind
    key: ItemKey
    fields: tuple[str, ...] = ()  # differing attributes (names only: values may be personal data)


@dataclass(frozen=True)
class VerifyOptions:
    sample: float = 1.0  # fraction of key ranges (and DynamoDB scan segments) compared; 1.0 is a full verification
    workers: int = 4
    batch_rows: int = 500  # PostgreSQL rows per page of a sampled verification (one BatchGetItem round)
    stream_rows: int = 2000  # PostgreSQL rows per keyset page of a full verification
    ranges_per_worker: int = 8
    # Scan segments in flight per worker in a full verification: a Scan call waits on DynamoDB most of its time
    # (DynamoDB Local scanned about 5k items/s with 1 segment, 10k with 2, about 20k with 16 per table).
    segments_per_worker: int = 4
    # Items per Scan page in a full verification (DynamoDB stops a page at 1 MB anyway): a decoded page is several
    # times its size in Python objects, and every segment has one in flight.
    scan_page_items: int = 1000
    repair: bool = False
    # A difference is re-read from both stores before it counts, for up to this long while a write to its key is in
    # flight (a journal entry not yet copied: PostgreSQL committed, DynamoDB not yet written). Inline copies took up
    # to ~425 ms (p99) under 40 writes/s; a copy the relay retries takes longer, and is still no difference.
    recheck_seconds: float = 5.0
    # DynamoDB calls paced per table (rate limit, backing off when DynamoDB slows down): while the services read
    # DynamoDB, the verification's scans must not starve them. The CLI sets a rate by default; the engine none.
    pacing: Pacing = UNPACED
    # A full verification is shared by every process running it (see _TableVerifier.run_shared): each unit a
    # process works on is leased this long and renewed; a dead process's units are taken over after that.
    lease_seconds: float = 30.0
    restart: bool = False  # abandon the table's unfinished full verification instead of joining it
    # Compare only the keys written since the latest verification (chain_head), from the key history.
    incremental: bool = False
    who: str = "loanbook migrate verify"


@dataclass
class VerifySummary:
    table: str
    full: bool
    sample: float
    rows_checked: int = 0  # PostgreSQL rows compared
    items_checked: int = 0  # DynamoDB items they should be
    items_scanned: int = 0  # DynamoDB items scanned (TTL-expired ones left out)
    missing: int = 0
    extra: int = 0
    differing: int = 0
    repaired: int = 0
    rechecked: int = 0  # keys re-read from both stores because the first comparison differed
    # Keys that still differed with a write in flight (journaled, not yet in DynamoDB) when the recheck gave up:
    # not differences - the relay copies them, and reads of them go to PostgreSQL meanwhile - but not compared.
    in_flight: int = 0
    seconds: float = 0.0
    verification_id: int = 0
    incremental: bool = False
    follows: int | None = None  # the verification an incremental one follows
    keys_checked: int = 0  # an incremental verification's written keys (journal item keys)
    differences: list[Difference] = field(default_factory=list)  # the first REPORTED
    pacing: PaceReport | None = None
    # Capacity units this process's DynamoDB calls consumed (Scans, BatchGetItems, and a repair's writes); the
    # verification's record adds up every process's.
    read_units: float = 0.0
    write_units: float = 0.0

    @property
    def difference_count(self) -> int:
        return self.missing + self.extra + self.differing

    @property
    def clean(self) -> bool:
        return self.difference_count == 0

    @property
    def rows_per_second(self) -> float:
        return self.rows_checked / self.seconds if self.seconds > 0 else 0.0


def digest(item: Item) -> bytes:
    """A 128-bit digest of an item's content, independent of attribute order. The same for an adapter's item and
    for that item as DynamoDB's wire JSON has it: both are the low-level form, S and N values as text (the migrated
    tables have no sets, whose order DynamoDB does not keep, and no binary values)."""
    # orjson, not json: the canonical encoding was a quarter of a full verification's CPU with json (profiled).
    return hashlib.blake2b(orjson.dumps(item, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


def checksum(item: Item) -> str:
    return digest(item).hex()


def differing_fields(expected: Item, actual: Item) -> tuple[str, ...]:
    return tuple(sorted(name for name in expected.keys() | actual.keys() if expected.get(name) != actual.get(name)))


# How often a recheck looks at the journal again while a write to a suspect key is in flight.
RECHECK_POLL_SECONDS = 0.05
# A key's state at a recheck: the digests of what PostgreSQL's row maps to and of DynamoDB's item (None: absent).
_Seen = tuple[bytes | None, bytes | None]


def compare(spec: TableSpec, expected: Sequence[Item], actual: Sequence[Item]) -> list[Difference]:
    """Missing and differing items among `expected` (what PostgreSQL's rows map to) given what DynamoDB returned."""
    found = {spec.item_key(item): item for item in actual}
    differences = []
    for item in expected:
        key = spec.item_key(item)
        stored = found.get(key)
        if stored is None:
            differences.append(Difference("missing", key))
        elif checksum(stored) != checksum(item):
            differences.append(Difference("differing", key, differing_fields(item, stored)))
    return differences


class _TableVerifier:
    def __init__(
        self,
        pool: asyncpg.Pool,
        dynamodb: DynamoDBClient,
        spec: TableSpec,
        table_name: str,
        options: VerifyOptions,
        progress: Progress,
    ) -> None:
        self.pool, self.dynamodb, self.spec, self.table_name = pool, dynamodb, spec, table_name
        self.options, self.progress = options, progress
        self.summary = VerifySummary(
            spec.name,
            full=options.sample >= 1.0 and not options.incremental,
            sample=min(1.0, options.sample),
            incremental=options.incremental,
        )
        self.pacer = Pacer(options.pacing)
        self.consumed = Consumed()

    def _found(self, differences: Sequence[Difference]) -> None:
        for difference in differences:
            count_differences("verify", self.spec.name, difference.kind)
            match difference.kind:
                case "missing":
                    self.summary.missing += 1
                case "extra":
                    self.summary.extra += 1
                case "differing":
                    self.summary.differing += 1
            if len(self.summary.differences) < REPORTED:
                self.summary.differences.append(difference)

    async def _read_both(
        self, keys: Sequence[ItemKey]
    ) -> tuple[list[Difference], dict[ItemKey, _Seen], dict[ItemKey, Item], dict[ItemKey, tuple[str, ...]]]:
        """Reads DynamoDB, then PostgreSQL, for these keys: the differences, each key's state, the extra items as
        seen, and what a journal entry for each key would carry. DynamoDB first: every write reaches PostgreSQL
        first, so a write landing between the two reads shows PostgreSQL ahead, never DynamoDB."""
        actual = await batch_get(
            self.dynamodb,
            self.table_name,
            [self.spec.key_item(key) for key in keys],
            pacer=self.pacer,
            consumed=self.consumed,
        )
        rows = await self.spec.rows_for_items(self.pool, keys, lock=False)
        wanted = set(keys)
        expected: dict[ItemKey, Item] = {}
        row_of: dict[ItemKey, asyncpg.Record] = {}
        for row in rows:
            for item in self.spec.items(row):
                key = self.spec.item_key(item)
                if key in wanted:
                    expected[key], row_of[key] = item, row
        found = {self.spec.item_key(item): item for item in actual}
        differences = compare(self.spec, list(expected.values()), actual)
        extras = {key: item for key, item in found.items() if key not in expected and not self.spec.ignored(item)}
        differences += [Difference("extra", key) for key in extras]
        seen: dict[ItemKey, _Seen] = {
            key: (digest(expected[key]) if key in expected else None, digest(found[key]) if key in found else None)
            for key in keys
        }
        refs = {key: self.spec.journal_refs(key, row_of.get(key)) for key in keys}
        return differences, seen, extras, refs

    async def _in_flight(self, refs: dict[ItemKey, tuple[str, ...]]) -> set[ItemKey]:
        """The keys with a write in flight: a journal entry not yet copied, or a copy still settling."""
        names = sorted({name for names in refs.values() for name in names})
        if not names:
            return set()
        rows = await self.pool.fetch(
            """SELECT item_key, routing_keys FROM migration.journal
               WHERE table_name = $1 AND (item_key = ANY($2::text[]) OR routing_keys && $2::text[])
               UNION ALL
               SELECT NULL, routing_keys FROM migration.journal_settling
               WHERE table_name = $1 AND routing_keys && $2::text[] AND settles_at > now()""",
            self.spec.name,
            names,
        )
        journaled = {name for row in rows for name in (row["item_key"], *row["routing_keys"]) if name}
        return {key for key, names in refs.items() if journaled.intersection(names)}

    async def _confirmed(self, suspects: Sequence[ItemKey]) -> tuple[list[Difference], dict[ItemKey, Item]]:
        """Re-reads both stores for the suspect keys until each difference is confirmed or gone: the differences
        that remain, and the extra items as seen.

        A difference counts once it is seen twice alike with no write to its key in flight between the two reads
        (journal checked after the first): then whatever write made PostgreSQL's state had been copied before the
        second read, which still differs. While a write to the key is in flight the journal is polled until it
        is copied (no fixed pause) and the key read again, for up to `recheck_seconds`; a key still in flight then
        is counted in `in_flight`, never as a difference. A key that kept changing without a write in flight seen
        is reported as it was last seen."""
        deadline = time.monotonic() + self.options.recheck_seconds
        confirmed: list[Difference] = []
        extras: dict[ItemKey, Item] = {}
        clear: dict[ItemKey, _Seen] = {}  # the state a key was in when the journal showed no write in flight
        remaining = list(suspects)
        while remaining:
            differences, seen, found_extras, refs = await self._read_both(remaining)
            in_flight = await self._in_flight({d.key: refs[d.key] for d in differences})
            expired = time.monotonic() >= deadline
            retry: list[Difference] = []
            for difference in differences:
                key = difference.key
                if key in in_flight:
                    clear.pop(key, None)
                    if expired:
                        self.summary.in_flight += 1
                    else:
                        retry.append(difference)
                elif clear.get(key) == seen[key] or expired:
                    confirmed.append(difference)
                    if key in found_extras:
                        extras[key] = found_extras[key]
                else:
                    clear[key] = seen[key]
                    retry.append(difference)
            remaining = [difference.key for difference in retry]
            waiting = {key: refs[key] for key in remaining if key in in_flight}
            while waiting and time.monotonic() < deadline:
                # Read again as soon as one of them is copied (a stuck one does not hold the others back).
                if len(await self._in_flight(waiting)) < len(waiting):
                    break
                await asyncio.sleep(min(RECHECK_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        return confirmed, extras

    async def _repair(self, differences: Sequence[Difference], extras: dict[ItemKey, Item]) -> None:
        """Makes DynamoDB match PostgreSQL (authoritative while it receives writes) for these keys."""
        keys = [d.key for d in differences if d.kind != "extra"]
        if keys:
            # Same rule as the backfill: the rows stay share-locked until DynamoDB holds them, so a live write
            # cannot land a newer version in between that this copy would overwrite.
            async with self.pool.acquire() as connection, connection.transaction():
                rows = await self.spec.rows_for_items(connection, keys, lock=self.spec.lock_rows)
                wanted = set(keys)
                items = [item for row in rows for item in self.spec.items(row) if self.spec.item_key(item) in wanted]
                await batch_write(self.dynamodb, self.table_name, items, consumed=self.consumed)
            self.summary.repaired += len(items)
        for key, item in extras.items():
            try:
                response = await self.dynamodb.delete_item(
                    TableName=self.table_name,
                    Key=self.spec.key_item(key),
                    ReturnConsumedCapacity=RETURN_CONSUMED_CAPACITY,
                    **self.spec.delete_condition(item),
                )
            except ClientError as error:
                if error_code(error) != "ConditionalCheckFailedException":
                    raise
                continue  # changed since it was seen: the next verify looks again
            record("DeleteItem", response, self.consumed)
            self.summary.repaired += 1

    async def _settle(self, suspects: Sequence[ItemKey]) -> None:
        if not suspects:
            return
        self.summary.rechecked += len(suspects)
        differences, extras = await self._confirmed(suspects)
        self._found(differences)
        if differences and self.options.repair:
            await self._repair(differences, extras)

    async def check_range(self, lower: Key | None, upper: Key | None) -> None:
        after = lower
        while True:
            rows = await self.spec.read_page(self.pool, after, upper, self.options.batch_rows)
            if not rows:
                return
            expected = [item for row in rows for item in self.spec.items(row)]
            keys = [self.spec.key_item(self.spec.item_key(item)) for item in expected]
            actual = await batch_get(self.dynamodb, self.table_name, keys, pacer=self.pacer, consumed=self.consumed)
            await self._settle([d.key for d in compare(self.spec, expected, actual)])
            self.summary.rows_checked += len(rows)
            self.summary.items_checked += len(expected)
            self.progress.advance(self.spec.name, len(rows))
            if len(rows) < self.options.batch_rows:
                return
            after = self.spec.key_of(rows[-1])

    async def scan_segment(self, segment: int, segments: int) -> None:
        """Items of one scan segment that no PostgreSQL row maps to (extras); keys only, page by page."""
        attributes = (*self.spec.key_attributes, *self.spec.scan_attributes)
        names = {f"#a{i}": attribute for i, attribute in enumerate(attributes)}
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "Segment": segment,
            "TotalSegments": segments,
            "ConsistentRead": True,
            "ProjectionExpression": ", ".join(names),
            "ExpressionAttributeNames": names,
            "Limit": self.options.scan_page_items,
            "ReturnConsumedCapacity": RETURN_TOTAL,
        }
        while True:
            call = functools.partial(self.dynamodb.scan, **request)
            response = await self.pacer.call(self.options.scan_page_items, call, scanned)
            record("Scan", response, self.consumed)
            seen = [item for item in response.get("Items", []) if not self.spec.ignored(item)]
            self.summary.items_scanned += len(seen)
            if seen:
                keys = [self.spec.item_key(item) for item in seen]
                rows = await self.spec.rows_for_items(self.pool, keys, lock=False)
                known = {self.spec.item_key(item) for row in rows for item in self.spec.items(row)}
                await self._settle([key for key in keys if key not in known])
            start = response.get("LastEvaluatedKey")
            if not start:
                return
            request["ExclusiveStartKey"] = start

    # --- full verification: two digest streams compared in SQL ------------------------------------------------

    async def digest_range(self, lower: Key | None, upper: Key | None, pages: asyncio.Queue[_Page | None]) -> _Streamed:
        """(key, digest) of every item the rows of one key range map to, page by page; the copies of its pages."""
        after, size, streamed = lower, self.options.stream_rows, _Streamed()
        counts = streamed.counts
        while True:
            rows = await self.spec.read_page(self.pool, after, upper, size)
            if not rows:
                return streamed
            digests: Digests = [
                (list(self.spec.item_key(item)), digest(item)) for row in rows for item in self.spec.items(row)
            ]
            streamed.copies.append(await _queue(pages, "postgres", digests))
            counts.rows_checked += len(rows)
            counts.items_checked += len(digests)
            self.progress.advance(self.spec.name, len(rows))
            if len(rows) < size:
                return streamed
            after = self.spec.key_of(rows[-1])

    async def digest_segment(self, segment: int, segments: int, pages: asyncio.Queue[_Page | None]) -> _Streamed:
        """(key, digest) of every item of one Scan segment, TTL-expired items left out; the copies of its pages."""
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "Segment": segment,
            "TotalSegments": segments,
            "ConsistentRead": True,
            "Limit": self.options.scan_page_items,
            "ReturnConsumedCapacity": RETURN_TOTAL,
        }
        streamed = _Streamed()
        while True:
            call = functools.partial(scan_page, self.dynamodb, dict(request))  # type: ignore[arg-type]
            response = await self.pacer.call(self.options.scan_page_items, call, scanned)
            record("Scan", response, self.consumed)
            digests: Digests = [
                (list(self.spec.item_key(item)), digest(item))
                for item in response.get("Items", [])
                if not self.spec.ignored(item)
            ]
            start = response.get("LastEvaluatedKey")
            del response  # the decoded items are not kept while waiting for the queue
            streamed.counts.items_scanned += len(digests)
            if digests:
                streamed.copies.append(await _queue(pages, "dynamo", digests))
            if not start:
                return streamed
            request["ExclusiveStartKey"] = start

    # --- full verification: shared by every process running it ------------------------------------------------

    async def run_shared(self, started_at: datetime) -> None:
        """A full verification, split over every process verifying this table at the same time.

        The run's units (key ranges of PostgreSQL, Scan segments of DynamoDB) are leased from one queue in
        PostgreSQL (toolkit.leases); each process streams the digests of the units it holds into the run's two
        digest tables by COPY, and marks a unit done once its digests are in. When every unit is done, one process
        (the first to take the run's advisory lock; another if it dies) joins the two tables, re-checks the
        suspects, and records the verification; the others report what it recorded."""
        runs = VerifyRuns(self.pool)
        run_id = await runs.join_or_plan(
            self.spec.name,
            self.options.who,
            restart=self.options.restart,
            repair=self.options.repair,
            rows_total=lambda: self.spec.count(self.pool),
            units=self._plan_units,
        )
        holder = holder_name()
        pages: asyncio.Queue[_Page | None] = asyncio.Queue(maxsize=SCRATCH_QUEUE)

        async def load(scratch: asyncpg.pool.PoolConnectionProxy) -> None:
            while (page := await pages.get()) is not None:
                side, digests, copied = page
                await scratch.copy_records_to_table(
                    digest_table(run_id, side), schema_name="migration", records=digests, columns=("key", "digest")
                )
                copied.set_result(None)

        async def unit_work(leases: Leases, unit: asyncpg.Record) -> None:
            if unit["segment"] is None:
                streamed = await self.digest_range(_key(unit["lower_key"]), _key(unit["upper_key"]), pages)
            else:
                streamed = await self.digest_segment(unit["segment"], unit["total_segments"], pages)
            await asyncio.gather(*streamed.copies)  # done only once its digests are in the table
            await runs.unit_done(leases, unit["unit_no"], streamed.counts)

        async def worker(only: str) -> None:
            leases = Leases(self.pool, VERIFY_UNITS, run_id, holder, self.options.lease_seconds, only=only)
            while (unit := await leases.next()) is not None:
                await leases.hold_while(unit["unit_no"], unit_work(leases, unit))

        async with self.pool.acquire() as scratch, asyncio.TaskGroup() as group:
            loader = group.create_task(load(scratch))
            # As many key ranges read at a time as workers, and segments_per_worker Scan segments per worker.
            async with asyncio.TaskGroup() as streams:
                for _ in range(self.options.workers):
                    streams.create_task(worker(KEY_RANGES))
                for _ in range(self.options.workers * self.options.segments_per_worker):
                    streams.create_task(worker(SCAN_SEGMENTS))
            await pages.put(None)
            await loader
        await self._compare_once(runs, run_id, started_at)

    async def _plan_units(self) -> list[tuple[Key | None, Key | None, int | None, int | None]]:
        """Key ranges of about equal size, and as many Scan segments as this process scans at a time."""
        ranges = await self._ranges(await self.spec.count(self.pool))
        segments = max(1, self.options.workers * self.options.segments_per_worker)
        units: list[tuple[Key | None, Key | None, int | None, int | None]] = [(lo, up, None, None) for lo, up in ranges]
        units += [(None, None, segment, segments) for segment in range(segments)]
        return units

    async def _ranges(self, total: int) -> list[tuple[Key | None, Key | None]]:
        count = max(1, self.options.workers * self.options.ranges_per_worker)
        sampled = await self.spec.sample_keys(self.pool, min(1.0, SAMPLE_PER_RANGE * count / total)) if total else []
        return split_ranges(sampled, count)

    async def _compare_once(self, runs: VerifyRuns, run_id: int, started_at: datetime) -> None:
        async with self.pool.acquire() as connection:
            # Session-level: if the comparing process dies, its lock goes and the next one waiting compares.
            await connection.execute("SELECT pg_advisory_lock($1)", lock_key("verify-run", str(run_id)))
            try:
                run = await runs.get(run_id)
                totals = await runs.totals(run_id)
                self.summary.rows_checked, self.summary.items_checked = totals.rows_checked, totals.items_checked
                self.summary.items_scanned = totals.items_scanned
                if run["status"] == "running":
                    await self._join_digests(connection, run_id)
                    covers = run["covers_text"]
                    self.summary.verification_id = await self._record(run["started_at"], covers)
                    await runs.finish(connection, run_id, self.summary.verification_id)
                    if self.summary.clean and covers is not None:
                        await self._forget_covered(covers)
                    return
            finally:
                await connection.execute("SELECT pg_advisory_unlock($1)", lock_key("verify-run", str(run_id)))
        # Another process compared: its verdict is this one's, and this process's capacity adds to its record.
        recorded = await self.pool.fetchrow(
            """UPDATE migration.verifications
               SET consumed_read_units = consumed_read_units + $2, consumed_write_units = consumed_write_units + $3
               WHERE id = $1 RETURNING *""",
            run["verification_id"],
            self.consumed.read,
            self.consumed.write,
        )
        assert recorded is not None
        self.summary.verification_id = recorded["id"]
        self.summary.missing, self.summary.extra = recorded["missing"], recorded["extra"]
        self.summary.differing, self.summary.repaired = recorded["differing"], recorded["repaired"]

    async def _join_digests(self, connection: asyncpg.pool.PoolConnectionProxy, run_id: int) -> None:
        postgres, dynamo = (f"migration.{digest_table(run_id, side)}" for side in ("postgres", "dynamo"))
        async with connection.transaction():
            await connection.execute(f"ANALYZE {postgres}; ANALYZE {dynamo}; SET LOCAL work_mem = '64MB'")
            suspects: list[ItemKey] = []
            # A unit taken over from a dead process may have some of its digests twice: equal duplicates match,
            # and anything else is only a suspect, re-read from both stores before it counts.
            async for record in connection.cursor(
                f"""SELECT DISTINCT coalesce(p.key, d.key)
                    FROM {postgres} p FULL JOIN {dynamo} d ON p.key = d.key
                    WHERE p.digest IS DISTINCT FROM d.digest""",  # noqa: S608 - names built from the run's id
                prefetch=SUSPECTS_PER_RECHECK,
            ):
                suspects.append(tuple(record[0]))
                if len(suspects) == SUSPECTS_PER_RECHECK:
                    await self._settle(suspects)
                    suspects = []
            await self._settle(suspects)

    async def run(self) -> VerifySummary:
        started_at, started = datetime.now(UTC), time.monotonic()
        stage = await current_stage(self.pool, self.spec.name)
        if self.options.repair and not POLICIES[stage].writes_postgres:
            raise FailedPrecondition(
                f"{self.spec.name}: in {stage.value} PostgreSQL no longer receives writes, so it is not the authority "
                "to repair DynamoDB from; verify without --repair"
            )
        if self.options.incremental:
            await self.run_incremental(started_at)
            return self._finished(started)
        total = await self.spec.count(self.pool)
        self.progress.start(self.spec.name, round(total * self.summary.sample), 0)
        if self.summary.full:
            await self.run_shared(started_at)
            return self._finished(started)
        ranges = await self._ranges(total)
        # Fewer scan segments than ranges: each segment is a Scan of its own, and a few per worker keep them busy.
        segment_count = max(1, 2 * self.options.workers)
        segments = list(range(segment_count))
        # Whole key ranges (and scan segments) at random: each is compared in full, both ways.
        ranges = random.sample(ranges, max(1, round(len(ranges) * self.summary.sample)))
        segments = random.sample(segments, max(1, round(segment_count * self.summary.sample)))
        await self._compare_sampled(ranges, segments, segment_count)
        self.summary.verification_id = await self._record(started_at)
        return self._finished(started)

    async def _compare_sampled(
        self, ranges: Sequence[tuple[Key | None, Key | None]], segments: Sequence[int], segment_count: int
    ) -> None:
        work: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        for lower, upper in ranges:
            work.put_nowait(functools.partial(self.check_range, lower, upper))
        for segment in segments:
            work.put_nowait(functools.partial(self.scan_segment, segment, segment_count))

        async def worker() -> None:
            while not work.empty():
                await work.get_nowait()()

        async with asyncio.TaskGroup() as group:
            for _ in range(self.options.workers):
                group.create_task(worker())

    def _finished(self, started: float) -> VerifySummary:
        self.summary.seconds = time.monotonic() - started
        self.summary.pacing = self.pacer.report()
        self.summary.read_units, self.summary.write_units = self.consumed.read, self.consumed.write
        return self.summary

    async def _record(self, started_at: datetime, covers: str | None = None) -> int:
        """What require_clean_full_verification and the other guards read (migration.verifications).
        `covers`: the snapshot every write it vouches for is visible in (a sampled verification has none)."""
        s = self.summary
        verification_id: int = await self.pool.fetchval(
            """INSERT INTO migration.verifications (table_name, full_scan, clean, rows_checked, differences,
                   started_at, sample_fraction, missing, extra, differing, repaired, consumed_read_units,
                   consumed_write_units, incremental, follows, covers)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16::text::pg_snapshot)
               RETURNING id""",
            s.table,
            s.full,
            s.clean,
            s.rows_checked,
            s.difference_count,
            started_at,
            s.sample,
            s.missing,
            s.extra,
            s.differing,
            s.repaired,
            # This process's calls so far (all of them: it records last); others add theirs (_compare_once).
            self.consumed.read,
            self.consumed.write,
            s.incremental,
            s.follows,
            covers,
        )
        return verification_id

    async def _forget_covered(self, covers: str) -> None:
        """A clean verification's key history is no longer needed: the next incremental one starts after it."""
        while True:
            result: str = await self.pool.execute(
                """DELETE FROM migration.key_history WHERE ctid IN (
                       SELECT ctid FROM migration.key_history
                       WHERE table_name = $1 AND pg_visible_in_snapshot(xid, $2::text::pg_snapshot) LIMIT $3)""",
                self.spec.name,
                covers,
                FORGET_PER_STATEMENT,
            )
            if int(result.rsplit(" ", 1)[-1]) < FORGET_PER_STATEMENT:
                return

    # --- incremental verification: the keys written since the latest verification -----------------------------

    async def run_incremental(self, started_at: datetime) -> None:
        """Compares only the keys written since the verification it follows (chain_head): each key's rows read from
        PostgreSQL and their items from DynamoDB, page by page, a difference re-read from both stores before it
        counts as in any verification. The keys come from the key history in one repeatable-read transaction; its
        snapshot is what this verification covers, and the next one starts after it."""
        lock = lock_key("verify-incremental", self.spec.name)
        async with self.pool.acquire() as connection:
            # One at a time per table: each follows the one before, and drops the key history it covered.
            await connection.execute("SELECT pg_advisory_lock($1)", lock)
            try:
                head = await chain_head(connection, self.spec.name)
                self.summary.follows = head["id"]
                async with connection.transaction(isolation="repeatable_read", readonly=True):
                    covers: str = await connection.fetchval("SELECT pg_current_snapshot()::text")
                    written = """FROM migration.key_history
                                 WHERE table_name = $1 AND NOT pg_visible_in_snapshot(
                                     xid, (SELECT covers FROM migration.verifications WHERE id = $2))"""
                    keys = await connection.fetchval(
                        f"SELECT count(DISTINCT item_key) {written}", self.spec.name, head["id"]
                    )
                    self.progress.start(self.spec.name, keys, 0)
                    await self._check_written(
                        connection.cursor(
                            f"SELECT DISTINCT item_key {written}",
                            self.spec.name,
                            head["id"],
                            prefetch=INCREMENTAL_PAGE,
                        )
                    )
                self.summary.verification_id = await self._record(started_at, covers)
                if self.summary.clean:
                    await self._forget_covered(covers)
            finally:
                await connection.execute("SELECT pg_advisory_unlock($1)", lock)

    async def _check_written(self, written: AsyncIterable[asyncpg.Record]) -> None:
        pages: asyncio.Queue[list[str] | None] = asyncio.Queue(maxsize=2 * self.options.workers)

        async def worker() -> None:
            while (page := await pages.get()) is not None:
                await self._check_journal_keys(page)

        async with asyncio.TaskGroup() as group:
            for _ in range(self.options.workers):
                group.create_task(worker())
            page: list[str] = []
            async for record in written:
                page.append(record[0])
                if len(page) == INCREMENTAL_PAGE:
                    await pages.put(page)
                    page = []
            if page:
                await pages.put(page)
            for _ in range(self.options.workers):
                await pages.put(None)

    async def _check_journal_keys(self, journal_keys: Sequence[str]) -> None:
        rows = await self.spec.rows_for_journal_keys(self.pool, journal_keys)
        expected = [item for row in rows for item in self.spec.items(row)]
        if expected:
            keys = [self.spec.key_item(self.spec.item_key(item)) for item in expected]
            actual = await batch_get(self.dynamodb, self.table_name, keys, pacer=self.pacer, consumed=self.consumed)
            await self._settle([d.key for d in compare(self.spec, expected, actual)])
        self.summary.keys_checked += len(journal_keys)
        self.summary.rows_checked += len(rows)
        self.summary.items_checked += len(expected)
        self.progress.advance(self.spec.name, len(journal_keys))


async def run_verify(
    pool: asyncpg.Pool,
    dynamodb: DynamoDBClient,
    specs: Sequence[TableSpec],
    table_names: Callable[[str], str],
    options: VerifyOptions | None = None,
    progress: Progress | None = None,
) -> list[VerifySummary]:
    """Compares each table's PostgreSQL rows with its DynamoDB items, tables side by side, and records each result
    in migration.verifications. A verification that repaired anything is still recorded as not clean: run it again
    to record a clean one."""
    options = options or VerifyOptions()
    sink = MeteredProgress("verify", progress or NoProgress(), outcome="checked")

    async def verify_traced(spec: TableSpec) -> VerifySummary:
        with traced_job("verify", spec.name):
            return await _TableVerifier(pool, dynamodb, spec, table_names(spec.name), options, sink).run()

    if options.incremental:
        for spec in specs:  # refused before any table is read (and as itself, not inside a task group)
            await chain_head(pool, spec.name)
    with bulk_allocation():
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(verify_traced(spec)) for spec in specs]
    return [task.result() for task in tasks]
