"""What the payment service does: validated, idempotent commands and paginated queries over the store."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from chassis.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound, Unavailable, VersionConflict
from chassis.ids import new_id, parse_id
from chassis.money import Money, MoneyInput, parse_money
from chassis.page_tokens import PageTokens, page_size_or_default
from services.payment.domain import Payment, PaymentCursor, PaymentMethod, PaymentStatus, request_fingerprint
from services.payment.loans import LoanDirectory
from services.payment.ports import IdempotencyKeyTaken, PaymentRepository

logger = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY_LENGTH = 128
# A payment may be recorded a little ahead of our clock (clock skew), never days ahead.
MAX_CLOCK_SKEW = timedelta(minutes=5)


class IdempotencyConflict(FailedPrecondition):
    def __init__(self) -> None:
        super().__init__(
            "this idempotency key was already used for a different payment request; use a new key for a new payment"
        )


@dataclass(frozen=True)
class RecordPayment:
    idempotency_key: str
    customer_id: str
    loan_id: str
    amount: MoneyInput | None
    method: PaymentMethod | None
    paid_at: datetime | None  # None: now (or unreadable: see paid_time_problem)
    paid_time_problem: str = ""  # why the paid time could not be read (a Timestamp out of range)


@dataclass(frozen=True)
class PaymentPage:
    items: Sequence[Payment]
    next_page_token: str


def _id(violations: list[FieldViolation], value: str, field: str) -> uuid.UUID | None:
    parsed, problems = parse_id(value, field)
    violations.extend(problems)
    return parsed


def _cursor(position: dict[str, object] | None) -> PaymentCursor | None:
    if position is None:
        return None
    try:
        return PaymentCursor(datetime.fromisoformat(str(position["paid_at"])), uuid.UUID(str(position["id"])))
    except (KeyError, ValueError):
        raise InvalidArgument([FieldViolation("page_token", "page token is not valid")]) from None


def check_against_principal(amount: Money, principal: Money | None) -> None:
    """One payment is in the loan's currency and at most its principal: a larger one is a typo or an attack,
    never a repayment. Unchecked payments are never accepted, so a loan whose principal is unknown refuses them."""
    if principal is None:
        raise Unavailable("the customer service did not give the loan's principal; retry later")
    if amount.currency != principal.currency:
        raise InvalidArgument(
            [FieldViolation("amount.currency_code", f"must be the loan's currency, {principal.currency}")]
        )
    if amount.minor_units > principal.minor_units:
        raise InvalidArgument(
            [FieldViolation("amount", f"must be at most the loan's principal, {principal.display()}")]
        )


class PaymentUseCases:
    def __init__(
        self,
        store: PaymentRepository,
        loans: LoanDirectory,
        page_tokens: PageTokens,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._loans = loans
        self._tokens = page_tokens
        self._now = now

    async def record_payment(self, command: RecordPayment) -> tuple[Payment, bool]:
        """The payment, and whether it is a replay of an earlier request with the same idempotency key."""
        violations: list[FieldViolation] = []
        key = command.idempotency_key.strip()
        if not key:
            violations.append(FieldViolation("idempotency_key", "is required (the Idempotency-Key of the request)"))
        elif len(key) > MAX_IDEMPOTENCY_KEY_LENGTH or not key.isprintable():
            violations.append(
                FieldViolation("idempotency_key", f"must be 1-{MAX_IDEMPOTENCY_KEY_LENGTH} printable characters")
            )
        customer_id = _id(violations, command.customer_id, "customer_id")
        loan_id = _id(violations, command.loan_id, "loan_id")
        amount = None
        if command.amount is None:
            violations.append(FieldViolation("amount", "is required"))
        else:
            amount, problems = parse_money(command.amount, "amount")
            violations.extend(problems)
            if amount is not None and amount.minor_units <= 0:
                violations.append(FieldViolation("amount", "must be positive"))
        if command.method is None:
            violations.append(FieldViolation("method", "is required: one of ACH, CARD, WIRE, CASH"))
        now = self._now()
        paid_at = command.paid_at or now
        if command.paid_time_problem:
            violations.append(FieldViolation("paid_time", command.paid_time_problem))
        elif paid_at > now + MAX_CLOCK_SKEW:
            violations.append(FieldViolation("paid_time", "must not be in the future"))
        if violations:
            raise InvalidArgument(violations)
        assert customer_id is not None and loan_id is not None and amount is not None and command.method
        fingerprint = request_fingerprint(customer_id, loan_id, amount, command.method, command.paid_at)

        if (earlier := await self._store.get_by_idempotency_key(key, for_write=True)) is not None:
            return self._replay(earlier, fingerprint)
        standing = await self._loans.standing(loan_id, customer_id)
        if not standing.exists or not standing.belongs_to_customer:
            # Someone else's loan reads as an unknown one: ids cannot be probed.
            raise NotFound("loan", str(loan_id))
        if not standing.funded:
            raise FailedPrecondition(f"loan {loan_id} is not FUNDED; payments are recorded against funded loans")
        check_against_principal(amount, standing.principal)
        payment = Payment(
            id=new_id(),
            customer_id=customer_id,
            loan_id=loan_id,
            amount=amount,
            method=command.method,
            status=PaymentStatus.SETTLED,
            paid_at=paid_at,
            created_at=now,
            updated_at=now,
            version=1,
            idempotency_key=key,
            request_fingerprint=fingerprint,
        )
        try:
            created = await self._store.create(payment)
        except IdempotencyKeyTaken as taken:  # a concurrent request with the same key won the race
            return self._replay(taken.existing, fingerprint)
        # Ids and the method only: amounts and idempotency keys stay out of logs.
        logger.info(
            "payment recorded",
            extra={"payment_id": str(created.id), "loan_id": str(loan_id), "method": created.method.value},
        )
        return created, False

    @staticmethod
    def _replay(earlier: Payment, fingerprint: str) -> tuple[Payment, bool]:
        if earlier.request_fingerprint != fingerprint:
            logger.info("idempotency key reused for a different request", extra={"payment_id": str(earlier.id)})
            raise IdempotencyConflict()
        logger.info("payment request replayed", extra={"payment_id": str(earlier.id)})
        return earlier, True

    async def get_payment(self, payment_id: str, *, for_write: bool = False) -> Payment:
        violations: list[FieldViolation] = []
        parsed = _id(violations, payment_id, "payment_id")
        if parsed is None:
            raise InvalidArgument(violations)
        payment = await self._store.get(parsed, for_write=for_write)
        if payment is None:
            raise NotFound("payment", payment_id)
        return payment

    async def list_customer_payments(
        self, customer_id: str, paid_from: datetime | None, paid_to: datetime | None, page_size: int, page_token: str
    ) -> PaymentPage:
        violations: list[FieldViolation] = []
        parsed = _id(violations, customer_id, "customer_id")
        if paid_from and paid_to and paid_from >= paid_to:
            violations.append(FieldViolation("from_time", "must be before to_time"))
        if violations:
            raise InvalidArgument(violations)
        assert parsed is not None
        limit = page_size_or_default(page_size)
        query = {
            "list": "customer-payments",
            "customer_id": str(parsed),
            "from": paid_from.isoformat() if paid_from else "",
            "to": paid_to.isoformat() if paid_to else "",
        }
        after = _cursor(self._tokens.decode(page_token, query))
        rows = await self._store.list_for_customer(parsed, paid_from, paid_to, after, limit + 1)
        return self._page(rows, limit, query)

    async def list_loan_payments(self, loan_id: str, page_size: int, page_token: str) -> PaymentPage:
        violations: list[FieldViolation] = []
        parsed = _id(violations, loan_id, "loan_id")
        if parsed is None:
            raise InvalidArgument(violations)
        limit = page_size_or_default(page_size)
        query = {"list": "loan-payments", "loan_id": str(parsed)}
        after = _cursor(self._tokens.decode(page_token, query))
        return self._page(await self._store.list_for_loan(parsed, after, limit + 1), limit, query)

    def _page(self, rows: list[Payment], limit: int, query: dict[str, str]) -> PaymentPage:
        if len(rows) <= limit:
            return PaymentPage(rows, "")
        rows = rows[:limit]
        last = rows[-1]
        # The position is (paid_at, id), the same on every back end, so a token survives a stage change.
        token = self._tokens.encode(query, {"paid_at": last.paid_at.isoformat(), "id": str(last.id)})
        return PaymentPage(rows, token)

    async def reverse_payment(self, payment_id: str, version: int, reason: str) -> Payment:
        violations: list[FieldViolation] = []
        _id(violations, payment_id, "payment_id")
        if version < 1:
            violations.append(FieldViolation("version", "is required: the version you read"))
        if len(reason) > 500:
            violations.append(FieldViolation("reason", "must be at most 500 characters"))
        if violations:
            raise InvalidArgument(violations)
        current = await self.get_payment(payment_id, for_write=True)
        if current.version != version:
            raise VersionConflict("payment", payment_id, version, current.version)
        reversed_payment = current.reversed_at(self._now())
        if await self._store.update(reversed_payment, expected_version=version):
            logger.info("payment reversed", extra={"payment_id": payment_id, "version": reversed_payment.version})
            return reversed_payment
        latest = await self.get_payment(payment_id, for_write=True)
        raise VersionConflict("payment", payment_id, version, latest.version)
