"""The model's inputs: from a scenario file, or from the live system (PostgreSQL rows and sizes, a bounded sample of
DynamoDB items or of the adapters' items for sampled rows, and the request mix from Prometheus or options)."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import httpx
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chassis.dynamodb_tables import TableDesign
from migration.table_spec import TableSpec
from services.logging.adapters.dynamodb import BY_TRACE, LOG_TABLE, LogTableLayout
from services.payment.adapters.dynamodb import (
    BY_CUSTOMER,
    BY_LOAN,
    MARKER_PREFIX,
    PAYMENT_TABLE,
    marker_item,
    payment_item,
)
from toolkit.cost.capacity import query_read_units, read_units, write_units
from toolkit.cost.model import Backfill, Capacity, Index, Operation, Postgres, TableWorkload, Workload
from toolkit.cost.prices import validation_problems
from toolkit.cost.sizes import item_size, projected
from toolkit.seeding import IdSource, log_entries, synthetic_loans
from toolkit.seeding import payments as seeding_payments

if TYPE_CHECKING:
    import asyncpg
    from types_aiobotocore_dynamodb import DynamoDBClient

    Item = Mapping[str, Mapping[str, Any]]

SCENARIO_SCHEMA_VERSION: Final = 1
DESIGNS: Final[dict[str, TableDesign]] = {"payments": PAYMENT_TABLE, "logs": LOG_TABLE}
# The PostgreSQL column that says when a row was written: growth per day is counted from it.
WRITTEN_AT: Final = {"payments": "created_at", "logs": "time"}
# The attributes the reads of each index turn into answers (payment_from_item, log_entry): what a narrowed
# projection would have to keep besides the keys.
READ_ATTRIBUTES: Final = {
    "payments": (
        "customer_id", "loan_id", "amount_minor", "currency", "method", "status", "paid_at", "created_at",
        "updated_at", "version", "idempotency_key", "request_fingerprint",
    ),
    "logs": ("level", "message", "attributes", "span_id"),
}  # fmt: skip
# Operations as the hybrid stores name them (db.operation.name), per table.
OPERATIONS: Final = {
    "payments": ("create", "update", "get", "get_by_idempotency_key", "list_for_customer", "list_for_loan"),
    "logs": ("write", "query", "trace"),
}
# Operation names the store histogram carries that cost what another operation costs.
SAME_AS: Final = {
    "put_if_newer": "create",
    "get.for_write": "get",
    "get_by_idempotency_key.for_write": "get_by_idempotency_key",
}


class InputError(ValueError):
    """Bad or missing input; `option` names the option or file field it concerns."""

    def __init__(self, option: str, reason: str) -> None:
        super().__init__(f"{option}: {reason}")
        self.option = option
        self.reason = reason


# --- scenario files ----------------------------------------------------------------------------------------------


class Scenario(BaseModel):
    """A workload file: `loanbook cost --scenario FILE` runs the model on it with no live system."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int
    name: str
    region: str = "us-east-1"
    assumptions: tuple[str, ...] = Field(min_length=1, description="every assumption the figures rest on")
    claim: dict[str, Any] = Field(default_factory=dict, description="what a source claims, to set beside the answer")
    workload: Workload


def load_scenario(path: Path) -> Scenario:
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise InputError("--scenario", f"{path} cannot be read ({error.strerror or type(error).__name__})") from None
    except json.JSONDecodeError as error:
        raise InputError("--scenario", f"{path} is not JSON (line {error.lineno}: {error.msg})") from None
    if isinstance(data, dict) and data.get("schema_version") != SCENARIO_SCHEMA_VERSION:
        raise InputError("--scenario", f"{path}: schema_version must be {SCENARIO_SCHEMA_VERSION}")
    try:
        return Scenario.model_validate(data)
    except ValidationError as error:
        raise InputError("--scenario", f"{path}: {validation_problems(error)}") from None


# --- item shapes -------------------------------------------------------------------------------------------------


def item_kind(table: str, item: Item) -> str:
    if table == "payments":
        return "marker" if item["pk"].get("S", "").startswith(MARKER_PREFIX) else "payment"
    return "entry"


