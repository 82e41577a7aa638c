"""The promotion guards' reading of evidence: limits, missing evidence, and where each guard counts."""

from __future__ import annotations

import pytest

from migration.stages import Stage
from toolkit.guards import Evidence, GuardLimits, breached, prometheus_queries, read_guards, unknown_required

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
