"""The promoter on the real stores: one promoter per table, an interrupted promotion resumed where it was, and a
plan held by the table that stopped."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from migration.control import ControlPlane
from migration.stages import Stage
from tests.support.prometheus import Prometheus, running_prometheus
from tests.support.toolkit import Stores, set_stage
from toolkit.guards import GuardReading
from toolkit.promotion import PlanHold, Promoter, PromotionOptions, PromotionRunning, promoter_active


class Seen:
    """What a promotion showed: its decisions in order."""

    def __init__(self) -> None:
        self.decisions: list[tuple[str, str]] = []

    def watching(self, table: str, stage: Stage, held: float, window: float, readings: Sequence[GuardReading]) -> None:
        pass

    def decided(self, table: str, stage: Stage, decision: str, detail: str) -> None:
        self.decisions.append((stage.value, decision))


@pytest.fixture
async def prometheus(tmp_path: Path) -> AsyncIterator[Prometheus]:
    """A real Prometheus scraping nothing: every guard reads "no data", which postgres_only does not need."""
    async with running_prometheus({}, tmp_path) as server:
        yield server


def promoter(stores: Stores, prometheus: Prometheus, window: float, view: Seen) -> Promoter:
    [spec] = stores.specs("payments")
    options = PromotionOptions(target=Stage.DUAL_WRITE, window_seconds=window, poll_seconds=0.2, who="test")
    return Promoter(stores.pool, stores.dynamodb, spec, stores.table_name, prometheus.url, options, view)


async def test_a_second_promoter_is_refused_and_a_later_one_resumes_the_interrupted_promotion(
    stores: Stores, prometheus: Prometheus
) -> None:
    first = asyncio.create_task(promoter(stores, prometheus, 600, Seen()).run())
    async with asyncio.timeout(30):
        while not await stores.pool.fetchval("SELECT count(*) FROM migration.promotion_decisions"):
            await asyncio.sleep(0.05)
    running = await stores.pool.fetchval("SELECT id FROM migration.promotions WHERE status = 'running'")

    with pytest.raises(PromotionRunning, match=rf"payments: another process is promoting it \(promotion {running},"):
        await promoter(stores, prometheus, 1, Seen()).run()

    assert await promoter_active(stores.pool, "payments")
    first.cancel()  # as a killed process: the row stays running, the lock goes with its connection
    with pytest.raises(asyncio.CancelledError):
        await first
    assert not await promoter_active(stores.pool, "payments")  # `migrate status` calls it interrupted
    seen = Seen()
    result = await promoter(stores, prometheus, 1, seen).run()

    assert (result.promotion_id, result.resumed, result.status, result.stage) == (
        running,
        True,
        "finished",
        Stage.DUAL_WRITE,
    )
    assert seen.decisions == [
        ("postgres_only", "resume"),
        ("postgres_only", "advance"),
        ("dual_write", "finish"),
    ]
    rows = await stores.pool.fetch("SELECT id, status FROM migration.promotions")
    assert [(row["id"], row["status"]) for row in rows] == [(running, "finished")]


async def test_in_a_plan_the_table_that_stops_holds_the_others_and_each_says_why(
    stores: Stores, prometheus: Prometheus
) -> None:
    # logs waits in shadow for shadow comparisons that never come (no traffic, no patience): it stops, and
    # payments, still holding postgres_only, stops there instead of advancing.
    await set_stage(stores.pool, "logs", Stage.SHADOW)
    held, seen = PlanHold(), Seen()
    payments, logs = stores.specs("payments", "logs")
    options = {
        "payments": PromotionOptions(target=Stage.DUAL_WRITE, window_seconds=600, poll_seconds=0.2, who="test"),
        "logs": PromotionOptions(
            target=Stage.DYNAMO_LIVE, window_seconds=1, poll_seconds=0.2, evidence_timeout_seconds=0, who="test"
        ),
    }

    results = await asyncio.gather(
        *(
            Promoter(
                stores.pool,
                stores.dynamodb,
                spec,
                stores.table_name,
                prometheus.url,
                options[spec.name],
                seen,
                plan=held,
            ).run()
            for spec in (payments, logs)
        )
    )

    by_table = {result.table: result for result in results}
    assert (by_table["logs"].status, by_table["logs"].stage) == ("stopped", Stage.SHADOW)
    assert "not enough evidence to move to dynamo_live" in by_table["logs"].detail
    assert (by_table["payments"].status, by_table["payments"].stage) == ("stopped", Stage.POSTGRES_ONLY)
    assert by_table["payments"].detail.startswith("payments held in postgres_only: the plan stopped (logs: logs stays")
    modes = await stores.pool.fetch("SELECT table_name, stage FROM migration.table_modes ORDER BY table_name")
    assert [(row["table_name"], row["stage"]) for row in modes] == [("logs", "shadow"), ("payments", "postgres_only")]


async def test_within_the_watchdogs_cool_down_no_dynamodb_served_stage_is_promoted_to(
    stores: Stores, prometheus: Prometheus
) -> None:
    control = ControlPlane(stores.pool, guards=())
    await control.ensure_defaults(who="test", tables=["payments"])
    await control.change("payments", stage=Stage.DYNAMO_LIVE, who="test")
    await control.change("payments", stage=Stage.SHADOW, who="auto:fallback_ratio", reason="fallback_ratio 0.4 > 0.05")
    [spec] = stores.specs("payments")
    options = PromotionOptions(target=Stage.DYNAMO_LIVE, window_seconds=1, poll_seconds=0.2, who="test")
    seen = Seen()

    result = await Promoter(stores.pool, stores.dynamodb, spec, stores.table_name, prometheus.url, options, seen).run()

    assert (result.status, result.stage) == ("stopped", Stage.SHADOW)
    assert re.fullmatch(
        r"payments stays in shadow: the watchdog moved it back \d+ s ago \(auto:fallback_ratio\), and for 900 s after "
        r"that it could not do so again; promote again in \d+ s, once the cause is understood",
        result.detail,
    ), result.detail
    assert seen.decisions == [("shadow", "start"), ("shadow", "stop")]  # stopped before holding, nothing switched
    assert (await control.mode("payments")).stage is Stage.SHADOW
