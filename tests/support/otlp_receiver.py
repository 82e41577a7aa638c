"""A real OTLP/gRPC receiver of traces and metrics built from opentelemetry-proto's service definitions, for tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from google.protobuf import text_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


@dataclass(frozen=True)
class ReceivedSpan:
    service_name: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, str]
    status_code: int = 0
    status_message: str = ""
    # (name, attributes as text) of each event, e.g. ("exception", {"exception.message": ...}).
    events: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    # The whole span as protobuf text: every attribute of any type, event, link and status, to search for a value.
    text: str = ""


class OtlpTraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Collects every span exported to it; `address` is what OTEL_EXPORTER_OTLP_ENDPOINT should name."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        # Metric names each service pushed over OTLP: {"loanbook-payment": {"rpc.server.duration", ...}}.
        self.metrics = _MetricsReceiver()
        self._server = grpc.aio.server()
        self._arrived = asyncio.Condition()
        self.address = ""

    async def Export(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext[
            trace_service_pb2.ExportTraceServiceRequest, trace_service_pb2.ExportTraceServiceResponse
        ],
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(_received(resource.get("service.name", ""), span))
        async with self._arrived:
            self._arrived.notify_all()
        return trace_service_pb2.ExportTraceServiceResponse()

    async def start(self) -> None:
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)  # type: ignore[no-untyped-call]
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(self.metrics, self._server)  # type: ignore[no-untyped-call]
        port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        self.address = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await self._server.stop(grace=0)

    async def wait_until(self, condition: Callable[[list[ReceivedSpan]], bool], timeout: float) -> None:
        """Returns once `condition(every span received so far)` holds; fails after `timeout` seconds."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: condition(self.spans))

    async def wait_for(self, trace_id: str, service_names: set[str], timeout: float) -> list[ReceivedSpan]:
        """Spans of one trace, once spans from every named service have arrived (or the timeout passes)."""

        def arrived() -> bool:
            return service_names <= {s.service_name for s in self.spans if s.trace_id == trace_id}

        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(arrived)
        return [span for span in self.spans if span.trace_id == trace_id]


def _received(service_name: str, span: trace_pb2.Span) -> ReceivedSpan:
    return ReceivedSpan(
        service_name=service_name,
        name=span.name,
        kind=span.kind,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex(),
        attributes={kv.key: kv.value.string_value for kv in span.attributes},
        status_code=span.status.code,
        status_message=span.status.message,
        events=[
            (event.name, {kv.key: text_format.MessageToString(kv.value, as_one_line=True) for kv in event.attributes})
            for event in span.events
        ],
        text=text_format.MessageToString(span, as_utf8=True),
    )


class _MetricsReceiver(metrics_service_pb2_grpc.MetricsServiceServicer):
    """Keeps the names of the metrics each service exports, so a test can await one."""

    def __init__(self) -> None:
        self.names: dict[str, set[str]] = {}
        self._arrived = asyncio.Condition()

    async def Export(
        self,
        request: metrics_service_pb2.ExportMetricsServiceRequest,
        context: grpc.aio.ServicerContext[
            metrics_service_pb2.ExportMetricsServiceRequest, metrics_service_pb2.ExportMetricsServiceResponse
        ],
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        for resource_metrics in request.resource_metrics:
            resource = {kv.key: kv.value.string_value for kv in resource_metrics.resource.attributes}
            names = self.names.setdefault(resource.get("service.name", ""), set())
            for scope_metrics in resource_metrics.scope_metrics:
                names.update(metric.name for metric in scope_metrics.metrics)
        async with self._arrived:
            self._arrived.notify_all()
        return metrics_service_pb2.ExportMetricsServiceResponse()

    async def wait_for(self, service_name: str, metric: str, timeout: float) -> None:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: metric in self.names.get(service_name, set()))
