"""Readiness on a real DynamoDB: its check follows the table's stage, on a DynamoDB Local the test freezes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from chassis.config import DynamoSettings, GrpcServiceSettings
from chassis.grpc_server import NOT_SERVING, SERVING, GrpcServer, ReadinessCheck, ServiceBinding
from chassis.stores import dynamodb_client, dynamodb_readiness
from migration.stages import Stage, TableMode
from services.readiness import dynamodb_required
from tests.support.dynamodb import OwnDynamo
from tests.support.grpc import health_becomes

SERVICE = "loanbook.test.v1.MigratingService"
TABLE = "loanbook-readiness"


@dataclass
class Watched:
    """A server whose one service needs DynamoDB as `mode` says, and a count of the probes it made."""

    mode: TableMode
    address: str = ""
    probes: int = 0
    probed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def probed_again(self, times: int) -> None:
        wanted = self.probes + times
        async with asyncio.timeout(10), self.probed:
            await self.probed.wait_for(lambda: self.probes >= wanted)


@pytest.fixture
async def watched(own_dynamo: OwnDynamo) -> AsyncIterator[Watched]:
    async with dynamodb_client(DynamoSettings(dynamodb_endpoint=own_dynamo.server.endpoint)) as client:
        await client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        settings = GrpcServiceSettings(
            grpc_port=0, health_check_interval_seconds=0.05, health_check_timeout_seconds=0.3
        )
        holder = Watched(TableMode("payments", Stage.DUAL_WRITE, fallback=True))
        check = dynamodb_readiness(client, TABLE, lambda: dynamodb_required(holder.mode))

        async def counted() -> None:
            async with holder.probed:
                holder.probes += 1
                holder.probed.notify_all()
            await check.probe()

        binding = ServiceBinding(SERVICE, lambda server: None, [ReadinessCheck(check.name, counted)])
        server = GrpcServer(settings, [binding])
        await server.start()
        holder.address = server.address
        try:
            yield holder
        finally:
            own_dynamo.thaw()
            await server.stop(grace=0)
            await client.delete_table(TableName=TABLE)


async def test_in_dynamo_only_a_frozen_dynamodb_makes_the_service_not_serving_until_it_answers_again(
    watched: Watched, own_dynamo: OwnDynamo
) -> None:
    watched.mode = TableMode("payments", Stage.DYNAMO_ONLY, fallback=False, postgres_complete=False)
    await health_becomes(watched.address, SERVICE, SERVING)

    own_dynamo.freeze()
    await health_becomes(watched.address, SERVICE, NOT_SERVING)
    await health_becomes(watched.address, "", NOT_SERVING)

    own_dynamo.thaw()
    await health_becomes(watched.address, SERVICE, SERVING)


@pytest.mark.parametrize(
    "mode",
    [
        TableMode("payments", Stage.DUAL_WRITE, fallback=True),
        TableMode("payments", Stage.DYNAMO_LIVE, fallback=True),
        TableMode("payments", Stage.DYNAMO_PRIMARY, fallback=True),
    ],
    ids=lambda mode: mode.stage.value,
)
async def test_where_postgresql_answers_a_frozen_dynamodb_leaves_the_service_serving(
    watched: Watched, own_dynamo: OwnDynamo, mode: TableMode
) -> None:
    watched.mode = mode
    await health_becomes(watched.address, SERVICE, SERVING)

    own_dynamo.freeze()
    await watched.probed_again(5)  # each probe would time out (0.3 s) against the frozen DynamoDB if it asked it

    await health_becomes(watched.address, SERVICE, SERVING, timeout=0.5)


async def test_switching_to_a_stage_without_fallback_makes_a_frozen_dynamodb_count(
    watched: Watched, own_dynamo: OwnDynamo
) -> None:
    watched.mode = TableMode("payments", Stage.DYNAMO_PRIMARY, fallback=True)
    own_dynamo.freeze()
    await watched.probed_again(2)
    await health_becomes(watched.address, SERVICE, SERVING, timeout=0.5)

    watched.mode = TableMode("payments", Stage.DYNAMO_PRIMARY, fallback=False)

    await health_becomes(watched.address, SERVICE, NOT_SERVING)