@dataclass(frozen=True)
class ItemShape:
    """Average sizes from a sample of one table's items: per kind of item, and per index entry (as projected now,
    and narrowed to what the index's reads use)."""

    table: str
    sampled: int
    source: str  # "dynamodb" (items read back) or "postgresql" (the adapters' items for sampled rows)
    count_by_kind: dict[str, int]
    bytes_by_kind: dict[str, float]
    index_bytes: dict[str, float]
    narrowed_bytes: dict[str, float]
    entries_per_item: dict[str, float]

    @property
    def item_bytes(self) -> float:
        total = sum(self.count_by_kind.values())
        return sum(self.bytes_by_kind[kind] * count for kind, count in self.count_by_kind.items()) / total

    @property
    def items_per_row(self) -> float:
        """Items one PostgreSQL row becomes (a payment: its item and its idempotency marker)."""
        return 2.0 if self.table == "payments" else 1.0  # a sample may hold only one of the two kinds

    def kind_bytes(self, kind: str) -> float:
        return self.bytes_by_kind.get(kind, self.item_bytes)


def item_shape(table: str, items: Sequence[Item], source: str) -> ItemShape:
    if not items:
        raise InputError(table, "no items to size (the table holds no rows in PostgreSQL and no items in DynamoDB)")
    design = DESIGNS[table]
    table_key = [name for name in (design.partition_key, design.sort_key) if name]
    sizes: dict[str, list[int]] = {}
    for item in items:
        sizes.setdefault(item_kind(table, item), []).append(item_size(item))
    index_bytes: dict[str, float] = {}
    narrowed: dict[str, float] = {}
    share: dict[str, float] = {}
    for index in design.indexes:
        index_key = [name for name in (index.partition_key, index.sort_key) if name]
        entries = [projected(item, table_key, index_key, "ALL") for item in items]
        narrow = [projected(item, table_key, index_key, READ_ATTRIBUTES[table]) for item in items]
        present = [item_size(entry) for entry in entries if entry is not None]
        share[index.name] = len(present) / len(items)
        index_bytes[index.name] = sum(present) / len(present) if present else 1.0
        narrow_sizes = [item_size(entry) for entry in narrow if entry is not None]
        narrowed[index.name] = sum(narrow_sizes) / len(narrow_sizes) if narrow_sizes else 1.0
    return ItemShape(
        table,
        len(items),
        source,
        {kind: len(values) for kind, values in sizes.items()},
        {kind: sum(values) / len(values) for kind, values in sizes.items()},
        index_bytes,
        narrowed,
        share,
    )


# --- units per call of the project's own calls --------------------------------------------------------------------
# One function per table, the narrow interface the capacity helper's operations module replaces at merge.


@dataclass(frozen=True)
class CallShape:
    """What a call's size depends on besides its items: page sizes, batch size, shard count."""

    history_page: int = 50  # chassis.page_tokens.DEFAULT_PAGE_SIZE
    log_batch: float = 100.0
    log_query_page: int = 50
    log_shards: int = 8
    entries_per_trace: float = 10.0


def _units(size: float, **options: Any) -> int:
    return write_units(math.ceil(size), **options)


def payment_operations(mix: Mapping[str, float], shape: ItemShape, calls: CallShape) -> tuple[Operation, ...]:
    payment, marker = shape.kind_bytes("payment"), shape.kind_bytes("marker")
    both = {BY_CUSTOMER: 1.0, BY_LOAN: 1.0}
    return (
        # RecordPayment: one TransactWriteItems putting the payment and its marker (transactional: twice the units).
        Operation(
            name="create",
            calls_per_day=mix.get("create", 0),
            write_units=_units(payment, transactional=True) + _units(marker, transactional=True),
            index_entries_written=both,
        ),
        # A status change (e.g. ReversePayment): a conditional PutItem of the payment; its index entries rewritten.
        Operation(
            name="update", calls_per_day=mix.get("update", 0), write_units=_units(payment), index_entries_written=both
        ),
        Operation(
            name="get", calls_per_day=mix.get("get", 0), read_units=read_units(math.ceil(payment), consistency="strong")
        ),
        Operation(
            name="get_by_idempotency_key",
            calls_per_day=mix.get("get_by_idempotency_key", 0),
            read_units=read_units(math.ceil(marker), consistency="strong")
            + read_units(math.ceil(payment), consistency="strong"),
        ),
        Operation(
            name="list_for_customer",
            calls_per_day=mix.get("list_for_customer", 0),
            index_entries_read={BY_CUSTOMER: calls.history_page},
        ),
        Operation(
            name="list_for_loan",
            calls_per_day=mix.get("list_for_loan", 0),
            index_entries_read={BY_LOAN: calls.history_page},
        ),
    )


