"""REST routes of the payment context: check the HTTP shape and the caller's role, call the payment service, convert.

Same rules as gateway/customer_routes.py (shared parts in gateway/dependencies.py). A customer records payments only
for itself (another customerId → 403), and reads only its own: someone else's payment, payment history or loan reads
as a missing one (404). The ownership of a payment is checked on the fetched payment; of a loan, with one
CheckLoanStanding call to the customer service before its payments are listed. Reversing is for officers and admins.

The payment service keeps no customers or loans, so it lists an unknown one's payments as an empty page. For
officers and admins the gateway asks the customer service whether the customer or loan exists (one primary-key
read, made alongside the listing, so it costs no extra round trip): an unknown one is 404 for every role.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Annotated, TypeVar

import grpc
from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse

from chassis.identity import Caller, Role
from gateway import payment_models as m
from gateway.auth import PersonCaller, StaffCaller
from gateway.dependencies import (
    ERROR_RESPONSES,
    RFC3339,
    Customers,
    PageSize,
    PageToken,
    Payments,
    ResourceId,
    hide_unless_own,
    json_response,
    not_found,
    only_own_customer,
    path_id,
    proto_request,
    timestamp_parameter,
)
from gateway.errors import ApiError, UpstreamError
from loanbook.customer.v1 import customer_pb2
from loanbook.payment.v1 import payment_pb2 as pb

router = APIRouter(prefix="/v1", responses=ERROR_RESPONSES)
T = TypeVar("T")
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        description="the client's unique key for this payment; a retry with the same key and body returns the "
        "original payment instead of recording a second one",
    ),
]
PaidFrom = Annotated[str, Query(alias="from", max_length=64, description=f"paid at or after; {RFC3339}")]
PaidTo = Annotated[str, Query(alias="to", max_length=64, description=f"paid before; {RFC3339}")]


async def listed_if_it_exists(exists: Awaitable[object], listing: Awaitable[T]) -> T:
    """The listing, unless the lookup `exists` (awaited alongside it) fails: then its error, the listing dropped."""
    listed = asyncio.ensure_future(listing)
    try:
        await exists
    except BaseException:
        listed.cancel()
        # Retrieve whatever the listing ends with, so an error of its own is not reported as never retrieved.
        listed.add_done_callback(lambda task: task.cancelled() or task.exception())
        raise
    return await listed


async def _payment_visible_to(caller: Caller, payment_id: str, payments: Payments) -> pb.Payment:
    request = pb.GetPaymentRequest(payment_id=payment_id)
    response = await payments.call(payments.stub.GetPayment, request, caller, path_id("payment_id"))
    hide_unless_own(caller, response.payment.customer_id, "payment", payment_id)
    return response.payment


@router.post(
    "/payments",
    status_code=201,
    response_model=m.RecordPaymentResponse,
    tags=["payments"],
    summary="Record a payment against a funded loan (a customer: for itself)",
    description="Idempotent on the required `Idempotency-Key` header. A new payment is **201** with "
    '`{"payment": ..., "replayed": false}`; a retry with the same key and the same body is **200** with the same '
    'body and `"replayed": true` (the original payment, nothing recorded twice); the same key with a different '
    "body is 409 FAILED_PRECONDITION. The loan must exist, be the customer's and be FUNDED (else 404 or 409).",
    responses={200: {"model": m.RecordPaymentResponse, "description": "A replay: the original payment"}},
)
async def record_payment(
    body: m.RecordPaymentBody, idempotency_key: IdempotencyKey, caller: PersonCaller, payments: Payments
) -> JSONResponse:
    customer_id = only_own_customer(caller, body.customer_id)
    request = proto_request(pb.RecordPaymentRequest(), body, customerId=customer_id, idempotencyKey=idempotency_key)
    response = await payments.call(payments.stub.RecordPayment, request, caller)
    return json_response(response, 200 if response.replayed else 201)


@router.get("/payments/{id}", response_model=m.Payment, tags=["payments"], summary="One payment (a customer: its own)")
async def get_payment(id: ResourceId, caller: PersonCaller, payments: Payments) -> JSONResponse:
    return json_response(await _payment_visible_to(caller, id, payments))


@router.post(
    "/payments/{id}/reverse",
    response_model=m.Payment,
    tags=["payments"],
    summary="Reverse a settled payment (officers and admins)",
    description="`version` is the one the caller read; a stale one is 409 ABORTED, a payment that is not SETTLED "
    "409 FAILED_PRECONDITION.",
)
async def reverse_payment(
    id: ResourceId, body: m.ReversePaymentBody, caller: StaffCaller, payments: Payments
) -> JSONResponse:
    request = pb.ReversePaymentRequest(payment_id=id, version=body.version, reason=body.reason)
    response = await payments.call(payments.stub.ReversePayment, request, caller, path_id("payment_id"))
    return json_response(response.payment)


@router.get(
    "/customers/{id}/payments",
    response_model=m.ListCustomerPaymentsResponse,
    tags=["payments"],
    summary="A customer's payments, newest first (a customer: its own)",
    description="`from` (inclusive) and `to` (exclusive) bound the paid time; both RFC 3339 with a time zone.",
)
async def list_customer_payments(
    id: ResourceId,
    caller: PersonCaller,
    payments: Payments,
    customers: Customers,
    paid_from: PaidFrom = "",
    paid_to: PaidTo = "",
    page_size: PageSize = 0,
    page_token: PageToken = "",
) -> JSONResponse:
    hide_unless_own(caller, id, "customer", id)
    from_time, to_time = timestamp_parameter(paid_from, "from"), timestamp_parameter(paid_to, "to")
    if from_time is not None and to_time is not None and from_time.ToDatetime() >= to_time.ToDatetime():
        raise ApiError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid request: from",
            [{"field": "from", "description": "must be before to"}],
        )
    request = pb.ListCustomerPaymentsRequest(
        customer_id=id, from_time=from_time, to_time=to_time, page_size=page_size, page_token=page_token
    )
    rest_fields = {**path_id("customer_id"), "from_time": "from", "to_time": "to"}
    if caller.role is Role.CUSTOMER:  # its own id: the customer exists
        own = await payments.call(payments.stub.ListCustomerPayments, request, caller, rest_fields)
        return json_response(own)
    listing = payments.call(payments.stub.ListCustomerPayments, request, caller, rest_fields)
    lookup = customer_pb2.GetCustomerRequest(customer_id=id)
    exists = customers.call(customers.stub.GetCustomer, lookup, caller, path_id("customer_id"))
    return json_response(await listed_if_it_exists(exists, listing))


@router.get(
    "/loans/{id}/payments",
    response_model=m.ListLoanPaymentsResponse,
    tags=["payments"],
    summary="A loan's payments, newest first (a customer: only its own loans)",
)
async def list_loan_payments(
    id: ResourceId,
    caller: PersonCaller,
    payments: Payments,
    customers: Customers,
    page_size: PageSize = 0,
    page_token: PageToken = "",
) -> JSONResponse:
    request = pb.ListLoanPaymentsRequest(loan_id=id, page_size=page_size, page_token=page_token)
    if caller.role is Role.CUSTOMER:
        assert caller.customer_id is not None
        # One cheap call says whether the loan is the caller's; not theirs reads as missing.
        standing_request = customer_pb2.CheckLoanStandingRequest(loan_id=id, customer_id=caller.customer_id)
        standing = await customers.call(customers.stub.CheckLoanStanding, standing_request, caller, path_id("loan_id"))
        if not (standing.exists and standing.belongs_to_customer):
            raise not_found("loan", id)
        own = await payments.call(payments.stub.ListLoanPayments, request, caller, path_id("loan_id"))
        return json_response(own)
    listing = payments.call(payments.stub.ListLoanPayments, request, caller, path_id("loan_id"))
    lookup = customer_pb2.GetLoanApplicationRequest(application_id=id)
    exists = customers.call(customers.stub.GetLoanApplication, lookup, caller, path_id("application_id"))
    try:
        return json_response(await listed_if_it_exists(exists, listing))
    except UpstreamError as error:
        if error.error.code() is grpc.StatusCode.NOT_FOUND:
            raise not_found("loan", id) from None  # a loan is a funded application; say "loan", as for customers
        raise
