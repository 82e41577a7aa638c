"""Recommendations: each applies only where the model finds it cheaper, with the saving it computes."""

from __future__ import annotations

import pytest

from tests.support.cost import round_prices
from tests.unit.test_cost_model import CAPACITY, a_table
from toolkit.cost.model import Index, Postgres, PostgresCost, TableWorkload, Workload, table_cost, ttl_deletes_by_hand
from toolkit.cost.recommend import recommendations

PRICES = round_prices()
PG = Postgres(before=PostgresCost(instance_usd=100, storage_usd=0), after=PostgresCost(instance_usd=0, storage_usd=0))


def advice(table: TableWorkload) -> dict[str, float]:
    workload = Workload(tables=(table,), capacity=CAPACITY, postgres=PG)
    return {r.kind: r.saving_usd_month for r in recommendations(workload, PRICES)}


def test_standard_ia_for_a_table_whose_storage_dominates() -> None:
    stored = a_table(items=100_000_000, operations=(), indexes=())  # 100 GB, next to no requests
    standard = table_cost(stored, PRICES, CAPACITY).total("on_demand")
    ia = table_cost(stored, PRICES, CAPACITY, table_class="standard_ia").total("on_demand")
    assert advice(stored)["standard_ia"] == pytest.approx(standard - ia)


def test_no_standard_ia_for_a_busy_small_table() -> None:
    assert "standard_ia" not in advice(a_table(items=1_000))


def test_a_narrower_projection_with_the_saving_both_ways() -> None:
    index = Index(name="by_x", entry_bytes=1500, entries_per_item=0.5, narrowed_bytes=400, narrowed_projection="KEYS")
    table = a_table(indexes=(index,))
    wide = table_cost(table, PRICES, CAPACITY).total("on_demand")
    narrow = table_cost(table, PRICES, CAPACITY, index_bytes={"by_x": 400}).total("on_demand")
    assert wide > narrow
    assert advice(table)["narrow_index"] == pytest.approx(wide - narrow)


def test_no_narrowing_when_the_reads_need_every_attribute() -> None:
    index = Index(name="by_x", entry_bytes=1500, entries_per_item=0.5, narrowed_bytes=1500)
    assert "narrow_index" not in advice(a_table(indexes=(index,)))


def test_provisioned_only_where_it_is_cheaper_at_the_target() -> None:
    busy = a_table()  # steady thousands of units a second... in units a day: provisioned wins
    cost = table_cost(busy, PRICES, CAPACITY)
    assert advice(busy)["provisioned"] == pytest.approx(cost.total("on_demand") - cost.total("provisioned"))
    quiet = a_table(operations=())  # the one-unit minimums cost more than no requests at all
    assert "provisioned" not in advice(quiet)


def test_ttl_saving_for_expiring_items() -> None:
    logs = a_table(items_per_day=100_000, ttl_days=30)
    assert advice(logs)["ttl"] == pytest.approx(ttl_deletes_by_hand(logs, PRICES))
    assert "ttl" not in advice(a_table())
