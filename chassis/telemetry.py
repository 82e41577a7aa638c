"""OpenTelemetry traces and metrics from the standard OTEL_* variables, a Prometheus endpoint, the libraries wired."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import DropAggregation, ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from chassis.config import ConfigurationError, ProcessSettings

logger = logging.getLogger(__name__)

# Namespaced span attributes loanbook adds on top of the semantic conventions.
ATTR_STORE_BACKEND = "loanbook.store.backend"
ATTR_MIGRATION_STAGE = "loanbook.migration.stage"
ATTR_STORE_FALLBACK = "loanbook.store.fallback"
# A read answered by both stores merged (on the way back from dynamo_only); set on the PostgreSQL half.
ATTR_STORE_MERGED = "loanbook.store.merged"

DEPLOYMENT_ENVIRONMENT = "deployment.environment"

# Store calls take from a fraction of a millisecond (a cached PostgreSQL read) to the gateway's 5 s deadline; the
# SDK's default boundaries (0, 5, 10, ... 10000) suit milliseconds and would put every call in the first bucket.
SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
MILLISECONDS_BUCKETS = tuple(bound * 1000 for bound in SECONDS_BUCKETS)

TRACE_EXPORTERS = ("otlp", "console", "none")
METRIC_EXPORTERS = ("otlp", "prometheus", "console", "none")
OTLP_PROTOCOLS = ("grpc", "http/protobuf")
PROMETHEUS_DEFAULT_PORT = 9464  # the port the OpenTelemetry specification gives a Prometheus exporter


@dataclass
class Telemetry:
    """Handle on the configured providers; `shutdown()` flushes what is still queued and stops the metrics server."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    trace_exporters: list[str]
    metric_exporters: list[str]
    metrics_address: str | None = None
    _stop_metrics_server: Callable[[], None] | None = field(default=None, repr=False)

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        if self._stop_metrics_server is not None:
            self._stop_metrics_server()


@dataclass(frozen=True)
class MetricsEndpoint:
    """Where a process serves its metrics for Prometheus to scrape; port 0 picks a free one."""

    host: str
    port: int
    setting: str = "OTEL_EXPORTER_PROMETHEUS_PORT"  # named when the port cannot be served


def metrics_endpoint(settings: ProcessSettings) -> MetricsEndpoint | None:
    """The endpoint a process's `…_METRICS_PORT` / `…_METRICS_HOST` settings ask for, if any."""
    if settings.metrics_port is None:
        return None
    variable = f"{settings.model_config.get('env_prefix', '')}METRICS_PORT"
    return MetricsEndpoint(settings.metrics_host, settings.metrics_port, variable)


