"""Reading what this test process's OpenTelemetry instruments recorded, through the SDK's in-memory reader."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)

DataPoint = NumberDataPoint | HistogramDataPoint | ExponentialHistogramDataPoint

_reader: InMemoryMetricReader | None = None


def metric_reader() -> InMemoryMetricReader:
    """The process-wide reader, installed with the global meter provider on first use (it can be set only once)."""
    global _reader
    if _reader is None:
        _reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[_reader]))
    return _reader


def points(name: str, **attributes: Any) -> list[DataPoint]:
    """Data points of the instrument `name` whose attributes include `attributes` (dots spelled as `__`)."""
    wanted = {key.replace("__", "."): value for key, value in attributes.items()}
    data = metric_reader().get_metrics_data()
    found: list[DataPoint] = []
    for resource_metrics in data.resource_metrics if data else []:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == name:
                    found += [p for p in metric.data.data_points if _includes(p.attributes or {}, wanted)]
    return found


def total(name: str, **attributes: Any) -> float:
    """Sum of a counter's points, or count of a histogram's recordings, matching `attributes`."""
    return sum(p.value if isinstance(p, NumberDataPoint) else p.count for p in points(name, **attributes))


def _includes(have: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return all(have.get(key) == value for key, value in wanted.items())
