"""The monthly cost model on round prices, each figure computed by hand in the test."""

from __future__ import annotations

import pytest

from tests.support.cost import round_prices
from toolkit.cost.model import (
    DAYS_PER_MONTH,
    HOURS_PER_MONTH,
    Backfill,
    Capacity,
    Index,
    Operation,
    Postgres,
    PostgresCost,
    TableWorkload,
    Workload,
    estimate,
    items_in_month,
    table_cost,
    ttl_deletes_by_hand,
)

PRICES = round_prices()
CAPACITY = Capacity(target_utilisation=0.75, peak_to_average=1.5)


def a_table(**changes: object) -> TableWorkload:
    """1,000,000 items of 900 bytes (1,000 with the 100-byte overhead: exactly 1 GB), a half-sparse index of
    1,500-byte entries, 100,000 writes of 2 units a day, 864,000 strongly consistent gets and 86,400 index pages."""
    fields: dict[str, object] = {
        "name": "t",
        "items": 1_000_000,
        "item_bytes": 900,
        "items_per_day": 0,
        "indexes": (Index(name="by_x", entry_bytes=1500, entries_per_item=0.5),),
        "operations": (
            Operation(name="put", calls_per_day=100_000, write_units=2, index_entries_written={"by_x": 1}),
            Operation(name="get", calls_per_day=864_000, read_units=1),
            Operation(name="page", calls_per_day=86_400, index_entries_read={"by_x": 10}),
        ),
        "pitr": True,
        "backups_retained": 2,
        "backfill": Backfill(rows=1_000, write_units_per_row=2, verify_read_units_per_row=1),
    }
    return TableWorkload.model_validate(fields | changes)


def components(table: TableWorkload) -> dict[str, tuple[float, float]]:
    cost = table_cost(table, PRICES, CAPACITY)
    return {c.name: (c.on_demand, c.provisioned) for c in cost.components}


def test_writes_on_demand_and_provisioned() -> None:
    on_demand, provisioned = components(a_table())["writes"]
    assert on_demand == pytest.approx(200_000 * DAYS_PER_MONTH * 1e-6)  # units a month at $1 per million
    # 2.3148 units/s on average, held at 1.5x and run at 75%: 4.63 WCU for 730 hours at $0.001.
    assert provisioned == pytest.approx(200_000 / 86_400 * 1.5 / 0.75 * HOURS_PER_MONTH * 0.001)


def test_reads_and_the_one_unit_minimum_of_provisioned_capacity() -> None:
    on_demand, provisioned = components(a_table())["reads"]
    assert on_demand == pytest.approx(864_000 * DAYS_PER_MONTH * 0.2e-6)
    assert provisioned == pytest.approx(10 * 1.5 / 0.75 * HOURS_PER_MONTH * 0.0002)  # 10 reads/s on average
    idle = a_table(operations=())
    assert components(idle)["reads"] == pytest.approx((0, 1 * HOURS_PER_MONTH * 0.0002))


def test_index_writes_reads_and_storage() -> None:
    parts = components(a_table())
    # A 1,500-byte entry is two write units.
    assert parts["by_x writes"][0] == pytest.approx(100_000 * 2 * DAYS_PER_MONTH * 1e-6)
    # A page of 10 entries is 15,000 bytes: 4 blocks of 4 KB, eventually consistent: 2 units.
    assert parts["by_x reads"][0] == pytest.approx(86_400 * 2 * DAYS_PER_MONTH * 0.2e-6)
    # Half the items have an entry: 500,000 x 1,600 bytes = 0.8 GB at $0.25.
    assert parts["by_x storage"] == pytest.approx((0.2, 0.2))


def test_storage_pitr_and_backups_are_on_the_table_size() -> None:
    parts = components(a_table())
    assert parts["storage"] == pytest.approx((0.25, 0.25))
    assert parts["pitr"] == pytest.approx((0.20, 0.20))
    assert parts["backups"] == pytest.approx((0.20, 0.20))  # two backups of 1 GB at $0.10
    assert components(a_table(pitr=False, backups_retained=0))["pitr"] == (0, 0)


