"""The payment service as deployed: gRPC in, a deadline-bound loan check against the real customer service,
idempotency, bad input, and one trace across both services."""

from __future__ import annotations

import secrets
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.type import money_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from devstack.processes import free_port
from devstack.supervisor import grpc_health
from loanbook.payment.v1 import payment_pb2 as pb
from loanbook.payment.v1 import payment_pb2_grpc
from services.customer.demo import APPLICATIONS
from tests.support.demo import CASEY, CASEY_FUNDED_LOAN, CASEY_LOAN_UNDER_REVIEW
from tests.support.grpc import bad_request_fields
from tests.support.payments import record
from tests.support.system import RunningSystem, start_process

if TYPE_CHECKING:
    Stub = payment_pb2_grpc.PaymentServiceAsyncStub

DEVONS_LOAN = str(APPLICATIONS[1][0].id)


@pytest.fixture(scope="module")
async def stub(running_system: RunningSystem) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(running_system.grpc_addresses["payment"]) as channel:
        yield payment_pb2_grpc.PaymentServiceStub(channel)


async def test_records_reads_lists_and_reverses_a_payment(stub: Stub) -> None:
    recorded = await stub.RecordPayment(record())
    payment = recorded.payment

    fetched = await stub.GetPayment(pb.GetPaymentRequest(payment_id=payment.id))
    history = await stub.ListCustomerPayments(pb.ListCustomerPaymentsRequest(customer_id=CASEY, page_size=500))
    by_loan = await stub.ListLoanPayments(pb.ListLoanPaymentsRequest(loan_id=CASEY_FUNDED_LOAN, page_size=500))
    reversed_payment = await stub.ReversePayment(pb.ReversePaymentRequest(payment_id=payment.id, version=1))

    assert not recorded.replayed
    assert (payment.amount.units, payment.amount.nanos, payment.status) == (250, 750_000_000, pb.PAYMENT_STATUS_SETTLED)
    assert fetched.payment == payment
    assert payment.id in [p.id for p in history.payments]
    assert payment.id in [p.id for p in by_loan.payments]
    assert (reversed_payment.payment.status, reversed_payment.payment.version) == (pb.PAYMENT_STATUS_REVERSED, 2)


async def test_a_repeated_request_returns_the_original_and_a_changed_one_is_refused(stub: Stub) -> None:
    key = f"e2e-{secrets.token_hex(6)}"
    first = await stub.RecordPayment(record(key))
    again = await stub.RecordPayment(record(key))
    with pytest.raises(grpc.aio.AioRpcError) as changed:
        await stub.RecordPayment(record(key, amount=money_pb2.Money(currency_code="USD", units=1)))

    assert again.replayed
    assert again.payment == first.payment
    assert changed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "different payment request" in (changed.value.details() or "")


@pytest.mark.parametrize(
    ("overrides", "code", "fields"),
    [
        ({"idempotency_key": ""}, grpc.StatusCode.INVALID_ARGUMENT, ["idempotency_key"]),
        ({"amount": money_pb2.Money(currency_code="USD", units=-1)}, grpc.StatusCode.INVALID_ARGUMENT, ["amount"]),
        (
            {"amount": money_pb2.Money(currency_code="USD", units=1, nanos=1)},
            grpc.StatusCode.INVALID_ARGUMENT,
            ["amount.nanos"],
        ),
        (
            {"amount": money_pb2.Money(currency_code="XTS", units=1)},
            grpc.StatusCode.INVALID_ARGUMENT,
            ["amount.currency_code"],
        ),
        # Past int64 minor units, and past the loan's principal (25,000 USD).
        (
            {"amount": money_pb2.Money(currency_code="USD", units=92_233_720_368_547_759)},
            grpc.StatusCode.INVALID_ARGUMENT,
            ["amount.units"],
        ),
        ({"amount": money_pb2.Money(currency_code="USD", units=25_001)}, grpc.StatusCode.INVALID_ARGUMENT, ["amount"]),
        # A Timestamp past year 9999 (a client may send any int64 seconds): with the request's other problems.
        (
            {"paid_time": Timestamp(seconds=2**62), "method": pb.PAYMENT_METHOD_UNSPECIFIED},
            grpc.StatusCode.INVALID_ARGUMENT,
            ["method", "paid_time"],
        ),
        ({"loan_id": str(uuid.uuid4())}, grpc.StatusCode.NOT_FOUND, None),
        ({"loan_id": DEVONS_LOAN}, grpc.StatusCode.NOT_FOUND, None),
        ({"loan_id": CASEY_LOAN_UNDER_REVIEW}, grpc.StatusCode.FAILED_PRECONDITION, None),
    ],
)
async def test_bad_payments_are_refused_precisely_and_nothing_is_written(
    stub: Stub, overrides: dict[str, object], code: grpc.StatusCode, fields: list[str] | None
) -> None:
    request = record(None, **overrides)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.RecordPayment(request)

    assert refused.value.code() == code
    if fields is not None:
        assert bad_request_fields(refused.value) == fields
    if request.idempotency_key:
        # Nothing was recorded under that key: the same key with a valid request now succeeds as new.
        fresh = await stub.RecordPayment(record(request.idempotency_key))
        assert not fresh.replayed


