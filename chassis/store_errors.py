"""Decorators that turn store errors (asyncpg, botocore) into domain errors at the adapter boundary."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, ParamSpec, TypeVar

import asyncpg
from botocore.exceptions import ClientError, ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError
from botocore.exceptions import ReadTimeoutError as BotocoreReadTimeoutError

from chassis.errors import AlreadyExists, Unavailable
from chassis.stores import POSTGRES_CONNECTIVITY_ERRORS

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


def postgres_errors_translated(
    database: str, unique_constraints: Mapping[str, tuple[str, str]] | None = None
) -> Callable[[AsyncMethod[P, R]], AsyncMethod[P, R]]:
    """A uniqueness clash becomes AlreadyExists(resource, field) by constraint name; unreachable becomes Unavailable.

    `database` names the store in the message ("the customer database is unavailable"); it must not carry PII.
    """
    constraints = dict(unique_constraints or {})

    def decorate(method: AsyncMethod[P, R]) -> AsyncMethod[P, R]:
        @functools.wraps(method)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await method(*args, **kwargs)
            except asyncpg.UniqueViolationError as error:
                resource, field = constraints.get(error.constraint_name or "", ("record", "key"))
                raise AlreadyExists(resource, field) from error
            except POSTGRES_CONNECTIVITY_ERRORS as error:
                raise Unavailable(f"the {database} database is unavailable; retry later") from error

        return wrapper

    return decorate


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
