"""Asks the customer service whether a loan exists, belongs to the customer and is funded, and its principal."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import grpc

from chassis.errors import Unavailable
from chassis.money import Money, MoneyInput, parse_money
from chassis.rpc_telemetry import traced_call
from loanbook.customer.v1 import customer_pb2, customer_pb2_grpc

if TYPE_CHECKING:
    from loanbook.customer.v1.customer_pb2_grpc import CustomerServiceAsyncStub


@dataclass(frozen=True)
class LoanStanding:
    exists: bool
    belongs_to_customer: bool
    funded: bool
    principal: Money | None  # None for an unknown loan, or when the answer carried no principal we can read


class LoanDirectory(Protocol):
    async def standing(self, loan_id: uuid.UUID, customer_id: uuid.UUID) -> LoanStanding: ...


class GrpcLoanDirectory:
    """The customer service's CheckLoanStanding, with a deadline; when it cannot answer, nothing is accepted."""

    def __init__(self, channel: grpc.aio.Channel, deadline_seconds: float) -> None:
        self._stub: CustomerServiceAsyncStub = customer_pb2_grpc.CustomerServiceStub(channel)
        self._deadline = deadline_seconds

    async def standing(self, loan_id: uuid.UUID, customer_id: uuid.UUID) -> LoanStanding:
        request = customer_pb2.CheckLoanStandingRequest(loan_id=str(loan_id), customer_id=str(customer_id))
        try:
            response = await traced_call(self._stub.CheckLoanStanding, request, timeout=self._deadline)
        except grpc.aio.AioRpcError as error:
            # Unchecked payments are never accepted: an unreachable or slow customer service refuses the payment.
            raise Unavailable(
                f"cannot check the loan with the customer service ({error.code().name}); retry later"
            ) from error
        principal = None
        if response.HasField("principal"):
            principal, _ = parse_money(MoneyInput.from_proto(response.principal), "principal")
        return LoanStanding(
            exists=response.exists,
            belongs_to_customer=response.belongs_to_customer,
            funded=response.status == customer_pb2.APPLICATION_STATUS_FUNDED,
            principal=principal,
        )
