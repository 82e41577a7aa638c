"""The PaymentService gRPC servicer: maps proto messages to use-case calls and payments back."""

from __future__ import annotations

from typing import Any

import grpc

from chassis.errors import FieldViolation, InvalidArgument
from chassis.money import MoneyInput
from chassis.timestamps import optional_datetime, set_timestamp
from loanbook.payment.v1 import payment_pb2 as pb
from loanbook.payment.v1 import payment_pb2_grpc
from services.payment.domain import Payment, PaymentMethod, PaymentStatus
from services.payment.use_cases import PaymentUseCases, RecordPayment

# Handlers raise domain errors; the chassis interceptor maps them to status codes.
Context = grpc.aio.ServicerContext[Any, Any]


METHODS = {method: pb.PaymentMethod.Value(f"PAYMENT_METHOD_{method.value}") for method in PaymentMethod}
STATUSES = {status: pb.PaymentStatus.Value(f"PAYMENT_STATUS_{status.value}") for status in PaymentStatus}


def _method(value: pb.PaymentMethod.ValueType) -> PaymentMethod | None:
    if value == pb.PAYMENT_METHOD_UNSPECIFIED:
        return None
    if value not in pb.PaymentMethod.values():
        raise InvalidArgument([FieldViolation("method", f"unknown payment method {value}")])
    return PaymentMethod(pb.PaymentMethod.Name(value).removeprefix("PAYMENT_METHOD_"))


def fill_payment(message: pb.Payment, payment: Payment) -> pb.Payment:
    """Write a payment into a (new or repeated-field) message in place."""
    message.id = str(payment.id)
    message.customer_id = str(payment.customer_id)
    message.loan_id = str(payment.loan_id)
    amount, money = payment.amount, message.amount  # each read of message.amount builds a new wrapper
    scale = 10**amount.digits
    units, remainder = divmod(amount.minor_units, scale)  # amounts are positive: no sign to carry
    money.currency_code = amount.currency
    money.units = units
    money.nanos = remainder * (1_000_000_000 // scale)
    message.method = METHODS[payment.method]
    message.status = STATUSES[payment.status]
    set_timestamp(message.paid_time, payment.paid_at)
    set_timestamp(message.create_time, payment.created_at)
    set_timestamp(message.update_time, payment.updated_at)
    message.version = payment.version
    message.idempotency_key = payment.idempotency_key
    return message


def payment_to_proto(payment: Payment) -> pb.Payment:
    return fill_payment(pb.Payment(), payment)


class PaymentServicer(payment_pb2_grpc.PaymentServiceServicer):
    def __init__(self, use_cases: PaymentUseCases) -> None:
        self._use_cases = use_cases

    async def RecordPayment(self, request: pb.RecordPaymentRequest, context: Context) -> pb.RecordPaymentResponse:
        try:
            paid_at, paid_time_problem = optional_datetime(request, "paid_time"), ""
        except InvalidArgument as error:  # reported with the request's other problems
            paid_at, paid_time_problem = None, error.violations[0].description
        command = RecordPayment(
            idempotency_key=request.idempotency_key,
            customer_id=request.customer_id,
            loan_id=request.loan_id,
            amount=MoneyInput.from_proto(request.amount) if request.HasField("amount") else None,
            method=_method(request.method),
            paid_at=paid_at,
            paid_time_problem=paid_time_problem,
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
            optional_datetime(request, "from_time"),
            optional_datetime(request, "to_time"),
            request.page_size,
            request.page_token,
        )
        response = pb.ListCustomerPaymentsResponse(next_page_token=page.next_page_token)
        for payment in page.items:
            fill_payment(response.payments.add(), payment)
        return response

    async def ListLoanPayments(
        self, request: pb.ListLoanPaymentsRequest, context: Context
    ) -> pb.ListLoanPaymentsResponse:
        page = await self._use_cases.list_loan_payments(request.loan_id, request.page_size, request.page_token)
        response = pb.ListLoanPaymentsResponse(next_page_token=page.next_page_token)
        for payment in page.items:
            fill_payment(response.payments.add(), payment)
        return response

    async def ReversePayment(self, request: pb.ReversePaymentRequest, context: Context) -> pb.ReversePaymentResponse:
        payment = await self._use_cases.reverse_payment(request.payment_id, request.version, request.reason)
        return pb.ReversePaymentResponse(payment=payment_to_proto(payment))
