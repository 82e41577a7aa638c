"""Query and Scan pages with the wire's items: the same items botocore would return, errors and all."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from chassis.dynamodb_wire import query_page, scan_page
from tests.support.dynamodb import local_session

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

# Every attribute type the migrated tables use and then some: nesting, numbers as text, sets, booleans, nulls.
ITEMS: list[dict[str, Any]] = [
    {
        "pk": {"S": "customer-1"},
        "sk": {"S": f"2026-01-0{day}T10:00:00.000000Z#{day}"},
        "amount_minor": {"N": str(1000 * day + 5)},
        "attributes": {
            "M": {"trace": {"S": "é ✓ \u00fc"}, "count": {"N": "-1.5"}, "tags": {"L": [{"S": "a"}, {"BOOL": True}]}}
        },
        "labels": {"SS": ["x", "y"]},
        "retired": {"NULL": True},
        "flag": {"BOOL": day % 2 == 0},
    }
    for day in range(1, 8)
]


@pytest.fixture(scope="module")
async def dynamodb(dynamodb_endpoint: str) -> AsyncIterator[DynamoDBClient]:
    async with local_session().client("dynamodb", endpoint_url=dynamodb_endpoint) as client:
        yield client


@pytest.fixture(scope="module")
async def table(dynamodb: DynamoDBClient) -> AsyncIterator[str]:
    name = f"wire-{secrets.token_hex(4)}"
    await dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for item in ITEMS:
        await dynamodb.put_item(TableName=name, Item=item)
    try:
        yield name
    finally:
        await dynamodb.delete_table(TableName=name)


def newest_first(table: str, **extra: Any) -> Any:
    return {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": "customer-1"}},
        "ScanIndexForward": False,
        **extra,
    }


async def test_a_query_page_holds_the_items_botocore_parses_and_pages_on_alike(
    dynamodb: DynamoDBClient, table: str
) -> None:
    parsed = await dynamodb.query(**newest_first(table, Limit=4))
    wire = await query_page(dynamodb, newest_first(table, Limit=4))
    assert wire["Items"] == parsed["Items"]
    assert wire["Count"] == 4
    assert wire["LastEvaluatedKey"] == parsed["LastEvaluatedKey"]  # still parsed by botocore

    rest = await query_page(dynamodb, newest_first(table, ExclusiveStartKey=wire["LastEvaluatedKey"]))
    assert [item["sk"]["S"] for item in wire["Items"] + rest["Items"]] == sorted(
        (item["sk"]["S"] for item in ITEMS), reverse=True
    )
    assert "LastEvaluatedKey" not in rest


async def test_a_scan_page_holds_the_items_botocore_parses(dynamodb: DynamoDBClient, table: str) -> None:
    parsed = await dynamodb.scan(TableName=table, ConsistentRead=True)
    wire = await scan_page(dynamodb, {"TableName": table, "ConsistentRead": True})
    assert sorted(wire["Items"], key=lambda item: item["sk"]["S"]) == sorted(
        parsed["Items"], key=lambda item: item["sk"]["S"]
    )
    assert len(wire["Items"]) == len(ITEMS)


async def test_other_calls_on_the_same_client_are_parsed_by_botocore_as_usual(
    dynamodb: DynamoDBClient, table: str
) -> None:
    # Binary values show the difference: botocore decodes them to bytes, the wire has base64 text.
    await dynamodb.put_item(TableName=table, Item={"pk": {"S": "binary"}, "sk": {"S": "1"}, "blob": {"B": b"\x00\x01"}})
    request = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": "binary"}},
    }
    wire, parsed = await asyncio.gather(query_page(dynamodb, request), dynamodb.query(**request))  # type: ignore[arg-type]
    assert parsed["Items"][0]["blob"] == {"B": b"\x00\x01"}
    assert wire["Items"][0]["blob"] == {"B": "AAE="}
    await dynamodb.delete_item(TableName=table, Key={"pk": {"S": "binary"}, "sk": {"S": "1"}})


async def test_errors_are_botocores(dynamodb: DynamoDBClient) -> None:
    with pytest.raises(ClientError) as raised:
        await query_page(dynamodb, newest_first("no-such-table"))
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
