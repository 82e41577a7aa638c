"""`python -m migration` reads and switches table modes through the control plane, refusing unsafe moves."""

from __future__ import annotations

import argparse

import asyncpg
import pytest

from chassis.errors import FailedPrecondition
from migration.__main__ import build_parser, run
from migration.__main__ import main as cli
from migration.schema import upgrade_to_head


@pytest.fixture
async def fresh_modes(postgres_dsn: str, monkeypatch: pytest.MonkeyPatch) -> str:
    await upgrade_to_head(postgres_dsn)
    connection = await asyncpg.connect(postgres_dsn)
    await connection.execute(
        "TRUNCATE migration.mode_changes, migration.table_modes, migration.verifications RESTART IDENTITY CASCADE"
    )
    await connection.execute(
        "INSERT INTO migration.table_modes (table_name, stage, fallback, updated_by)"
        " VALUES ('payments', 'dual_write', true, 'test')"
    )
    await connection.close()
    monkeypatch.setenv("LOANBOOK_MIGRATION_POSTGRES_DSN", postgres_dsn)
    return postgres_dsn


async def test_switch_changes_the_stage_and_history_shows_who_did_it(
    fresh_modes: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parse = _parser_args
    assert await run(parse(["switch", "payments", "shadow", "--who", "ops@bank", "--reason", "try"]), fresh_modes) == 0
    assert await run(parse(["status"]), fresh_modes) == 0
    assert await run(parse(["history", "payments"]), fresh_modes) == 0

    out = capsys.readouterr().out
    assert "payments: shadow, fallback on (revision 2)" in out
    assert "payments   shadow" in out
    assert "ops@bank: dual_write -> shadow" in out


async def test_an_unsafe_switch_is_refused_with_the_reason(fresh_modes: str) -> None:
    with pytest.raises(FailedPrecondition, match="clean full verification"):
        await run(_parser_args(["switch", "payments", "dynamo_only", "--who", "ops"]), fresh_modes)


def test_the_cli_needs_a_dsn_and_a_change(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("LOANBOOK_MIGRATION_POSTGRES_DSN", raising=False)

    assert cli(["status"]) == 2
    with pytest.raises(SystemExit):
        cli(["switch", "payments"])
    assert "LOANBOOK_MIGRATION_POSTGRES_DSN" in capsys.readouterr().err


def _parser_args(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)
