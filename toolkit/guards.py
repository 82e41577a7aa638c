"""The evidence a stage must show before a table moves on: guards over the services' metrics and the journal."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime

import asyncpg
import httpx

from migration.journal import Journal
from migration.stages import Stage
from toolkit.latency import HISTOGRAM, PrometheusUnavailable


@dataclass(frozen=True)
class GuardLimits:
    """Thresholds of the guards; docs/migration-runbook.md gives the reason for each default."""

    # A shadow comparison already skips keys with a write in flight, so any mismatch is a real difference.
    max_mismatch_ratio: float = 0.0
    # Comparisons a comparing stage must have made in the window before its mismatch ratio counts: with a 10 %
    # sample, 20 comparisons are about 200 reads.
    min_comparisons: int = 20
    # A few reads fall back on a transient timeout; more than 1 in 100 calls means DynamoDB is not fit to serve.
    max_fallback_ratio: float = 0.01
    max_error_ratio: float = 0.01
    # As the LoanbookDynamoDBSlowerThanPostgres alert: 3x is outside the normal spread of two single-digit-ms stores.
    max_latency_ratio: float = 3.0
    # Successful calls each backend needs in the window before its p99 is compared (so a p99 is not one call).
    min_calls_per_backend: int = 50
    # Writes are copied within the relay's head start (2 s) plus its retries; half a minute means copies are stuck.
    max_journal_age_seconds: float = 30.0


@dataclass(frozen=True)
class Evidence:
    """What one look at a table found over the last `window_seconds` (counts are increases over the window)."""

    window_seconds: float
    store_calls: float = 0.0
    store_errors: float = 0.0
    fallbacks: float = 0.0
    comparisons: float = 0.0  # shadow comparisons that compared something (match or mismatch)
    mismatches: float = 0.0
    successful_calls: Mapping[str, float] = field(default_factory=dict)  # backend -> calls
    p99_seconds: Mapping[str, float] = field(default_factory=dict)  # backend -> p99 of successful calls
    journal_pending: int = 0
    journal_oldest_seconds: float = 0.0


@dataclass(frozen=True)
class GuardReading:
    """One guard's value against its limit: holds True, False (breached) or None (not enough evidence yet)."""

    guard: str
    value: float | None
    limit: float
    holds: bool | None
    evidence: str

    def figures(self) -> dict[str, object]:
        return asdict(self)


# Where a guard's value must be known before the table may leave the stage; elsewhere no traffic means nothing to
# judge. The mismatch ratio where reads are compared; the p99 ratio where DynamoDB serves reads.
REQUIRED: Mapping[str, frozenset[Stage]] = {
    "shadow_mismatch_ratio": frozenset({Stage.SHADOW, Stage.DYNAMO_LIVE}),
    "dynamodb_p99_ratio": frozenset({Stage.DYNAMO_LIVE, Stage.DYNAMO_PRIMARY}),
}


def _ratio(part: float, whole: float) -> float | None:
    return None if whole <= 0 else part / whole


def read_guards(evidence: Evidence, limits: GuardLimits) -> list[GuardReading]:
    """Every guard's reading of the evidence."""
    readings = []
    mismatch = (
        None
        if evidence.comparisons < limits.min_comparisons and evidence.mismatches == 0
        else _ratio(evidence.mismatches, max(evidence.comparisons, evidence.mismatches))
    )
    readings.append(
        _reading(
            "shadow_mismatch_ratio",
            mismatch,
            limits.max_mismatch_ratio,
            f"{evidence.mismatches:g} mismatches in {evidence.comparisons:.0f} comparisons "
            f"(at least {limits.min_comparisons} needed)",
        )
    )
    readings.append(
        _reading(
            "fallback_ratio",
            _ratio(evidence.fallbacks, evidence.store_calls),
            limits.max_fallback_ratio,
            f"{evidence.fallbacks:.0f} fallbacks in {evidence.store_calls:.0f} store calls",
        )
    )
    readings.append(
        _reading(
            "error_ratio",
            _ratio(evidence.store_errors, evidence.store_calls),
            limits.max_error_ratio,
            f"{evidence.store_errors:.0f} failed in {evidence.store_calls:.0f} store calls",
        )
    )
    calls = evidence.successful_calls
    dynamodb, postgres = evidence.p99_seconds.get("dynamodb"), evidence.p99_seconds.get("postgres")
    enough = all(calls.get(backend, 0) >= limits.min_calls_per_backend for backend in ("dynamodb", "postgres"))
    latency = None if not (enough and dynamodb is not None and postgres) else dynamodb / postgres
    readings.append(
        _reading(
            "dynamodb_p99_ratio",
            latency,
            limits.max_latency_ratio,
            f"p99 dynamodb {_ms(dynamodb)} over {calls.get('dynamodb', 0):.0f} calls, postgres {_ms(postgres)} over "
            f"{calls.get('postgres', 0):.0f} (at least {limits.min_calls_per_backend} each needed)",
        )
    )
    readings.append(
        _reading(
            "journal_oldest_seconds",
            evidence.journal_oldest_seconds,
            limits.max_journal_age_seconds,
            f"{evidence.journal_pending} journal entries pending",
        )
    )
    return readings


