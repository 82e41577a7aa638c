"""`loanbook migrate` end to end: status, switch, history, rollback, refusals, and a SIGKILLed backfill resumed."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from typer.testing import CliRunner

from migration.stages import Stage
from services.payment.domain import Payment
from tests.support.dynamodb import delete_table_if_present, local_session
from tests.support.payments import a_payment
from tests.support.toolkit import insert_logs, insert_payments, prepare_postgres, set_stage, toolkit_environment
from toolkit.cli import app
from toolkit.runs import BackfillRuns

ROOT = Path(__file__).resolve().parents[3]
runner = CliRunner()


def on_postgres(dsn: str, work: str, *arguments: object) -> object:
    """Runs one statement in its own event loop (these tests are synchronous, as CliRunner is)."""

    async def run() -> object:
        connection = await asyncpg.connect(dsn)
        try:
            return await connection.fetchval(work, *arguments)
        finally:
            await connection.close()

    return asyncio.run(run())


@pytest.fixture
def environment(postgres_dsn: str, dynamodb_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Empty stores, both tables dual-writing, and fresh DynamoDB tables under a prefix of this test's own."""

    async def prepare() -> str:
        await prepare_postgres(postgres_dsn)
        connection = await asyncpg.connect(postgres_dsn)
        try:
            for table in ("payments", "logs"):
                await set_stage(connection, table, Stage.DUAL_WRITE)
        finally:
            await connection.close()
        return f"cli-{os.urandom(4).hex()}"

    prefix = asyncio.run(prepare())
    values = toolkit_environment(postgres_dsn, dynamodb_endpoint, prefix)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    try:
        asyncio.run(_create_tables(dynamodb_endpoint, prefix))
        yield values
    finally:
        asyncio.run(_delete_tables(dynamodb_endpoint, prefix))


async def _create_tables(endpoint: str, prefix: str) -> None:
    from services.logging.adapters.dynamodb import ensure_log_table
    from services.payment.adapters.dynamodb import ensure_payment_table

    async with local_session().client("dynamodb", endpoint_url=endpoint) as client:
        await ensure_payment_table(client, f"{prefix}-payments")
        await ensure_log_table(client, f"{prefix}-logs")


async def _delete_tables(endpoint: str, prefix: str) -> None:
    """The log table has TTL: see tests/integration/conftest.py for why none may outlive its test."""

    async with local_session().client("dynamodb", endpoint_url=endpoint) as client:
        for table in (f"{prefix}-payments", f"{prefix}-logs"):
            await delete_table_if_present(client, table)


def seed(dsn: str, payments: int, logs: int) -> None:
    async def run() -> None:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:
            await insert_payments(pool, payments)
            await insert_logs(pool, logs)
        finally:
            await pool.close()

    asyncio.run(run())


def test_switch_changes_the_stage_and_history_shows_who_did_it(environment: dict[str, str]) -> None:
    switched = runner.invoke(app, ["migrate", "switch", "payments", "shadow", "--who", "ops@bank", "--reason", "try"])
    history = runner.invoke(app, ["migrate", "history", "payments"])

    assert switched.exit_code == 0, switched.output
    assert "payments: dual_write -> shadow, fallback on (revision 2)" in switched.output
    assert "ops@bank: dual_write -> shadow, fallback True -> True try" in history.output


def test_the_watchdog_is_on_until_turned_off_and_status_says_so(environment: dict[str, str]) -> None:
    shown = runner.invoke(app, ["migrate", "watchdog", "payments"])
    off = runner.invoke(app, ["migrate", "watchdog", "payments", "off", "--who", "ops@bank"])
    status = runner.invoke(app, ["migrate", "status", "payments"])
    wrong = runner.invoke(app, ["migrate", "watchdog", "payments", "sometimes"])

    assert shown.exit_code == 0, shown.output
    assert "payments: watchdog on; no automatic rollback yet" in shown.output
    assert "payments: watchdog off; no automatic rollback yet" in off.output
    assert "watchdog           off; no automatic rollback yet" in status.output
    assert wrong.exit_code == 2
    assert "on or off" in wrong.output
    assert (
        on_postgres(
            environment["LOANBOOK_MIGRATION_POSTGRES_DSN"],
            "SELECT updated_by FROM migration.watchdogs WHERE table_name = 'payments'",
        )
        == "ops@bank"
    )