def log_operations(mix: Mapping[str, float], shape: ItemShape, calls: CallShape) -> tuple[Operation, ...]:
    entry = shape.kind_bytes("entry")
    per_shard = math.ceil(calls.log_query_page / calls.log_shards * entry)
    return (
        # A batch: BatchWriteItem puts, each entry rounded on its own; entries with a trace also go to by_trace.
        Operation(
            name="write",
            calls_per_day=mix.get("write", 0),
            write_units=calls.log_batch * _units(entry),
            index_entries_written={BY_TRACE: calls.log_batch * shape.entries_per_item.get(BY_TRACE, 0)},
        ),
        # A page of a service's hour: one strongly consistent Query per shard, each at least one unit.
        Operation(
            name="query",
            calls_per_day=mix.get("query", 0),
            read_units=calls.log_shards * query_read_units([per_shard], consistency="strong"),
        ),
        Operation(
            name="trace", calls_per_day=mix.get("trace", 0), index_entries_read={BY_TRACE: calls.entries_per_trace}
        ),
    )


OPERATION_UNITS: Final[dict[str, Callable[[Mapping[str, float], ItemShape, CallShape], tuple[Operation, ...]]]] = {
    "payments": payment_operations,
    "logs": log_operations,
}


def backfill_per_row(shape: ItemShape) -> tuple[float, float]:
    """Write units to copy one row (BatchWriteItem of its items, and their index entries) and read units to verify
    it (a strongly consistent BatchGetItem of its items, and its share of the eventually consistent extras Scan)."""
    kinds = ("payment", "marker") if shape.table == "payments" else ("entry",)
    writes = sum(_units(shape.kind_bytes(kind)) for kind in kinds) * shape.items_per_row / len(kinds)
    writes += shape.items_per_row * sum(
        shape.entries_per_item[name] * _units(shape.index_bytes[name]) for name in shape.index_bytes
    )
    reads = shape.items_per_row * (1.0 + shape.item_bytes / 4096 / 2)
    return writes, reads


def table_workload(
    table: str,
    *,
    rows: int,
    rows_per_day: float,
    shape: ItemShape,
    mix: Mapping[str, float],
    calls: CallShape,
    ttl_days: float | None,
    pitr: bool,
    backups_retained: int,
    streams: bool,
) -> TableWorkload:
    write_per_row, verify_per_row = backfill_per_row(shape)
    design = DESIGNS[table]
    narrowed_projection = "INCLUDE " + ", ".join(READ_ATTRIBUTES[table])
    return TableWorkload(
        name=table,
        items=round(rows * shape.items_per_row),
        item_bytes=shape.item_bytes,
        items_per_day=rows_per_day * shape.items_per_row,
        ttl_days=ttl_days,
        indexes=tuple(
            Index(
                name=index.name,
                entry_bytes=shape.index_bytes[index.name],
                entries_per_item=shape.entries_per_item[index.name],
                narrowed_bytes=shape.narrowed_bytes[index.name],
                narrowed_projection=narrowed_projection,
            )
            for index in design.indexes
        ),
        operations=OPERATION_UNITS[table](mix, shape, calls),
        pitr=pitr,
        backups_retained=backups_retained,
        streams=streams,
        backfill=Backfill(rows=rows, write_units_per_row=write_per_row, verify_read_units_per_row=verify_per_row),
    )


# --- the live system ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostgresFacts:
    table: str
    rows: int
    rows_per_day: float
    updates_per_day: float
    table_bytes: int
    index_bytes: int
    entries_per_batch: float | None = None


