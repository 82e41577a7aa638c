"""Pacing of the toolkit's bulk DynamoDB calls on a fake clock: the token bucket's rate and the AIMD backoff's law."""

from __future__ import annotations

import pytest

from toolkit.dynamo_io import AdaptiveRate, Pacer, Pacing, RateLimiter


class FakeClock:
    """Time that passes only when someone sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_the_limiter_lets_through_one_second_of_items_at_once_and_the_rest_at_its_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(500, clock=clock, sleep=clock.sleep)

    for _ in range(30):
        await limiter.acquire(100)

    # 3,000 items at 500/s: the first 500 at once, the other 2,500 over 5 s.
    assert limiter.granted == 3000
    assert limiter.waited == pytest.approx(5.0)
    assert clock.now - 100.0 == pytest.approx(5.0)
    assert limiter.last_grant - limiter.started == pytest.approx(5.0)


async def test_a_request_larger_than_a_second_of_items_waits_for_a_full_bucket_then_owes_the_rest() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, clock=clock, sleep=clock.sleep)

    await limiter.acquire(250)  # a full bucket is there: through at once, 150 owed
    await limiter.acquire(100)  # waits 1.5 s for the debt and 1 s for its own

    assert clock.slept == [pytest.approx(2.5)]
    assert limiter.granted == 350


async def test_a_refund_gives_back_what_a_short_page_did_not_use() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, clock=clock, sleep=clock.sleep)

    await limiter.acquire(100)
    limiter.refund(60)  # the page brought 40 items
    await limiter.acquire(60)

    assert clock.slept == []
    assert limiter.granted == 100


async def test_without_a_rate_nothing_waits() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)

    for _ in range(10):
        await limiter.acquire(10_000)

    assert clock.slept == []


def test_a_call_slower_than_twice_the_baseline_halves_the_rate() -> None:
    clock = FakeClock()
    rate = AdaptiveRate(1000, slow_factor=2.0, clock=clock)
    for _ in range(5):
        assert rate.observe(clock(), 0.010) == 1000  # the baseline: 10 ms, at the ceiling already

    clock.now += 1
    assert rate.observe(clock(), 0.025) == 500
    assert (rate.cuts, rate.lowest) == (1, 500)


def test_fast_calls_win_the_rate_back_step_by_step_up_to_the_limit() -> None:
    clock = FakeClock()
    rate = AdaptiveRate(1000, slow_factor=2.0, clock=clock)
    rate.observe(clock(), 0.010)
    clock.now += 1
    rate.observe(clock(), 0.050)

    recovered = []
    for _ in range(12):
        clock.now += 0.1
        recovered.append(rate.observe(clock(), 0.010))

    # Additive increase: 5 % of the limit per call, never above it.
    assert recovered[:3] == [pytest.approx(550), pytest.approx(600), pytest.approx(650)]
    assert recovered[-1] == 1000


def test_calls_sent_before_a_cut_do_not_cut_again() -> None:
    clock = FakeClock()
    rate = AdaptiveRate(1000, slow_factor=2.0, clock=clock)
    rate.observe(clock(), 0.010)
    sent_together = clock()
    clock.now += 0.5

    first = rate.observe(sent_together, 0.5)  # the first of a round of slow answers cuts
    rest = [rate.observe(sent_together, 0.5) for _ in range(5)]  # the others were sent at the old rate
    clock.now += 0.1
    later = rate.observe(clock(), 0.5)  # sent after the cut and still slow: cuts again

    assert first == 500
    assert rest == [500] * 5
    assert later == 250
    assert rate.cuts == 2


def test_the_rate_never_falls_below_its_floor() -> None:
    clock = FakeClock()
    rate = AdaptiveRate(1000, slow_factor=2.0, clock=clock)
    rate.observe(clock(), 0.010)

    for _ in range(20):
        clock.now += 1
        rate.observe(clock(), 1.0)

    assert rate.rate == 50  # 5 % of the limit
    assert rate.lowest == 50


async def test_a_pacer_steers_its_limiter_by_the_latency_of_each_call() -> None:
    clock = FakeClock()
    pacer = Pacer(Pacing(rate_limit=1000, slow_factor=2.0), clock=clock, sleep=clock.sleep)

    async def answer_in(seconds: float) -> int:
        clock.now += seconds
        return 100

    for latency in (0.01, 0.01, 0.01, 0.2):
        await pacer.call(100, lambda latency=latency: answer_in(latency))  # type: ignore[misc]

    report = pacer.report()
    assert pacer.limiter.rate == 500
    assert (report.rate_limit, report.items, report.cuts, report.lowest_rate) == (1000, 400, 1, 500)


async def test_without_backoff_a_pacer_keeps_its_rate_however_slow_the_calls() -> None:
    clock = FakeClock()
    pacer = Pacer(Pacing(rate_limit=1000, backoff=False), clock=clock, sleep=clock.sleep)

    async def slow() -> None:
        clock.now += 5

    for _ in range(3):
        await pacer.call(10, slow)

    assert pacer.limiter.rate == 1000
    assert pacer.report().cuts == 0
