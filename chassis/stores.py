"""Store clients created once per process: an asyncpg pool and an aiobotocore DynamoDB client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, cast

import aioboto3
import asyncpg
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from chassis.config import DynamoSettings, PostgresSettings
from chassis.grpc_server import ReadinessCheck
from chassis.telemetry import package_version

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


# botocore rebuilds its standard User-Agent (SDK, OS, language and feature metadata) twice per request unless the
# config supplies one: measured 106 us per build against 0.9 us with a fixed string, about 0.2 ms of every DynamoDB
# call. What the standard one adds is the SDK's own usage telemetry; a fixed name says who calls just as well.
SDK_USER_AGENT = f"loanbook/{package_version()}"


class StoreUnavailable(RuntimeError):
    """A store could not be reached at start-up; the message says which and where (no credentials)."""


async def keep_session_state(connection: asyncpg.Connection) -> None:
    """A pool `reset` that only lets asyncpg roll back an open transaction, skipping its reset query."""
    # asyncpg's default reset sends `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on every
    # release: a round trip per checkout (measured 0.17 -> 0.09 ms for a pooled SELECT 1 under load). Service
    # code leaves no session state behind (transaction-scoped advisory locks, LISTEN on its own connection).


@asynccontextmanager
async def postgres_pool(settings: PostgresSettings, *, reset_sessions: bool = False) -> AsyncIterator[asyncpg.Pool]:
    """An asyncpg pool, closed on exit; fails fast with StoreUnavailable when PostgreSQL does not answer.

    `reset_sessions` keeps asyncpg's full reset on release, for callers that take session-level advisory locks.
    """
    dsn = settings.postgres_dsn.get_secret_value()
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=settings.postgres_pool_min_size,
            max_size=settings.postgres_pool_max_size,
            timeout=10,
            reset=None if reset_sessions else keep_session_state,
        )
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        raise StoreUnavailable(f"PostgreSQL unreachable: {type(error).__name__}: {error}") from error
    try:
        yield pool
    finally:
        await pool.close()


async def _session(settings: DynamoSettings) -> aioboto3.Session:
    """The default credential chain (environment, shared files, profile, role); for an endpoint URL where the chain
    finds none, dummy keys: DynamoDB Local accepts any, so the local stack and the toolkit work out of the box. Real
    AWS (no endpoint URL) never gets them."""
    session = aioboto3.Session()
    # aiobotocore resolves credentials in a coroutine; aioboto3's stubs type the call as botocore's.
    found = await cast("Awaitable[object | None]", session.get_credentials())
    if settings.dynamodb_endpoint is not None and found is None:
        return aioboto3.Session(aws_access_key_id="local", aws_secret_access_key="local")  # noqa: S106 - not a secret
    return session


@asynccontextmanager
async def dynamodb_client(settings: DynamoSettings) -> AsyncIterator[DynamoDBClient]:
    """One aiobotocore DynamoDB client for the process, with bounded timeouts and standard retries."""
    session = await _session(settings)
    config = AioConfig(
        connect_timeout=2,
        read_timeout=5,
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=64,
        user_agent=SDK_USER_AGENT,
    )
    async with session.client(
        "dynamodb", endpoint_url=settings.dynamodb_endpoint, region_name=settings.aws_region, config=config
    ) as client:
        try:
            await client.list_tables(Limit=1)
        except NoCredentialsError as error:
            raise StoreUnavailable(
                f"no AWS credentials found for DynamoDB in {settings.aws_region}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary keys), or AWS_PROFILE, or run with an "
                "IAM role"
            ) from error
        except (BotoCoreError, ClientError) as error:
            raise StoreUnavailable(
                f"DynamoDB unreachable at {settings.dynamodb_endpoint or settings.aws_region}: {error}"
            ) from error
        yield client


# Errors that mean "the database is not reachable right now" (retryable), as opposed to a bad query.
POSTGRES_CONNECTIVITY_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.InterfaceError,
)


def postgres_readiness(pool: asyncpg.Pool) -> ReadinessCheck:
    """Ready while the pool hands out a connection that answers `SELECT 1`."""

    async def select_one() -> None:
        await pool.fetchval("SELECT 1")

    return ReadinessCheck("postgresql", select_one)


def dynamodb_readiness(client: DynamoDBClient, table_name: str, required: Callable[[], bool]) -> ReadinessCheck:
    """Ready while DynamoDB describes `table_name`, or while `required()` says requests do not need DynamoDB."""

    async def describe_table() -> None:
        if required():
            await client.describe_table(TableName=table_name)

    return ReadinessCheck("dynamodb", describe_table)