def test_promote_refuses_what_it_cannot_run_before_touching_anything(
    environment: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text("[tables.logs.guards]\nmax_error_ratio = 2\n")
    neither = runner.invoke(app, ["migrate", "promote"])
    wrong_plan = runner.invoke(app, ["migrate", "promote", "--plan", str(plan), "--prometheus-url", "http://x"])
    wrong_stage = runner.invoke(app, ["migrate", "promote", "payments", "--to", "sideways", "--prometheus-url", "x"])
    monkeypatch.delenv("LOANBOOK_MIGRATION_PROMETHEUS_URL", raising=False)
    no_metrics = runner.invoke(app, ["migrate", "promote", "payments"])

    assert (neither.exit_code, wrong_plan.exit_code, wrong_stage.exit_code, no_metrics.exit_code) == (2, 2, 2, 2)
    assert "give a TABLE or --plan, not both" in " ".join(neither.output.split())
    assert "tables.logs.guards.max_error_ratio: Input should be less than or equal to 1" in wrong_plan.output
    assert "--to: unknown stage 'sideways'" in wrong_stage.output
    assert "set LOANBOOK_MIGRATION_PROMETHEUS_URL or --prometheus-url" in no_metrics.output
    assert on_postgres(environment["LOANBOOK_MIGRATION_POSTGRES_DSN"], "SELECT count(*) FROM migration.promotions") == 0


def test_status_shows_each_table_and_the_next_safe_step(environment: dict[str, str], postgres_dsn: str) -> None:
    seed(postgres_dsn, payments=40, logs=30)
    on_postgres(postgres_dsn, "UPDATE migration.table_modes SET stage = 'postgres_only' WHERE table_name = 'logs'")

    result = runner.invoke(app, ["migrate", "status"])

    assert result.exit_code == 0, result.output
    payments, logs = result.output.split("logs\n")
    assert "stage              dual_write, fallback on" in payments
    assert "journal backlog    0 pending" in payments
    assert "rows               PostgreSQL 40 rows; DynamoDB ~0 items" in payments
    assert "last backfill      none" in payments
    assert "next step          backfill (`loanbook migrate backfill payments`), then verify" in payments
    assert "next step          switch to dual_write (`loanbook migrate switch logs dual_write`), then backfill" in logs


def test_backfill_then_verify_then_forward_and_rollback(environment: dict[str, str], postgres_dsn: str) -> None:
    seed(postgres_dsn, payments=300, logs=200)

    refused = runner.invoke(app, ["migrate", "switch", "payments", "dynamo_primary"])
    backfilled = runner.invoke(app, ["migrate", "backfill", "payments", "logs", "--workers", "2"])
    verified = runner.invoke(app, ["migrate", "verify"])
    planned = runner.invoke(app, ["migrate", "plan", "payments"])
    forward = [
        runner.invoke(app, ["migrate", "switch", "payments", stage])
        for stage in ("shadow", "dynamo_live", "dynamo_primary")
    ]
    rolled_back = runner.invoke(app, ["migrate", "rollback", "payments", "--who", "oncall"])

    assert refused.exit_code == 1
    assert "refused: payments: moving to dynamo_primary needs a clean verification (no verification yet)" in " ".join(
        refused.output.split()
    )
    assert backfilled.exit_code == 0, backfilled.output
    # The two tables' runs start side by side, so which one is numbered first is up to the scheduler.
    assert re.search(r"payments: run \d+ copied 300 rows as 600 items", backfilled.output), backfilled.output
    assert re.search(r"logs: run \d+ copied 200 rows as 200 items", backfilled.output), backfilled.output
    assert verified.exit_code == 0, verified.output
    assert "payments: clean (full: 300 rows as 600 items checked, 600 DynamoDB items scanned" in verified.output
    assert "paced at 2,000 items/s (waited" in verified.output  # the CLI's default for live systems
    assert "next step          switch to shadow" in planned.output
    assert [result.exit_code for result in forward] == [0, 0, 0], [result.output for result in forward]
    assert rolled_back.exit_code == 0, rolled_back.output
    assert "payments: rolled back dynamo_primary -> shadow" in rolled_back.output
    assert "PostgreSQL holds every acknowledged write" in " ".join(rolled_back.output.split())
    assert (
        on_postgres(postgres_dsn, "SELECT changed_by FROM migration.mode_changes ORDER BY id DESC LIMIT 1") == "oncall"
    )


def test_after_a_spell_in_postgres_only_the_plan_and_the_guards_ask_for_a_new_backfill_and_verify(
    environment: dict[str, str], postgres_dsn: str
) -> None:
    seed(postgres_dsn, payments=30, logs=0)
    assert runner.invoke(app, ["migrate", "backfill", "payments"]).exit_code == 0
    assert runner.invoke(app, ["migrate", "verify", "payments"]).exit_code == 0
    for stage in ("postgres_only", "dual_write"):
        assert runner.invoke(app, ["migrate", "switch", "payments", stage]).exit_code == 0
    seed(postgres_dsn, payments=5, logs=0)  # written while the table was in postgres_only: only in PostgreSQL

    planned = runner.invoke(app, ["migrate", "plan", "payments"])
    refused = runner.invoke(app, ["migrate", "switch", "payments", "dynamo_live"])
    assert runner.invoke(app, ["migrate", "backfill", "payments"]).exit_code == 0
    verified = runner.invoke(app, ["migrate", "verify", "payments"])
    switched = runner.invoke(app, ["migrate", "switch", "payments", "dynamo_live"])

    assert "next step          backfill again" in planned.output, planned.output
    assert refused.exit_code == 1
    assert "started before the table left postgres_only" in " ".join(refused.output.split())
    assert verified.exit_code == 0, verified.output
    assert "payments: clean (full: 35 rows" in verified.output
    assert switched.exit_code == 0, switched.output


def test_an_incremental_verify_builds_on_a_full_one_and_status_shows_its_chain(
    environment: dict[str, str], postgres_dsn: str
) -> None:
    seed(postgres_dsn, payments=30, logs=0)
    assert runner.invoke(app, ["migrate", "backfill", "payments"]).exit_code == 0

    too_early = runner.invoke(app, ["migrate", "verify", "payments", "--incremental"])
    full = runner.invoke(app, ["migrate", "verify", "payments"])
    incremental = runner.invoke(app, ["migrate", "verify", "payments", "--incremental"])
    status = runner.invoke(app, ["migrate", "status", "payments"])
    mixed = runner.invoke(app, ["migrate", "verify", "payments", "--incremental", "--sample", "0.5"])

    assert too_early.exit_code == 1
    assert "refused: payments: an incremental verification builds on a clean full one: none yet" in " ".join(
        too_early.output.split()
    )
    assert full.exit_code == 0, full.output
    assert incremental.exit_code == 0, incremental.output
    assert "payments: clean (incremental since verification 1, 0 written keys: 0 rows" in " ".join(
        incremental.output.split()
    )
    assert "incremental, unbroken chain back to full verification 1" in " ".join(status.output.split())
    assert mixed.exit_code == 2
    assert "not with --sample or --restart" in " ".join(mixed.output.split())


def test_verify_exits_non_zero_listing_the_differences(environment: dict[str, str], postgres_dsn: str) -> None:
    seed(postgres_dsn, payments=50, logs=0)

    result = runner.invoke(app, ["migrate", "verify", "payments"])

    assert result.exit_code == 1
    assert "payments: 100 missing, 0 extra, 0 differing" in result.output
    assert "  missing   " in result.output
    assert "... and 80 more" in result.output


def test_moving_to_dynamo_only_is_refused_while_the_journal_holds_writes(
    environment: dict[str, str], postgres_dsn: str
) -> None:
    on_postgres(postgres_dsn, "UPDATE migration.table_modes SET stage = 'dynamo_primary' WHERE table_name = 'logs'")
    on_postgres(
        postgres_dsn,
        """INSERT INTO migration.verifications (table_name, full_scan, clean, rows_checked,
                                 differences, started_at) VALUES ('logs', true, true, 0, 0, now())""",
    )
    on_postgres(
        postgres_dsn,
        """INSERT INTO migration.journal (table_name, item_key, item_version, routing_keys)
                                 VALUES ('logs', 'batch-1', 1, '{batch-1}')""",
    )

    refused = runner.invoke(app, ["migrate", "switch", "logs", "dynamo_only", "--drain-seconds", "0.3"])
    on_postgres(postgres_dsn, "DELETE FROM migration.journal WHERE table_name = 'logs'")
    allowed = runner.invoke(app, ["migrate", "switch", "logs", "dynamo_only"])
    # Straight back to a stage where PostgreSQL answers reads is refused: it lacks the writes made in dynamo_only.
    straight_back = runner.invoke(app, ["migrate", "switch", "logs", "shadow"])

    assert refused.exit_code == 1
    refusal = " ".join(refused.output.split())
    assert "logs: waiting up to 0.3 s for 1 journaled writes to reach DynamoDB" in refusal
    assert re.search(
        r"logs: 1 journaled writes are not in DynamoDB yet \(oldest \d+\.\d s\) after waiting "
        r"\d+\.\d s for the journal to drain",
        refusal,
    ), refusal
    assert allowed.exit_code == 0, allowed.output
    assert straight_back.exit_code == 1
    assert "go to dynamo_primary with fallback off first" in " ".join(straight_back.output.split())


def test_rollback_out_of_dynamo_only_copies_dynamodb_back_verifies_and_says_what_it_guarantees(
    environment: dict[str, str], postgres_dsn: str
) -> None:
    seed(postgres_dsn, payments=40, logs=60)
    assert runner.invoke(app, ["migrate", "backfill"]).exit_code == 0
    assert runner.invoke(app, ["migrate", "verify"]).exit_code == 0
    for stage in ("shadow", "dynamo_live", "dynamo_primary", "dynamo_only"):
        assert runner.invoke(app, ["migrate", "switch", "payments", stage]).exit_code == 0
    payment = a_payment()
    asyncio.run(_create_in_dynamodb(environment, payment))

    back = runner.invoke(app, ["migrate", "rollback", "payments", "--to", "shadow", "--settle-seconds", "0"])
    output = " ".join(back.output.split())

    assert back.exit_code == 0, back.output
    assert "payments: dynamo_only -> dynamo_primary, fallback off" in output
    assert "scanned 82 DynamoDB items" in output
    assert "1 rows inserted into PostgreSQL, 0 updated" in output
    assert "40 kept (PostgreSQL's version was the same or newer), 41 skipped" in output
    assert ": clean (full: 41 rows" in output
    assert "payments: rolled back dynamo_only -> shadow, fallback on." in output
    assert "Guarantee: Every acknowledged write is in PostgreSQL at its latest version" in output
    assert on_postgres(postgres_dsn, "SELECT version FROM payment.payments WHERE id = $1", payment.id) == 1
    assert (
        on_postgres(postgres_dsn, "SELECT stage FROM migration.table_modes WHERE table_name = 'payments'") == "shadow"
    )


def test_verify_does_not_repair_from_postgres_while_it_lacks_the_writes_of_dynamo_only(
    environment: dict[str, str], postgres_dsn: str
) -> None:
    for stage in ("dynamo_primary", "dynamo_only"):
        on_postgres(
            postgres_dsn,
            """INSERT INTO migration.verifications (table_name, full_scan, clean, rows_checked,
                                     differences, started_at) VALUES ('logs', true, true, 0, 0, now())""",
        )
        assert runner.invoke(app, ["migrate", "switch", "logs", stage]).exit_code == 0
    assert runner.invoke(app, ["migrate", "switch", "logs", "dynamo_primary", "--fallback", "off"]).exit_code == 0

    repair = runner.invoke(app, ["migrate", "verify", "logs", "--repair"])
    status = runner.invoke(app, ["migrate", "status", "logs"])

    assert repair.exit_code == 1
    assert "--repair would make DynamoDB match PostgreSQL" in " ".join(repair.output.split())
    assert "finish the way back from dynamo_only: `loanbook migrate rollback logs`" in " ".join(status.output.split())


async def _create_in_dynamodb(environment: dict[str, str], payment: Payment) -> None:
    from services.payment.adapters.dynamodb import DynamoPaymentRepository

    endpoint = environment["LOANBOOK_MIGRATION_DYNAMODB_ENDPOINT"]
    async with local_session().client("dynamodb", endpoint_url=endpoint) as client:
        prefix = environment["LOANBOOK_MIGRATION_DYNAMODB_TABLE_PREFIX"]
        await DynamoPaymentRepository(client, f"{prefix}-payments").create(payment)


def test_the_cli_names_the_missing_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOANBOOK_MIGRATION_POSTGRES_DSN", raising=False)

    result = runner.invoke(app, ["migrate", "status"])
    no_change = runner.invoke(app, ["migrate", "switch", "payments"])

    assert result.exit_code == 2
    assert "LOANBOOK_MIGRATION_POSTGRES_DSN (or --postgres-dsn): Field required" in result.output
    assert no_change.exit_code == 2
    assert "give a stage, --fallback, or both" in no_change.output


def test_a_backfill_killed_half_way_resumes_where_it_stopped(environment: dict[str, str], postgres_dsn: str) -> None:
    seed(postgres_dsn, payments=3000, logs=3000)
    command = [
        sys.executable,
        "-m",
        "toolkit",
        "migrate",
        "backfill",
        "payments",
        "logs",
        "--workers",
        "2",
        "--batch-rows",
        "50",
        "--rate-limit",
        "1500",
        "--lease-seconds",
        "2",  # the ranges it held come free 2 s after it dies
    ]
    env = {**os.environ, **environment, "PYTHONPATH": f"{ROOT / 'gen' / 'python'}:{ROOT}"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done = 0
    deadline = time.monotonic() + 60
    while done < 1500 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
        done = int(str(on_postgres(postgres_dsn, "SELECT coalesce(sum(rows_done), 0) FROM migration.backfill_ranges")))
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read() if process.stderr else ""
    checkpointed = int(str(on_postgres(postgres_dsn, "SELECT sum(rows_done) FROM migration.backfill_ranges")))
    assert 1500 <= checkpointed < 6000
    assert on_postgres(postgres_dsn, "SELECT count(*) FROM migration.backfill_runs WHERE status = 'running'") == 2

    resumed = runner.invoke(app, ["migrate", "backfill", "--workers", "2"])
    verified = runner.invoke(app, ["migrate", "verify"])

    assert resumed.exit_code == 0, resumed.output
    assert resumed.output.count("(resumed)") == 2
    copied = [
        int(line.split(" copied ")[1].split(" rows")[0].replace(",", ""))
        for line in resumed.output.splitlines()
        if " copied " in line
    ]
    assert sum(copied) == 6000 - checkpointed  # nothing checkpointed was copied again
    assert verified.exit_code == 0, verified.output
    # Every payment once with its marker, every log entry once: the rewritten last pages did not duplicate.
    assert "payments: clean (full: 3,000 rows as 6,000 items checked, 6,000 DynamoDB items scanned" in verified.output
    assert "logs: clean (full: 3,000 rows as 3,000 items checked, 3,000 DynamoDB items scanned" in verified.output


def no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing for botocore's credential chain to find: no keys, no shared files, no instance metadata."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_against_a_local_endpoint_the_cli_needs_no_aws_credentials(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    no_aws_credentials(monkeypatch, tmp_path)

    result = runner.invoke(app, ["migrate", "status", "payments"])

    assert result.exit_code == 0, result.output
    assert "rows               PostgreSQL 0 rows; DynamoDB ~0 items" in result.output


def test_against_aws_without_credentials_the_cli_says_what_to_set(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    no_aws_credentials(monkeypatch, tmp_path)
    monkeypatch.delenv("LOANBOOK_MIGRATION_DYNAMODB_ENDPOINT")

    result = runner.invoke(app, ["migrate", "status", "payments"])

    assert result.exit_code == 2
    assert "no AWS credentials found for DynamoDB in us-east-1: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in (
        " ".join(result.output.split())
    )


def test_rows_written_during_a_backfill_are_counted_honestly(environment: dict[str, str], postgres_dsn: str) -> None:
    seed(postgres_dsn, payments=30, logs=0)

    async def plan_a_run_then_write_more() -> None:
        # The run counts 30 rows when it starts; 15 more are written before its workers reach them.
        pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=2)
        try:
            await BackfillRuns(pool).start("payments", "dual_write", "test", 30, [(None, None)])
            await insert_payments(pool, 15)
        finally:
            await pool.close()

    asyncio.run(plan_a_run_then_write_more())
    backfilled = runner.invoke(app, ["migrate", "backfill", "payments"])
    status = runner.invoke(app, ["migrate", "status", "payments"])

    assert backfilled.exit_code == 0, backfilled.output
    assert "45 rows done (30 counted when the run started), 1 ranges" in backfilled.output
    assert " of 30 rows" not in backfilled.output
    assert "finished, 45 rows done (30 counted when the run started)" in status.output


def test_a_mistyped_dsn_is_a_bad_setting_named_without_its_password(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOANBOOK_MIGRATION_POSTGRES_DSN", "loanbook:hunter2@127.0.0.1:5432/loanbook")

    result = runner.invoke(app, ["migrate", "status"])

    assert result.exit_code == 2
    assert "LOANBOOK_MIGRATION_POSTGRES_DSN (or --postgres-dsn): Value error, must be a postgresql:// URL" in (
        " ".join(result.output.split())
    )
    assert "hunter2" not in result.output
