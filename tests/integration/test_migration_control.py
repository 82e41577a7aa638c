"""The control plane keeps each table's stage in PostgreSQL, audits changes and pushes them to replicas."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from chassis.errors import FailedPrecondition, InvalidArgument
from migration.control import ControlPlane, load_settings_file, modes_from_settings
from migration.schema import upgrade_to_head
from migration.stages import Stage, TableMode
from migration.watcher import ModeWatcher


@pytest.fixture
async def pool(postgres_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    await upgrade_to_head(postgres_dsn)
    pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=4)
    # Each test starts from no modes at all (the tables are shared by the session).
    await pool.execute(
        """TRUNCATE migration.mode_changes, migration.table_modes, migration.verifications, migration.backfill_runs,
                    migration.journal RESTART IDENTITY CASCADE"""
    )
    try:
        yield pool
    finally:
        await pool.close()


async def test_seed_creates_missing_modes_once_and_audits_them(pool: asyncpg.Pool) -> None:
    control = ControlPlane(pool)

    created = await control.seed({"payments": TableMode("payments", Stage.DUAL_WRITE, True)}, who="settings")
    again = await control.seed({"payments": TableMode("payments", Stage.DYNAMO_LIVE, False)}, who="settings")

    assert created == ["payments"]
    assert again == []
    assert (await control.mode("payments")).stage is Stage.DUAL_WRITE
    [change] = await control.history("payments")
    assert (change.from_stage, change.to_stage, change.changed_by) == (None, Stage.DUAL_WRITE, "settings")


async def test_a_change_is_audited_with_who_when_from_and_to(pool: asyncpg.Pool) -> None:
    control = ControlPlane(pool)
    await control.seed({"payments": TableMode("payments", Stage.DUAL_WRITE, True)}, who="settings")

    changed = await control.change("payments", stage=Stage.SHADOW, fallback=False, who="ops@bank", reason="go")

    assert (changed.stage, changed.fallback, changed.revision) == (Stage.SHADOW, False, 2)
    latest = (await control.history("payments"))[0]
    assert (latest.from_stage, latest.to_stage, latest.from_fallback, latest.to_fallback) == (
        Stage.DUAL_WRITE,
        Stage.SHADOW,
        True,
        False,
    )
    assert (latest.changed_by, latest.reason) == ("ops@bank", "go")
    assert latest.changed_at is not None


async def test_tables_are_controlled_independently(pool: asyncpg.Pool) -> None:
    control = ControlPlane(pool)
    await control.seed(
        {"payments": TableMode("payments", Stage.DUAL_WRITE, True), "logs": TableMode("logs", Stage.DUAL_WRITE, True)},
        who="settings",
    )

    await control.change("logs", stage=Stage.SHADOW, who="ops")

    assert (await control.mode("payments")).stage is Stage.DUAL_WRITE
    assert (await control.mode("logs")).stage is Stage.SHADOW


async def test_unknown_tables_and_stages_are_refused_by_name(pool: asyncpg.Pool) -> None:
    control = ControlPlane(pool)

    with pytest.raises(InvalidArgument) as table:
        await control.change("ledger", stage=Stage.SHADOW, who="ops")
    with pytest.raises(InvalidArgument) as stage:
        modes_from_settings({"tables": {"payments": {"stage": "dynamo_mostly"}}})

    assert table.value.violations[0].field == "table"
    assert stage.value.violations[0].field == "tables.payments.stage"


async def test_dynamo_only_needs_a_clean_full_verification(pool: asyncpg.Pool) -> None:
    control = ControlPlane(pool)
    await control.seed({"payments": TableMode("payments", Stage.DYNAMO_PRIMARY, True)}, who="settings")

    with pytest.raises(FailedPrecondition, match="clean full verification"):
        await control.change("payments", stage=Stage.DYNAMO_ONLY, who="ops")
    await pool.execute(
        """INSERT INTO migration.verifications (table_name, full_scan, clean, rows_checked, differences, started_at)
           VALUES ('payments', false, true, 10, 0, now())"""
    )
    with pytest.raises(FailedPrecondition):
        await control.change("payments", stage=Stage.DYNAMO_ONLY, who="ops")
    await pool.execute(
        """INSERT INTO migration.verifications (table_name, full_scan, clean, rows_checked, differences, started_at)
           VALUES ('payments', true, true, 10, 0, now())"""
    )

    assert (await control.change("payments", stage=Stage.DYNAMO_ONLY, who="ops")).stage is Stage.DYNAMO_ONLY
    assert (await control.mode("payments")).stage is Stage.DYNAMO_ONLY


async def test_serving_from_dynamodb_needs_a_clean_verification_newer_than_the_last_backfill(
    pool: asyncpg.Pool,
) -> None:
    control = ControlPlane(pool)
    await control.seed({"payments": TableMode("payments", Stage.SHADOW, True)}, who="settings")
    backfill = await pool.fetchval(
        """INSERT INTO migration.backfill_runs (table_name, stage, started_by, rows_total)
           VALUES ('payments', 'dual_write', 'ops', 10) RETURNING id"""
    )

    with pytest.raises(FailedPrecondition, match=f"backfill run {backfill} .* is unfinished"):
        await control.change("payments", stage=Stage.DYNAMO_LIVE, who="ops")  # the first stage DynamoDB serves
    await pool.execute(
        """INSERT INTO migration.verifications (table_name, full_scan, clean, rows_checked, differences, started_at)
           VALUES ('payments', true, true, 10, 0, now() - interval '1 hour')"""
    )
    await pool.execute("UPDATE migration.backfill_runs SET status = 'finished', finished_at = now()")
    with pytest.raises(FailedPrecondition, match="started before the last backfill finished"):
        await control.change("payments", stage=Stage.DYNAMO_PRIMARY, who="ops")
    await pool.execute(
        """INSERT INTO migration.verifications (table_name, full_scan, clean, rows_checked, differences, started_at)
           VALUES ('payments', false, false, 10, 3, now())"""
    )
    with pytest.raises(FailedPrecondition, match="the latest verification found differences"):
        await control.change("payments", stage=Stage.DYNAMO_LIVE, who="ops")
    await pool.execute(
        """INSERT INTO migration.verifications (table_name, full_scan, clean, rows_checked, differences, started_at)
           VALUES ('payments', false, true, 10, 0, now())"""
    )

    assert (await control.change("payments", stage=Stage.DYNAMO_PRIMARY, who="ops")).stage is Stage.DYNAMO_PRIMARY
    # Backwards needs nothing: PostgreSQL still has every write.
    assert (await control.change("payments", stage=Stage.SHADOW, who="ops")).stage is Stage.SHADOW


async def clean_full_verification(pool: asyncpg.Pool, table: str) -> None:
    """As `loanbook migrate verify` records one that found nothing, started now."""
    await pool.execute(
        """INSERT INTO migration.verifications (table_name, full_scan, clean, rows_checked, differences, started_at)
           VALUES ($1, true, true, 10, 0, clock_timestamp())""",
        table,
    )


async def finished_backfill(pool: asyncpg.Pool, table: str) -> None:
    """As `loanbook migrate backfill` records a run that started and finished now."""
    await pool.execute(
        """INSERT INTO migration.backfill_runs (table_name, stage, started_by, rows_total, status, started_at,
                                                 finished_at)
           VALUES ($1, 'dual_write', 'ops', 10, 'finished', clock_timestamp(), clock_timestamp())""",
        table,
    )


async def test_after_a_spell_in_postgres_only_a_verification_from_before_it_no_longer_counts(
    pool: asyncpg.Pool,
) -> None:
    control = ControlPlane(pool)
    await control.seed({"logs": TableMode("logs", Stage.POSTGRES_ONLY, True)}, who="settings")
    await control.change("logs", stage=Stage.DUAL_WRITE, who="ops")
    await clean_full_verification(pool, "logs")
    await control.change("logs", stage=Stage.DYNAMO_PRIMARY, who="ops")
    # Rolled back all the way: the writes made now reach PostgreSQL alone, with no journal entry.
    await control.change("logs", stage=Stage.POSTGRES_ONLY, who="ops")
    with pytest.raises(FailedPrecondition, match="from postgres_only, go to dual_write first"):
        await control.change("logs", stage=Stage.DYNAMO_LIVE, who="ops")  # the old verification is no excuse
    await control.change("logs", stage=Stage.DUAL_WRITE, who="ops")

    with pytest.raises(FailedPrecondition, match="started before the table left postgres_only") as primary:
        await control.change("logs", stage=Stage.DYNAMO_PRIMARY, who="ops")
    with pytest.raises(FailedPrecondition, match="started before the table left postgres_only"):
        await control.change("logs", stage=Stage.DYNAMO_ONLY, who="ops")
    assert "backfill logs" in str(primary.value)
    assert (await control.mode("logs")).stage is Stage.DUAL_WRITE
    await clean_full_verification(pool, "logs")
    assert (await control.change("logs", stage=Stage.DYNAMO_PRIMARY, who="ops")).stage is Stage.DYNAMO_PRIMARY
    # A backfill from before a spell is stale too, even with a verification after it.
    await finished_backfill(pool, "logs")
    await control.change("logs", stage=Stage.POSTGRES_ONLY, who="ops")
    await control.change("logs", stage=Stage.DUAL_WRITE, who="ops")
    await clean_full_verification(pool, "logs")
    with pytest.raises(FailedPrecondition, match="the last backfill started before the table left postgres_only"):
        await control.change("logs", stage=Stage.DYNAMO_LIVE, who="ops")
    await finished_backfill(pool, "logs")
    await clean_full_verification(pool, "logs")
    assert (await control.change("logs", stage=Stage.DYNAMO_PRIMARY, who="ops")).stage is Stage.DYNAMO_PRIMARY
    # Going back short of postgres_only leaves the verification standing: DynamoDB kept receiving every write.
    await control.change("logs", stage=Stage.DUAL_WRITE, who="ops")
    assert (await control.change("logs", stage=Stage.DYNAMO_PRIMARY, who="ops")).stage is Stage.DYNAMO_PRIMARY


def _set_when(event: asyncio.Event, stage: Stage) -> Callable[[TableMode], None]:
    def listener(mode: TableMode) -> None:
        if mode.stage is stage:
            event.set()

    return listener


async def test_every_replica_follows_a_change_within_a_second(postgres_dsn: str, pool: asyncpg.Pool) -> None:
    control = ControlPlane(pool)
    await control.seed({"payments": TableMode("payments", Stage.DUAL_WRITE, True)}, who="settings")
    # Two replicas; the poll is slow on purpose, so only the notification can explain a fast update.
    replicas = [ModeWatcher(postgres_dsn, ControlPlane(pool), poll_interval=60) for _ in range(2)]
    followed = [asyncio.Event() for _ in replicas]
    for replica, event in zip(replicas, followed, strict=True):
        replica.subscribe(_set_when(event, Stage.SHADOW))
        await replica.start()
    try:
        assert all(r.mode("payments").stage is Stage.DUAL_WRITE for r in replicas)

        await control.change("payments", stage=Stage.SHADOW, who="ops")

        async with asyncio.timeout(1.0):
            await asyncio.gather(*(event.wait() for event in followed))
        assert all(r.mode("payments").stage is Stage.SHADOW for r in replicas)
    finally:
        for replica in replicas:
            await replica.stop()


async def test_a_switch_is_a_span_and_each_replica_marks_the_change_it_follows_in_a_linked_span(
    postgres_dsn: str, pool: asyncpg.Pool, spans: InMemorySpanExporter
) -> None:
    control = ControlPlane(pool)
    await control.seed({"payments": TableMode("payments", Stage.DUAL_WRITE, True)}, who="settings")
    replica = ModeWatcher(postgres_dsn, ControlPlane(pool), poll_interval=60)
    followed = asyncio.Event()
    replica.subscribe(_set_when(followed, Stage.SHADOW))
    await replica.start()
    spans.clear()
    try:
        await control.change("payments", stage=Stage.SHADOW, fallback=False, who="ops@bank")
        async with asyncio.timeout(1.0):
            await followed.wait()
    finally:
        await replica.stop()

    [switch] = [s for s in spans.get_finished_spans() if s.name == "migration.switch"]
    [followed_change] = [s for s in spans.get_finished_spans() if s.name == "migration.mode_change"]
    assert dict(switch.attributes or {}) == {
        "db.collection.name": "payments",
        "loanbook.migration.from_stage": "dual_write",
        "loanbook.migration.to_stage": "shadow",
        "loanbook.migration.from_fallback": "true",
        "loanbook.migration.to_fallback": "false",
    }
    assert [event.name for event in switch.events] == ["migration mode changed"]
    assert "ops@bank" not in str(switch.attributes) + str([event.attributes for event in switch.events])
    assert followed_change.parent is None  # the replica's own root span...
    assert [link.context.span_id for link in followed_change.links] == [switch.context.span_id]  # ...linked
    assert (followed_change.attributes or {})["loanbook.migration.stage"] == "shadow"
    assert (followed_change.attributes or {})["loanbook.migration.from_stage"] == "dual_write"
    assert [event.name for event in followed_change.events] == ["migration mode in force"]


async def test_a_refused_switch_is_an_error_span_saying_why(pool: asyncpg.Pool, spans: InMemorySpanExporter) -> None:
    control = ControlPlane(pool)
    await control.seed({"payments": TableMode("payments", Stage.DUAL_WRITE, True)}, who="settings")
    spans.clear()

    with pytest.raises(FailedPrecondition):
        await control.change("payments", stage=Stage.DYNAMO_ONLY, who="ops")

    [switch] = [s for s in spans.get_finished_spans() if s.name == "migration.switch"]
    assert switch.status.status_code is StatusCode.ERROR
    assert "clean full verification" in (switch.status.description or "")
    assert (switch.attributes or {})["error.type"] == "FailedPrecondition"
    assert [event.name for event in switch.events] == ["migration switch refused"]


async def test_a_replica_whose_listen_connection_dies_catches_up(postgres_dsn: str, pool: asyncpg.Pool) -> None:
    control = ControlPlane(pool)
    await control.seed({"payments": TableMode("payments", Stage.DUAL_WRITE, True)}, who="settings")
    replica = ModeWatcher(postgres_dsn, ControlPlane(pool), poll_interval=0.2)
    caught_up = asyncio.Event()
    replica.subscribe(_set_when(caught_up, Stage.SHADOW))
    await replica.start()
    try:
        await pool.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        )
        await control.change("payments", stage=Stage.SHADOW, who="ops")

        async with asyncio.timeout(3.0):
            await caught_up.wait()
    finally:
        await replica.stop()


async def test_an_unconfigured_table_reads_as_postgres_only(postgres_dsn: str, pool: asyncpg.Pool) -> None:
    replica = ModeWatcher(postgres_dsn, ControlPlane(pool), poll_interval=60)
    await replica.start()
    try:
        assert replica.mode("logs") == TableMode("logs", Stage.POSTGRES_ONLY, fallback=True)
    finally:
        await replica.stop()


def test_the_seed_settings_shape_maps_onto_stages(tmp_path: Path) -> None:
    path = tmp_path / "appsettings.json"
    path.write_text(json.dumps({"PaymentSettings": {"ReadFromDynamoDB": True, "EnableFallback": True}}))

    assert load_settings_file(path) == {"payments": TableMode("payments", Stage.DYNAMO_LIVE, True)}
    assert modes_from_settings({"PaymentSettings": {"ReadFromDynamoDB": False, "EnableFallback": False}}) == {
        "payments": TableMode("payments", Stage.DUAL_WRITE, False)
    }
    assert modes_from_settings({"tables": {"logs": {"stage": "shadow"}}}) == {
        "logs": TableMode("logs", Stage.SHADOW, True)
    }


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"PaymentSettings": {"ReadFromDynamoDB": "yes"}}, "PaymentSettings.ReadFromDynamoDB"),
        ({"Payments": {}}, "Payments"),
        ({"tables": {"payments": {"fallback": "on"}}}, "tables.payments.fallback"),
        ({"tables": {"ledger": {"stage": "shadow"}}}, "table"),
    ],
)
def test_a_bad_settings_document_names_the_key(document: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        modes_from_settings(document)

    assert refused.value.violations[0].field == field


def test_the_local_stack_settings_file_starts_payments_in_dual_write() -> None:
    path = Path(__file__).resolve().parents[2] / "deploy" / "migration-settings.json"

    assert load_settings_file(path) == {"payments": TableMode("payments", Stage.DUAL_WRITE, True)}


async def test_defaults_give_unconfigured_tables_the_mode_replicas_assume(pool: asyncpg.Pool) -> None:
    control = ControlPlane(pool)
    await control.seed({"payments": TableMode("payments", Stage.DUAL_WRITE, True)}, who="settings")

    created = await control.ensure_defaults(who="start-up")

    assert created == ["logs"]
    assert (await control.mode("logs")) == TableMode("logs", Stage.POSTGRES_ONLY, True, revision=1)
    assert (await control.mode("payments")).stage is Stage.DUAL_WRITE
