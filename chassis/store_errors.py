"""Decorators that turn store errors (asyncpg, botocore) into domain errors at the adapter boundary, text left out."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, ParamSpec, TypeVar

import asyncpg
from botocore.exceptions import ClientError, ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError
from botocore.exceptions import ReadTimeoutError as BotocoreReadTimeoutError
from opentelemetry import trace

from chassis.errors import AlreadyExists, Unavailable
from chassis.stores import POSTGRES_CONNECTIVITY_ERRORS

_tracer = trace.get_tracer("loanbook.stores")

P = ParamSpec("P")
R = TypeVar("R")
AsyncMethod = Callable[P, Coroutine[Any, Any, R]]

# Errors that mean "DynamoDB cannot serve this right now" (retryable), as opposed to a bad request.
DYNAMODB_CONNECTIVITY_ERRORS: tuple[type[BaseException], ...] = (
    EndpointConnectionError,
    ConnectTimeoutError,
    BotocoreReadTimeoutError,
    ConnectionClosedError,
    TimeoutError,
    OSError,
)
DYNAMODB_UNAVAILABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)


class StoreError(RuntimeError):
    """A store refused a call for a reason that is a bug; the message names the error, never the values involved."""


def describe_postgres_error(error: asyncpg.PostgresError) -> str:
    """What went wrong, by error class, SQLSTATE and the schema objects PostgreSQL names; not its message or DETAIL,
    which quote the values of the rows involved ("Key (lower(email))=(...) already exists")."""
    parts = [type(error).__name__, f"SQLSTATE {error.sqlstate}"]
    for kind in ("table", "column", "constraint"):
        name = getattr(error, f"{kind}_name", None)
        if name:
            parts.append(f"{kind} {name}")
    return ", ".join(parts)


def postgres_errors_translated(
    database: str, unique_constraints: Mapping[str, tuple[str, str]] | None = None, *, traced: bool = False
) -> Callable[[AsyncMethod[P, R]], AsyncMethod[P, R]]:
    """A uniqueness clash becomes AlreadyExists(resource, field) by constraint name; unreachable becomes Unavailable.

    `database` names the store in the message ("the customer database is unavailable"); it must not carry PII.
    AlreadyExists does not carry the driver's error along: its text quotes the clashing value, and a chained cause
    ends up in span exception events and logged tracebacks.

    `traced`: each call is a CLIENT span of its own (`{database}.{method} postgres`), for a service that leaves the
    asyncpg instrumentation off because it records the driver's message; any other PostgreSQL error then becomes a
    StoreError described by describe_postgres_error, so no span or log line downstream sees the original.
    """
    constraints = dict(unique_constraints or {})

    def decorate(method: AsyncMethod[P, R]) -> AsyncMethod[P, R]:
        operation = method.__name__

        @functools.wraps(method)
        async def translating(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await method(*args, **kwargs)
            except asyncpg.UniqueViolationError as error:
                if traced:
                    _failed(error)
                resource, field = constraints.get(error.constraint_name or "", ("record", "key"))
                raise AlreadyExists(resource, field) from None
            except POSTGRES_CONNECTIVITY_ERRORS as error:
                if traced:
                    _failed(error)
                # Kept as the cause: a connection failure names hosts and ports, no stored values.
                raise Unavailable(f"the {database} database is unavailable; retry later") from error
            except asyncpg.PostgresError as error:
                if not traced:
                    raise
                _failed(error)
                raise StoreError(f"{database}.{operation}: {describe_postgres_error(error)}") from None
            except Exception as error:
                if traced:
                    _failed(error)
                raise

        if not traced:
            return translating

        @functools.wraps(method)
        async def in_span(*args: P.args, **kwargs: P.kwargs) -> R:
            with _tracer.start_as_current_span(
                f"{database}.{operation} postgres",
                kind=trace.SpanKind.CLIENT,
                attributes={"db.system": "postgresql", "db.operation.name": operation},
                # _failed records what is safe to record; the SDK's own recording would carry the message.
                record_exception=False,
                set_status_on_exception=False,
            ):
                return await translating(*args, **kwargs)

        return in_span

    return decorate


def _failed(error: BaseException) -> None:
    """Marks the current span (the traced store call's own) failed by the error's class and SQLSTATE, not its text."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    error_type = type(error).__qualname__
    span.set_status(trace.Status(trace.StatusCode.ERROR, error_type))
    span.set_attribute("error.type", error_type)
    if isinstance(error, asyncpg.PostgresError) and error.sqlstate:
        span.set_attribute("db.response.status_code", error.sqlstate)
    span.add_event("exception", {"exception.type": error_type})


def is_dynamodb_unavailable(error: BaseException) -> bool:
    if isinstance(error, ClientError):
        return error.response.get("Error", {}).get("Code", "") in DYNAMODB_UNAVAILABLE_CODES
    return isinstance(error, DYNAMODB_CONNECTIVITY_ERRORS)


def dynamodb_errors_translated(table: str) -> Callable[[AsyncMethod[P, R]], AsyncMethod[P, R]]:
    """Throttling, timeouts and connection failures become Unavailable; anything else (a bug) propagates."""

    def decorate(method: AsyncMethod[P, R]) -> AsyncMethod[P, R]:
        @functools.wraps(method)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await method(*args, **kwargs)
            except Exception as error:
                if is_dynamodb_unavailable(error):
                    raise Unavailable(f"the {table} table in DynamoDB is unavailable; retry later") from error
                raise

        return wrapper

    return decorate