async def postgres_facts(pool: asyncpg.Pool, spec: TableSpec, window: timedelta) -> PostgresFacts:
    """Rows, growth per day from the rows' own timestamps over `window` (or since the oldest row, if younger), and
    the table's on-disk size with its partitions and indexes (pg_partition_tree lists no plain table: the table
    itself is added; a partitioned parent's own size is 0, so nothing counts twice)."""
    column = WRITTEN_AT[spec.name]
    now = datetime.now(UTC)
    rows = await spec.count(pool)
    # Fixed identifiers from WRITTEN_AT and the spec; the times are bind parameters.
    recent = await pool.fetchrow(
        f"SELECT count(*) AS n, min({column}) AS oldest FROM {spec.source} WHERE {column} >= $1",  # noqa: S608
        now - window,
    )
    assert recent is not None  # an aggregate always returns one row
    span = window
    if recent["oldest"] is not None:
        span = min(window, max(now - recent["oldest"], timedelta(hours=1)))
    per_day = recent["n"] / (span / timedelta(days=1))
    updates = 0.0
    batch: float | None = None
    if spec.name == "payments":
        changed = await pool.fetchval(
            "SELECT count(*) FROM payment.payments WHERE version > 1 AND updated_at >= $1", now - window
        )
        updates = changed / (span / timedelta(days=1))
    if spec.name == "logs":
        batch = await pool.fetchval(
            "SELECT count(*)::float8 / greatest(count(DISTINCT batch_id), 1) FROM logging.entries WHERE time >= $1",
            now - window,
        )
    sizes = await pool.fetchrow(
        """SELECT coalesce(sum(pg_table_size(relid)), 0) AS data, coalesce(sum(pg_indexes_size(relid)), 0) AS indexes
           FROM (SELECT $1::text::regclass AS relid
                 UNION SELECT relid FROM pg_partition_tree($1::text::regclass)) AS r""",
        spec.source,
    )
    assert sizes is not None
    return PostgresFacts(spec.name, rows, per_day, updates, int(sizes["data"]), int(sizes["indexes"]), batch)


async def sample_dynamodb(client: DynamoDBClient, table_name: str, limit: int) -> list[Item]:
    """Up to `limit` items from one Scan page (never the whole table); none if the table is absent or empty."""
    try:
        response = await client.scan(TableName=table_name, Limit=limit)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return []
        raise
    return list(response.get("Items", []))


