"""The monthly cost model: a workload (tables, sizes, request mix) and prices in, cost per table and component out.

Pure: no I/O. Every figure is per month of HOURS_PER_MONTH hours, the month AWS's price pages use."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from toolkit.cost.capacity import READ_UNIT_BYTES, query_read_units, write_units
from toolkit.cost.prices import Prices, TableClassPrices
from toolkit.cost.sizes import STORAGE_OVERHEAD_BYTES

HOURS_PER_MONTH: Final = 730
DAYS_PER_MONTH: Final = HOURS_PER_MONTH / 24
SECONDS_PER_DAY: Final = 86_400
# Storage is billed per GB; counted here as 10^9 bytes, which errs on the dear side of 2^30.
BYTES_PER_GB: Final = 1_000_000_000
# How far ahead the break-even month is looked for.
HORIZON_MONTHS: Final = 120

TableClass = Literal["standard", "standard_ia"]
Mode = Literal["on_demand", "provisioned"]
MODES: Final[tuple[Mode, Mode]] = ("on_demand", "provisioned")


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Index(_Input):
    """A global secondary index: the average size of its entries and the share of items that have one (sparse)."""

    name: str = Field(min_length=1)
    entry_bytes: float = Field(gt=0, description="average entry size under the current projection")
    entries_per_item: float = Field(ge=0, le=1, description="share of the table's items with an entry")
    projection: str = "ALL"
    # The entry size if the projection held only what the index's reads use (for the recommendation).
    narrowed_bytes: float | None = Field(default=None, gt=0)
    narrowed_projection: str | None = None


class Operation(_Input):
    """One kind of call and what each call consumes: base-table units, and index entries written or read."""

    name: str = Field(min_length=1)
    calls_per_day: float = Field(ge=0)
    write_units: float = Field(default=0, ge=0, description="base-table write units per call")
    read_units: float = Field(default=0, ge=0, description="base-table read units per call")
    index_entries_written: dict[str, float] = Field(default_factory=dict)
    index_entries_read: dict[str, float] = Field(default_factory=dict)


class Backfill(_Input):
    """The one-off copy of the history: rows, write units per row (its items and their index entries), and the
    read units a verify pass spends per row."""

    rows: int = Field(ge=0)
    write_units_per_row: float = Field(ge=0)
    verify_read_units_per_row: float = Field(ge=0)


class TableWorkload(_Input):
    name: str = Field(min_length=1)
    items: int = Field(ge=0, description="items in the table now (or after the backfill)")
    item_bytes: float = Field(gt=0, description="average item size")
    items_per_day: float = Field(ge=0, description="new items a day")
    ttl_days: float | None = Field(default=None, gt=0, description="items expire this long after they are written")
    indexes: tuple[Index, ...] = ()
    operations: tuple[Operation, ...] = ()
    table_class: TableClass = "standard"
    pitr: bool = True
    backups_retained: int = Field(default=0, ge=0, description="full on-demand backups kept at any time")
    streams: bool = False
    streams_reads_per_day: float | None = Field(default=None, ge=0)
    backfill: Backfill

    @model_validator(mode="after")
    def _indexes_known(self) -> TableWorkload:
        known = {index.name for index in self.indexes}
        for operation in self.operations:
            for name in (*operation.index_entries_written, *operation.index_entries_read):
                if name not in known:
                    raise ValueError(f"operation {operation.name!r} names index {name!r}, not one of {sorted(known)}")
        return self


class Capacity(_Input):
    """Provisioned capacity as auto scaling keeps it: the average load times `peak_to_average`, at the target."""

    target_utilisation: float = Field(default=0.7, ge=0.2, le=0.9)
    peak_to_average: float = Field(default=1.5, ge=1, description="capacity held relative to the average load")


class PostgresCost(_Input):
    instance_usd: float = Field(ge=0)
    storage_usd: float = Field(ge=0)
    iops_usd: float = Field(default=0, ge=0)

    @property
    def total(self) -> float:
        return self.instance_usd + self.storage_usd + self.iops_usd


class Postgres(_Input):
    """The PostgreSQL (RDS) monthly bill before the move, and after it (the tables that stay)."""

    before: PostgresCost
    after: PostgresCost


class Workload(_Input):
    tables: tuple[TableWorkload, ...] = Field(min_length=1)
    capacity: Capacity = Capacity()
    postgres: Postgres
    verify_passes: int = Field(default=1, ge=0)
    other_one_off_usd: float = Field(default=0, ge=0, description="one-off costs besides DynamoDB's (e.g. work)")


# --- results ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Component:
    """One line of a table's bill under both capacity modes; `units` says what was counted."""

    name: str
    on_demand: float
    provisioned: float
    units: str

    def cost(self, mode: Mode) -> float:
        return self.on_demand if mode == "on_demand" else self.provisioned


@dataclass(frozen=True)
class TableCost:
    name: str
    table_class: TableClass
    items: float
    storage_gb: float
    components: list[Component]

    def total(self, mode: Mode) -> float:
        return sum(component.cost(mode) for component in self.components)

    def storage_share(self, mode: Mode) -> float:
        storage = sum(c.cost(mode) for c in self.components if c.name == "storage" or c.name.endswith(" storage"))
        total = self.total(mode)
        return storage / total if total else 0.0


@dataclass(frozen=True)
class BackfillCost:
    table: str
    write_units: float
    read_units: float
    usd: float


@dataclass(frozen=True)
class Estimate:
    month: int
    tables: list[TableCost]
    backfill: list[BackfillCost]
    other_one_off: float
    postgres_before: float
    postgres_after: float
    break_even_month: dict[str, float | None] = field(default_factory=dict)

    def dynamodb(self, mode: Mode) -> float:
        return sum(table.total(mode) for table in self.tables)

    @property
    def one_off(self) -> float:
        return sum(cost.usd for cost in self.backfill) + self.other_one_off

    def saving(self, mode: Mode) -> float:
        """What the move saves a month: the PostgreSQL bill it removes, less what DynamoDB costs."""
        return self.postgres_before - self.postgres_after - self.dynamodb(mode)


# --- the arithmetic ----------------------------------------------------------------------------------------------


def items_in_month(table: TableWorkload, month: int) -> float:
    """Items held in the middle of `month` (1 = the coming month); with TTL, never more than its steady state."""
    items = table.items + table.items_per_day * DAYS_PER_MONTH * (month - 0.5)
    if table.ttl_days is not None:
        items = min(items, max(table.items, table.items_per_day * table.ttl_days))
    return items


def index_write_units_per_entry(entry_bytes: float) -> int:
    return write_units(math.ceil(entry_bytes))


def index_read_units(entries: float, entry_bytes: float) -> float:
    """A Query page of `entries` index entries: their bytes summed, rounded up to 4 KB once, eventually consistent."""
    return query_read_units([math.ceil(entries * entry_bytes)], consistency="eventual")


def _provisioned_units(units_per_day: float, capacity: Capacity) -> float:
    """Capacity units auto scaling holds on average (never under 1: the least a table or index can have)."""
    average = units_per_day / SECONDS_PER_DAY
    return max(1.0, average * capacity.peak_to_average / capacity.target_utilisation)


def _throughput(
    name: str, units_per_day: float, kind: Literal["write", "read"], prices: TableClassPrices, capacity: Capacity
) -> Component:
    if kind == "write":
        request, hourly = prices.on_demand_write_request_units, prices.provisioned_write_capacity_unit_hours
    else:
        request, hourly = prices.on_demand_read_request_units, prices.provisioned_read_capacity_unit_hours
    per_month = units_per_day * DAYS_PER_MONTH
    provisioned = _provisioned_units(units_per_day, capacity)
    return Component(
        name,
        on_demand=per_month * request.per_unit,
        provisioned=provisioned * HOURS_PER_MONTH * hourly.per_unit,
        units=f"{per_month:,.0f} {kind} units/month; {provisioned:,.1f} provisioned",
    )


def _same(name: str, usd: float, units: str) -> Component:
    return Component(name, on_demand=usd, provisioned=usd, units=units)


