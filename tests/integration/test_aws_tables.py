"""Tables made from deploy/aws/dynamodb-tables.yaml pass the start-up check the services run against them."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest

from chassis.dynamodb_tables import TableDesign, TableNotReady, check_table
from services.logging.adapters.dynamodb import LOG_TABLE
from services.payment.adapters.dynamodb import PAYMENT_TABLE
from tests.support.aws_templates import create_table_request, table_properties
from tests.support.dynamodb import disposable_tables, local_session

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

DESIGNS: dict[str, TableDesign] = {"payments": PAYMENT_TABLE, "logs": LOG_TABLE}
REMEDY = "fix deploy/aws/dynamodb-tables.yaml"


@pytest.fixture(scope="module")
async def dynamodb(dynamodb_endpoint: str) -> AsyncIterator[DynamoDBClient]:
    async with local_session().client("dynamodb", endpoint_url=dynamodb_endpoint) as client:
        yield client


@pytest.fixture
async def unique(dynamodb: DynamoDBClient) -> AsyncIterator[Callable[[str], str]]:
    async with disposable_tables(dynamodb, "template") as name:
        yield name


async def create_from_template(dynamodb: DynamoDBClient, properties: dict[str, Any], table_name: str) -> None:
    """What CloudFormation does with the table's properties: CreateTable, wait for ACTIVE, then TTL if specified."""
    await dynamodb.create_table(**create_table_request(properties, table_name))
    async with asyncio.timeout(30):
        while (await dynamodb.describe_table(TableName=table_name))["Table"].get("TableStatus") != "ACTIVE":
            await asyncio.sleep(0.05)
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        await dynamodb.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
        )


@pytest.mark.parametrize("billing", ["PAY_PER_REQUEST", "PROVISIONED"])
@pytest.mark.parametrize("table", DESIGNS)
async def test_a_table_made_from_the_template_is_what_the_service_checks_for(
    dynamodb: DynamoDBClient, unique: Callable[[str], str], table: str, billing: str
) -> None:
    name = unique(table)
    await create_from_template(dynamodb, table_properties(table, BillingMode=billing), name)

    await check_table(dynamodb, name, DESIGNS[table], remedy=REMEDY)  # raises TableNotReady naming any gap

    described = (await dynamodb.describe_table(TableName=name))["Table"]
    assert described.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED") == billing


async def test_a_template_table_the_service_would_refuse_fails_the_check(
    dynamodb: DynamoDBClient, unique: Callable[[str], str]
) -> None:
    """The check above can fail: a template that lost an index and its TTL is refused, naming both."""
    properties = copy.deepcopy(table_properties("logs"))
    properties["AttributeDefinitions"] = [
        d for d in properties["AttributeDefinitions"] if d["AttributeName"] != "trace_id"
    ]
    del properties["GlobalSecondaryIndexes"], properties["TimeToLiveSpecification"]
    name = unique("logs")
    await create_from_template(dynamodb, properties, name)

    with pytest.raises(TableNotReady) as raised:
        await check_table(dynamodb, name, LOG_TABLE, remedy=REMEDY)
    assert f"index {LOG_TABLE.indexes[0].name} is missing" in str(raised.value)
    assert f"TTL is not enabled on {LOG_TABLE.ttl_attribute}" in str(raised.value)
