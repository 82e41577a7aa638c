"""The floor under bench/payment_history.py: a server on the services' own gRPC stack doing only the listing query.

It runs as the payment service does (grpc.aio on uvloop, chassis.grpc_server, OpenTelemetry's server spans, the
service's asyncpg pool or DynamoDB client) and for each ListCustomerPayments issues the same SQL, or the same Query
with the items kept as wire JSON as the service reads them, then answers with a page built once at the first call.
What the service adds beyond this floor is its own work: payments as domain objects, protobuf, the hybrid store's
routing and span, the page token.

Run by the benchmark: `python -m bench.grpc_floor --port N (--postgres DSN | --dynamodb ENDPOINT --table NAME)`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer
import uvloop
from pydantic import SecretStr

from bench.harness import command_line
from chassis.config import DynamoSettings, GrpcServiceSettings, PostgresSettings
from chassis.dynamodb_wire import query_page
from chassis.grpc_server import GrpcServer, ServiceBinding
from chassis.ids import uuid_from_text
from chassis.stores import dynamodb_client, postgres_pool
from chassis.telemetry import configure_telemetry
from loanbook.payment.v1 import payment_pb2 as pb
from loanbook.payment.v1 import payment_pb2_grpc
from services.payment.adapters.dynamodb import BY_CUSTOMER, payment_from_item
from services.payment.adapters.postgres import listing_query, payment_from_row
from services.payment.api import fill_payment
from services.payment.domain import Payment

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.type_defs import QueryInputTypeDef


@dataclass(frozen=True)
class FloorOptions:
    """Where the floor listens and which store it queries: PostgreSQL, or DynamoDB and the payments table."""

    port: int
    postgres: str | None
    dynamodb: str | None
    table: str


def customer_history_query(table: str, customer: uuid.UUID, limit: int) -> QueryInputTypeDef:
    """The DynamoDB Query of a customer's newest payments, as the payment adapter issues it."""
    return {
        "TableName": table,
        "IndexName": BY_CUSTOMER,
        "KeyConditionExpression": "customer_id = :c",
        "ExpressionAttributeValues": {":c": {"S": str(customer)}},
        "ScanIndexForward": False,
        "Limit": limit,
    }


@dataclass(frozen=True)
class ListingQuery:
    """A customer's newest payments, one more than a page, as the back end answers (rows or wire items)."""

    fetch: Callable[[uuid.UUID, int], Awaitable[Sequence[Any]]]
    to_payment: Callable[[Any], Payment]


class QueryOnlyPaymentService(payment_pb2_grpc.PaymentServiceServicer):
    def __init__(self, query: ListingQuery) -> None:
        self._query = query
        self._page: pb.ListCustomerPaymentsResponse | None = None

    async def ListCustomerPayments(
        self, request: pb.ListCustomerPaymentsRequest, context: object
    ) -> pb.ListCustomerPaymentsResponse:
        limit = request.page_size or 50
        answer = await self._query.fetch(uuid_from_text(request.customer_id), limit + 1)
        if self._page is None:  # a real page of the benchmark's data, built once
            self._page = pb.ListCustomerPaymentsResponse()
            for record in answer[:limit]:
                fill_payment(self._page.payments.add(), self._query.to_payment(record))
        return self._page


async def serve(args: FloorOptions) -> None:
    async with AsyncExitStack() as stack:
        if args.postgres:
            pool = await stack.enter_async_context(
                postgres_pool(PostgresSettings(postgres_dsn=SecretStr(args.postgres)))
            )

            async def fetch_rows(customer: uuid.UUID, limit: int) -> Sequence[Any]:
                return await pool.fetch(*listing_query("customer_id", customer, None, None, None, limit))

            query = ListingQuery(fetch_rows, payment_from_row)
        else:
            client = await stack.enter_async_context(dynamodb_client(DynamoSettings(dynamodb_endpoint=args.dynamodb)))

            async def fetch_items(customer: uuid.UUID, limit: int) -> Sequence[Any]:
                page = await query_page(client, customer_history_query(args.table, customer, limit))
                items: Sequence[Any] = page["Items"]
                return items

            query = ListingQuery(fetch_items, payment_from_item)
        # The other RPCs answer UNIMPLEMENTED from the generated base class; the stubs mark them abstract.
        servicer = QueryOnlyPaymentService(query)  # type: ignore[abstract]
        binding = ServiceBinding(
            "loanbook.payment.v1.PaymentService",
            lambda server: payment_pb2_grpc.add_PaymentServiceServicer_to_server(servicer, server),
        )
        settings = GrpcServiceSettings(grpc_host="127.0.0.1", grpc_port=args.port)
        await GrpcServer(settings, [binding]).serve_until_signalled()


app = command_line()


@app.command(help=__doc__.splitlines()[0])
def main(
    port: Annotated[int, typer.Option()],
    postgres: Annotated[str | None, typer.Option(metavar="DSN", help="query PostgreSQL (or --dynamodb)")] = None,
    dynamodb: Annotated[str | None, typer.Option(metavar="ENDPOINT", help="query DynamoDB (or --postgres)")] = None,
    table: Annotated[str, typer.Option(show_default=False, help="the payments table (with --dynamodb)")] = "",
) -> None:
    if (postgres is None) == (dynamodb is None):
        raise typer.BadParameter("give exactly one of them", param_hint="--postgres / --dynamodb")
    if dynamodb and not table:
        raise typer.BadParameter("needs --table", param_hint="--dynamodb")
    # Traced like the payment service: server spans, no per-statement spans (services/payment/__main__.py).
    telemetry = configure_telemetry("loanbook-bench-floor", trace_store_clients=False)
    try:
        uvloop.run(serve(FloorOptions(port, postgres, dynamodb, table)))
    finally:
        telemetry.shutdown()


if __name__ == "__main__":
    app()