def table_cost(
    table: TableWorkload,
    prices: Prices,
    capacity: Capacity,
    month: int = 1,
    *,
    table_class: TableClass | None = None,
    index_bytes: dict[str, float] | None = None,
) -> TableCost:
    """One table's bill in `month`, by component. `table_class` and `index_bytes` (entry size per index) price a
    variant of the table, for the recommendations."""
    klass = table_class or table.table_class
    by_class = prices.table_classes.of(klass)
    entry_bytes = {index.name: index.entry_bytes for index in table.indexes} | (index_bytes or {})
    items = items_in_month(table, month)
    table_bytes = items * (table.item_bytes + STORAGE_OVERHEAD_BYTES)
    gb = table_bytes / BYTES_PER_GB

    writes = sum(op.calls_per_day * op.write_units for op in table.operations)
    reads = sum(op.calls_per_day * op.read_units for op in table.operations)
    components = [
        _throughput("writes", writes, "write", by_class, capacity),
        _throughput("reads", reads, "read", by_class, capacity),
    ]
    for index in table.indexes:
        size = entry_bytes[index.name]
        index_writes = sum(
            op.calls_per_day * op.index_entries_written.get(index.name, 0) * index_write_units_per_entry(size)
            for op in table.operations
        )
        index_reads = sum(
            op.calls_per_day * index_read_units(op.index_entries_read[index.name], size)
            for op in table.operations
            if op.index_entries_read.get(index.name)
        )
        components.append(_throughput(f"{index.name} writes", index_writes, "write", by_class, capacity))
        components.append(_throughput(f"{index.name} reads", index_reads, "read", by_class, capacity))
        index_gb = items * index.entries_per_item * (size + STORAGE_OVERHEAD_BYTES) / BYTES_PER_GB
        components.append(
            _same(f"{index.name} storage", index_gb * by_class.storage_gb_months.per_unit, f"{index_gb:,.3f} GB")
        )
    components.append(_same("storage", gb * by_class.storage_gb_months.per_unit, f"{gb:,.3f} GB"))
    # PITR and backups are charged on the table's size (its data, without global secondary indexes).
    pitr = gb * prices.features.pitr_gb_months.per_unit if table.pitr else 0.0
    components.append(_same("pitr", pitr, f"{gb:,.3f} GB" if table.pitr else "off"))
    backup_gb = gb * table.backups_retained
    components.append(
        _same(
            "backups",
            backup_gb * prices.features.on_demand_backup_gb_months.per_unit,
            f"{table.backups_retained} retained, {backup_gb:,.3f} GB",
        )
    )
    streams = 0.0
    stream_reads = 0.0
    if table.streams:
        stream_reads = (
            table.streams_reads_per_day
            if table.streams_reads_per_day is not None
            else sum(op.calls_per_day for op in table.operations if op.write_units > 0)
        ) * DAYS_PER_MONTH
        streams = stream_reads * prices.features.streams_read_request_units.per_unit
    components.append(_same("streams", streams, f"{stream_reads:,.0f} reads/month" if table.streams else "off"))
    return TableCost(table.name, klass, items, gb, components)


def backfill_cost(table: TableWorkload, prices: Prices, verify_passes: int) -> BackfillCost:
    """The one-off copy and its verify passes, at on-demand prices (a backfill's burst is what on-demand is for)."""
    by_class = prices.table_classes.of(table.table_class)
    write = table.backfill.rows * table.backfill.write_units_per_row
    read = table.backfill.rows * table.backfill.verify_read_units_per_row * verify_passes
    usd = (
        write * by_class.on_demand_write_request_units.per_unit + read * by_class.on_demand_read_request_units.per_unit
    )
    return BackfillCost(table.name, write, read, usd)


def break_even_month(workload: Workload, prices: Prices, mode: Mode, one_off: float) -> float | None:
    """The month (fractional) in which the savings add up to the one-off cost; None if not within HORIZON_MONTHS."""
    if one_off <= 0:
        return 0.0
    saved = 0.0
    for month in range(1, HORIZON_MONTHS + 1):
        dynamo = sum(table_cost(table, prices, workload.capacity, month).total(mode) for table in workload.tables)
        saving = workload.postgres.before.total - workload.postgres.after.total - dynamo
        if saving > 0 and saved + saving >= one_off:
            return month - 1 + (one_off - saved) / saving
        saved += saving
    return None


def estimate(workload: Workload, prices: Prices, month: int = 1) -> Estimate:
    tables = [table_cost(table, prices, workload.capacity, month) for table in workload.tables]
    backfill = [backfill_cost(table, prices, workload.verify_passes) for table in workload.tables]
    result = Estimate(
        month,
        tables,
        backfill,
        workload.other_one_off_usd,
        workload.postgres.before.total,
        workload.postgres.after.total,
    )
    for mode in MODES:
        result.break_even_month[mode] = break_even_month(workload, prices, mode, result.one_off)
    return result


def ttl_deletes_by_hand(table: TableWorkload, prices: Prices) -> float:
    """What deleting the expired items by hand would cost a month at on-demand prices (TTL deletes them free): one
    delete per item and per index entry, and finding them by eventually consistent Query pages."""
    if table.ttl_days is None:
        return 0.0
    by_class = prices.table_classes.of(table.table_class)
    per_item = write_units(math.ceil(table.item_bytes)) + sum(
        index.entries_per_item * index_write_units_per_entry(index.entry_bytes) for index in table.indexes
    )
    expired = table.items_per_day * DAYS_PER_MONTH
    finding = expired * table.item_bytes / READ_UNIT_BYTES / 2
    return (
        expired * per_item * by_class.on_demand_write_request_units.per_unit
        + finding * by_class.on_demand_read_request_units.per_unit
    )
