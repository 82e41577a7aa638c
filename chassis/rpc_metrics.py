"""rpc.server.duration for every gRPC call a service serves, wrapped around each method when it is registered."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import metrics

# Infrastructure, not the service's work: probes and tooling would swamp the services' own latencies.
EXCLUDED_SERVICES = frozenset(
    {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"}
)

_duration = metrics.get_meter("loanbook.rpc").create_histogram(
    "rpc.server.duration", unit="ms", description="Duration of the gRPC calls a service served"
)

Context = grpc.aio.ServicerContext[Any, Any]


def _status_code(context: Context, error: BaseException | None) -> int:
    """The call's final status: what the handler or its abort set, else OK, CANCELLED or UNKNOWN by the outcome."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return int(code.value[0])
    if isinstance(code, int):
        return code
    if error is None:
        return int(grpc.StatusCode.OK.value[0])
    if isinstance(error, asyncio.CancelledError):
        return int(grpc.StatusCode.CANCELLED.value[0])
    return int(grpc.StatusCode.UNKNOWN.value[0])


class _Recorder:
    """Records one method's calls under its fixed attributes."""

    def __init__(self, service: str, method: str) -> None:
        self._attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}

    def record(self, started: float, context: Context, error: BaseException | None) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        _duration.record(elapsed_ms, {**self._attributes, "rpc.grpc.status_code": _status_code(context, error)})

    def unary(self, behaviour: Callable[..., Any]) -> Callable[[Any, Context], Awaitable[Any]]:
        async def measured(request: Any, context: Context) -> Any:
            started = time.perf_counter()
            try:
                response = await behaviour(request, context)
            except BaseException as error:
                self.record(started, context, error)
                raise
            self.record(started, context, None)
            return response

        return measured

    def stream(self, behaviour: Callable[..., Any]) -> Callable[[Any, Context], Any]:
        if not inspect.isasyncgenfunction(behaviour):
            # A handler that sends with `context.write()` and returns: timed as what it is.
            return self.unary(behaviour)

        async def measured(request: Any, context: Context) -> AsyncIterator[Any]:
            started = time.perf_counter()
            try:
                async for response in behaviour(request, context):
                    yield response
            except BaseException as error:
                self.record(started, context, error)
                raise
            self.record(started, context, None)

        return measured


def _measured(handler: grpc.RpcMethodHandler[Any, Any], recorder: _Recorder) -> grpc.RpcMethodHandler[Any, Any]:
    options = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(recorder.unary(handler.unary_unary), **options)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(recorder.unary(handler.stream_unary), **options)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(recorder.stream(handler.unary_stream), **options)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(recorder.stream(handler.stream_stream), **options)
    return handler


def measured(full_method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` timed into rpc.server.duration, from the moment it runs to its last message, with its final status
    code; health and reflection methods come back as they are.

    Applied once per method when it is registered (chassis.grpc_errors.ErrorMappingServer), not by a server
    interceptor: an interceptor runs on every call, and the telemetry benchmark measured interceptors' cost.
    """
    service, _, method = full_method.lstrip("/").rpartition("/")
    if not service or service in EXCLUDED_SERVICES:
        return handler
    return _measured(handler, _Recorder(service, method))
