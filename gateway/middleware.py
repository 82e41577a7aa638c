"""ASGI middleware: the trace id on every response, one access log line per request, a request body size limit, and
the query string kept from the OpenTelemetry instrumentation."""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from typing import Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import TRACE_ID_HEADER, current_trace_id, http_error_response

access_log = logging.getLogger("gateway.access")


class HttpMiddleware(ABC):
    """An ASGI middleware for HTTP requests: other scopes (lifespan, websocket) pass through to `app` untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    @abstractmethod
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The middleware's work on one HTTP request; it calls `self.app` to pass the request on."""


class TraceIdMiddleware(HttpMiddleware):
    """Adds `X-Trace-Id` (the request span's trace id) so a client can hand it to whoever reads the traces.

    Runs inside the OpenTelemetry middleware, where the request's server span is current.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        trace_id = current_trace_id()
        header = (TRACE_ID_HEADER.lower().encode(), trace_id.encode()) if trace_id else None

        async def send_with_trace_id(message: Message) -> None:
            if message["type"] == "http.response.start" and header:
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await self.app(scope, receive, send_with_trace_id)


class AccessLogMiddleware(HttpMiddleware):
    """One structured line per request: method, route template, status, duration; never headers, query or body."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 500}  # what the client sees if the app raises before responding

        async def record_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            # The template (/v1/customers/{id}), not the path: ids stay out of the log and lines group by route.
            template = getattr(route, "path_format", None) or "(no route)"
            access_log.info(
                "%s %s %s",
                scope["method"],
                template,
                status["code"],
                extra={
                    "http_method": scope["method"],
                    "http_route": template,
                    "http_status": status["code"],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )


class BodySizeLimitMiddleware(HttpMiddleware):
    """Refuses request bodies over `max_bytes` with 413, by Content-Length up front or while a body streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes"

    def _too_large(self) -> HTTPException:
        # Raised from receive(): FastAPI re-raises HTTPException from body reading, and the handler renders it.
        return HTTPException(413, self._message())

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            # Refused before a byte of it is read, whichever route it was meant for.
            response = http_error_response(413, self._message())
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, counting_receive, send)


# Where the query string waits while the instrumentation's middleware looks at the request.
HIDDEN_QUERY_STRING = "loanbook.query_string"


class QueryStringHidden(HttpMiddleware):
    """Outside the OpenTelemetry middleware: the request goes on without its query string, kept aside in the scope.

    The instrumentation puts the query into the server span's URL attributes (http.url, http.target, url.query)
    whole, and has no option to leave it out; page tokens and trace ids must not reach spans.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        hidden = {**scope, "query_string": b"", HIDDEN_QUERY_STRING: scope.get("query_string", b"")}
        await self.app(hidden, receive, send)


class QueryStringRestored(HttpMiddleware):
    """Inside the OpenTelemetry middleware (the outermost of the gateway's own): the routes see the query again.

    The scope is changed in place, as the router changes it: the instrumentation reads the matched route from it.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if HIDDEN_QUERY_STRING in scope:
            scope["query_string"] = scope.pop(HIDDEN_QUERY_STRING)
        await self.app(scope, receive, send)


def hide_query_string_from_instrumentation(app: FastAPI) -> None:
    """Puts QueryStringHidden around the stack FastAPIInstrumentor.instrument_app builds (call it after that)."""
    build_instrumented_stack = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        return QueryStringHidden(build_instrumented_stack())

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]  # as instrument_app does