async def sample_rows(pool: asyncpg.Pool, spec: TableSpec, rows: int, limit: int) -> list[Item]:
    """The adapters' items for a bounded sample of rows: random keys (TABLESAMPLE), a few rows after each."""
    if rows == 0:
        return []
    run = 5
    fraction = min(1.0, 2 * limit / run / rows)
    keys = await spec.sample_keys(pool, fraction)
    starts: list[Any] = [None] if not keys else keys[:: max(1, len(keys) // max(1, limit // run))][: limit // run]
    items: list[Item] = []
    for start in starts:
        for row in await spec.read_page(pool, start, None, run):
            items.extend(spec.items(row))
    return items


class PrometheusUnavailable(RuntimeError):
    """Prometheus could not be asked; the message says why without echoing the URL."""


async def request_mix_from_prometheus(
    prometheus_url: str, window: str = "1d", timeout: float = 5.0
) -> dict[str, dict[str, float]]:
    """Calls per day per table and operation, from the store call histogram's count over `window`. A call served by
    both stores (dual writes) is counted once: the busier backend's count; shadow reads are left out."""
    query = (
        "sum by (db_collection_name, db_operation_name, loanbook_store_backend) "
        f'(rate(db_client_operation_duration_seconds_count{{loanbook_route_reason!="shadow"}}[{window}]))'
    )
    try:
        async with httpx.AsyncClient(base_url=prometheus_url, timeout=timeout) as client:
            response = await client.get("/api/v1/query", params={"query": query})
            response.raise_for_status()
            series = response.json()["data"]["result"]
    except (httpx.HTTPError, ValueError, KeyError) as error:
        raise PrometheusUnavailable(f"Prometheus could not be queried ({type(error).__name__})") from None
    mix: dict[str, dict[str, float]] = {}
    for one in series:
        table = one["metric"].get("db_collection_name", "")
        operation = one["metric"].get("db_operation_name", "")
        operation = SAME_AS.get(operation, operation)
        if table not in OPERATIONS or operation not in OPERATIONS[table]:
            continue  # copies (".copy") and the relay's calls repeat writes already counted
        per_day = float(one["value"][1]) * 86_400
        mix.setdefault(table, {})
        mix[table][operation] = max(mix[table].get(operation, 0.0), per_day)
    return mix


@dataclass
class LiveOptions:
    """What the command's options add to the live measurements (None: measure it, or leave it at 0)."""

    tables: list[str]
    window: timedelta = timedelta(days=30)
    sample: int = 200
    given_mix: dict[str, dict[str, float]] = field(default_factory=dict)
    log_entries_per_day: float | None = None
    calls: CallShape = CallShape()
    log_retention_days: float = 30
    pitr: tuple[str, ...] = ("payments",)
    backups_retained: dict[str, int] = field(default_factory=dict)
    streams: tuple[str, ...] = ()


@dataclass(frozen=True)
class LiveFacts:
    postgres: list[PostgresFacts]
    shapes: list[ItemShape]
    mix: dict[str, dict[str, float]]
    notes: list[str]


def _merge_mix(
    table: str, facts: PostgresFacts, measured: Mapping[str, float], options: LiveOptions, calls: CallShape
) -> tuple[dict[str, float], list[str]]:
    """The request mix: given options first, then Prometheus, then what PostgreSQL's rows say about writes."""
    notes = []
    mix = dict(measured)
    if table == "payments":
        mix.setdefault("create", facts.rows_per_day)
        mix.setdefault("update", facts.updates_per_day)
    else:
        entries = options.log_entries_per_day if options.log_entries_per_day is not None else facts.rows_per_day
        if entries or "write" not in mix:
            # BatchWriteItem is charged per entry, so the entries arriving a day (the option, or PostgreSQL's rows)
            # decide; Prometheus counts batches, whose size need not be the rows' batch size used here.
            mix["write"] = entries / calls.log_batch
    mix.update(options.given_mix.get(table, {}))
    missing = [name for name in OPERATIONS[table] if name not in mix]
    if missing:
        notes.append(f"{table}: no rate for {', '.join(missing)} (no Prometheus series, no option): counted as 0")
    return {name: mix.get(name, 0.0) for name in OPERATIONS[table]}, notes


def synthetic_items(table: str, count: int) -> list[Item]:
    """Items of `count` records as `loanbook seed` would make them (fixed seed: the same sizes every run)."""
    rng = random.Random(7)  # noqa: S311 - sizing data, not secrets
    ids, end = IdSource(), datetime.now(UTC)
    start = end - timedelta(days=30)
    if table == "payments":
        loans = synthetic_loans(max(1, count // 10), rng, ids, start)
        records = seeding_payments(loans, count, rng, ids, start, end)
        return [item for payment in records for item in (payment_item(payment), marker_item(payment))]
    layout = LogTableLayout()
    return [layout.item(entry) for entry in log_entries(count, rng, ids, start, end)]


async def live_workload(
    pool: asyncpg.Pool,
    client: DynamoDBClient,
    specs: Iterable[TableSpec],
    table_name: Callable[[str], str],
    options: LiveOptions,
    postgres: Postgres,
    capacity: Capacity,
    measured_mix: Mapping[str, Mapping[str, float]],
    verify_passes: int = 1,
    other_one_off_usd: float = 0.0,
) -> tuple[Workload, LiveFacts]:
    tables, all_facts, shapes, notes = [], [], [], []
    mixes: dict[str, dict[str, float]] = {}
    for spec in specs:
        facts = await postgres_facts(pool, spec, options.window)
        items = await sample_dynamodb(client, table_name(spec.name), options.sample)
        source = "dynamodb"
        if not items:
            items = await sample_rows(pool, spec, facts.rows, options.sample)
            source = "postgresql"
        if not items:
            # A new system (e.g. `make up`'s): no row to size yet. `loanbook seed`'s generators make the records the
            # services would store, and the adapters' own item functions size them.
            items = synthetic_items(spec.name, options.sample)
            source = "synthetic"
            notes.append(f"{spec.name}: no rows or items yet; sized from {len(items)} synthetic records")
        shape = item_shape(spec.name, items, source)
        calls = options.calls
        if spec.name == "logs" and facts.entries_per_batch:
            calls = CallShape(
                calls.history_page, facts.entries_per_batch, calls.log_query_page, calls.log_shards,
                calls.entries_per_trace,
            )  # fmt: skip
        mix, mix_notes = _merge_mix(spec.name, facts, measured_mix.get(spec.name, {}), options, calls)
        notes += mix_notes
        mixes[spec.name] = mix
        tables.append(
            table_workload(
                spec.name,
                rows=facts.rows,
                rows_per_day=facts.rows_per_day,
                shape=shape,
                mix=mix,
                calls=calls,
                ttl_days=options.log_retention_days if spec.name == "logs" else None,
                pitr=spec.name in options.pitr,
                backups_retained=options.backups_retained.get(spec.name, 0),
                streams=spec.name in options.streams,
            )
        )
        all_facts.append(facts)
        shapes.append(shape)
    workload = Workload(
        tables=tuple(tables),
        capacity=capacity,
        postgres=postgres,
        verify_passes=verify_passes,
        other_one_off_usd=other_one_off_usd,
    )
    return workload, LiveFacts(all_facts, shapes, mixes, notes)
