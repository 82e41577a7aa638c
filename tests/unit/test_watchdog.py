"""The watchdog's judgement: what counts as a breach, and how long one must last before it acts."""

from __future__ import annotations

from migration.watchdog import BreachClock, Tally, WatchdogSettings, judge

SETTINGS = WatchdogSettings(max_fallback_ratio=0.05, min_reads=20, min_comparisons=5)


def guards(before: Tally, now: Tally) -> dict[str, tuple[float, bool]]:
    return {r.guard: (r.value, r.breached) for r in judge(before, now, SETTINGS)}


def test_too_few_reads_judge_nothing_and_a_ratio_at_its_limit_is_no_breach() -> None:
    assert guards(Tally(), Tally(reads=19, fell_back=19)) == {}
    at_limit = guards(Tally(reads=100, fell_back=5), Tally(reads=200, fell_back=10))
    assert at_limit["fallback_ratio"] == (0.05, False)
    above = guards(Tally(), Tally(reads=100, fell_back=6))
    assert above["fallback_ratio"] == (0.06, True)


def test_one_mismatch_is_a_breach_however_few_the_comparisons() -> None:
    assert "shadow_mismatch_ratio" not in guards(Tally(), Tally(compared=4))
    assert guards(Tally(), Tally(compared=2, mismatched=1))["shadow_mismatch_ratio"] == (0.5, True)


def test_a_breach_must_last_the_sustain_window_without_a_holding_check() -> None:
    clock = BreachClock(sustain_seconds=60)
    [breach] = [r for r in judge(Tally(), Tally(reads=100, fell_back=50), SETTINGS) if r.guard == "fallback_ratio"]
    holding = judge(Tally(), Tally(reads=100), SETTINGS)

    assert clock.observe([breach], now=0) is False
    assert clock.observe([breach], now=59) is False
    assert clock.observe([], now=61) is True  # a quiet check neither starts nor ends a breach
    assert clock.observe(holding, now=62) is False  # one check that holds ends it
    assert clock.observe([breach], now=63) is False
    assert clock.observe([breach], now=123) is True


def test_a_ratio_hovering_at_its_limit_never_sustains_a_breach() -> None:
    clock = BreachClock(sustain_seconds=10)
    tally, fired = Tally(), []
    for second in range(0, 600, 5):
        fell_back = 5 if second % 10 else 6  # 5 % (at the limit) and 6 % in turn: never 10 s above it
        now = Tally(tally.reads + 100, tally.fell_back + fell_back)
        fired.append(clock.observe(judge(tally, now, SETTINGS), now=second))
        tally = now
    assert not any(fired)