def test_streams_default_to_one_read_per_write_call() -> None:
    assert components(a_table(streams=True))["streams"][0] == pytest.approx(100_000 * DAYS_PER_MONTH * 0.02e-5)
    given = a_table(streams=True, streams_reads_per_day=1_000)
    assert components(given)["streams"][0] == pytest.approx(1_000 * DAYS_PER_MONTH * 0.02e-5)
    assert components(a_table())["streams"] == (0, 0)


def test_standard_ia_prices_requests_and_storage_at_its_own_rates() -> None:
    standard = table_cost(a_table(), PRICES, CAPACITY)
    ia = table_cost(a_table(), PRICES, CAPACITY, table_class="standard_ia")
    assert ia.components[0].on_demand == pytest.approx(standard.components[0].on_demand * 1.25)
    storage = {c.name: c.on_demand for c in ia.components}["storage"]
    assert storage == pytest.approx(0.10)


def test_growth_fills_storage_month_by_month_and_ttl_caps_it() -> None:
    growing = a_table(items_per_day=1_000)
    assert items_in_month(growing, 1) == pytest.approx(1_000_000 + 1_000 * DAYS_PER_MONTH / 2)
    assert items_in_month(growing, 3) == pytest.approx(1_000_000 + 1_000 * DAYS_PER_MONTH * 2.5)
    expiring = a_table(items=10_000, items_per_day=1_000, ttl_days=30)
    assert items_in_month(expiring, 12) == 30_000


def test_ttl_deletes_by_hand_cost_a_delete_per_item_and_index_entry() -> None:
    table = a_table(items_per_day=1_000, ttl_days=30)
    expired = 1_000 * DAYS_PER_MONTH
    # 1 unit for the 900-byte item, half the items have a 2-unit index entry; finding them: eventual Query bytes.
    expected = expired * (1 + 0.5 * 2) * 1e-6 + expired * 900 / 4096 / 2 * 0.2e-6
    assert ttl_deletes_by_hand(table, PRICES) == pytest.approx(expected)
    assert ttl_deletes_by_hand(a_table(), PRICES) == 0


def workload(other_one_off: float = 1_000.0) -> Workload:
    return Workload(
        tables=(a_table(),),
        capacity=CAPACITY,
        postgres=Postgres(
            before=PostgresCost(instance_usd=800, storage_usd=150, iops_usd=50),
            after=PostgresCost(instance_usd=400, storage_usd=100),
        ),
        other_one_off_usd=other_one_off,
    )


def test_backfill_one_off_and_the_break_even_month() -> None:
    result = estimate(workload(), PRICES)
    [backfill] = result.backfill
    assert backfill.write_units == 2_000
    assert backfill.read_units == 1_000
    assert backfill.usd == pytest.approx(2_000e-6 + 1_000 * 0.2e-6)
    assert result.one_off == pytest.approx(1_000 + backfill.usd)
    saving = 1_000 - 500 - result.dynamodb("on_demand")
    assert result.saving("on_demand") == pytest.approx(saving)
    assert result.break_even_month["on_demand"] == pytest.approx(result.one_off / saving)


def test_no_break_even_when_dynamodb_costs_more_than_it_saves() -> None:
    flat = PostgresCost(instance_usd=1, storage_usd=0)
    costly = workload().model_copy(update={"postgres": Postgres(before=flat, after=flat)})
    assert estimate(costly, PRICES).break_even_month == {"on_demand": None, "provisioned": None}


def test_an_operation_naming_an_unknown_index_is_refused() -> None:
    with pytest.raises(ValueError, match="operation 'q' names index 'nope'"):
        a_table(operations=(Operation(name="q", calls_per_day=1, index_entries_read={"nope": 1}),))
