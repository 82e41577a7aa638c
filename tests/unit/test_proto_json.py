"""The gateway's fast protobuf-to-JSON conversion gives exactly what json_format.MessageToDict gives."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message
from google.type import money_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.proto_json import message_to_json
from loanbook.customer.v1 import customer_pb2
from loanbook.logging.v1 import logging_pb2
from loanbook.migration.v1 import migration_pb2
from loanbook.payment.v1 import payment_pb2

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# Timestamps protobuf can write: years 0001 to 9999, any nanos (so 0, 3, 6 and 9 fractional digits all occur).
TIMESTAMPS = st.builds(
    timestamp_pb2.Timestamp,
    seconds=st.integers(min_value=-62_135_596_800, max_value=253_402_300_799),
    nanos=st.one_of(
        st.just(0),
        st.integers(0, 999).map(lambda ms: ms * 1_000_000),
        st.integers(0, 999_999).map(lambda us: us * 1000),
        st.integers(0, 999_999_999),
    ),
)
TEXT = st.text(max_size=20)
MONEY = st.builds(money_pb2.Money, currency_code=TEXT, units=INT64, nanos=st.integers(-999_999_999, 999_999_999))


def expected(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def payments() -> st.SearchStrategy[payment_pb2.Payment]:
    def build(amount: Any, paid: Any, created: Any, **fields: Any) -> payment_pb2.Payment:
        payment = payment_pb2.Payment(**fields)
        for name, value in (("amount", amount), ("paid_time", paid), ("create_time", created)):
            if value is not None:  # left unset: a field with presence that json leaves out
                getattr(payment, name).CopyFrom(value)
        return payment

    return st.builds(
        build,
        amount=optional(MONEY),
        paid=optional(TIMESTAMPS),
        created=optional(TIMESTAMPS),
        id=TEXT,
        customer_id=TEXT,
        version=INT64,
        method=st.integers(0, 6),  # 5 and 6 are numbers the enum does not name
        status=st.integers(0, 5),
        idempotency_key=TEXT,
    )


@given(st.lists(payments(), max_size=4), TEXT)
@settings(max_examples=300, deadline=None)  # a loaded machine stalls a case now and then
def test_a_page_of_payments_converts_exactly_as_json_format_does(page: list[payment_pb2.Payment], token: str) -> None:
    message = payment_pb2.ListCustomerPaymentsResponse(payments=page, next_page_token=token)

    assert message_to_json(message) == expected(message)


@given(
    st.lists(
        st.builds(
            logging_pb2.LogEntry,
            id=TEXT,
            time=TIMESTAMPS,
            level=st.integers(0, 7),
            message=TEXT,
            attributes=st.dictionaries(TEXT, TEXT, max_size=3),
            trace_id=TEXT,
        ),
        max_size=4,
    )
)
@settings(max_examples=200, deadline=None)
def test_log_entries_with_their_attribute_maps_convert_exactly_as_json_format_does(
    entries: list[logging_pb2.LogEntry],
) -> None:
    message = logging_pb2.QueryLogsResponse(entries=entries)

    assert message_to_json(message) == expected(message)


def test_customer_context_messages_convert_exactly_as_json_format_does() -> None:
    customer = customer_pb2.Customer(id="c", name="Zoë", version=2**40)
    customer.date_of_birth.year = 1990
    portfolio = customer_pb2.GetBranchPortfolioResponse(branch_id="b")
    portfolio.totals.add(status=customer_pb2.APPLICATION_STATUS_FUNDED, count=3).principal.units = 1500

    for message in (customer, portfolio, customer_pb2.LoanApplication(), customer_pb2.ListCustomersResponse()):
        assert message_to_json(message) == expected(message)


def test_messages_with_kinds_it_does_not_plan_for_are_left_to_json_format() -> None:
    # TableMode has a double; Struct is a well-known type with a JSON form of its own.
    mode = migration_pb2.TableMode(table="logs", oldest_pending_seconds=1.5, journal_backlog=7)
    structure = struct_pb2.Struct()
    structure.update({"a": 1})

    assert message_to_json(mode) == expected(mode)
    assert message_to_json(structure) == expected(structure)
