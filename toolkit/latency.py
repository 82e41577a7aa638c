"""Store latency by backend for `loanbook migrate status`, read from the Prometheus that scrapes the services."""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx

WINDOW = "5m"  # as the recording rules and the dashboard: long enough for a p99 of a quiet table
QUANTILES = (0.5, 0.99)
HISTOGRAM = "db_client_operation_duration_seconds"


@dataclass(frozen=True)
class BackendLatency:
    backend: str
    calls_per_second: float
    quantiles: dict[float, float]  # quantile -> seconds


class PrometheusUnavailable(RuntimeError):
    """Prometheus could not be asked; the message says why without echoing the URL's credentials."""


def _selector(table: str) -> str:
    # Successful calls only: a timeout's duration is the timeout, not the store's latency.
    escaped = table.replace("\\", "\\\\").replace('"', '\\"')
    return f'{{db_collection_name="{escaped}", error_type=""}}'


async def latency_by_backend(prometheus_url: str, table: str, timeout: float = 5.0) -> list[BackendLatency]:
    """Each backend's call rate and p50/p99 over the last WINDOW, from the raw histogram (so it works whether or not
    the project's recording rules are loaded); backends without calls in the window are left out."""
    selector = f"{_selector(table)}[{WINDOW}]"
    queries = {"rate": f"sum by (loanbook_store_backend) (rate({HISTOGRAM}_count{selector}))"}
    for quantile in QUANTILES:
        queries[str(quantile)] = (
            f"histogram_quantile({quantile}, sum by (le, loanbook_store_backend) (rate({HISTOGRAM}_bucket{selector})))"
        )
    answers: dict[str, dict[str, float]] = {}
    try:
        async with httpx.AsyncClient(base_url=prometheus_url, timeout=timeout) as client:
            for name, query in queries.items():
                response = await client.get("/api/v1/query", params={"query": query})
                response.raise_for_status()
                answers[name] = {
                    series["metric"].get("loanbook_store_backend", ""): float(series["value"][1])
                    for series in response.json()["data"]["result"]
                }
    except (httpx.HTTPError, ValueError, KeyError) as error:
        raise PrometheusUnavailable(f"Prometheus could not be queried ({type(error).__name__})") from None
    latencies = []
    for backend, rate in sorted(answers["rate"].items()):
        if rate > 0:
            # histogram_quantile answers NaN where a window holds no observation of a backend.
            found = {q: answers[str(q)].get(backend, math.nan) for q in QUANTILES}
            latencies.append(BackendLatency(backend, rate, {q: v for q, v in found.items() if not math.isnan(v)}))
    return latencies


def latency_text(latencies: list[BackendLatency]) -> str:
    """`postgres p50 1.2 ms p99 4.8 ms (35.0 calls/s); dynamodb ...`."""
    if not latencies:
        return f"no store calls in the last {WINDOW}"
    parts = []
    for latency in latencies:
        quantiles = " ".join(f"p{round(q * 100)} {seconds * 1000:.1f} ms" for q, seconds in latency.quantiles.items())
        parts.append(f"{latency.backend} {quantiles or 'no quantile'} ({latency.calls_per_second:.1f} calls/s)")
    return f"{'; '.join(parts)} (last {WINDOW})"
