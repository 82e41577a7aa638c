"""Backoff with full jitter: bounded by the exponential window and the cap, and spread across it."""

from __future__ import annotations

import pytest

from chassis.backoff import full_jitter


@pytest.mark.parametrize(("attempt", "window"), [(0, 0.1), (1, 0.2), (3, 0.8), (10, 5.0), (10_000, 5.0)])
def test_a_wait_stays_within_the_exponential_window_and_the_cap(attempt: int, window: float) -> None:
    waits = [full_jitter(attempt, base=0.1, cap=5.0) for _ in range(500)]

    assert all(0 <= wait <= window for wait in waits)
    # Spread over the whole window, not bunched at one end: retries that failed together do not return together.
    assert min(waits) < window * 0.1
    assert max(waits) > window * 0.9
