"""The DynamoDB breaker counts outages only: a call given up on is neither a failure nor a success."""

from __future__ import annotations

import asyncio

import pytest

from migration.hybrid import DynamoBreaker, _is_dynamo_failure


async def test_a_cancelled_call_does_not_reset_the_failures_counted_so_far() -> None:
    breaker = DynamoBreaker(failure_threshold=2, recovery_timeout=60, expected_exception=_is_dynamo_failure)

    async def down() -> None:
        raise TimeoutError

    async def hangs() -> None:
        await asyncio.Event().wait()

    with pytest.raises(TimeoutError):
        await breaker.call_async(down)
    discarded = asyncio.create_task(breaker.call_async(hangs))
    await asyncio.sleep(0)  # let it enter the breaker
    discarded.cancel()
    with pytest.raises(asyncio.CancelledError):
        await discarded
    with pytest.raises(TimeoutError):
        await breaker.call_async(down)

    assert breaker.opened


async def test_a_success_still_closes_the_count() -> None:
    breaker = DynamoBreaker(failure_threshold=2, recovery_timeout=60, expected_exception=_is_dynamo_failure)

    async def down() -> None:
        raise TimeoutError

    async def up() -> str:
        return "ok"

    with pytest.raises(TimeoutError):
        await breaker.call_async(down)
    assert await breaker.call_async(up) == "ok"
    with pytest.raises(TimeoutError):
        await breaker.call_async(down)

    assert not breaker.opened