def _names(variable: str, allowed: tuple[str, ...], default: str, env: Mapping[str, str]) -> list[str]:
    """A comma-separated exporter list as the OpenTelemetry specification defines it ("none" alone disables)."""
    raw = env.get(variable, "").strip().lower()
    names = [name.strip() for name in (raw or default).split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise ConfigurationError(f"{variable}: {', '.join(unknown)} is not supported; use {', '.join(allowed)}")
    if "none" in names and len(names) > 1:
        raise ConfigurationError(f"{variable}: 'none' cannot be combined with other exporters")
    return [] if names == ["none"] else names


def _default_exporter(signal: str, env: Mapping[str, str]) -> str:
    # The specification's default is "otlp"; without any OTLP endpoint configured we default to "none" instead,
    # so a developer without a collector does not get an export error every few seconds.
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    return "otlp" if any(env.get(name) for name in endpoints) else "none"


def otlp_protocol(signal: str, env: Mapping[str, str] = os.environ) -> str:
    """The OTLP transport for `signal` (TRACES or METRICS): its own variable first, then the general one."""
    for variable in (f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = env.get(variable, "").strip().lower()
        if value:
            if value not in OTLP_PROTOCOLS:
                supported = " or ".join(OTLP_PROTOCOLS)
                raise ConfigurationError(f"{variable}: {value!r} is not supported; use {supported}")
            return value
    return "grpc"


def span_exporters_from_environment(env: Mapping[str, str] = os.environ) -> dict[str, SpanExporter]:
    """OTEL_TRACES_EXPORTER's exporters by name; each OTLP exporter reads its endpoint, headers, TLS and timeout
    from OTEL_EXPORTER_OTLP_* itself. Raises ConfigurationError naming the variable on a value it cannot honour."""
    exporters: dict[str, SpanExporter] = {}
    for name in _names("OTEL_TRACES_EXPORTER", TRACE_EXPORTERS, _default_exporter("TRACES", env), env):
        if name == "console":
            exporters[name] = ConsoleSpanExporter()
        elif otlp_protocol("TRACES", env) == "grpc":
            # Imported here so processes that trace to nowhere do not load an exporter's transport.
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter

            exporters[name] = GrpcSpanExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

            exporters[name] = HttpSpanExporter()
    return exporters


def metric_exporters_from_environment(env: Mapping[str, str] = os.environ) -> dict[str, MetricExporter | None]:
    """OTEL_METRICS_EXPORTER's exporters by name; "prometheus" maps to None (it is a reader, not a push exporter)."""
    exporters: dict[str, MetricExporter | None] = {}
    for name in _names("OTEL_METRICS_EXPORTER", METRIC_EXPORTERS, _default_exporter("METRICS", env), env):
        if name == "prometheus":
            exporters[name] = None
        elif name == "console":
            exporters[name] = ConsoleMetricExporter()
        elif otlp_protocol("METRICS", env) == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter

            exporters[name] = GrpcExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

            exporters[name] = HttpExporter()
    return exporters


def prometheus_endpoint(
    configured: MetricsEndpoint | None, wants_prometheus: bool, env: Mapping[str, str] = os.environ
) -> MetricsEndpoint | None:
    """The process's own `…_METRICS_PORT` wins; OTEL_METRICS_EXPORTER=prometheus alone uses the specification's
    OTEL_EXPORTER_PROMETHEUS_HOST/PORT (localhost:9464)."""
    if configured is not None:
        return configured
    if not wants_prometheus:
        return None
    raw_port = env.get("OTEL_EXPORTER_PROMETHEUS_PORT", str(PROMETHEUS_DEFAULT_PORT)).strip()
    if not raw_port.isdigit() or not 0 <= int(raw_port) <= 65535:
        raise ConfigurationError(f"OTEL_EXPORTER_PROMETHEUS_PORT: {raw_port!r} is not a port number")
    return MetricsEndpoint(env.get("OTEL_EXPORTER_PROMETHEUS_HOST", "localhost").strip(), int(raw_port))


def worker_endpoint(endpoint: MetricsEndpoint, worker: int) -> MetricsEndpoint:
    """Worker `worker` of a process serving with several workers serves its metrics on the port + its index (each
    process has its own instruments, so each needs its own endpoint); port 0 still picks a free port."""
    if worker == 0 or endpoint.port == 0:
        return endpoint
    if endpoint.port + worker > 65535:
        raise ConfigurationError(f"{endpoint.setting}: {endpoint.port} + {worker} (worker {worker}) is not a port")
    return MetricsEndpoint(endpoint.host, endpoint.port + worker, f"{endpoint.setting} (+{worker} for worker {worker})")


def resource_for(default_service_name: str, environment: str) -> Resource:
    """OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES first; then the process's name, version and environment.

    The SDK adds a random service.instance.id per process, so the workers of one process push apart over OTLP."""
    from opentelemetry.sdk.resources import OTELResourceDetector

    from_environment = OTELResourceDetector().detect().attributes
    ours: dict[str, Any] = {
        SERVICE_NAME: default_service_name,
        SERVICE_VERSION: package_version(),
        DEPLOYMENT_ENVIRONMENT: environment,
    }
    # Resource.create() gives its own attributes the last word; ours step aside where the operator set one.
    return Resource.create({key: value for key, value in ours.items() if key not in from_environment})


def package_version() -> str:
    """The installed loanbook's version, or `0+unknown` in a source tree that was never installed."""
    try:
        return metadata.version("loanbook")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def configure_telemetry(
    default_service_name: str,
    *,
    environment: str = "development",
    metrics_endpoint: MetricsEndpoint | None = None,
    trace_store_clients: bool = True,
    instrument_libraries: bool = True,
    worker: int | None = None,
) -> Telemetry:
    """Install the global tracer and meter providers and the instrumentations a loanbook process uses.

    OTEL_SDK_DISABLED=true installs nothing (the specification's off switch).
    Raises ConfigurationError (naming the variable) when an OTEL_* setting cannot be honoured: callers exit 2.
    `trace_store_clients=False` leaves asyncpg and botocore uninstrumented, for services whose stores trace
    every call themselves (the hybrid stores of migration.hybrid).
    Call before creating asyncpg pools or aiobotocore clients: the instrumentations patch their factories.
    `worker`: the index of this worker process when the process serves with several (chassis.workers).
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        # The specification's off switch: no provider is installed, so every span and instrument is the API's
        # no-op; no exporter, no metrics endpoint, no library patched.
        logger.info("telemetry disabled (OTEL_SDK_DISABLED)")
        return Telemetry(TracerProvider(), MeterProvider(), [], [])
    span_exporters = span_exporters_from_environment()
    metric_exporters = metric_exporters_from_environment()
    endpoint = prometheus_endpoint(metrics_endpoint, "prometheus" in metric_exporters)
    if endpoint is not None and worker is not None:
        endpoint = worker_endpoint(endpoint, worker)
    # The HTTP instrumentations emit the stable semantic conventions (http.server.request.duration in seconds,
    # url.path without the query) only when asked; an operator's own choice stays.
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    # Exemplars cost a reservoir offer on every measurement and the Prometheus exporter does not carry them;
    # measured in bench.telemetry_cost. An operator who wants them sets the variable.
    os.environ.setdefault("OTEL_METRICS_EXEMPLAR_FILTER", "always_off")

    resource = resource_for(default_service_name, environment)
    tracer_provider = TracerProvider(resource=resource)  # honours OTEL_TRACES_SAMPLER(_ARG)
    for exporter in span_exporters.values():
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter))  # honours OTEL_BSP_*
    trace.set_tracer_provider(tracer_provider)

    readers: list[MetricReader] = [
        PeriodicExportingMetricReader(exporter)  # honours OTEL_METRIC_EXPORT_INTERVAL
        for exporter in metric_exporters.values()
        if exporter is not None
    ]
    address, stop_server = None, None
    if endpoint is not None:
        reader, address, stop_server = _prometheus_reader(endpoint)
        readers.append(reader)
    meter_provider = MeterProvider(resource=resource, metric_readers=readers, views=_views())
    metrics.set_meter_provider(meter_provider)

    if instrument_libraries:
        _instrument_libraries(trace_store_clients)
    exported = {"traces_exporters": list(span_exporters) or ["none"], "metrics_exporters": list(metric_exporters)}
    logger.info("telemetry configured", extra={**exported, "metrics_address": address})
    return Telemetry(
        tracer_provider,
        meter_provider,
        list(span_exporters),
        [name for name in metric_exporters if name != "prometheus"] + (["prometheus"] if address else []),
        address,
        stop_server,
    )


# The HTTP instrumentation also measures every request's and response's body size; no rule, dashboard or alert
# reads them, and each is one more histogram recording per request on the gateway's hot path.
UNREAD_INSTRUMENTS = ("http.server.request.body.size", "http.server.response.body.size")


def _views() -> list[View]:
    return [
        *(View(instrument_name=name, aggregation=DropAggregation()) for name in UNREAD_INSTRUMENTS),
        View(
            instrument_type=Histogram,
            instrument_unit="s",
            aggregation=ExplicitBucketHistogramAggregation(SECONDS_BUCKETS),
        ),
        View(
            instrument_type=Histogram,
            instrument_unit="ms",
            aggregation=ExplicitBucketHistogramAggregation(MILLISECONDS_BUCKETS),
        ),
    ]


def _prometheus_reader(endpoint: MetricsEndpoint) -> tuple[MetricReader, str, Callable[[], None]]:
    """A reader serving /metrics in Prometheus' text format from a thread of this process."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import start_http_server

    try:
        server, thread = start_http_server(endpoint.port, addr=endpoint.host)
    except OSError as error:
        raise ConfigurationError(
            f"{endpoint.setting}: {endpoint.host}:{endpoint.port} cannot be served ({error.strerror or error})"
        ) from None
    reader = PrometheusMetricReader()  # registers with prometheus_client's registry, which the server serves
    address = f"{endpoint.host}:{server.server_port}"

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return reader, address, stop


def _instrument_libraries(trace_store_clients: bool) -> None:
    """asyncpg and botocore through their OpenTelemetry instrumentations; gRPC is traced by chassis.rpc_telemetry,
    without interceptors (see there)."""
    if not trace_store_clients:
        return
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
    from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

    # The contrib instrumentors ship without type annotations on their constructors.
    instrumentors: list[BaseInstrumentor] = [AsyncPGInstrumentor(), BotocoreInstrumentor()]  # type: ignore[no-untyped-call]
    for instrumentor in instrumentors:
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
