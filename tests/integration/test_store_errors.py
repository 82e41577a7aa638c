"""Store errors leave the adapter as domain errors or a StoreError that names what failed, never the stored values
PostgreSQL's message quotes; a traced call's span records no more than that either."""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator

import asyncpg
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from chassis.errors import AlreadyExists
from chassis.store_errors import StoreError, postgres_errors_translated

SECRET = "stored-value-7f3a"


@pytest.fixture
async def connection(postgres_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(postgres_dsn)
    try:
        await connection.execute(
            """CREATE TEMPORARY TABLE pii_probe (
                   value text CONSTRAINT pii_probe_value_key UNIQUE,
                   size int CONSTRAINT pii_probe_size_check CHECK (size > 0))"""
        )
        await connection.execute("INSERT INTO pii_probe VALUES ($1, 1)", SECRET)
        yield connection
    finally:
        await connection.close()


def _whole_story(error: BaseException) -> str:
    """What a logged traceback or a span's exception event would show: the error and every cause and context."""
    return "".join(traceback.format_exception(error))


@pytest.mark.parametrize("traced", [False, True], ids=["untraced", "traced"])
async def test_a_unique_violation_becomes_already_exists_naming_the_field_without_the_value(
    connection: asyncpg.Connection, traced: bool
) -> None:
    @postgres_errors_translated("probe", {"pii_probe_value_key": ("probe", "value")}, traced=traced)
    async def add(value: str) -> None:
        await connection.execute("INSERT INTO pii_probe VALUES ($1, 1)", value)

    with pytest.raises(AlreadyExists) as refused:
        await add(SECRET)

    assert str(refused.value) == "a probe with this value already exists"
    assert SECRET not in _whole_story(refused.value)


async def test_another_postgresql_error_in_a_traced_call_becomes_a_store_error_without_the_row(
    connection: asyncpg.Connection, spans: InMemorySpanExporter
) -> None:
    @postgres_errors_translated("probe", traced=True)
    async def add_sized(value: str, size: int) -> None:
        await connection.execute("INSERT INTO pii_probe VALUES ($1, $2)", value, size)

    spans.clear()
    with pytest.raises(StoreError) as failed:
        await add_sized("other-" + SECRET, -1)  # PostgreSQL: DETAIL: Failing row contains (other-..., -1).

    assert str(failed.value) == (
        "probe.add_sized: CheckViolationError, SQLSTATE 23514, table pii_probe, constraint pii_probe_size_check"
    )
    assert SECRET not in _whole_story(failed.value)
    (span,) = [span for span in spans.get_finished_spans() if span.name == "probe.add_sized postgres"]
    assert span.status.description == "CheckViolationError"
    recorded = repr((span.attributes, span.status, [(e.name, e.attributes) for e in span.events]))
    assert SECRET not in recorded
