"""OpenTelemetry tracing configured from the standard OTEL_* variables, with gRPC, asyncpg and botocore wired."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

logger = logging.getLogger(__name__)

# Namespaced span attributes loanbook adds on top of the semantic conventions.
ATTR_STORE_BACKEND = "loanbook.store.backend"
ATTR_MIGRATION_STAGE = "loanbook.migration.stage"
ATTR_STORE_FALLBACK = "loanbook.store.fallback"
# A read answered by both stores merged (on the way back from dynamo_only); set on the PostgreSQL half.
ATTR_STORE_MERGED = "loanbook.store.merged"


@dataclass
class Telemetry:
    """Handle on the configured tracer provider; `shutdown()` flushes spans still queued."""

    provider: TracerProvider
    exporter_name: str

    def shutdown(self) -> None:
        self.provider.shutdown()


def _exporter_from_environment() -> tuple[str, SpanExporter | None]:
    # The spec's default is "otlp"; without any OTLP endpoint configured we default to "none" instead,
    # so a developer without a collector does not get an export error every few seconds.
    configured = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    has_endpoint = any(
        os.environ.get(name) for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    name = configured or ("otlp" if has_endpoint else "none")
    if name == "none":
        return name, None
    if name == "console":
        return name, ConsoleSpanExporter()
    if name == "otlp":
        protocol = os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        )
        if protocol != "grpc":
            raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported; use 'grpc'")
        # Imported here so processes that trace to nowhere do not load the exporter's gRPC machinery.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return name, OTLPSpanExporter()  # reads endpoint, headers, TLS and timeout from OTEL_EXPORTER_OTLP_*
    raise ValueError(f"OTEL_TRACES_EXPORTER={configured!r} is not supported; use otlp, console or none")


def configure_telemetry(
    default_service_name: str, *, instrument_grpc_server: bool = True, trace_store_clients: bool = True
) -> Telemetry:
    """Install the global tracer provider and the instrumentations a loanbook process uses.

    `trace_store_clients=False` leaves asyncpg and botocore uninstrumented, for services whose stores trace
    every call themselves (the hybrid stores of migration.hybrid).
    Call before creating gRPC servers, channels, asyncpg pools or aiobotocore clients: the
    instrumentations patch their factories.
    """
    resource = Resource.create()  # honours OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
    if "OTEL_SERVICE_NAME" not in os.environ:
        resource = resource.merge(Resource.create({SERVICE_NAME: default_service_name}))
    provider = TracerProvider(resource=resource)  # honours OTEL_TRACES_SAMPLER(_ARG)
    exporter_name, exporter = _exporter_from_environment()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))  # honours OTEL_BSP_*
    trace.set_tracer_provider(provider)
    _instrument_libraries(instrument_grpc_server, trace_store_clients)
    logger.info("tracing configured", extra={"traces_exporter": exporter_name})
    return Telemetry(provider=provider, exporter_name=exporter_name)


def _instrument_libraries(instrument_grpc_server: bool, trace_store_clients: bool) -> None:
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, GrpcAioInstrumentorServer
    from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

    # The contrib instrumentors ship without type annotations on their constructors.
    instrumentors: list[BaseInstrumentor] = [GrpcAioInstrumentorClient()]  # type: ignore[no-untyped-call]
    if trace_store_clients:
        instrumentors += [AsyncPGInstrumentor(), BotocoreInstrumentor()]  # type: ignore[no-untyped-call]
    if instrument_grpc_server:
        instrumentors.append(GrpcAioInstrumentorServer())  # type: ignore[no-untyped-call]
    for instrumentor in instrumentors:
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
