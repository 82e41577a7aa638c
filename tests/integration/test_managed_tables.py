"""Tables managed as code: a service that may not create them checks them at start and names what is missing."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import pytest

from chassis.config import DynamoSettings, Environment
from chassis.dynamodb_tables import Index, TableDesign, TableNotReady, check_table, ensure_table, provide_table
from services.logging.adapters.dynamodb import LOG_TABLE
from services.payment.adapters.dynamodb import PAYMENT_TABLE
from tests.support.dynamodb import disposable_tables, local_session
from tests.support.system import run_module

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

REMEDY = "create it from the template"


@pytest.fixture(scope="module")
async def dynamodb(dynamodb_endpoint: str) -> AsyncIterator[DynamoDBClient]:
    async with local_session().client("dynamodb", endpoint_url=dynamodb_endpoint) as client:
        yield client


@pytest.fixture
async def unique(dynamodb: DynamoDBClient) -> AsyncIterator[Callable[[str], str]]:
    async with disposable_tables(dynamodb, "managed") as name:
        yield name


async def exists(dynamodb: DynamoDBClient, table: str) -> bool:
    try:
        await dynamodb.describe_table(TableName=table)
    except dynamodb.exceptions.ResourceNotFoundException:
        return False
    return True


def test_tables_are_created_by_default_only_outside_production() -> None:
    unset = DynamoSettings()
    assert [unset.creates_tables(environment) for environment in Environment] == [True, True, False]
    assert DynamoSettings(dynamodb_create_tables=True).creates_tables(Environment.PRODUCTION) is True
    assert DynamoSettings(dynamodb_create_tables=False).creates_tables(Environment.DEVELOPMENT) is False


async def test_a_missing_table_is_named_with_the_remedy(dynamodb: DynamoDBClient, unique: Callable[[str], str]) -> None:
    table = unique("payments")
    with pytest.raises(TableNotReady) as raised:
        await check_table(dynamodb, table, PAYMENT_TABLE, remedy=REMEDY)
    assert str(raised.value) == f"DynamoDB table {table} does not exist; {REMEDY}"


async def test_a_table_lacking_an_index_the_service_queries_is_refused(
    dynamodb: DynamoDBClient, unique: Callable[[str], str]
) -> None:
    table = unique("payments")
    # Made with one of the two indexes the payment service queries.
    await ensure_table(dynamodb, table, TableDesign("pk", indexes=PAYMENT_TABLE.indexes[:1]), poll_seconds=0.05)
    with pytest.raises(TableNotReady) as raised:
        await check_table(dynamodb, table, PAYMENT_TABLE, remedy=REMEDY)
    assert f"index {PAYMENT_TABLE.indexes[1].name} is missing" in str(raised.value)
    assert PAYMENT_TABLE.indexes[0].name not in str(raised.value)


async def test_a_table_keyed_differently_is_refused(dynamodb: DynamoDBClient, unique: Callable[[str], str]) -> None:
    table = unique("logs")
    await ensure_table(dynamodb, table, TableDesign("id", indexes=LOG_TABLE.indexes), poll_seconds=0.05)
    with pytest.raises(TableNotReady) as raised:
        await check_table(dynamodb, table, LOG_TABLE, remedy=REMEDY)
    assert "its key is ('id', None), expected ('pk', 'sk')" in str(raised.value)


async def test_a_log_table_without_ttl_is_refused_and_with_it_passes(
    dynamodb: DynamoDBClient, unique: Callable[[str], str]
) -> None:
    table = unique("logs")
    await ensure_table(dynamodb, table, TableDesign("pk", "sk", LOG_TABLE.indexes), poll_seconds=0.05)
    with pytest.raises(TableNotReady) as raised:
        await check_table(dynamodb, table, LOG_TABLE, remedy=REMEDY)
    assert f"TTL is not enabled on {LOG_TABLE.ttl_attribute}" in str(raised.value)

    await ensure_table(dynamodb, table, LOG_TABLE, poll_seconds=0.05)
    await check_table(dynamodb, table, LOG_TABLE, remedy=REMEDY)


async def test_an_index_projecting_less_than_the_reads_need_is_refused(
    dynamodb: DynamoDBClient, unique: Callable[[str], str]
) -> None:
    table = unique("payments")
    await dynamodb.create_table(
        TableName=table,
        AttributeDefinitions=PAYMENT_TABLE.attribute_definitions(),
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        GlobalSecondaryIndexes=[
            {
                "IndexName": index.name,
                "KeySchema": [
                    {"AttributeName": index.partition_key, "KeyType": "HASH"},
                    {"AttributeName": index.sort_key or "", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
            for index in PAYMENT_TABLE.indexes
        ],
    )
    with pytest.raises(TableNotReady) as raised:
        await check_table(dynamodb, table, PAYMENT_TABLE, remedy=REMEDY)
    assert f"index {PAYMENT_TABLE.indexes[0].name} does not project ALL attributes" in str(raised.value)


async def test_provide_table_creates_only_when_told_to(dynamodb: DynamoDBClient, unique: Callable[[str], str]) -> None:
    table, design = unique("plain"), TableDesign("pk", indexes=(Index("by-x", "x"),))
    with pytest.raises(TableNotReady) as raised:
        await provide_table(dynamodb, table, design, create=False, setting="LOANBOOK_X_DYNAMODB_CREATE_TABLES")
    assert "LOANBOOK_X_DYNAMODB_CREATE_TABLES=true" in str(raised.value)
    assert not await exists(dynamodb, table)

    await provide_table(dynamodb, table, design, create=True, setting="LOANBOOK_X_DYNAMODB_CREATE_TABLES")
    await provide_table(dynamodb, table, design, create=False, setting="LOANBOOK_X_DYNAMODB_CREATE_TABLES")


@pytest.mark.parametrize(("service", "table"), [("payment", "payments"), ("logging", "logs")])
async def test_a_service_not_creating_tables_stops_at_start_naming_the_missing_table(
    service: str, table: str, postgres_dsn: str, dynamodb_endpoint: str, dynamodb: DynamoDBClient
) -> None:
    prefix = f"managed-{secrets.token_hex(4)}"
    variable = f"LOANBOOK_{service.upper()}_"
    env = {
        **os.environ,
        f"{variable}POSTGRES_DSN": postgres_dsn,
        f"{variable}DYNAMODB_ENDPOINT": dynamodb_endpoint,
        f"{variable}DYNAMODB_TABLE_PREFIX": prefix,
        f"{variable}DYNAMODB_CREATE_TABLES": "false",
        f"{variable}CUSTOMER_ADDR": "127.0.0.1:9",
        f"{variable}GRPC_PORT": "0",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "OTEL_SDK_DISABLED": "true",
    }
    code, out, _ = await run_module(f"services.{service}", env, 60, stderr_into_stdout=True)

    assert code == 2, out
    assert f"DynamoDB table {prefix}-{table} does not exist" in out
    assert f"{variable}DYNAMODB_CREATE_TABLES=true" in out
    assert not await exists(dynamodb, f"{prefix}-{table}")
