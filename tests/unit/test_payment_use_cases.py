"""Recording and reversing payments: validation, idempotency, the loan check, versions and paging."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from chassis.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable, VersionConflict
from chassis.money import Money, MoneyInput
from chassis.page_tokens import PageTokens
from services.payment.domain import PaymentMethod, PaymentStatus
from services.payment.loans import LoanStanding
from services.payment.use_cases import IdempotencyConflict, PaymentUseCases, RecordPayment
from tests.support.fakes.payment_repository import InMemoryPaymentRepository

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PRINCIPAL_MINOR_UNITS = 5_000_00


@dataclass
class LoanBook:
    """A loan directory that knows a few loans: (loan, customer) -> funded?"""

    loans: dict[uuid.UUID, tuple[uuid.UUID, bool]] = field(default_factory=dict)
    down: bool = False
    asked: int = 0

    async def standing(self, loan_id: uuid.UUID, customer_id: uuid.UUID) -> LoanStanding:
        self.asked += 1
        if self.down:
            raise Unavailable("customer service unavailable")
        if loan_id not in self.loans:
            return LoanStanding(False, False, False, None)
        owner, funded = self.loans[loan_id]
        return LoanStanding(True, owner == customer_id, funded, Money("USD", PRINCIPAL_MINOR_UNITS))


CUSTOMER, LOAN, UNFUNDED = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


@pytest.fixture
def loans() -> LoanBook:
    return LoanBook({LOAN: (CUSTOMER, True), UNFUNDED: (CUSTOMER, False)})


@pytest.fixture
def store() -> InMemoryPaymentRepository:
    return InMemoryPaymentRepository()


@pytest.fixture
def payments(store: InMemoryPaymentRepository, loans: LoanBook) -> PaymentUseCases:
    return PaymentUseCases(store, loans, PageTokens("k" * 32, "payment"), now=lambda: NOW)


def command(**overrides: object) -> RecordPayment:
    fields: dict[str, object] = {
        "idempotency_key": f"key-{uuid.uuid4()}",
        "customer_id": str(CUSTOMER),
        "loan_id": str(LOAN),
        "amount": MoneyInput("USD", 125, 500_000_000),
        "method": PaymentMethod.ACH,
        "paid_at": NOW - timedelta(hours=1),
    }
    fields.update(overrides)
    return RecordPayment(**fields)  # type: ignore[arg-type]


async def test_records_a_settled_payment_against_a_funded_loan(payments: PaymentUseCases) -> None:
    payment, replayed = await payments.record_payment(command())

    assert not replayed
    assert (payment.status, payment.version, payment.amount.minor_units) == (PaymentStatus.SETTLED, 1, 12550)
    assert await payments.get_payment(str(payment.id)) == payment


async def test_the_same_key_and_request_returns_the_original_payment(
    payments: PaymentUseCases, store: InMemoryPaymentRepository
) -> None:
    first, _ = await payments.record_payment(request := command())
    again, replayed = await payments.record_payment(request)

    assert replayed
    assert again == first
    assert len(await store.list_for_customer(CUSTOMER, None, None, None, 10)) == 1


async def test_the_same_key_with_a_different_request_is_refused(payments: PaymentUseCases) -> None:
    await payments.record_payment(command(idempotency_key="k-1"))

    with pytest.raises(IdempotencyConflict, match="different payment request"):
        await payments.record_payment(command(idempotency_key="k-1", amount=MoneyInput("USD", 126, 0)))


async def test_two_concurrent_requests_with_one_key_record_one_payment(
    payments: PaymentUseCases, store: InMemoryPaymentRepository
) -> None:
    request = command()
    results = await asyncio.gather(payments.record_payment(request), payments.record_payment(request))

    assert results[0][0] == results[1][0]
    assert sorted(replayed for _, replayed in results) == [False, True]
    assert len(await store.list_for_customer(CUSTOMER, None, None, None, 10)) == 1


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({"idempotency_key": ""}, ["idempotency_key"]),
        ({"amount": MoneyInput("USD", 0, 0)}, ["amount"]),
        ({"amount": MoneyInput("USD", -5, 0)}, ["amount"]),
        ({"amount": MoneyInput("USD", 1, 1)}, ["amount.nanos"]),
        ({"amount": MoneyInput("ZZZ", 1, 0)}, ["amount.currency_code"]),
        ({"amount": MoneyInput("USD", 92_233_720_368_547_759, 0)}, ["amount.units"]),
        ({"amount": None, "method": None}, ["amount", "method"]),
        ({"customer_id": "c", "loan_id": ""}, ["customer_id", "loan_id"]),
        ({"paid_at": NOW + timedelta(days=1)}, ["paid_time"]),
    ],
)
async def test_bad_input_names_the_fields_and_records_nothing(
    payments: PaymentUseCases, store: InMemoryPaymentRepository, overrides: dict[str, object], fields: list[str]
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await payments.record_payment(command(**overrides))

    assert [v.field for v in refused.value.violations] == fields
    assert await store.list_for_customer(CUSTOMER, None, None, None, 10) == []


async def test_unknown_someone_elses_and_unfunded_loans_are_refused(payments: PaymentUseCases) -> None:
    with pytest.raises(NotFound):
        await payments.record_payment(command(loan_id=str(uuid.uuid4())))
    with pytest.raises(NotFound):
        await payments.record_payment(command(customer_id=str(uuid.uuid4())))
    with pytest.raises(FailedPrecondition, match="not FUNDED"):
        await payments.record_payment(command(loan_id=str(UNFUNDED)))
    with pytest.raises(InvalidArgument) as currency:
        await payments.record_payment(command(amount=MoneyInput("EUR", 10, 0)))
    assert currency.value.violations[0].field == "amount.currency_code"


async def test_a_payment_larger_than_the_loans_principal_is_refused_naming_the_principal(
    payments: PaymentUseCases, store: InMemoryPaymentRepository
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await payments.record_payment(command(amount=MoneyInput("USD", 5_000, 10_000_000)))
    whole, _ = await payments.record_payment(command(amount=MoneyInput("USD", 5_000, 0)))

    assert [(v.field, v.description) for v in refused.value.violations] == [
        ("amount", "must be at most the loan's principal, 5,000.00 USD")
    ]
    assert await store.list_for_customer(CUSTOMER, None, None, None, 10) == [whole]


async def test_a_payment_is_never_accepted_unchecked(
    payments: PaymentUseCases, loans: LoanBook, store: InMemoryPaymentRepository
) -> None:
    loans.down = True

    with pytest.raises(Unavailable):
        await payments.record_payment(command())
    assert await store.list_for_customer(CUSTOMER, None, None, None, 10) == []


async def test_reverses_a_settled_payment_once_at_its_version(payments: PaymentUseCases) -> None:
    payment, _ = await payments.record_payment(command())

    reversed_payment = await payments.reverse_payment(str(payment.id), 1, "chargeback")
    with pytest.raises(VersionConflict):
        await payments.reverse_payment(str(payment.id), 1, "again")
    with pytest.raises(FailedPrecondition, match="only a SETTLED payment"):
        await payments.reverse_payment(str(payment.id), 2, "again")

    assert (reversed_payment.status, reversed_payment.version) == (PaymentStatus.REVERSED, 2)
    assert await payments.get_payment(str(payment.id)) == reversed_payment


async def test_customer_history_pages_newest_first_within_the_time_range(payments: PaymentUseCases) -> None:
    for hours in range(1, 8):
        await payments.record_payment(command(paid_at=NOW - timedelta(hours=hours)))
    paid_from, paid_to = NOW - timedelta(hours=6), NOW - timedelta(hours=1)

    seen: list[datetime] = []
    token = ""
    while True:
        page = await payments.list_customer_payments(str(CUSTOMER), paid_from, paid_to, 2, token)
        seen.extend(payment.paid_at for payment in page.items)
        token = page.next_page_token
        if not token:
            break

    assert seen == [NOW - timedelta(hours=h) for h in range(2, 7)]


async def test_a_page_token_is_bound_to_its_query(payments: PaymentUseCases) -> None:
    for hours in range(1, 4):
        await payments.record_payment(command(paid_at=NOW - timedelta(hours=hours)))
    page = await payments.list_customer_payments(str(CUSTOMER), None, None, 1, "")

    with pytest.raises(InvalidArgument, match="page_token"):
        await payments.list_customer_payments(str(CUSTOMER), NOW - timedelta(days=1), None, 1, page.next_page_token)
    with pytest.raises(InvalidArgument, match="page_token"):
        await payments.list_loan_payments(str(LOAN), 1, page.next_page_token)


async def test_a_retry_of_a_request_without_a_paid_time_is_a_replay(store: InMemoryPaymentRepository) -> None:
    clock = iter([NOW, NOW + timedelta(seconds=3)])  # the retry arrives later: "now" has moved on
    payments = PaymentUseCases(
        store, LoanBook({LOAN: (CUSTOMER, True)}), PageTokens("k" * 32, "payment"), now=lambda: next(clock)
    )

    first, _ = await payments.record_payment(request := command(paid_at=None))
    again, replayed = await payments.record_payment(request)

    assert replayed
    assert again == first
