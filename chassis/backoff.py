"""How every retry in loanbook waits: exponential backoff with full jitter, so retries never move in lockstep."""

from __future__ import annotations

import random


def full_jitter(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait before retry `attempt` (0 for the first): anywhere in [0, min(cap, base * 2**attempt)].

    Full jitter rather than a fixed or half-jittered delay: many clients that failed together (a throttled table,
    an outage) spread their retries over the whole window instead of returning as a wave."""
    return random.uniform(0, min(cap, base * 2 ** min(attempt, 62)))  # noqa: S311 - jitter, not secrets