def _reading(guard: str, value: float | None, limit: float, evidence: str) -> GuardReading:
    return GuardReading(guard, value, limit, None if value is None else value <= limit, evidence)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


# Where a breach stops the table, for guards that do not apply everywhere: DynamoDB's latency reaches callers only
# once it is read (shadow's sampled reads, then serving); in dual_write it takes background copies alone.
ENFORCED: Mapping[str, frozenset[Stage]] = {
    "dynamodb_p99_ratio": frozenset({Stage.SHADOW, Stage.DYNAMO_LIVE, Stage.DYNAMO_PRIMARY, Stage.DYNAMO_ONLY}),
}


def breached(readings: Sequence[GuardReading], stage: Stage) -> list[GuardReading]:
    """The guards over their limit that count in this stage."""
    return [r for r in readings if r.holds is False and stage in ENFORCED.get(r.guard, frozenset(Stage))]


def unknown_required(readings: Sequence[GuardReading], stage: Stage) -> list[GuardReading]:
    """The guards this stage must show a value for that have none yet."""
    return [r for r in readings if r.holds is None and stage in REQUIRED.get(r.guard, frozenset())]


# --- where the evidence comes from ------------------------------------------------------------------------------


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def prometheus_queries(table: str, window_seconds: float) -> dict[str, str]:
    """The PromQL of each figure: the raw series the dashboards and recording rules are built on, over the window."""
    on = f'db_collection_name="{_label(table)}"'
    window = f"[{max(1, round(window_seconds))}s]"
    compared = f'loanbook_shadow_comparisons_total{{{on}, loanbook_shadow_result=~"match|mismatch"}}'
    mismatched = f'loanbook_shadow_comparisons_total{{{on}, loanbook_shadow_result="mismatch"}}'
    ok = f'{on}, error_type=""'
    return {
        "store_calls": f"sum(increase({HISTOGRAM}_count{{{on}}}{window}))",
        "store_errors": f"sum(increase(loanbook_store_errors_total{{{on}}}{window}))",
        "fallbacks": f"sum(increase(loanbook_store_fallbacks_total{{{on}}}{window}))",
        "comparisons": f"sum(increase({compared}{window}))",
        "mismatches": f"sum(increase({mismatched}{window}))",
        # increase() needs two samples of a series, so it misses the first mismatch of a series born inside the
        # window: that series counts from its current value instead (as the LoanbookShadowMismatch alert does).
        "mismatches_new_series": f"sum({mismatched} unless {mismatched} offset {window[1:-1]})",
        "successful_calls": f"sum by (loanbook_store_backend) (increase({HISTOGRAM}_count{{{ok}}}{window}))",
        "p99_seconds": (
            f"histogram_quantile(0.99, sum by (le, loanbook_store_backend) (rate({HISTOGRAM}_bucket{{{ok}}}{window})))"
        ),
    }


async def prometheus_figures(
    prometheus_url: str, table: str, window_seconds: float, timeout: float = 5.0
) -> dict[str, dict[str, float]]:
    """Each figure's series by backend label ("" where summed), NaNs dropped."""
    found: dict[str, dict[str, float]] = {}
    try:
        async with httpx.AsyncClient(base_url=prometheus_url, timeout=timeout) as client:
            for name, query in prometheus_queries(table, window_seconds).items():
                response = await client.get("/api/v1/query", params={"query": query})
                response.raise_for_status()
                found[name] = {
                    series["metric"].get("loanbook_store_backend", ""): value
                    for series in response.json()["data"]["result"]
                    if not math.isnan(value := float(series["value"][1]))
                }
    except (httpx.HTTPError, ValueError, KeyError) as error:
        raise PrometheusUnavailable(f"Prometheus could not be queried ({type(error).__name__})") from None
    return found


async def recorded_mismatches(pool: asyncpg.Pool, table: str, since: datetime) -> int:
    """Mismatches the services recorded in migration.shadow_mismatches since `since`."""
    count = await pool.fetchval(
        "SELECT count(*) FROM migration.shadow_mismatches WHERE table_name = $1 AND detected_at >= $2", table, since
    )
    return int(count)


async def gather_evidence(
    pool: asyncpg.Pool, prometheus_url: str, table: str, window_seconds: float, since: datetime
) -> Evidence:
    """The evidence over the trailing window: metrics from Prometheus, the journal and the recorded mismatches (since
    `since`, the start of the hold) from PostgreSQL; a mismatch counts if either source saw it."""
    figures = await prometheus_figures(prometheus_url, table, window_seconds)
    backlog = await Journal(pool, table).backlog()  # what the backlog gauges report
    pending, oldest = backlog.pending, backlog.oldest_age_seconds
    recorded = await recorded_mismatches(pool, table, since)

    def total(name: str) -> float:
        return sum(figures.get(name, {}).values())

    return Evidence(
        window_seconds=window_seconds,
        store_calls=total("store_calls"),
        store_errors=total("store_errors"),
        fallbacks=total("fallbacks"),
        comparisons=total("comparisons"),
        mismatches=max(total("mismatches"), total("mismatches_new_series"), float(recorded)),
        successful_calls=figures.get("successful_calls", {}),
        p99_seconds=figures.get("p99_seconds", {}),
        journal_pending=pending,
        journal_oldest_seconds=oldest,
    )
