"""`loanbook cost --scenario`: the seed scenario offline, its --json document, and bad input refused with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.cost import round_prices_document
from toolkit.cli import app

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "toolkit" / "cost" / "scenarios" / "seed.json"
runner = CliRunner()


def cost(*arguments: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["cost", *arguments])
    return result.exit_code, result.stdout, result.stderr


def test_the_seed_scenario_prints_both_modes_break_even_the_claim_and_its_assumptions() -> None:
    code, stdout, stderr = cost("--scenario", str(SEED))
    assert code == 0, stderr
    for expected in ("payments: month 1", "logs: month 1", "PostgreSQL before", "$3,100.00", "break-even", "claimed"):
        assert expected in stdout
    assert stdout.count("assumed: ") == len(json.loads(SEED.read_text())["assumptions"])
    assert "not confirmed by an AWS-owned copy" in stderr


def test_the_seed_scenario_as_json() -> None:
    code, stdout, stderr = cost("--scenario", str(SEED), "--json")
    assert code == 0, stderr
    document = json.loads(stdout)
    assert document["schema_version"] == 1
    assert document["region"] == "us-east-1"
    assert [t["name"] for t in document["tables"]] == ["payments", "logs"]
    names = {c["name"] for c in document["tables"][0]["components"]}
    assert {"writes", "reads", "by_customer writes", "by_customer storage", "storage", "pitr", "streams"} <= names
    total = sum(t["total"]["on_demand"] for t in document["tables"])
    assert document["dynamodb"]["on_demand"] == pytest.approx(total, abs=1e-3)
    assert document["saving"]["on_demand"] == pytest.approx(
        document["postgres"]["before_usd"] - document["postgres"]["after_usd"] - document["dynamodb"]["on_demand"],
        abs=1e-3,
    )
    assert document["break_even_month"]["on_demand"] is not None
    assert {r["kind"] for r in document["recommendations"]} >= {"ttl"}
    assert document["claim"]["before_usd_month"] == 3100
    assert document["measured"] is None


def test_the_seed_in_another_region_and_with_ones_own_prices(tmp_path: Path) -> None:
    code, stdout, _ = cost("--scenario", str(SEED), "--region", "eu-west-1", "--json")
    assert code == 0
    assert json.loads(stdout)["region"] == "eu-west-1"
    own = tmp_path / "prices.json"
    own.write_text(json.dumps(round_prices_document()))
    code, stdout, _ = cost("--scenario", str(SEED), "--prices", str(own), "--json")
    assert code == 0
    assert json.loads(stdout)["region"] == "test-1"


def test_a_bad_prices_file_exits_2_naming_the_field(tmp_path: Path) -> None:
    document = round_prices_document()
    document["features"]["pitr_gb_months"]["per"] = 0
    bad = tmp_path / "prices.json"
    bad.write_text(json.dumps(document))
    code, _, stderr = cost("--scenario", str(SEED), "--prices", str(bad))
    assert code == 2
    assert "--prices" in stderr
    assert "features.pitr_gb_months.per" in stderr
    assert "greater than 0" in stderr


def test_a_bad_scenario_exits_2_naming_the_field(tmp_path: Path) -> None:
    document = json.loads(SEED.read_text())
    document["workload"]["tables"][0]["item_bytes"] = -5
    bad = tmp_path / "scenario.json"
    bad.write_text(json.dumps(document))
    code, _, stderr = cost("--scenario", str(bad))
    assert code == 2
    assert "--scenario" in stderr
    assert "workload.tables.0.item_bytes" in stderr


def test_an_out_of_range_option_exits_2() -> None:
    code, _, stderr = cost("--scenario", str(SEED), "--target-utilisation", "1.5")
    assert code == 2
    assert "--target-utilisation" in stderr


def test_the_live_mode_needs_the_postgresql_bill(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOANBOOK_MIGRATION_POSTGRES_DSN", "postgresql://nobody@127.0.0.1:1/none")
    code, _, stderr = cost()
    assert code == 2
    assert "--pg-instance-monthly: required without --scenario" in stderr
