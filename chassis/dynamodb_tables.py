"""Creating a service's DynamoDB table and its indexes at start-up: idempotent, safe from replicas at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import (
        AttributeDefinitionTypeDef,
        CreateTableInputTypeDef,
        GlobalSecondaryIndexTypeDef,
        KeySchemaElementTypeDef,
    )


@dataclass(frozen=True)
class Index:
    """A global secondary index projecting every attribute (the reads need whole items)."""

    name: str
    partition_key: str
    sort_key: str | None = None


@dataclass(frozen=True)
class TableDesign:
    """Key attributes are strings; the table is on-demand (PAY_PER_REQUEST)."""

    partition_key: str
    sort_key: str | None = None
    indexes: Sequence[Index] = ()
    ttl_attribute: str | None = None

    def attribute_definitions(self) -> list[AttributeDefinitionTypeDef]:
        names = [self.partition_key, self.sort_key]
        for index in self.indexes:
            names += [index.partition_key, index.sort_key]
        unique = dict.fromkeys(name for name in names if name)
        return [{"AttributeName": name, "AttributeType": "S"} for name in unique]


def _key_schema(partition_key: str, sort_key: str | None) -> list[KeySchemaElementTypeDef]:
    schema: list[KeySchemaElementTypeDef] = [{"AttributeName": partition_key, "KeyType": "HASH"}]
    if sort_key:
        schema.append({"AttributeName": sort_key, "KeyType": "RANGE"})
    return schema


def _index(index: Index) -> GlobalSecondaryIndexTypeDef:
    return {
        "IndexName": index.name,
        "KeySchema": _key_schema(index.partition_key, index.sort_key),
        "Projection": {"ProjectionType": "ALL"},
    }


def error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


async def _has_index(client: DynamoDBClient, table_name: str, index_name: str) -> bool:
    table = (await client.describe_table(TableName=table_name))["Table"]
    return any(index["IndexName"] == index_name for index in table.get("GlobalSecondaryIndexes", []))


async def ensure_table(
    client: DynamoDBClient,
    table_name: str,
    design: TableDesign,
    *,
    timeout_seconds: float = 120,
    poll_seconds: float = 0.2,
) -> None:
    """Creates the table and its indexes unless present (safe from several replicas at once); waits for ACTIVE;
    turns on TTL when the design names a TTL attribute."""
    definitions = design.attribute_definitions()
    request: CreateTableInputTypeDef = {
        "TableName": table_name,
        "AttributeDefinitions": definitions,
        "KeySchema": _key_schema(design.partition_key, design.sort_key),
        "BillingMode": "PAY_PER_REQUEST",
    }
    if design.indexes:
        request["GlobalSecondaryIndexes"] = [_index(index) for index in design.indexes]
    try:
        await client.create_table(**request)
    except ClientError as error:
        if error_code(error) != "ResourceInUseException":  # already there, or being created by another replica
            raise
    deadline = time.monotonic() + timeout_seconds
    while True:
        table = (await client.describe_table(TableName=table_name))["Table"]
        present = {index["IndexName"]: index.get("IndexStatus") for index in table.get("GlobalSecondaryIndexes", [])}
        missing = [index for index in design.indexes if index.name not in present]
        if table.get("TableStatus") == "ACTIVE" and all(status == "ACTIVE" for status in present.values()):
            if not missing:
                break
            # A table from before an index existed: add one index per UpdateTable, as DynamoDB requires.
            try:
                await client.update_table(
                    TableName=table_name,
                    AttributeDefinitions=definitions,
                    GlobalSecondaryIndexUpdates=[{"Create": _index(missing[0])}],
                )
            except ClientError as error:
                # Another replica is adding it (the table is busy, or the index now exists): poll again.
                if error_code(error) not in {"ResourceInUseException", "LimitExceededException"} and not (
                    error_code(error) == "ValidationException" and await _has_index(client, table_name, missing[0].name)
                ):
                    raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"DynamoDB table {table_name} not ACTIVE with its indexes after {timeout_seconds}s")
        await asyncio.sleep(poll_seconds)
    if design.ttl_attribute:
        await ensure_time_to_live(client, table_name, design.ttl_attribute)


async def ensure_time_to_live(client: DynamoDBClient, table_name: str, attribute: str) -> None:
    """Enables TTL on `attribute` unless already enabled (DynamoDB refuses to enable it twice)."""
    description = (await client.describe_time_to_live(TableName=table_name))["TimeToLiveDescription"]
    if description.get("TimeToLiveStatus") in {"ENABLED", "ENABLING"}:
        if description.get("AttributeName") != attribute:
            raise RuntimeError(
                f"{table_name} already expires items by {description.get('AttributeName')!r}, not {attribute!r}"
            )
        return
    try:
        await client.update_time_to_live(
            TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute}
        )
    except ClientError as error:
        # Another replica enabled it between our describe and update.
        if error_code(error) != "ValidationException" or "already enabled" not in str(error).lower():
            raise
