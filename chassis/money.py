"""Exact money: integer minor units and an ISO 4217 currency, converted to and from google.type.Money."""

from __future__ import annotations

from dataclasses import dataclass

from google.type import money_pb2

from chassis.errors import FieldViolation

# Currencies loanbook accepts and the number of decimal places of their minor unit.
MINOR_UNIT_DIGITS: dict[str, int] = {"USD": 2, "EUR": 2, "GBP": 2, "CAD": 2, "AUD": 2, "CHF": 2, "JPY": 0}
NANOS_PER_UNIT = 1_000_000_000
# Every store keeps an amount as int64 minor units (PostgreSQL bigint): a larger one is bad input, refused here
# rather than failing as INTERNAL in whichever adapter converts it first.
MAX_MINOR_UNITS = 2**63 - 1


@dataclass(frozen=True, order=True)
class Money:
    currency: str
    minor_units: int

    @property
    def digits(self) -> int:
        return MINOR_UNIT_DIGITS[self.currency]

    def to_proto(self) -> money_pb2.Money:
        scale = 10**self.digits
        sign = -1 if self.minor_units < 0 else 1
        units, remainder = divmod(abs(self.minor_units), scale)
        nanos = remainder * (NANOS_PER_UNIT // scale)
        return money_pb2.Money(currency_code=self.currency, units=sign * units, nanos=sign * nanos)

    def display(self) -> str:
        """For messages: `5,000.00 USD`."""
        scale = 10**self.digits
        sign = "-" if self.minor_units < 0 else ""
        units, remainder = divmod(abs(self.minor_units), scale)
        fraction = f".{remainder:0{self.digits}d}" if self.digits else ""
        return f"{sign}{units:,}{fraction} {self.currency}"


@dataclass(frozen=True)
class MoneyInput:
    """An amount as a caller sent it (google.type.Money's fields), not yet checked."""

    currency_code: str
    units: int
    nanos: int

    @classmethod
    def from_proto(cls, value: money_pb2.Money) -> MoneyInput:
        return cls(value.currency_code, value.units, value.nanos)


def parse_money(value: MoneyInput, field: str) -> tuple[Money | None, list[FieldViolation]]:
    """Exact conversion to minor units; a fraction finer than the currency's minor unit is refused."""
    currency = value.currency_code
    if currency not in MINOR_UNIT_DIGITS:
        supported = ", ".join(sorted(MINOR_UNIT_DIGITS))
        return None, [FieldViolation(f"{field}.currency_code", f"must be one of {supported}")]
    if abs(value.nanos) >= NANOS_PER_UNIT:
        return None, [FieldViolation(f"{field}.nanos", "must be between -999,999,999 and 999,999,999")]
    if (value.units > 0 and value.nanos < 0) or (value.units < 0 and value.nanos > 0):
        return None, [FieldViolation(f"{field}.nanos", "must have the same sign as units")]
    nanos_per_minor = NANOS_PER_UNIT // 10 ** MINOR_UNIT_DIGITS[currency]
    if value.nanos % nanos_per_minor:
        return None, [
            FieldViolation(f"{field}.nanos", f"{currency} has {MINOR_UNIT_DIGITS[currency]} decimal places; no finer")
        ]
    minor = value.units * 10 ** MINOR_UNIT_DIGITS[currency] + value.nanos // nanos_per_minor
    if abs(minor) > MAX_MINOR_UNITS:
        largest = Money(currency, MAX_MINOR_UNITS).display()
        return None, [FieldViolation(f"{field}.units", f"is out of range: at most {largest} either way")]
    return Money(currency, minor), []
