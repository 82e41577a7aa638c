"""The customer repository's own CLIENT spans: one per store call, and a failed one says what failed by class and
SQLSTATE, never with PostgreSQL's message (its DETAIL quotes the stored e-mail)."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from loanbook.customer.v1 import customer_pb2_grpc
from tests.support.customers import Factory


async def test_a_duplicate_email_leaves_a_failed_client_span_that_does_not_quote_it(
    customer_stub: customer_pb2_grpc.CustomerServiceAsyncStub, factory: Factory, spans: InMemorySpanExporter
) -> None:
    branch = await factory.branch()
    first = await factory.customer(branch.id)
    spans.clear()

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await factory.stub.CreateCustomer(factory.customer_request(branch.id, email=first.email.upper()))

    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert refused.value.details() == "a customer with this email already exists"
    (insert,) = [span for span in spans.get_finished_spans() if span.name == "customer.add_customer postgres"]
    assert insert.kind is SpanKind.CLIENT
    assert insert.status.status_code is StatusCode.ERROR
    assert insert.status.description == "UniqueViolationError"
    attributes = dict(insert.attributes or {})
    assert attributes["db.system"] == "postgresql"
    assert attributes["db.operation.name"] == "add_customer"
    assert (attributes["error.type"], attributes["db.response.status_code"]) == ("UniqueViolationError", "23505")
    assert [(event.name, dict(event.attributes or {})) for event in insert.events] == [
        ("exception", {"exception.type": "UniqueViolationError"})
    ]
    for span in spans.get_finished_spans():
        recorded = repr((span.attributes, span.status, [(e.name, e.attributes) for e in span.events]))
        assert first.email.lower() not in recorded.lower()
