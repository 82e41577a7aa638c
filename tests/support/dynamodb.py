"""DynamoDB Local for tests: its client session, tidying up the tables tests create, and one a test may freeze."""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aioboto3
from botocore.exceptions import ClientError

from devstack.dynamodb import DynamoDBLocal

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


async def delete_table_if_present(client: DynamoDBClient, table_name: str) -> None:
    """Deletes a test's table; one already gone is fine (a test may drop its own)."""
    try:
        await client.delete_table(TableName=table_name)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise


async def expiring_tables(endpoint: str) -> set[str]:
    """The tables on `endpoint` with TTL enabled (or being enabled)."""
    session = local_session()
    names: set[str] = set()
    async with session.client("dynamodb", endpoint_url=endpoint) as client:
        async for page in client.get_paginator("list_tables").paginate():
            for name in page.get("TableNames", []):
                try:
                    ttl = (await client.describe_time_to_live(TableName=name))["TimeToLiveDescription"]
                except ClientError as error:  # deleted since the listing
                    if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                        continue
                    raise
                if ttl.get("TimeToLiveStatus") in {"ENABLED", "ENABLING"}:
                    names.add(name)
    return names


def local_session() -> aioboto3.Session:
    return aioboto3.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1")


def refuse_scan(**_: Any) -> None:
    raise AssertionError("a log access pattern used Scan")


@asynccontextmanager
async def scan_refusing_client(
    endpoint: str, refuse: Callable[..., None] = refuse_scan
) -> AsyncIterator[DynamoDBClient]:
    """A client of DynamoDB Local through which any Scan fails the test that issued it (`refuse` says why)."""
    async with local_session().client("dynamodb", endpoint_url=endpoint) as client:
        client.meta.events.register("before-call.dynamodb.Scan", refuse)
        yield client


def _thread_state(stat: Path) -> str:
    try:
        # /proc/<pid>/task/<tid>/stat: "tid (comm) state ..."; comm may hold spaces, so split after its ")".
        return stat.read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return "T"  # a thread that ended meanwhile answers nothing


@dataclass
class OwnDynamo:
    """A DynamoDB Local only this test module uses, so it can be frozen (SIGSTOP) or killed safely."""

    server: DynamoDBLocal

    def freeze(self) -> None:
        assert self.server.pid is not None
        os.kill(self.server.pid, signal.SIGSTOP)
        # kill() returns once the signal is sent; the JVM's threads stop as each is next scheduled. Wait until
        # every thread is stopped, so the next request cannot be answered by one still finishing its time slice.
        deadline = time.monotonic() + 5
        while not all(_thread_state(stat) == "T" for stat in Path(f"/proc/{self.server.pid}/task").glob("*/stat")):
            assert time.monotonic() < deadline, "DynamoDB Local did not stop within 5 s of SIGSTOP"
            time.sleep(0.01)

    def thaw(self) -> None:
        assert self.server.pid is not None
        os.kill(self.server.pid, signal.SIGCONT)


@asynccontextmanager
async def disposable_tables(client: DynamoDBClient, prefix: str) -> AsyncIterator[Callable[[str], str]]:
    """Fresh table names (`prefix-<random>-<table>`) for one test, each table deleted afterwards: a TTL table left
    behind holds a thread of DynamoDB Local's (see tests/integration/conftest.py)."""
    names: list[str] = []

    def name(table: str) -> str:
        names.append(f"{prefix}-{secrets.token_hex(4)}-{table}")
        return names[-1]

    try:
        yield name
    finally:
        for table in names:
            await delete_table_if_present(client, table)
