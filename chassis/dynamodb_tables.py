"""Creating a service's DynamoDB table and its indexes at start-up: idempotent, safe from replicas at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from chassis.config import ConfigurationError

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


class TableNotReady(ConfigurationError):
    """A table managed outside the service (tables as code) is absent or lacks what the service queries."""


def _described_key(schema: Sequence[KeySchemaElementTypeDef]) -> tuple[str | None, str | None]:
    keys = {element["KeyType"]: element["AttributeName"] for element in schema}
    return keys.get("HASH"), keys.get("RANGE")


async def check_table(client: DynamoDBClient, table_name: str, design: TableDesign, *, remedy: str) -> None:
    """Checks, without creating anything, that the table exists with the design's keys and every index the service
    queries, usable, and (when the design names one) TTL on its attribute. Raises TableNotReady naming what is
    missing; `remedy` says how to fix it (where the tables are defined, which setting creates them instead)."""
    try:
        table = (await client.describe_table(TableName=table_name))["Table"]
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            raise TableNotReady(f"DynamoDB table {table_name} does not exist; {remedy}") from None
        if error_code(error) == "AccessDeniedException":
            raise TableNotReady(
                f"not allowed to describe DynamoDB table {table_name} (dynamodb:DescribeTable)"
            ) from None
        raise
    problems: list[str] = []
    status = table.get("TableStatus")
    if status not in {"ACTIVE", "UPDATING"}:
        problems.append(f"the table is {status}, not ACTIVE")
    expected_key = (design.partition_key, design.sort_key)
    if (key := _described_key(table.get("KeySchema", []))) != expected_key:
        problems.append(f"its key is {key}, expected {expected_key}")
    present = {index["IndexName"]: index for index in table.get("GlobalSecondaryIndexes", [])}
    for index in design.indexes:
        found = present.get(index.name)
        if found is None:
            problems.append(f"index {index.name} is missing")
            continue
        if _described_key(found.get("KeySchema", [])) != (index.partition_key, index.sort_key):
            problems.append(f"index {index.name} is keyed {_described_key(found.get('KeySchema', []))}")
        if found.get("Projection", {}).get("ProjectionType") != "ALL":
            problems.append(f"index {index.name} does not project ALL attributes")
        if found.get("IndexStatus") not in {"ACTIVE", "UPDATING"}:
            problems.append(f"index {index.name} is {found.get('IndexStatus')}, not ACTIVE")
    if design.ttl_attribute:
        description = (await client.describe_time_to_live(TableName=table_name))["TimeToLiveDescription"]
        if description.get("TimeToLiveStatus") not in {"ENABLED", "ENABLING"} or (
            description.get("AttributeName") != design.ttl_attribute
        ):
            problems.append(f"TTL is not enabled on {design.ttl_attribute}")
    if problems:
        raise TableNotReady(f"DynamoDB table {table_name}: {'; '.join(problems)}; {remedy}")


async def provide_table(
    client: DynamoDBClient,
    table_name: str,
    design: TableDesign,
    *,
    create: bool,
    setting: str,
    poll_seconds: float = 0.2,
) -> None:
    """At a service's start: creates the table when `create` (development, tests), otherwise checks that the table
    managed as code is there as the service needs it. `setting` names the environment variable that decides."""
    if create:
        await ensure_table(client, table_name, design, poll_seconds=poll_seconds)
        return
    remedy = (
        "create it with the CloudFormation template deploy/aws/dynamodb-tables.yaml (tables are managed as code), "
        f"or set {setting}=true to let the service create it"
    )
    await check_table(client, table_name, design, remedy=remedy)
