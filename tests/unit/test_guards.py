"""The promotion guards' reading of evidence (limits, missing evidence, where each guard counts) and plan files."""

from __future__ import annotations

from pathlib import Path

import pytest

from chassis.errors import InvalidArgument
from migration.stages import Stage
from toolkit.guards import Evidence, GuardLimits, breached, prometheus_queries, read_guards, unknown_required
from toolkit.promotion import PromotionOptions
from toolkit.promotion_plan import load_plan

LIMITS = GuardLimits()


def reading(evidence: Evidence, guard: str) -> tuple[float | None, bool | None]:
    [found] = [r for r in read_guards(evidence, LIMITS) if r.guard == guard]
    return found.value, found.holds


def test_clean_evidence_holds_every_guard() -> None:
    evidence = Evidence(
        window_seconds=60,
        store_calls=1000,
        comparisons=40,
        successful_calls={"postgres": 600, "dynamodb": 400},
        p99_seconds={"postgres": 0.004, "dynamodb": 0.006},
        journal_oldest_seconds=1.5,
    )
    readings = read_guards(evidence, LIMITS)
    assert all(r.holds is True for r in readings), readings
    assert breached(readings, Stage.DYNAMO_LIVE) == []
    assert unknown_required(readings, Stage.DYNAMO_LIVE) == []


def test_the_mismatch_ratio_needs_enough_comparisons_unless_something_already_mismatched() -> None:
    assert reading(Evidence(window_seconds=60, comparisons=5), "shadow_mismatch_ratio") == (None, None)
    # One mismatch is a difference however few the comparisons: breached, not "no data".
    assert reading(Evidence(window_seconds=60, comparisons=5, mismatches=1), "shadow_mismatch_ratio") == (0.2, False)
    assert reading(Evidence(window_seconds=60, comparisons=20), "shadow_mismatch_ratio") == (0.0, True)


def test_a_p99_ratio_is_only_taken_with_enough_calls_on_both_backends() -> None:
    few = Evidence(
        window_seconds=60,
        successful_calls={"postgres": 600, "dynamodb": 10},
        p99_seconds={"postgres": 0.004, "dynamodb": 0.040},
    )
    assert reading(few, "dynamodb_p99_ratio") == (None, None)
    slow = Evidence(
        window_seconds=60,
        successful_calls={"postgres": 600, "dynamodb": 400},
        p99_seconds={"postgres": 0.004, "dynamodb": 0.016},
    )
    value, holds = reading(slow, "dynamodb_p99_ratio")
    assert value == pytest.approx(4.0)
    assert holds is False


def test_a_slow_dynamodb_counts_only_once_it_is_read() -> None:
    slow = Evidence(
        window_seconds=60,
        successful_calls={"postgres": 600, "dynamodb": 400},
        p99_seconds={"postgres": 0.004, "dynamodb": 0.016},
    )
    readings = read_guards(slow, LIMITS)
    assert breached(readings, Stage.DUAL_WRITE) == []  # background copies only
    assert [r.guard for r in breached(readings, Stage.SHADOW)] == ["dynamodb_p99_ratio"]


def test_fallbacks_errors_and_an_old_journal_entry_breach_in_every_stage() -> None:
    evidence = Evidence(window_seconds=60, store_calls=100, store_errors=2, fallbacks=5, journal_oldest_seconds=31)
    for stage in Stage:
        guards = {r.guard for r in breached(read_guards(evidence, LIMITS), stage)}
        assert guards == {"fallback_ratio", "error_ratio", "journal_oldest_seconds"}, stage


def test_evidence_a_stage_must_show_before_the_table_leaves_it() -> None:
    quiet = read_guards(Evidence(window_seconds=60), LIMITS)
    assert unknown_required(quiet, Stage.POSTGRES_ONLY) == []  # no traffic: nothing to judge
    assert [r.guard for r in unknown_required(quiet, Stage.SHADOW)] == ["shadow_mismatch_ratio"]
    assert {r.guard for r in unknown_required(quiet, Stage.DYNAMO_LIVE)} == {
        "shadow_mismatch_ratio",
        "dynamodb_p99_ratio",
    }
    assert [r.guard for r in unknown_required(quiet, Stage.DYNAMO_PRIMARY)] == ["dynamodb_p99_ratio"]


def test_the_queries_select_the_table_with_its_name_escaped_and_the_window_in_seconds() -> None:
    queries = prometheus_queries('pay"ments', 90.4)
    assert all('db_collection_name="pay\\"ments"' in query for query in queries.values())
    assert all("[90s]" in query or "offset 90s" in query for query in queries.values())


# --- plans -----------------------------------------------------------------------------------------------------


def write_plan(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


BASE = PromotionOptions(target=Stage.DYNAMO_PRIMARY, window_seconds=300, limits=GuardLimits(max_latency_ratio=3))


def test_a_plan_gives_each_table_its_target_its_timing_and_its_guards_over_the_commands(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        """
        window_seconds = 120
        [tables.payments]
        to = "dynamo_live"
        [tables.logs]
        window_seconds = 600
        guards = { max_latency_ratio = 5, min_comparisons = 50 }
        """,
    )
    options = load_plan(plan, BASE)

    assert (options["payments"].target, options["payments"].window_seconds) == (Stage.DYNAMO_LIVE, 120)
    assert options["payments"].limits == BASE.limits
    assert (options["logs"].target, options["logs"].window_seconds) == (Stage.DYNAMO_PRIMARY, 600)
    assert (options["logs"].limits.max_latency_ratio, options["logs"].limits.min_comparisons) == (5, 50)
    assert options["logs"].limits.max_fallback_ratio == BASE.limits.max_fallback_ratio


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ('[tables.orders]\nto = "shadow"', "tables.orders", "Input should be 'payments' or 'logs'"),
        ('[tables.logs]\nto = "sideways"', "tables.logs.to", "Input should be"),
        ("[tables.logs.guards]\nmax_error_ratio = 2", "tables.logs.guards.max_error_ratio", "less than or equal to 1"),
        ("[tables.logs]\nwindow = 5", "tables.logs.window", "Extra inputs are not permitted"),
        ("tables = {}", "tables", "at least 1 item"),
    ],
)
def test_a_wrong_plan_is_refused_naming_the_field_and_why(tmp_path: Path, text: str, field: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        load_plan(write_plan(tmp_path, text), BASE)
    [violation] = refused.value.violations
    assert violation.field == field
    assert reason in violation.description


def test_a_plan_that_is_not_toml_is_refused_with_the_parsers_reason(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument) as refused:
        load_plan(write_plan(tmp_path, "tables = ["), BASE)
    [violation] = refused.value.violations
    assert violation.description.startswith("cannot read the plan: ")