async def test_a_forged_page_token_is_invalid(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ListCustomerPayments(pb.ListCustomerPaymentsRequest(customer_id=CASEY, page_token="forged.token"))

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(refused.value) == ["page_token"]


@pytest.mark.parametrize("bound", ["from_time", "to_time"])
async def test_a_time_bound_out_of_the_timestamp_range_is_invalid_naming_it(stub: Stub, bound: str) -> None:
    request = pb.ListCustomerPaymentsRequest(customer_id=CASEY, **{bound: Timestamp(seconds=-(2**40))})  # type: ignore[arg-type]

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ListCustomerPayments(request)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(refused.value) == [bound]


async def test_recording_a_payment_is_one_trace_through_both_services(
    stub: Stub, running_system: RunningSystem
) -> None:
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)

    await stub.RecordPayment(record(), metadata=(("traceparent", f"00-{trace_id}-{parent}-01"),))

    spans = await running_system.receiver.wait_for(trace_id, {"loanbook-payment", "loanbook-customer"}, timeout=15)
    names = {(s.service_name, s.name) for s in spans}
    assert ("loanbook-customer", "/loanbook.customer.v1.CustomerService/CheckLoanStanding") in names
    stores = [s for s in spans if "loanbook.store.backend" in s.attributes]
    assert stores, names
    assert all(s.attributes["loanbook.migration.stage"] for s in stores)

    # Every store call is one CLIENT span naming its store and why it was called; none per SQL statement or AWS
    # request beneath it (the hybrid store's spans are the payment service's only store spans).
    assert all(s.kind == trace_pb2.Span.SPAN_KIND_CLIENT for s in stores), names
    assert {s.attributes["db.system"] for s in stores} >= {"postgresql"}
    assert all(s.attributes["loanbook.route.reason"] for s in stores)

    def client_spans(service: str) -> list[str]:
        return [
            s.name
            for s in spans
            if s.service_name == service
            and "loanbook.store.backend" not in s.attributes
            and ("db.system" in s.attributes or s.attributes.get("rpc.system") == "aws-api")
        ]

    assert client_spans("loanbook-payment") == []
    assert client_spans("loanbook-customer"), names


async def test_with_the_customer_service_down_a_payment_is_refused_as_unavailable(
    running_system: RunningSystem, tmp_path: Path
) -> None:
    app = running_system.apps["payment"]
    port = free_port()
    env = {
        **app.env,
        "LOANBOOK_PAYMENT_GRPC_PORT": str(port),
        "LOANBOOK_PAYMENT_CUSTOMER_ADDR": f"127.0.0.1:{free_port()}",
        "LOANBOOK_PAYMENT_METRICS_PORT": "0",  # the running payment service holds its own
        "OTEL_TRACES_EXPORTER": "none",
    }
    payment = await start_process("payment-orphan", [sys.executable, "-m", "services.payment"], env, tmp_path)
    try:
        await payment.wait_until_ready(grpc_health(f"127.0.0.1:{port}"))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await payment_pb2_grpc.PaymentServiceStub(channel).RecordPayment(record(), timeout=10)
    finally:
        assert await payment.terminate() == 0

    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "customer service" in (refused.value.details() or "")
