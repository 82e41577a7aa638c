"""The shared store clients: the PostgreSQL pool skips asyncpg's reset query but never keeps a transaction; the
DynamoDB client names itself with a fixed User-Agent."""

from __future__ import annotations

from typing import Any

from botocore.awsrequest import AWSPreparedRequest
from pydantic import SecretStr

from chassis.config import DynamoSettings, PostgresSettings
from chassis.stores import SDK_USER_AGENT, dynamodb_client, postgres_pool


def one_connection(dsn: str) -> PostgresSettings:
    return PostgresSettings(postgres_dsn=SecretStr(dsn), postgres_pool_min_size=1, postgres_pool_max_size=1)


async def test_a_transaction_left_open_is_rolled_back_when_the_connection_goes_back(postgres_dsn: str) -> None:
    async with postgres_pool(one_connection(postgres_dsn)) as pool:
        async with pool.acquire() as connection:
            await connection.execute("CREATE TEMP TABLE IF NOT EXISTS left_open (n int)")
            await connection.execute("BEGIN")
            await connection.execute("INSERT INTO left_open VALUES (1)")
        async with pool.acquire() as connection:
            assert not connection.is_in_transaction()
            assert await connection.fetchval("SELECT count(*) FROM left_open") == 0


async def test_the_service_pool_sends_no_reset_query_and_the_toolkit_pool_does(postgres_dsn: str) -> None:
    # Session settings are the visible trace of the reset query (RESET ALL): they survive only without it.
    for reset_sessions, expected in ((False, "survives"), (True, "")):
        async with postgres_pool(one_connection(postgres_dsn), reset_sessions=reset_sessions) as pool:
            async with pool.acquire() as connection:
                await connection.execute("SET application_name = 'survives'")
            async with pool.acquire() as connection:
                assert await connection.fetchval("SHOW application_name") == expected, f"{reset_sessions=}"


async def test_every_dynamodb_request_carries_the_fixed_user_agent(dynamodb_endpoint: str) -> None:
    # A fixed User-Agent spares botocore rebuilding its standard one twice per request (see chassis.stores).
    sent: list[str] = []

    def record(request: AWSPreparedRequest, **_: Any) -> None:
        agent = request.headers["User-Agent"]
        sent.append(agent.decode() if isinstance(agent, bytes) else agent)

    async with dynamodb_client(DynamoSettings(dynamodb_endpoint=dynamodb_endpoint)) as client:
        client.meta.events.register("before-send.dynamodb", record)
        await client.list_tables(Limit=1)
        await client.list_tables(Limit=2)
    assert SDK_USER_AGENT.startswith("loanbook/")
    assert len(sent) == 2
    assert all(agent.startswith(SDK_USER_AGENT) and "ua/2" not in agent for agent in sent), sent
