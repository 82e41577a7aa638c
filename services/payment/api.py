"""The PaymentService gRPC servicer: maps proto messages to use-case calls and payments back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2

from chassis.errors import FieldViolation, InvalidArgument
from chassis.money import MoneyInput
from loanbook.payment.v1 import payment_pb2 as pb
from loanbook.payment.v1 import payment_pb2_grpc
from services.payment.domain import Payment, PaymentMethod, PaymentStatus
from services.payment.use_cases import PaymentPage, PaymentUseCases, RecordPayment

Context = Any  # grpc.aio.ServicerContext; handlers raise domain errors, the chassis interceptor maps them


def _timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _datetime(message: Any, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, field)
    return stamp.ToDatetime(tzinfo=UTC)


def _method(value: pb.PaymentMethod.ValueType) -> PaymentMethod | None:
    if value == pb.PAYMENT_METHOD_UNSPECIFIED:
        return None
    if value not in pb.PaymentMethod.values():
        raise InvalidArgument([FieldViolation("method", f"unknown payment method {value}")])
    return PaymentMethod(pb.PaymentMethod.Name(value).removeprefix("PAYMENT_METHOD_"))


def _status(value: PaymentStatus) -> pb.PaymentStatus.ValueType:
    return pb.PaymentStatus.Value(f"PAYMENT_STATUS_{value.value}")


def payment_to_proto(payment: Payment) -> pb.Payment:
    return pb.Payment(
        id=str(payment.id),
        customer_id=str(payment.customer_id),
        loan_id=str(payment.loan_id),
        amount=payment.amount.to_proto(),
        method=pb.PaymentMethod.Value(f"PAYMENT_METHOD_{payment.method.value}"),
        status=_status(payment.status),
        paid_time=_timestamp(payment.paid_at),
        create_time=_timestamp(payment.created_at),
        update_time=_timestamp(payment.updated_at),
        version=payment.version,
        idempotency_key=payment.idempotency_key,
    )


def _payments(page: PaymentPage) -> list[pb.Payment]:
    return [payment_to_proto(payment) for payment in page.items]


class PaymentServicer(payment_pb2_grpc.PaymentServiceServicer):
    def __init__(self, use_cases: PaymentUseCases) -> None:
        self._use_cases = use_cases

    async def RecordPayment(self, request: pb.RecordPaymentRequest, context: Context) -> pb.RecordPaymentResponse:
        command = RecordPayment(
            idempotency_key=request.idempotency_key,
            customer_id=request.customer_id,
            loan_id=request.loan_id,
            amount=MoneyInput.from_proto(request.amount) if request.HasField("amount") else None,
            method=_method(request.method),
            paid_at=_datetime(request, "paid_time"),
        )
        payment, replayed = await self._use_cases.record_payment(command)
        return pb.RecordPaymentResponse(payment=payment_to_proto(payment), replayed=replayed)

    async def GetPayment(self, request: pb.GetPaymentRequest, context: Context) -> pb.GetPaymentResponse:
        return pb.GetPaymentResponse(payment=payment_to_proto(await self._use_cases.get_payment(request.payment_id)))

    async def ListCustomerPayments(
        self, request: pb.ListCustomerPaymentsRequest, context: Context
    ) -> pb.ListCustomerPaymentsResponse:
        page = await self._use_cases.list_customer_payments(
            request.customer_id,
            _datetime(request, "from_time"),
            _datetime(request, "to_time"),
            request.page_size,
            request.page_token,
        )
        return pb.ListCustomerPaymentsResponse(payments=_payments(page), next_page_token=page.next_page_token)

    async def ListLoanPayments(
        self, request: pb.ListLoanPaymentsRequest, context: Context
    ) -> pb.ListLoanPaymentsResponse:
        page = await self._use_cases.list_loan_payments(request.loan_id, request.page_size, request.page_token)
        return pb.ListLoanPaymentsResponse(payments=_payments(page), next_page_token=page.next_page_token)

    async def ReversePayment(self, request: pb.ReversePaymentRequest, context: Context) -> pb.ReversePaymentResponse:
        payment = await self._use_cases.reverse_payment(request.payment_id, request.version, request.reason)
        return pb.ReversePaymentResponse(payment=payment_to_proto(payment))
