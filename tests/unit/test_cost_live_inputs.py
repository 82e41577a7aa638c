"""Live inputs of `loanbook cost` where the system says little: no rows yet, and Prometheus counting log batches."""

from __future__ import annotations

import pytest

from toolkit.cost.inputs import CallShape, LiveOptions, PostgresFacts, _merge_mix, item_kind, synthetic_items
from toolkit.cost.sizes import item_size

pytestmark = pytest.mark.unit


def test_a_table_with_no_rows_is_sized_from_synthetic_records_of_every_kind() -> None:
    payments = synthetic_items("payments", 50)
    logs = synthetic_items("logs", 50)

    assert sorted({item_kind("payments", item) for item in payments}) == ["marker", "payment"]
    assert len(payments) == 100  # each payment and its idempotency marker
    assert len(logs) == 50
    again = synthetic_items("logs", 50)
    assert [item_size(item) for item in again] == [item_size(item) for item in logs]  # the same sizes every run


def test_log_writes_follow_the_entries_arriving_not_the_batches_prometheus_counted() -> None:
    facts = PostgresFacts(
        "logs", rows=1_000_000, rows_per_day=100_000.0, updates_per_day=0, table_bytes=1, index_bytes=1
    )
    measured = {"write": 50_000.0, "query": 10.0}  # many small batches from the services' own log shipping

    mix, _ = _merge_mix("logs", facts, measured, LiveOptions(tables=["logs"]), CallShape(log_batch=500))

    assert mix["write"] == 100_000.0 / 500  # entries a day over the batch size the rows show
    assert mix["query"] == 10.0  # reads still come from Prometheus


def test_with_no_rows_arriving_prometheus_batches_are_what_is_known() -> None:
    facts = PostgresFacts("logs", rows=0, rows_per_day=0.0, updates_per_day=0, table_bytes=0, index_bytes=0)

    mix, _ = _merge_mix("logs", facts, {"write": 1_000.0}, LiveOptions(tables=["logs"]), CallShape(log_batch=500))

    assert mix["write"] == 1_000.0
