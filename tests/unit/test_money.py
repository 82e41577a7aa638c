"""Money converts exactly between google.type.Money and integer minor units, refusing inexact amounts."""

import pytest

from chassis.money import Money, MoneyInput, parse_money


@pytest.mark.parametrize(
    ("units", "nanos", "currency", "minor"),
    [
        (12, 340_000_000, "USD", 1234),
        (0, 10_000_000, "EUR", 1),
        (-5, -500_000_000, "GBP", -550),
        (1500, 0, "JPY", 1500),
        (9_223_372_036, 0, "USD", 922_337_203_600),
    ],
)
def test_parses_exact_amounts_and_round_trips(units: int, nanos: int, currency: str, minor: int) -> None:
    money, violations = parse_money(MoneyInput(currency, units, nanos), "amount")

    assert violations == []
    assert money == Money(currency, minor)
    proto = money.to_proto()
    assert (proto.currency_code, proto.units, proto.nanos) == (currency, units, nanos)


@pytest.mark.parametrize(
    ("value", "field", "reason"),
    [
        (MoneyInput("USD", 1, 5_000_000), "amount.nanos", "2 decimal places"),
        (MoneyInput("JPY", 1, 500_000_000), "amount.nanos", "0 decimal places"),
        (MoneyInput("XXX", 1, 0), "amount.currency_code", "must be one of"),
        (MoneyInput("", 1, 0), "amount.currency_code", "must be one of"),
        (MoneyInput("USD", 1, -10_000_000), "amount.nanos", "same sign"),
        (MoneyInput("USD", 1, 1_000_000_000), "amount.nanos", "between"),
        (MoneyInput("USD", 92_233_720_368_547_759, 0), "amount.units", "at most 92,233,720,368,547,758.07 USD"),
        (MoneyInput("USD", 92_233_720_368_547_758, 80_000_000), "amount.units", "out of range"),
        (MoneyInput("JPY", -(2**63), 0), "amount.units", "either way"),
    ],
)
def test_refuses_inexact_or_unknown_amounts_naming_the_field(value: MoneyInput, field: str, reason: str) -> None:
    money, violations = parse_money(value, "amount")

    assert money is None
    assert [v.field for v in violations] == [field]
    assert reason in violations[0].description
