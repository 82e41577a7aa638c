"""The toolkit's bulk runs tune the cycle collector for their duration only, also when runs overlap."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from toolkit.collector import BULK_THRESHOLD, bulk_allocation


@pytest.fixture(autouse=True)
def caller_settings() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield gc.get_threshold()
    gc.set_threshold(*before)
    gc.unfreeze()


def test_a_run_raises_the_young_threshold_and_freezes_what_lived_before_it() -> None:
    with bulk_allocation():
        assert gc.get_threshold() == (BULK_THRESHOLD, 10, 10)
        assert gc.get_freeze_count() > 0


def test_the_callers_settings_come_back_after_the_run_even_when_it_fails(
    caller_settings: tuple[int, int, int],
) -> None:
    with pytest.raises(RuntimeError), bulk_allocation():
        raise RuntimeError("the run failed")
    assert gc.get_threshold() == caller_settings
    assert gc.get_freeze_count() == 0


def test_overlapping_runs_restore_only_when_the_last_one_ends(caller_settings: tuple[int, int, int]) -> None:
    with ExitStack() as first:
        first.enter_context(bulk_allocation())
        second = bulk_allocation()
        second.__enter__()
        first.close()  # the first run ends while the second still decodes its pages
        assert gc.get_threshold()[0] == BULK_THRESHOLD
        second.__exit__(None, None, None)
    assert gc.get_threshold() == caller_settings
    assert gc.get_freeze_count() == 0


def test_cycles_made_during_a_run_are_still_collected() -> None:
    class Node:
        partner: Node

    with bulk_allocation():
        first, second = Node(), Node()
        first.partner, second.partner = second, first
        del first, second
        assert gc.collect() >= 2
