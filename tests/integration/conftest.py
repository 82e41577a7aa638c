"""Integration-test infrastructure shared by the services' suites: a DynamoDB Local to break, and span capture."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from devstack.dynamodb import DynamoDBLocal


@dataclass
class OwnDynamo:
    """A DynamoDB Local only this test module uses, so it can be frozen (SIGSTOP) or killed safely."""

    server: DynamoDBLocal

    def freeze(self) -> None:
        assert self.server.pid is not None
        os.kill(self.server.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.server.pid is not None
        os.kill(self.server.pid, signal.SIGCONT)


@pytest.fixture(scope="module")
async def own_dynamo(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OwnDynamo]:
    server = DynamoDBLocal(Path(tmp_path_factory.mktemp("own-dynamodb")), ephemeral=True)
    await server.start()
    own = OwnDynamo(server)
    try:
        yield own
    finally:
        own.thaw()
        await server.stop()


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    """Every span this test process ends, collected in memory (the SDK's own test exporter)."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter
